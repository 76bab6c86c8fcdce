//! What runs used (tokens, cost): per run, for many runs in one query, and per node
//! and agent of a run's team.

use std::collections::HashMap;

use super::Engine;
use crate::ids::RunId;
use crate::store;
use crate::{Result, Usage, UsageBreakdown};

impl Engine {
    /// What a run's steps used, summed over every step and attempt.
    pub async fn usage(&self, run_id: RunId) -> Result<Usage> {
        let mut usage = self.usage_of_runs(&[run_id]).await?;
        Ok(usage.remove(&run_id).unwrap_or_default())
    }

    /// What each of `runs` used, in one query (runs that used nothing are absent).
    pub async fn usage_of_runs(&self, runs: &[RunId]) -> Result<HashMap<RunId, Usage>> {
        store::steps::usage_of_runs(&self.inner.db, runs).await
    }

    /// A run's usage in total, per node and per agent of its team (see
    /// [`UsageBreakdown`] for how steps are attributed).
    pub async fn usage_breakdown(&self, run_id: RunId) -> Result<UsageBreakdown> {
        let mut breakdowns = self.usage_breakdowns(&[run_id]).await?;
        Ok(breakdowns.remove(&run_id).unwrap_or_default())
    }

    /// The usage breakdown of each of `runs`, in one query (runs that used nothing
    /// are absent).
    pub async fn usage_breakdowns(&self, runs: &[RunId]) -> Result<HashMap<RunId, UsageBreakdown>> {
        let mut steps: HashMap<RunId, Vec<(String, Usage)>> = HashMap::new();
        for (run, key, usage) in store::steps::usage_by_step(&self.inner.db, runs).await? {
            steps.entry(run).or_default().push((key, usage));
        }
        Ok(steps
            .into_iter()
            .map(|(run, steps)| (run, UsageBreakdown::from_steps(steps)))
            .collect())
    }
}
