//! The `llm_models` table: the models teams name. A model refers to its provider
//! by id; records leave with the provider's name.

use std::collections::BTreeSet;

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, SqlErr,
};

use super::entity::llm_model;
use super::llm_providers;
use crate::ids::{ModelId, ProviderId};
use crate::model::LanguageModel;
use crate::{Error, Result};

fn record(m: llm_model::Model, provider: String) -> LanguageModel {
    LanguageModel {
        id: ModelId(m.id),
        name: m.name,
        provider,
        upstream: m.upstream,
        supports_tools: m.supports_tools,
        supports_json: m.supports_json,
        supports_streaming: m.supports_streaming,
        stream_usage: m.stream_usage,
        context_tokens: m.context_tokens,
        input_price_per_mtok: m.input_price_per_mtok,
        output_price_per_mtok: m.output_price_per_mtok,
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

/// Records of `models` with their providers' names (one more query), and each
/// provider's id.
async fn records(
    db: &impl ConnectionTrait,
    models: Vec<llm_model::Model>,
) -> Result<Vec<(LanguageModel, ProviderId)>> {
    let ids: Vec<ProviderId> = models.iter().map(|m| ProviderId(m.provider_id)).collect();
    let names = llm_providers::names(db, &ids).await?;
    models
        .into_iter()
        .map(|m| {
            let provider_id = ProviderId(m.provider_id);
            let provider = names.get(&provider_id).cloned().ok_or_else(|| {
                Error::Corrupt(format!("model {:?}: its provider is missing", m.name))
            })?;
            Ok((record(m, provider), provider_id))
        })
        .collect()
}

fn active(model: &LanguageModel, provider_id: ProviderId) -> llm_model::ActiveModel {
    llm_model::ActiveModel {
        id: Set(model.id.0),
        name: Set(model.name.clone()),
        provider_id: Set(provider_id.0),
        upstream: Set(model.upstream.clone()),
        supports_tools: Set(model.supports_tools),
        supports_json: Set(model.supports_json),
        supports_streaming: Set(model.supports_streaming),
        stream_usage: Set(model.stream_usage),
        context_tokens: Set(model.context_tokens),
        input_price_per_mtok: Set(model.input_price_per_mtok),
        output_price_per_mtok: Set(model.output_price_per_mtok),
        created_at: Set(model.created_at),
        updated_at: Set(model.updated_at),
    }
}

/// Inserts `model` of the provider `provider_id`; a taken name is
/// [`Error::Conflict`], as is a provider deleted meanwhile.
pub(crate) async fn insert(
    db: &impl ConnectionTrait,
    model: &LanguageModel,
    provider_id: ProviderId,
) -> Result<()> {
    match llm_model::Entity::insert(active(model, provider_id))
        .exec_without_returning(db)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => Err(match e.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => {
                Error::Conflict(format!("a model named {:?} already exists", model.name))
            }
            Some(SqlErr::ForeignKeyConstraintViolation(_)) => Error::Conflict(format!(
                "model {:?}: its provider {:?} was deleted meanwhile",
                model.name, model.provider
            )),
            _ => e.into(),
        }),
    }
}

/// Writes every field of `model` but its name, id and creation time; whether the
/// model still existed.
pub(crate) async fn update(
    db: &impl ConnectionTrait,
    model: &LanguageModel,
    provider_id: ProviderId,
) -> Result<bool> {
    let res = llm_model::Entity::update_many()
        .col_expr(llm_model::Column::ProviderId, provider_id.0.into())
        .col_expr(llm_model::Column::Upstream, model.upstream.clone().into())
        .col_expr(
            llm_model::Column::SupportsTools,
            model.supports_tools.into(),
        )
        .col_expr(llm_model::Column::SupportsJson, model.supports_json.into())
        .col_expr(
            llm_model::Column::SupportsStreaming,
            model.supports_streaming.into(),
        )
        .col_expr(llm_model::Column::StreamUsage, model.stream_usage.into())
        .col_expr(
            llm_model::Column::ContextTokens,
            model.context_tokens.into(),
        )
        .col_expr(
            llm_model::Column::InputPricePerMtok,
            model.input_price_per_mtok.into(),
        )
        .col_expr(
            llm_model::Column::OutputPricePerMtok,
            model.output_price_per_mtok.into(),
        )
        .col_expr(llm_model::Column::UpdatedAt, model.updated_at.into())
        .filter(llm_model::Column::Id.eq(model.id.0))
        .exec(db)
        .await;
    match res {
        Ok(res) => Ok(res.rows_affected == 1),
        Err(e) if matches!(e.sql_err(), Some(SqlErr::ForeignKeyConstraintViolation(_))) => {
            Err(Error::Conflict(format!(
                "model {:?}: its provider {:?} was deleted meanwhile",
                model.name, model.provider
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// Every model, by name.
pub(crate) async fn list(db: &impl ConnectionTrait) -> Result<Vec<LanguageModel>> {
    let models = llm_model::Entity::find()
        .order_by_asc(llm_model::Column::Name)
        .all(db)
        .await?;
    Ok(records(db, models)
        .await?
        .into_iter()
        .map(|(m, _)| m)
        .collect())
}

/// The model called `name` and its provider's id.
pub(crate) async fn get(
    db: &impl ConnectionTrait,
    name: &str,
) -> Result<Option<(LanguageModel, ProviderId)>> {
    let found = llm_model::Entity::find()
        .filter(llm_model::Column::Name.eq(name))
        .one(db)
        .await?;
    Ok(records(db, found.into_iter().collect()).await?.pop())
}

/// The names of every model.
pub(crate) async fn names(db: &impl ConnectionTrait) -> Result<BTreeSet<String>> {
    let names: Vec<String> = llm_model::Entity::find()
        .select_only()
        .column(llm_model::Column::Name)
        .into_tuple()
        .all(db)
        .await?;
    Ok(names.into_iter().collect())
}

/// The names of the models of the provider `id`, sorted.
pub(crate) async fn using_provider(
    db: &impl ConnectionTrait,
    id: ProviderId,
) -> Result<Vec<String>> {
    Ok(llm_model::Entity::find()
        .select_only()
        .column(llm_model::Column::Name)
        .filter(llm_model::Column::ProviderId.eq(id.0))
        .order_by_asc(llm_model::Column::Name)
        .into_tuple()
        .all(db)
        .await?)
}

/// Deletes a model by name; whether it existed.
pub(crate) async fn delete(db: &impl ConnectionTrait, name: &str) -> Result<bool> {
    let res = llm_model::Entity::delete_many()
        .filter(llm_model::Column::Name.eq(name))
        .exec(db)
        .await?;
    Ok(res.rows_affected > 0)
}
