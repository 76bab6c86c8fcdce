//! Keyset pagination in SQL: the one place where a page query, its "anything at or
//! before the cursor?" probe and its count are built. Every list orders by key
//! columns that together are unique, with an index in that order.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, Order, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Select, Value,
};
use uuid::Uuid;

use crate::Result;
use crate::page::{Page, PageRequest};

/// A key as SQL values, one per key column.
pub(crate) trait KeyValues {
    fn values(&self) -> Vec<Value>;
}

impl KeyValues for String {
    fn values(&self) -> Vec<Value> {
        vec![self.clone().into()]
    }
}

impl KeyValues for i32 {
    fn values(&self) -> Vec<Value> {
        vec![(*self).into()]
    }
}

impl KeyValues for i64 {
    fn values(&self) -> Vec<Value> {
        vec![(*self).into()]
    }
}

impl KeyValues for DateTime<Utc> {
    fn values(&self) -> Vec<Value> {
        vec![(*self).into()]
    }
}

impl KeyValues for (DateTime<Utc>, Uuid) {
    fn values(&self) -> Vec<Value> {
        vec![self.0.into(), self.1.into()]
    }
}

/// Which way a list runs along its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Ascending,
    Descending,
}

/// The rows of `list` past `key` in list order (`past = true`), or the rows at or
/// before it (`past = false`). Written `c0 >= k0 AND (c0 > k0 OR (c1 >= k1 AND …))`
/// rather than as a row comparison so that the first column bounds an index range on
/// both backends.
fn beyond<C: ColumnTrait>(
    columns: &[C],
    key: &[Value],
    direction: Direction,
    past: bool,
) -> Condition {
    let (column, value) = (columns[0], key[0].clone());
    let upward = (direction == Direction::Ascending) == past;
    let (weak, strict) = if upward {
        (column.gte(value.clone()), column.gt(value))
    } else {
        (column.lte(value.clone()), column.lt(value))
    };
    if columns.len() == 1 || key.len() == 1 {
        return Condition::all().add(if past { strict } else { weak });
    }
    Condition::all()
        .add(weak)
        .add(
            Condition::any()
                .add(strict)
                .add(beyond(&columns[1..], &key[1..], direction, past)),
        )
}

fn ordered<E: EntityTrait>(
    mut select: Select<E>,
    columns: &[E::Column],
    direction: Direction,
) -> Select<E> {
    let order = match direction {
        Direction::Ascending => Order::Asc,
        Direction::Descending => Order::Desc,
    };
    for column in columns {
        select = select.order_by(*column, order.clone());
    }
    select
}

/// One page of `list` (a filtered select without order or limit) in the order of
/// `columns`. Reads `first + 1` rows to learn whether more follow; probes for a row
/// at or before `after` only when asked (one indexed row at most: if any row lies at
/// or before the cursor, the list's first row does); counts only when asked.
pub(crate) async fn page<E, K>(
    db: &impl ConnectionTrait,
    list: Select<E>,
    columns: &[E::Column],
    direction: Direction,
    request: &PageRequest<K>,
) -> Result<Page<E::Model>>
where
    E: EntityTrait,
    E::Model: Send + Sync,
    K: KeyValues,
{
    let first = request.first.min(i64::MAX as u64 - 1);
    let after = request.after.as_ref().map(KeyValues::values);
    let mut select = list.clone();
    if let Some(key) = &after {
        select = select.filter(beyond(columns, key, direction, true));
    }
    let mut items = ordered(select, columns, direction)
        .limit(first + 1)
        .all(db)
        .await?;
    let has_next = items.len() as u64 > first;
    items.truncate(first as usize);
    let has_previous = match &after {
        Some(key) if request.check_previous => {
            let probe = list.clone().filter(beyond(columns, key, direction, false));
            ordered(probe, columns, direction)
                .select_only()
                .column_as(Expr::cust("1"), "one")
                .limit(1)
                .into_tuple::<i32>()
                .one(db)
                .await?
                .is_some()
        }
        _ => false,
    };
    let total = if request.count_total {
        Some(list.count(db).await?)
    } else {
        None
    };
    Ok(Page {
        items,
        has_next,
        has_previous,
        total,
    })
}
