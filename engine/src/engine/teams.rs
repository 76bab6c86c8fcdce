//! Teams: validated, versioned topologies. A team may name the built-in models and
//! every stored model.

use chrono::Utc;

use super::Engine;
use crate::ids::TeamId;
use crate::page::{KeyOf, Page, PageRequest};
use crate::store::teams::{Team, TeamVersion};
use crate::store::{self};
use crate::topology;
use crate::{Error, Result};

impl Engine {
    /// Validates a team file (YAML or JSON) and stores it as the team's next version.
    /// Any violation rejects the whole file and stores nothing. Re-applying an
    /// unchanged team adds no version. Returns the team and whether it changed.
    pub async fn apply_team(&self, text: &str) -> Result<(Team, bool)> {
        let spec = self.validate_team(text).await?;
        let json = serde_json::to_value(&spec).map_err(|e| Error::Invalid(format!("team: {e}")))?;
        crate::storable::check_json(&json, "team").map_err(Error::Invalid)?;
        let txn = store::begin_write(&self.inner.db).await?;
        let applied = store::teams::put(
            &txn,
            &spec.name,
            spec.description.as_deref(),
            &json,
            Utc::now(),
        )
        .await?;
        txn.commit().await?;
        Ok(applied)
    }

    /// The tools and models a team may name now: this process's catalog (the
    /// built-ins) and every stored model.
    pub async fn team_catalog(&self) -> Result<topology::Catalog> {
        let mut catalog = self.inner.catalog.clone();
        catalog.models.extend(self.model_names().await?);
        Ok(catalog)
    }

    /// Parses and validates a team document against [`Engine::team_catalog`]; every
    /// violation, with its path, in [`Error::Violations`]. Stores nothing.
    pub async fn validate_team(&self, text: &str) -> Result<topology::TeamSpec> {
        let catalog = self.team_catalog().await?;
        topology::parse_and_validate(text, &catalog).map_err(Error::Violations)
    }

    pub async fn team(&self, name: &str) -> Result<Team> {
        store::teams::get_by_name(&self.inner.db, name)
            .await?
            .ok_or_else(|| Error::not_found("team", name))
    }

    /// The team at `version` (its latest when `None`): what a team run pins.
    pub async fn team_at(&self, name: &str, version: Option<i32>) -> Result<Team> {
        store::teams::get_at_version(&self.inner.db, name, version)
            .await?
            .ok_or_else(|| Error::not_found("team", name))
    }

    /// The team at the version with this id (what a run pinned).
    pub async fn team_by_version(&self, version_id: uuid::Uuid) -> Result<Team> {
        store::teams::by_version_ids(&self.inner.db, &[version_id])
            .await?
            .remove(&version_id)
            .ok_or_else(|| Error::not_found("team version", version_id))
    }

    /// A page of the teams at their latest versions, by name.
    pub async fn teams(&self, page: &PageRequest<KeyOf<Team>>) -> Result<Page<Team>> {
        store::teams::list(&self.inner.db, page).await
    }

    /// A page of a team's versions, oldest first.
    pub async fn team_versions(
        &self,
        team: TeamId,
        page: &PageRequest<KeyOf<TeamVersion>>,
    ) -> Result<Page<TeamVersion>> {
        store::teams::versions(&self.inner.db, team, page).await
    }

    /// The teams at the versions with these ids (what runs pinned), in one query.
    pub async fn teams_by_version(
        &self,
        version_ids: &[uuid::Uuid],
    ) -> Result<std::collections::HashMap<uuid::Uuid, Team>> {
        store::teams::by_version_ids(&self.inner.db, version_ids).await
    }
}
