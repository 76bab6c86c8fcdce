//! The `llm_providers` table. A provider refers to its credential by id; records
//! leave with the credential's name.

use std::collections::HashMap;

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, SqlErr,
};
use uuid::Uuid;

use super::entity::llm_provider;
use super::llm_credentials;
use crate::ids::{CredentialId, ProviderId};
use crate::model::{Provider, ProviderKind};
use crate::{Error, Result};

/// A provider as stored: the record and its credential's id.
pub(crate) struct StoredProvider {
    pub provider: Provider,
    pub credential_id: Option<CredentialId>,
}

fn record(m: llm_provider::Model, credential: Option<String>) -> Result<Provider> {
    let kind: ProviderKind = m
        .kind
        .parse()
        .map_err(|e| Error::Corrupt(format!("provider {:?}: {e}", m.name)))?;
    Ok(Provider {
        id: ProviderId(m.id),
        name: m.name,
        kind,
        base_url: m.base_url,
        azure_api_version: m.azure_api_version,
        credential,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

/// Records of `models` with their credentials' names (one more query).
async fn records(
    db: &impl ConnectionTrait,
    models: Vec<llm_provider::Model>,
) -> Result<Vec<StoredProvider>> {
    let ids: Vec<CredentialId> = models
        .iter()
        .filter_map(|m| m.credential_id.map(CredentialId))
        .collect();
    let names = llm_credentials::names(db, &ids).await?;
    models
        .into_iter()
        .map(|m| {
            let credential_id = m.credential_id.map(CredentialId);
            let credential = match credential_id {
                None => None,
                Some(id) => Some(names.get(&id).cloned().ok_or_else(|| {
                    Error::Corrupt(format!("provider {:?}: its credential is missing", m.name))
                })?),
            };
            Ok(StoredProvider {
                provider: record(m, credential)?,
                credential_id,
            })
        })
        .collect()
}

/// Inserts `provider` using the credential `credential_id`; a taken name is
/// [`Error::Conflict`], as is a credential deleted meanwhile.
pub(crate) async fn insert(
    db: &impl ConnectionTrait,
    provider: &Provider,
    credential_id: Option<CredentialId>,
) -> Result<()> {
    let model = llm_provider::ActiveModel {
        id: Set(provider.id.0),
        name: Set(provider.name.clone()),
        kind: Set(provider.kind.as_str().to_owned()),
        base_url: Set(provider.base_url.clone()),
        azure_api_version: Set(provider.azure_api_version.clone()),
        credential_id: Set(credential_id.map(|c| c.0)),
        created_at: Set(provider.created_at),
        updated_at: Set(provider.updated_at),
    };
    match llm_provider::Entity::insert(model)
        .exec_without_returning(db)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => Err(match e.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => Error::Conflict(format!(
                "a provider named {:?} already exists",
                provider.name
            )),
            Some(SqlErr::ForeignKeyConstraintViolation(_)) => Error::Conflict(format!(
                "provider {:?}: its credential {:?} was deleted meanwhile",
                provider.name,
                provider.credential.as_deref().unwrap_or_default()
            )),
            _ => e.into(),
        }),
    }
}

/// Every provider, by name.
pub(crate) async fn list(db: &impl ConnectionTrait) -> Result<Vec<Provider>> {
    let models = llm_provider::Entity::find()
        .order_by_asc(llm_provider::Column::Name)
        .all(db)
        .await?;
    Ok(records(db, models)
        .await?
        .into_iter()
        .map(|s| s.provider)
        .collect())
}

/// The provider called `name`.
pub(crate) async fn get(db: &impl ConnectionTrait, name: &str) -> Result<Option<StoredProvider>> {
    let found = llm_provider::Entity::find()
        .filter(llm_provider::Column::Name.eq(name))
        .one(db)
        .await?;
    Ok(records(db, found.into_iter().collect()).await?.pop())
}

/// The provider with this id.
pub(crate) async fn get_by_id(
    db: &impl ConnectionTrait,
    id: ProviderId,
) -> Result<Option<StoredProvider>> {
    let found = llm_provider::Entity::find_by_id(id.0).one(db).await?;
    Ok(records(db, found.into_iter().collect()).await?.pop())
}

/// The names of the providers with these ids, in one query.
pub(crate) async fn names(
    db: &impl ConnectionTrait,
    ids: &[ProviderId],
) -> Result<HashMap<ProviderId, String>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(Uuid, String)> = llm_provider::Entity::find()
        .select_only()
        .column(llm_provider::Column::Id)
        .column(llm_provider::Column::Name)
        .filter(llm_provider::Column::Id.is_in(ids.iter().map(|id| id.0)))
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name)| (ProviderId(id), name))
        .collect())
}

/// The names of the providers that use the credential `id`, sorted.
pub(crate) async fn using_credential(
    db: &impl ConnectionTrait,
    id: CredentialId,
) -> Result<Vec<String>> {
    Ok(llm_provider::Entity::find()
        .select_only()
        .column(llm_provider::Column::Name)
        .filter(llm_provider::Column::CredentialId.eq(id.0))
        .order_by_asc(llm_provider::Column::Name)
        .into_tuple()
        .all(db)
        .await?)
}

/// Deletes a provider by id; whether it existed. A model still using it is
/// [`Error::Conflict`] (the foreign key; the engine names the models first).
pub(crate) async fn delete(db: &impl ConnectionTrait, id: ProviderId) -> Result<bool> {
    match llm_provider::Entity::delete_by_id(id.0).exec(db).await {
        Ok(res) => Ok(res.rows_affected > 0),
        Err(e) if matches!(e.sql_err(), Some(SqlErr::ForeignKeyConstraintViolation(_))) => {
            Err(Error::Conflict("the provider is used by a model".into()))
        }
        Err(e) => Err(e.into()),
    }
}
