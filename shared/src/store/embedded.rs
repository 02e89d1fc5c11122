//! The embedded adapter: one redb file (ACID, crash-safe, survives restarts), so that
//! `cargo run` needs no services. Same semantics as DynamoDB: conditional writes and atomic
//! transactions (redb serializes writers; a write transaction checks every condition first).

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    Cond, Cursor, Index, Item, ItemStore, Key, Page, Query, StoreError, Write, validate_batch,
};

const ITEMS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("items");
/// `(GSI1PK, GSI1SK, PK, SK)` → nothing: the secondary index.
const GSI1: TableDefinition<(&str, &str, &str, &str), ()> = TableDefinition::new("gsi1");

/// The highest scalar value: appended to a prefix it bounds every key that starts with it.
const PREFIX_END: &str = "\u{10FFFF}";

#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EmbeddedStore")
    }
}

#[derive(Serialize, Deserialize)]
struct Stored {
    gsi1: Option<(String, String)>,
    ttl: Option<i64>,
    version: u64,
    body: Value,
}

fn backend(e: impl Into<redb::Error>) -> StoreError {
    StoreError::backend(e.into())
}

impl EmbeddedStore {
    /// Opens (or creates) the database file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(backend)?;
        let txn = db.begin_write().map_err(backend)?;
        txn.open_table(ITEMS).map_err(backend)?;
        txn.open_table(GSI1).map_err(backend)?;
        txn.commit().map_err(backend)?;
        Ok(Self { db: Arc::new(db) })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(StoreError::backend)?
    }
}

fn decode(key: &Key, bytes: &[u8]) -> Result<Item, StoreError> {
    let stored: Stored = serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        pk: key.pk.clone(),
        sk: key.sk.clone(),
        source: e.into(),
    })?;
    Ok(Item {
        key: key.clone(),
        gsi1: stored.gsi1.map(|(pk, sk)| Key { pk, sk }),
        ttl: stored.ttl,
        version: stored.version,
        body: stored.body,
    })
}

fn encode_cursor(parts: &[&str]) -> Cursor {
    Cursor(URL_SAFE_NO_PAD.encode(serde_json::to_vec(parts).unwrap_or_default()))
}

fn decode_cursor(c: &Cursor, n: usize) -> Result<Vec<String>, StoreError> {
    let bad = || StoreError::Invalid {
        what: "a cursor from another query",
    };
    let raw = URL_SAFE_NO_PAD.decode(&c.0).map_err(|_| bad())?;
    let parts: Vec<String> = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if parts.len() == n {
        Ok(parts)
    } else {
        Err(bad())
    }
}

fn holds(cond: Cond, current: Option<u64>) -> bool {
    match cond {
        Cond::Always => true,
        Cond::NotExists => current.is_none(),
        Cond::Exists => current.is_some(),
        Cond::Version(v) => current == Some(v),
    }
}

