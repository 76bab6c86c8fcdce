//! The `llm_credentials` table: providers' API keys. Keys arrive and leave
//! encrypted: this module never sees a plaintext key.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, SqlErr,
};
use uuid::Uuid;

use super::entity::llm_credential;
use super::sealed::SealedColumn;
use crate::ids::CredentialId;
use crate::model::Credential;
use crate::{Error, Result};

impl From<llm_credential::Model> for Credential {
    fn from(m: llm_credential::Model) -> Self {
        Credential {
            id: CredentialId(m.id),
            name: m.name,
            hint: m.secret_hint,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// Inserts `credential` with its key, already sealed for this row; a taken name is
/// [`Error::Conflict`].
pub(crate) async fn insert(
    db: &impl ConnectionTrait,
    credential: &Credential,
    secret_encrypted: String,
) -> Result<()> {
    let model = llm_credential::ActiveModel {
        id: Set(credential.id.0),
        name: Set(credential.name.clone()),
        secret_encrypted: Set(secret_encrypted),
        secret_hint: Set(credential.hint.clone()),
        created_at: Set(credential.created_at),
        updated_at: Set(credential.updated_at),
    };
    match llm_credential::Entity::insert(model)
        .exec_without_returning(db)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            Err(Error::Conflict(format!(
                "a credential named {:?} already exists",
                credential.name
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// Every credential, by name, without keys.
pub(crate) async fn list(db: &impl ConnectionTrait) -> Result<Vec<Credential>> {
    Ok(llm_credential::Entity::find()
        .order_by_asc(llm_credential::Column::Name)
        .all(db)
        .await?
        .into_iter()
        .map(Credential::from)
        .collect())
}

/// The credential called `name`.
pub(crate) async fn get(db: &impl ConnectionTrait, name: &str) -> Result<Option<Credential>> {
    Ok(llm_credential::Entity::find()
        .filter(llm_credential::Column::Name.eq(name))
        .one(db)
        .await?
        .map(Credential::from))
}

/// The names of the credentials with these ids, in one query.
pub(crate) async fn names(
    db: &impl ConnectionTrait,
    ids: &[CredentialId],
) -> Result<HashMap<CredentialId, String>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(Uuid, String)> = llm_credential::Entity::find()
        .select_only()
        .column(llm_credential::Column::Id)
        .column(llm_credential::Column::Name)
        .filter(llm_credential::Column::Id.is_in(ids.iter().map(|id| id.0)))
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name)| (CredentialId(id), name))
        .collect())
}

/// The credential with this id and its sealed key.
pub(crate) async fn get_sealed(
    db: &impl ConnectionTrait,
    id: CredentialId,
) -> Result<Option<(Credential, String)>> {
    let Some(m) = llm_credential::Entity::find_by_id(id.0).one(db).await? else {
        return Ok(None);
    };
    let sealed = m.secret_encrypted.clone();
    Ok(Some((Credential::from(m), sealed)))
}

/// Deletes a credential by id; whether it existed. A provider still using it is
/// [`Error::Conflict`] (the foreign key; the engine names the providers first).
pub(crate) async fn delete(db: &impl ConnectionTrait, id: CredentialId) -> Result<bool> {
    match llm_credential::Entity::delete_by_id(id.0).exec(db).await {
        Ok(res) => Ok(res.rows_affected > 0),
        Err(e) if matches!(e.sql_err(), Some(SqlErr::ForeignKeyConstraintViolation(_))) => Err(
            Error::Conflict("the credential is used by a provider".into()),
        ),
        Err(e) => Err(e.into()),
    }
}

/// Where a credential's sealed key lives.
const SEALED: SealedColumn<llm_credential::Entity> = SealedColumn {
    id: llm_credential::Column::Id,
    sealed: llm_credential::Column::SecretEncrypted,
    updated_at: llm_credential::Column::UpdatedAt,
};

/// Every sealed key with its row id, for the start-up check and rotation.
pub(crate) async fn sealed(db: &impl ConnectionTrait) -> Result<Vec<(CredentialId, String)>> {
    Ok(SEALED
        .all(db)
        .await?
        .into_iter()
        .map(|(id, s)| (CredentialId(id), s))
        .collect())
}

/// Replaces a sealed key only if it is still `from`; whether it did.
pub(crate) async fn reseal(
    db: &impl ConnectionTrait,
    id: CredentialId,
    from: &str,
    to: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    SEALED.reseal(db, id.0, from, to, now).await
}
