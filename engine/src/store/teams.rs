//! The `teams` and `team_versions` tables: a team is versioned; editing it adds a
//! version and runs pin the version they started with.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
};
use serde_json::Value as Json;

use super::entity::{team, team_version};
use super::keyset::{self, Direction};
use crate::Result;
use crate::ids::TeamId;
pub use crate::model::{Team, TeamVersion};
use crate::page::{KeyOf, Page, PageRequest};

pub async fn get_by_name(db: &impl ConnectionTrait, name: &str) -> Result<Option<Team>> {
    get_at_version(db, name, None).await
}

/// The team `name` at `version` (its latest when `None`); `None` when the team does
/// not exist, an error naming both when the version does not.
pub async fn get_at_version(
    db: &impl ConnectionTrait,
    name: &str,
    version: Option<i32>,
) -> Result<Option<Team>> {
    let Some(t) = team::Entity::find()
        .filter(team::Column::Name.eq(name))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let wanted = version.unwrap_or(t.latest_version);
    let v = team_version::Entity::find()
        .filter(team_version::Column::TeamId.eq(t.id))
        .filter(team_version::Column::Version.eq(wanted))
        .one(db)
        .await?
        .ok_or_else(|| match version {
            Some(_) => crate::Error::not_found("team version", format!("{}@{wanted}", t.name)),
            None => crate::Error::Corrupt(format!(
                "team {} has no version {}",
                t.name, t.latest_version
            )),
        })?;
    Ok(Some(Team {
        id: TeamId(t.id),
        name: t.name,
        description: t.description,
        version: v.version,
        version_id: v.id,
        spec: v.spec,
        created_at: t.created_at,
        updated_at: t.updated_at,
    }))
}

/// A page of the teams at their latest versions, by name (unique index): one query
/// for the teams, one for their latest versions.
pub async fn list(
    db: &impl ConnectionTrait,
    request: &PageRequest<KeyOf<Team>>,
) -> Result<Page<Team>> {
    let teams = keyset::page(
        db,
        team::Entity::find(),
        &[team::Column::Name],
        Direction::Ascending,
        request,
    )
    .await?;
    let latest = teams.items.iter().fold(Condition::any(), |any, t| {
        any.add(
            Condition::all()
                .add(team_version::Column::TeamId.eq(t.id))
                .add(team_version::Column::Version.eq(t.latest_version)),
        )
    });
    let mut versions: std::collections::HashMap<uuid::Uuid, team_version::Model> =
        if teams.items.is_empty() {
            Default::default()
        } else {
            team_version::Entity::find()
                .filter(latest)
                .all(db)
                .await?
                .into_iter()
                .map(|v| (v.team_id, v))
                .collect()
        };
    teams.try_map(|t| {
        let v = versions.remove(&t.id).ok_or_else(|| {
            crate::Error::Corrupt(format!(
                "team {} has no version {}",
                t.name, t.latest_version
            ))
        })?;
        Ok(Team {
            id: TeamId(t.id),
            name: t.name,
            description: t.description,
            version: v.version,
            version_id: v.id,
            spec: v.spec,
            created_at: t.created_at,
            updated_at: t.updated_at,
        })
    })
}

/// A page of a team's versions, oldest first (unique index `ux_team_versions_team_version`).
pub async fn versions(
    db: &impl ConnectionTrait,
    team_id: TeamId,
    request: &PageRequest<KeyOf<TeamVersion>>,
) -> Result<Page<TeamVersion>> {
    Ok(keyset::page(
        db,
        team_version::Entity::find().filter(team_version::Column::TeamId.eq(team_id.0)),
        &[team_version::Column::Version],
        Direction::Ascending,
        request,
    )
    .await?
    .map(|v| TeamVersion {
        id: v.id,
        version: v.version,
        spec: v.spec,
        created_at: v.created_at,
    }))
}

/// Stores `spec` as the team's next version (creating the team at version 1). An
/// unchanged spec adds no version. Returns the team and whether a version was added.
pub async fn put(
    db: &impl ConnectionTrait,
    name: &str,
    description: Option<&str>,
    spec: &Json,
    now: DateTime<Utc>,
) -> Result<(Team, bool)> {
    let existing = get_by_name(db, name).await?;
    if let Some(current) = &existing
        && &current.spec == spec
    {
        return Ok((current.clone(), false));
    }
    let (team_id, version, created_at) = match &existing {
        Some(t) => (t.id, t.version + 1, t.created_at),
        None => {
            let id = TeamId::new();
            team::Entity::insert(team::ActiveModel {
                id: Set(id.0),
                name: Set(name.to_owned()),
                description: Set(description.map(str::to_owned)),
                latest_version: Set(0),
                created_at: Set(now),
                updated_at: Set(now),
            })
            .exec_without_returning(db)
            .await?;
            (id, 1, now)
        }
    };
    let version_id = uuid::Uuid::now_v7();
    team_version::Entity::insert(team_version::ActiveModel {
        id: Set(version_id),
        team_id: Set(team_id.0),
        version: Set(version),
        spec: Set(spec.clone()),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_without_returning(db)
    .await?;
    team::Entity::update_many()
        .col_expr(team::Column::LatestVersion, version.into())
        .col_expr(
            team::Column::Description,
            description.map(str::to_owned).into(),
        )
        .col_expr(team::Column::UpdatedAt, now.into())
        .filter(team::Column::Id.eq(team_id.0))
        .exec(db)
        .await?;
    Ok((
        Team {
            id: team_id,
            name: name.to_owned(),
            description: description.map(str::to_owned),
            version,
            version_id,
            spec: spec.clone(),
            created_at,
            updated_at: now,
        },
        true,
    ))
}

/// Teams at the versions `version_ids` name (what runs pinned), in two queries.
pub async fn by_version_ids(
    db: &impl ConnectionTrait,
    version_ids: &[uuid::Uuid],
) -> Result<std::collections::HashMap<uuid::Uuid, Team>> {
    if version_ids.is_empty() {
        return Ok(Default::default());
    }
    let versions = team_version::Entity::find()
        .filter(team_version::Column::Id.is_in(version_ids.iter().copied()))
        .all(db)
        .await?;
    let team_ids: Vec<uuid::Uuid> = versions.iter().map(|v| v.team_id).collect();
    let teams: std::collections::HashMap<uuid::Uuid, team::Model> = team::Entity::find()
        .filter(team::Column::Id.is_in(team_ids))
        .all(db)
        .await?
        .into_iter()
        .map(|t| (t.id, t))
        .collect();
    Ok(versions
        .into_iter()
        .filter_map(|v| {
            let t = teams.get(&v.team_id)?;
            Some((
                v.id,
                Team {
                    id: TeamId(t.id),
                    name: t.name.clone(),
                    description: t.description.clone(),
                    version: v.version,
                    version_id: v.id,
                    spec: v.spec,
                    created_at: t.created_at,
                    updated_at: t.updated_at,
                },
            ))
        })
        .collect())
}