#[async_trait]
impl ItemStore for EmbeddedStore {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let key = key.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(ITEMS).map_err(backend)?;
            let found = table
                .get((key.pk.as_str(), key.sk.as_str()))
                .map_err(backend)?;
            found.map(|v| decode(&key, v.value())).transpose()
        })
        .await
    }

    async fn query(&self, query: &Query) -> Result<Page, StoreError> {
        let q = query.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let items = txn.open_table(ITEMS).map_err(backend)?;
            let hi = format!("{}{PREFIX_END}", q.sk_prefix);
            let limit = q.limit.max(1);
            let mut out = Vec::new();
            let mut more = false;
            match q.index {
                Index::Primary => {
                    let after = q.cursor.as_ref().map(|c| decode_cursor(c, 1)).transpose()?;
                    let (lo, up) = match (&after, q.descending) {
                        (Some(a), false) => (
                            Bound::Excluded((q.pk.as_str(), a[0].as_str())),
                            Bound::Included((q.pk.as_str(), hi.as_str())),
                        ),
                        (Some(a), true) => (
                            Bound::Included((q.pk.as_str(), q.sk_prefix.as_str())),
                            Bound::Excluded((q.pk.as_str(), a[0].as_str())),
                        ),
                        (None, _) => (
                            Bound::Included((q.pk.as_str(), q.sk_prefix.as_str())),
                            Bound::Included((q.pk.as_str(), hi.as_str())),
                        ),
                    };
                    let range = items.range::<(&str, &str)>((lo, up)).map_err(backend)?;
                    let mut step = |entry: Result<
                        (redb::AccessGuard<(&str, &str)>, redb::AccessGuard<&[u8]>),
                        redb::StorageError,
                    >|
                     -> Result<bool, StoreError> {
                        let (k, v) = entry.map_err(backend)?;
                        let (pk, sk) = k.value();
                        if out.len() == limit {
                            more = true;
                            return Ok(false);
                        }
                        out.push(decode(&Key::new(pk, sk), v.value())?);
                        Ok(true)
                    };
                    if q.descending {
                        for e in range.rev() {
                            if !step(e)? {
                                break;
                            }
                        }
                    } else {
                        for e in range {
                            if !step(e)? {
                                break;
                            }
                        }
                    }
                    let next = more
                        .then(|| encode_cursor(&[out.last().map_or("", |i| i.key.sk.as_str())]));
                    Ok(Page { items: out, next })
                }
                Index::Gsi1 => {
                    let index = txn.open_table(GSI1).map_err(backend)?;
                    let after = q.cursor.as_ref().map(|c| decode_cursor(c, 3)).transpose()?;
                    let lo_key = (q.pk.as_str(), q.sk_prefix.as_str(), "", "");
                    let hi_key = (q.pk.as_str(), hi.as_str(), "", "");
                    let cur = after
                        .as_ref()
                        .map(|a| (q.pk.as_str(), a[0].as_str(), a[1].as_str(), a[2].as_str()));
                    let (lo, up) = match (cur, q.descending) {
                        (Some(c), false) => (Bound::Excluded(c), Bound::Excluded(hi_key)),
                        (Some(c), true) => (Bound::Included(lo_key), Bound::Excluded(c)),
                        (None, _) => (Bound::Included(lo_key), Bound::Excluded(hi_key)),
                    };
                    let range = index
                        .range::<(&str, &str, &str, &str)>((lo, up))
                        .map_err(backend)?;
                    let mut keys: Vec<(String, String, String)> = Vec::new();
                    let mut collect = |entry: Result<
                        (
                            redb::AccessGuard<(&str, &str, &str, &str)>,
                            redb::AccessGuard<()>,
                        ),
                        redb::StorageError,
                    >|
                     -> Result<bool, StoreError> {
                        let (k, _) = entry.map_err(backend)?;
                        let (_, gsk, pk, sk) = k.value();
                        if keys.len() == limit {
                            more = true;
                            return Ok(false);
                        }
                        keys.push((gsk.to_owned(), pk.to_owned(), sk.to_owned()));
                        Ok(true)
                    };
                    if q.descending {
                        for e in range.rev() {
                            if !collect(e)? {
                                break;
                            }
                        }
                    } else {
                        for e in range {
                            if !collect(e)? {
                                break;
                            }
                        }
                    }
                    for (_, pk, sk) in &keys {
                        let key = Key::new(pk.as_str(), sk.as_str());
                        if let Some(v) = items.get((pk.as_str(), sk.as_str())).map_err(backend)? {
                            out.push(decode(&key, v.value())?);
                        }
                    }
                    let next = if more {
                        keys.last().map(|(g, p, s)| encode_cursor(&[g, p, s]))
                    } else {
                        None
                    };
                    Ok(Page { items: out, next })
                }
            }
        })
        .await
    }

    async fn write(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        validate_batch(&writes)?;
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut items = txn.open_table(ITEMS).map_err(backend)?;
                let mut index = txn.open_table(GSI1).map_err(backend)?;
                // Check every condition before changing anything.
                let mut previous = Vec::with_capacity(writes.len());
                for w in &writes {
                    let key = w.key();
                    let current = items
                        .get((key.pk.as_str(), key.sk.as_str()))
                        .map_err(backend)?
                        .map(|v| decode(key, v.value()))
                        .transpose()?;
                    let cond = match w {
                        Write::Put { cond, .. }
                        | Write::Delete { cond, .. }
                        | Write::Check { cond, .. } => *cond,
                    };
                    if !holds(cond, current.as_ref().map(|i| i.version)) {
                        return Err(StoreError::Conflict);
                    }
                    previous.push(current);
                }
                for (w, prev) in writes.into_iter().zip(previous) {
                    if let Some(Item {
                        key, gsi1: Some(g), ..
                    }) = &prev
                        && matches!(w, Write::Put { .. } | Write::Delete { .. })
                    {
                        index
                            .remove((
                                g.pk.as_str(),
                                g.sk.as_str(),
                                key.pk.as_str(),
                                key.sk.as_str(),
                            ))
                            .map_err(backend)?;
                    }
                    match w {
                        Write::Put { item, .. } => {
                            let stored = Stored {
                                gsi1: item.gsi1.as_ref().map(|g| (g.pk.clone(), g.sk.clone())),
                                ttl: item.ttl,
                                version: item.version,
                                body: item.body,
                            };
                            let bytes = serde_json::to_vec(&stored).map_err(StoreError::backend)?;
                            items
                                .insert(
                                    (item.key.pk.as_str(), item.key.sk.as_str()),
                                    bytes.as_slice(),
                                )
                                .map_err(backend)?;
                            if let Some(g) = &item.gsi1 {
                                index
                                    .insert(
                                        (
                                            g.pk.as_str(),
                                            g.sk.as_str(),
                                            item.key.pk.as_str(),
                                            item.key.sk.as_str(),
                                        ),
                                        (),
                                    )
                                    .map_err(backend)?;
                            }
                        }
                        Write::Delete { key, .. } => {
                            items
                                .remove((key.pk.as_str(), key.sk.as_str()))
                                .map_err(backend)?;
                        }
                        Write::Check { .. } => {}
                    }
                }
            }
            txn.commit().map_err(backend)?;
            Ok(())
        })
        .await
    }
}
