//! DataLoaders: fields resolved for many runs at once cost one query per batch,
//! not one per run.

use std::collections::HashMap;

use aiops_engine::model::Team as TeamRecord;
use aiops_engine::{Engine, RunId, Usage, UsageBreakdown};
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

/// What each run used (tokens, cost), by run id; runs that used nothing get zero.
pub struct RunUsage(pub Engine);

impl Loader<Uuid> for RunUsage {
    type Value = Usage;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Usage>, Self::Error> {
        let runs: Vec<RunId> = keys.iter().map(|k| RunId(*k)).collect();
        let mut usage = self
            .0
            .usage_of_runs(&runs)
            .await
            .map_err(super::error::to_gql)?;
        Ok(keys
            .iter()
            .map(|k| (*k, usage.remove(&RunId(*k)).unwrap_or_default()))
            .collect())
    }
}

/// Each run's usage per node and agent, by run id.
pub struct RunUsageBreakdowns(pub Engine);

impl Loader<Uuid> for RunUsageBreakdowns {
    type Value = UsageBreakdown;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, UsageBreakdown>, Self::Error> {
        let runs: Vec<RunId> = keys.iter().map(|k| RunId(*k)).collect();
        let mut breakdowns = self
            .0
            .usage_breakdowns(&runs)
            .await
            .map_err(super::error::to_gql)?;
        Ok(keys
            .iter()
            .map(|k| (*k, breakdowns.remove(&RunId(*k)).unwrap_or_default()))
            .collect())
    }
}
