//! DataLoaders: fields resolved for many runs at once cost one query per batch,
//! not one per run.

use std::collections::HashMap;

use aiops_engine::model::Team as TeamRecord;
use aiops_engine::{Engine, RunId};
use async_graphql::dataloader::Loader;
use uuid::Uuid;

/// Step counts by run id.
pub struct StepCounts(pub Engine);

impl Loader<Uuid> for StepCounts {
    type Value = i64;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, i64>, Self::Error> {
        let runs: Vec<RunId> = keys.iter().map(|k| RunId(*k)).collect();
        let counts = self
            .0
            .step_counts(&runs)
            .await
            .map_err(super::error::to_gql)?;
        Ok(keys
            .iter()
            .map(|k| (*k, counts.get(&RunId(*k)).copied().unwrap_or(0)))
            .collect())
    }
}

/// Teams by the version id a run pinned.
pub struct TeamVersions(pub Engine);

impl Loader<Uuid> for TeamVersions {
    type Value = TeamRecord;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, TeamRecord>, Self::Error> {
        self.0
            .teams_by_version(keys)
            .await
            .map_err(super::error::to_gql)
    }
}
