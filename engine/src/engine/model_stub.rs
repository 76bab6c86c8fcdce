// TEMPORARY until the providers branch merges: no stored models.
use super::Engine;
use crate::Result;
use crate::model::ModelConnection;
impl Engine {
    pub async fn model_connection(&self, _name: &str) -> Result<Option<ModelConnection>> {
        Ok(None)
    }
}
