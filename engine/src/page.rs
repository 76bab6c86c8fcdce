//! Pages of lists: every list the engine serves is read with keyset pagination (a
//! page is the `first` items after the key of the last item seen), never with OFFSET,
//! so a page costs the same however deep into the list it is.

use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Result;

/// An item of a list read in pages: its key is its position in the list's order
/// (unique within the list), and what a later page starts after.
pub trait Keyed {
    type Key: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;
    fn key(&self) -> Self::Key;
}

/// The key type of a list's items.
pub type KeyOf<T> = <T as Keyed>::Key;

/// What a caller asks of a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest<K> {
    /// At most this many items.
    pub first: u64,
    /// Start after the item with this key (which need not exist any more).
    pub after: Option<K>,
    /// Also count the whole list ([`Page::total`]), where the list offers a count.
    pub count_total: bool,
    /// Also find out whether items lie at or before `after` ([`Page::has_previous`]):
    /// one more (cheap, indexed) query, so only when the caller wants to know.
    pub check_previous: bool,
}

impl<K> PageRequest<K> {
    /// The first `n` items, nothing else asked.
    pub fn first(n: u64) -> Self {
        Self {
            first: n,
            after: None,
            count_total: false,
            check_previous: false,
        }
    }

    /// The same request, starting after `key`.
    pub fn after(self, key: Option<K>) -> Self {
        Self { after: key, ..self }
    }
}

/// One page of a list.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// More items follow the last one.
    pub has_next: bool,
    /// Items lie at or before the request's `after` key. Always `false` without
    /// `after`, and when the request did not ask (`check_previous`).
    pub has_previous: bool,
    /// How many items the whole list has, when asked (`count_total`) and offered.
    pub total: Option<u64>,
}

impl<T> Page<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            has_next: self.has_next,
            has_previous: self.has_previous,
            total: self.total,
        }
    }

    pub fn try_map<U>(self, f: impl FnMut(T) -> Result<U>) -> Result<Page<U>> {
        Ok(Page {
            items: self.items.into_iter().map(f).collect::<Result<_>>()?,
            has_next: self.has_next,
            has_previous: self.has_previous,
            total: self.total,
        })
    }
}

/// Every item of a list, read page by page with `fetch` (for the CLI, which prints
/// whole lists).
pub async fn all<T, F, Fut>(page_size: u64, mut fetch: F) -> Result<Vec<T>>
where
    T: Keyed,
    F: FnMut(PageRequest<T::Key>) -> Fut,
    Fut: Future<Output = Result<Page<T>>>,
{
    let mut out = Vec::new();
    let mut request = PageRequest::first(page_size.max(1));
    loop {
        let page = fetch(request.clone()).await?;
        let next = page.items.last().map(Keyed::key);
        out.extend(page.items);
        match next {
            Some(key) if page.has_next => request.after = Some(key),
            _ => return Ok(out),
        }
    }
}
