//! Link usage counted in memory on the hot path and flushed to the catalog in the background:
//! a chunk read costs a map update, never a database call. Counts of an instance that is
//! recycled before its next flush are lost (at most one flush interval's worth).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::{DatasetId, LinkId, UsageDelta, now};
use crate::store::Catalog;

/// What one read through a link was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// A viewer opening the link: the node document at its root (`zarr.json`, `.zgroup`,
    /// `.zarray` — one per open whatever the Zarr version), or its view state.
    View,
    /// Any other read.
    Read,
}

#[derive(Debug)]
struct Pending {
    by_link: HashMap<LinkId, (DatasetId, UsageDelta)>,
    last_flush: Instant,
}

/// Per-instance counters, one entry per link used since the last flush.
#[derive(Debug)]
pub struct UsageMeter {
    pending: Mutex<Pending>,
    interval: Duration,
}

impl UsageMeter {
    pub fn new(interval: Duration) -> Self {
        Self {
            pending: Mutex::new(Pending {
                by_link: HashMap::new(),
                last_flush: Instant::now(),
            }),
            interval,
        }
    }

    /// Counts one read (`redirected`: answered with a redirect to storage, whose bytes are not
    /// ours to count); returns `true` when a flush is due (the caller starts it).
    pub fn record(
        &self,
        dataset: &DatasetId,
        link: &LinkId,
        what: Use,
        redirected: bool,
        bytes: u64,
    ) -> bool {
        let t = now();
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let entry = match p.by_link.get_mut(link) {
            Some(e) => e,
            None => p
                .by_link
                .entry(link.clone())
                .or_insert_with(|| (dataset.clone(), UsageDelta::default())),
        };
        let delta = &mut entry.1;
        match what {
            Use::View => delta.views += 1,
            Use::Read => delta.chunk_reads += 1,
        }
        if redirected {
            delta.redirects += 1;
        }
        delta.bytes += bytes;
        delta.first_access.get_or_insert(t);
        delta.last_access = Some(t);
        if p.last_flush.elapsed() >= self.interval {
            p.last_flush = Instant::now();
            true
        } else {
            false
        }
    }

    /// Takes everything counted so far.
    pub fn take(&self) -> Vec<(LinkId, DatasetId, UsageDelta)> {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.last_flush = Instant::now();
        p.by_link
            .drain()
            .map(|(link, (dataset, delta))| (link, dataset, delta))
            .collect()
    }

    /// Puts counts back that could not be flushed, to try again next time.
    pub fn restore(&self, link: LinkId, dataset: DatasetId, delta: &UsageDelta) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.by_link
            .entry(link)
            .or_insert_with(|| (dataset, UsageDelta::default()))
            .1
            .merge(delta);
    }

    /// Writes everything counted so far to the catalog; returns how many links were updated.
    /// Counts that fail to write are kept for the next flush; a link that no longer exists
    /// drops its counts.
    pub async fn flush(&self, catalog: &Catalog) -> usize {
        let mut written = 0;
        for (link, dataset, delta) in self.take() {
            if delta.is_empty() {
                continue;
            }
            match catalog.record_usage(&dataset, &link, &delta).await {
                Ok(_) => written += 1,
                Err(crate::store::catalog::CatalogError::NotFound) => {}
                Err(e) => {
                    tracing::warn!(error = %e, link = %link, "link usage not flushed; kept for later");
                    self.restore(link, dataset, &delta);
                }
            }
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_aggregate_per_link_until_taken() {
        let meter = UsageMeter::new(Duration::from_secs(3600));
        let (d, l1, l2) = (
            DatasetId::generate(),
            LinkId::generate(),
            LinkId::generate(),
        );
        assert!(!meter.record(&d, &l1, Use::View, false, 100));
        for _ in 0..10 {
            meter.record(&d, &l1, Use::Read, false, 1000);
        }
        meter.record(&d, &l2, Use::Read, true, 0);
        let mut taken = meter.take();
        taken.sort_by_key(|t| std::cmp::Reverse(t.2.chunk_reads));
        assert_eq!(taken.len(), 2);
        let (link, _, delta) = &taken[0];
        assert_eq!(link, &l1);
        assert_eq!(
            (delta.views, delta.chunk_reads, delta.bytes),
            (1, 10, 10_100)
        );
        assert_eq!(taken[1].2.redirects, 1);
        assert!(meter.take().is_empty(), "taking empties the meter");
        meter.restore(l1.clone(), d.clone(), &taken[0].2);
        meter.restore(l1.clone(), d, &taken[0].2);
        assert_eq!(meter.take()[0].2.chunk_reads, 20, "restored counts merge");
    }

    #[test]
    fn a_flush_is_due_once_per_interval() {
        let meter = UsageMeter::new(Duration::ZERO);
        let (d, l) = (DatasetId::generate(), LinkId::generate());
        assert!(meter.record(&d, &l, Use::Read, false, 1));
        let slow = UsageMeter::new(Duration::from_secs(3600));
        assert!(!slow.record(&d, &l, Use::Read, false, 1));
    }
}
