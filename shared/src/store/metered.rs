//! A decorator that counts calls into an item store: the benchmark and the tests use it to show
//! that the chunk hot path makes no metadata call in steady state.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use super::{DynStore, Item, ItemStore, Key, Page, Query, StoreError, Write};

#[derive(Debug, Default)]
pub struct CallCounts {
    pub gets: AtomicU64,
    pub queries: AtomicU64,
    pub writes: AtomicU64,
}

impl CallCounts {
    pub fn total(&self) -> u64 {
        self.gets.load(Ordering::Relaxed)
            + self.queries.load(Ordering::Relaxed)
            + self.writes.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
pub struct Metered {
    inner: DynStore,
    counts: Arc<CallCounts>,
}

impl Metered {
    pub fn wrap(inner: DynStore) -> (DynStore, Arc<CallCounts>) {
        let counts = Arc::new(CallCounts::default());
        (
            Arc::new(Self {
                inner,
                counts: counts.clone(),
            }),
            counts,
        )
    }
}

#[async_trait]
impl ItemStore for Metered {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        self.counts.gets.fetch_add(1, Ordering::Relaxed);
        self.inner.get(key).await
    }

    async fn query(&self, query: &Query) -> Result<Page, StoreError> {
        self.counts.queries.fetch_add(1, Ordering::Relaxed);
        self.inner.query(query).await
    }

    async fn write(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        self.counts.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.write(writes).await
    }
}
