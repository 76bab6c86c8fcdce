//! Columns of sealed secrets, whatever their table: every value with its row id (for
//! the start-up check and rotation), and re-sealing one value only if it is still
//! the one that was read. Values arrive and leave encrypted.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

use crate::Result;

/// A table's column of sealed secrets, with the columns rotation reads and writes
/// beside it.
pub(crate) struct SealedColumn<E: EntityTrait> {
    pub id: E::Column,
    pub sealed: E::Column,
    pub updated_at: E::Column,
}

impl<E: EntityTrait> SealedColumn<E> {
    /// Every sealed value (rows without one are skipped) with its row id.
    pub async fn all(&self, db: &impl ConnectionTrait) -> Result<Vec<(Uuid, String)>> {
        let rows: Vec<(Uuid, Option<String>)> = E::find()
            .select_only()
            .column(self.id)
            .column(self.sealed)
            .filter(self.sealed.is_not_null())
            .into_tuple()
            .all(db)
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, sealed)| sealed.map(|s| (id, s)))
            .collect())
    }

    /// Replaces the sealed value of row `id` only if it is still `from` (rotation
    /// never overwrites a value changed meanwhile); whether it did.
    pub async fn reseal(
        &self,
        db: &impl ConnectionTrait,
        id: Uuid,
        from: &str,
        to: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let res = E::update_many()
            .col_expr(self.sealed, to.into())
            .col_expr(self.updated_at, now.into())
            .filter(self.id.eq(id))
            .filter(self.sealed.eq(from))
            .exec(db)
            .await?;
        Ok(res.rows_affected == 1)
    }
}
