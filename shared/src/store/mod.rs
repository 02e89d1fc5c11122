//! Metadata storage: a small item-store port shaped like DynamoDB's single-table model (items
//! under a partition key and a sort key, one secondary index, conditional writes, atomic
//! multi-item transactions), with two adapters — DynamoDB and an embedded redb file — and the
//! domain repositories written once on top of it.
//!
//! Every key is built in [`keys`]; nothing else spells a `PK`/`SK`.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

pub mod annotations;
pub mod catalog;
pub mod conformance;
pub mod directory;
pub mod dynamo;
pub mod embedded;
pub mod keys;
pub mod metered;

pub use annotations::Annotations;
pub use catalog::Catalog;
pub use directory::Directory;

/// A primary (or index) key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Self {
            pk: pk.into(),
            sk: sk.into(),
        }
    }
}

/// One stored item. `body` is the domain record (a JSON object); `version` is the item's
/// optimistic-concurrency counter, checked by [`Cond::Version`].
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub key: Key,
    /// Key in the `GSI1` secondary index, if the item is indexed.
    pub gsi1: Option<Key>,
    /// Epoch seconds after which the backend may delete the item (DynamoDB TTL). Readers must
    /// still check expiry themselves: TTL deletion is lazy.
    pub ttl: Option<i64>,
    pub version: u64,
    pub body: Value,
}

/// A condition on the item currently stored under a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cond {
    Always,
    NotExists,
    Exists,
    /// The item exists with exactly this version.
    Version(u64),
}

#[derive(Clone, Debug)]
pub enum Write {
    Put {
        item: Item,
        cond: Cond,
    },
    Delete {
        key: Key,
        cond: Cond,
    },
    /// Only checks a condition (DynamoDB `ConditionCheck`); writes nothing.
    Check {
        key: Key,
        cond: Cond,
    },
}

impl Write {
    pub fn key(&self) -> &Key {
        match self {
            Write::Put { item, .. } => &item.key,
            Write::Delete { key, .. } | Write::Check { key, .. } => key,
        }
    }
}

/// Which key a query runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Index {
    Primary,
    Gsi1,
}

/// Items under one partition key whose sort key starts with a prefix, in sort-key order.
#[derive(Clone, Debug)]
pub struct Query {
    pub index: Index,
    pub pk: String,
    pub sk_prefix: String,
    pub limit: usize,
    pub descending: bool,
    /// Continue after the page that returned this cursor.
    pub cursor: Option<Cursor>,
}

impl Query {
    pub fn new(index: Index, pk: impl Into<String>, sk_prefix: impl Into<String>) -> Self {
        Self {
            index,
            pk: pk.into(),
            sk_prefix: sk_prefix.into(),
            limit: 100,
            descending: false,
            cursor: None,
        }
    }
}

/// An opaque continuation token (URL-safe text), meaningful only to the adapter that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor(pub String);

#[derive(Clone, Debug)]
pub struct Page {
    pub items: Vec<Item>,
    pub next: Option<Cursor>,
}

/// Largest number of writes in one atomic [`ItemStore::write`] (DynamoDB's transaction limit).
pub const MAX_TRANSACTION_WRITES: usize = 100;

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Storage failures, by kind.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A condition did not hold (or a concurrent transaction collided): nothing was written.
    #[error("a write condition failed")]
    Conflict,
    /// The backend asked us to slow down.
    #[error("storage is throttling requests")]
    Throttled { source: Source },
    /// The request was malformed for this backend (a bug on our side, not the caller's).
    #[error("storage rejected the request: {what}")]
    Invalid { what: &'static str },
    /// A stored item could not be decoded.
    #[error("stored item {pk}/{sk} is corrupt")]
    Corrupt {
        pk: String,
        sk: String,
        source: Source,
    },
    /// The backend failed or could not be reached.
    #[error("storage backend failed")]
    Backend { source: Source },
}

impl StoreError {
    pub fn backend(source: impl Into<Source>) -> Self {
        Self::Backend {
            source: source.into(),
        }
    }
}

/// The metadata storage port.
#[async_trait]
pub trait ItemStore: Send + Sync + fmt::Debug + 'static {
    /// A strongly consistent read of one item.
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError>;

    /// Items of one partition (primary index reads are strongly consistent; index reads may
    /// lag writes briefly on DynamoDB).
    async fn query(&self, query: &Query) -> Result<Page, StoreError>;

    /// Applies all writes atomically, or none of them if any condition fails
    /// ([`StoreError::Conflict`]). At most [`MAX_TRANSACTION_WRITES`], each key at most once.
    async fn write(&self, writes: Vec<Write>) -> Result<(), StoreError>;
}

pub type DynStore = Arc<dyn ItemStore>;

/// A domain record as an item body.
pub(crate) fn body<T: serde::Serialize>(value: &T) -> Result<Value, StoreError> {
    serde_json::to_value(value).map_err(StoreError::backend)
}

/// An item body as a domain record.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(item: Item) -> Result<T, StoreError> {
    serde_json::from_value(item.body).map_err(|e| StoreError::Corrupt {
        pk: item.key.pk,
        sk: item.key.sk,
        source: e.into(),
    })
}

/// The record under `key`, [`catalog::CatalogError::NotFound`] when there is none.
pub(crate) async fn fetch<T: serde::de::DeserializeOwned>(
    store: &DynStore,
    key: &Key,
) -> Result<T, catalog::CatalogError> {
    let item = store
        .get(key)
        .await?
        .ok_or(catalog::CatalogError::NotFound)?;
    Ok(parse(item)?)
}

/// One page of records a query matches.
pub(crate) async fn fetch_page<T: serde::de::DeserializeOwned>(
    store: &DynStore,
    query: &Query,
) -> Result<catalog::Listing<T>, catalog::CatalogError> {
    let page = store.query(query).await?;
    let items = page
        .items
        .into_iter()
        .map(parse)
        .collect::<Result<_, _>>()?;
    Ok(catalog::Listing {
        items,
        next: page.next,
    })
}

/// Every record a query matches, following its pages.
pub(crate) async fn fetch_all<T: serde::de::DeserializeOwned>(
    store: &DynStore,
    mut query: Query,
) -> Result<Vec<T>, catalog::CatalogError> {
    query.limit = 1000;
    let mut out = Vec::new();
    loop {
        let page = store.query(&query).await?;
        for item in page.items {
            out.push(parse(item)?);
        }
        match page.next {
            Some(c) => query.cursor = Some(c),
            None => return Ok(out),
        }
    }
}

/// Checks the shape of a write batch the same way for every adapter.
pub(crate) fn validate_batch(writes: &[Write]) -> Result<(), StoreError> {
    if writes.is_empty() {
        return Err(StoreError::Invalid {
            what: "an empty write batch",
        });
    }
    if writes.len() > MAX_TRANSACTION_WRITES {
        return Err(StoreError::Invalid {
            what: "more than 100 writes in one transaction",
        });
    }
    let mut keys: Vec<&Key> = writes.iter().map(Write::key).collect();
    keys.sort();
    if keys.windows(2).any(|w| w[0] == w[1]) {
        return Err(StoreError::Invalid {
            what: "two writes to one key in a transaction",
        });
    }
    for w in writes {
        if let Write::Put { item, .. } = w
            && !item.body.is_object()
        {
            return Err(StoreError::Invalid {
                what: "an item body that is not an object",
            });
        }
    }
    Ok(())
}
