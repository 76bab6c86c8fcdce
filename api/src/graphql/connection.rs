//! Relay connections (§9) over engine pages: opaque cursors, the page a field's
//! arguments and selection ask for, and what a list field costs.
//!
//! Page sizes: every list takes `first` (at least 1, at most 200; `runs` and
//! `team.versions` default to 20, `events` to 100, the others to 50) and `after`, a
//! cursor from an earlier page. A list field costs `first ×` the complexity of its
//! selection, so the schema's complexity limit (1000) bounds how many rows a request
//! can make the server read, nested lists included.

use aiops_engine::page::{KeyOf, Keyed, Page, PageRequest};
use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, ErrorExtensions, OutputType, Result, SimpleObject};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::BAD_REQUEST;

/// The extra field of connections over lists that count cheaply (an indexed count,
/// or a number stored with the list's owner).
#[derive(SimpleObject)]
pub struct TotalCount {
    /// How many items the whole list has, over all pages.
    pub total_count: i64,
}

/// A connection with `totalCount`.
pub type CountedConnection<N> = Connection<String, N, TotalCount>;

/// A connection without `totalCount` (lists too long to count on every page).
pub type UncountedConnection<N> = Connection<String, N, EmptyFields>;

/// The complexity of a list field: each of up to `first` items costs what the
/// selection under the field costs.
pub fn complexity(first: i32, child_complexity: usize) -> usize {
    usize::try_from(first)
        .unwrap_or(0)
        .max(1)
        .saturating_mul(child_complexity)
}

/// An opaque cursor: URL-safe base64 of the item's key as JSON.
pub fn encode_cursor<K: Serialize>(key: &K) -> String {
    // Keys are strings, numbers, timestamps and ids: they always serialize.
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(key).unwrap_or_default())
}

/// The key in a cursor, or BAD_REQUEST naming the argument it came in.
pub fn decode_cursor<K: DeserializeOwned>(argument: &str, cursor: &str) -> Result<K> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or_else(|| {
            async_graphql::Error::new(format!(
                "invalid cursor in `{argument}`: pass a cursor this list returned"
            ))
            .extend_with(|_, e| e.set("code", BAD_REQUEST))
        })
}

/// The page `first` and `after` ask for. The total is counted only when the selection
/// has `totalCount`, and the backwards probe runs only when it has
/// `pageInfo { hasPreviousPage }`.
pub fn request<T: Keyed>(
    ctx: &Context<'_>,
    first: i32,
    after: Option<&str>,
) -> Result<PageRequest<KeyOf<T>>> {
    let selection = ctx.look_ahead();
    Ok(PageRequest {
        first: u64::try_from(first).unwrap_or(0),
        after: after.map(|c| decode_cursor("after", c)).transpose()?,
        count_total: selection.field("totalCount").exists(),
        check_previous: selection
            .field("pageInfo")
            .field("hasPreviousPage")
            .exists(),
    })
}

/// The connection of a page with `totalCount`.
pub fn counted<T, N>(page: Page<T>) -> CountedConnection<N>
where
    T: Keyed,
    N: From<T> + OutputType,
{
    let total = TotalCount {
        total_count: page
            .total
            .map_or(0, |n| i64::try_from(n).unwrap_or(i64::MAX)),
    };
    let mut connection =
        Connection::with_additional_fields(page.has_previous, page.has_next, total);
    connection.edges.extend(edges(page.items));
    connection
}

/// The connection of a page without `totalCount`.
pub fn uncounted<T, N>(page: Page<T>) -> UncountedConnection<N>
where
    T: Keyed,
    N: From<T> + OutputType,
{
    let mut connection = Connection::new(page.has_previous, page.has_next);
    connection.edges.extend(edges(page.items));
    connection
}

fn edges<T, N>(items: Vec<T>) -> impl Iterator<Item = Edge<String, N, EmptyFields>>
where
    T: Keyed,
    N: From<T> + OutputType,
{
    items.into_iter().map(|item| {
        let cursor = encode_cursor(&item.key());
        Edge::new(cursor, N::from(item))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_names_the_argument() {
        let key = (
            chrono::DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            uuid::Uuid::now_v7(),
        );
        let cursor = encode_cursor(&key);
        assert!(
            cursor
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{cursor}"
        );
        let back: (chrono::DateTime<chrono::Utc>, uuid::Uuid) =
            decode_cursor("after", &cursor).unwrap();
        assert_eq!(back, key);
        for garbage in ["", "not base64!", &encode_cursor(&"a string")] {
            let err =
                decode_cursor::<(chrono::DateTime<chrono::Utc>, uuid::Uuid)>("after", garbage)
                    .unwrap_err();
            assert!(err.message.contains("`after`"), "{}", err.message);
        }
    }

    #[test]
    fn a_list_costs_first_times_its_selection() {
        assert_eq!(complexity(200, 3), 600);
        assert_eq!(complexity(-5, 3), 3, "never below one item");
        assert_eq!(complexity(i32::MAX, usize::MAX), usize::MAX, "saturates");
    }
}
