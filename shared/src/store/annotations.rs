//! Annotations and their versions over any [`ItemStore`]. A save names the version it builds
//! on; it is accepted only if that is still the latest, and then the record and the new version
//! are written in one transaction guarded by the record's revision — so of racing saves on one
//! version exactly one wins, the others learn the current version, and no accepted save is ever
//! lost or numbered twice.

use std::collections::BTreeSet;

use super::catalog::{CatalogError, Listing};
use super::{Cond, Cursor, DynStore, Index, Item, Query, StoreError, Write, body, fetch, keys};
use crate::domain::{
    Annotation, AnnotationId, AnnotationVersion, DatasetId, TeamId, UserId, VersionBody, now,
};

/// Why a save was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("no such annotation")]
    NotFound,
    /// The annotation is deleted (restore it first).
    #[error("the annotation is deleted")]
    Deleted,
    /// The save builds on an older version; `current` is the latest.
    #[error("the save builds on version {base}, but the latest is {current}")]
    Stale { base: u64, current: u64 },
    #[error(transparent)]
    Store(StoreError),
}

impl From<CatalogError> for SaveError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::NotFound => SaveError::NotFound,
            CatalogError::Conflict => SaveError::Store(StoreError::Conflict),
            CatalogError::Store(s) => SaveError::Store(s),
        }
    }
}

impl From<StoreError> for SaveError {
    fn from(e: StoreError) -> Self {
        SaveError::Store(e)
    }
}

/// How often a save retries when only the record's other fields changed meanwhile, and a
/// record change when anything did; with a growing random pause between attempts.
const RETRIES: usize = 24;

async fn pause(attempt: usize) {
    if attempt > 0 {
        let ms = rand::random_range(1..=4 * attempt as u64);
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
}

#[derive(Clone, Debug)]
pub struct Annotations {
    store: DynStore,
}

/// A pointer item (owner's list, team's list) naming an annotation.
#[derive(serde::Serialize, serde::Deserialize)]
struct Pointer {
    annotation: AnnotationId,
}

impl Annotations {
    pub fn new(store: DynStore) -> Self {
        Self { store }
    }

    fn record_item(a: &Annotation) -> Result<Item, StoreError> {
        Ok(Item {
            key: keys::annotation(&a.id),
            gsi1: Some(keys::annotation_in_dataset_index(
                &a.dataset_id,
                &a.id,
                a.created_at,
            )),
            ttl: None,
            version: a.revision,
            body: body(a)?,
        })
    }

    fn version_item(v: &AnnotationVersion) -> Result<Item, StoreError> {
        Ok(Item {
            key: keys::annotation_version(&v.annotation, v.version),
            gsi1: None,
            ttl: None,
            version: 1,
            body: body(v)?,
        })
    }

    fn pointer(key: super::Key, id: &AnnotationId) -> Result<Item, StoreError> {
        Ok(Item {
            key,
            gsi1: None,
            ttl: None,
            version: 1,
            body: body(&Pointer {
                annotation: id.clone(),
            })?,
        })
    }

    /// Stores a new annotation (revision 1) and, for a copy, its first version — provided its
    /// dataset exists.
    pub async fn create(
        &self,
        a: &Annotation,
        first: Option<&AnnotationVersion>,
    ) -> Result<(), CatalogError> {
        let mut writes = vec![
            Write::Check {
                key: keys::dataset(&a.dataset_id),
                cond: Cond::Exists,
            },
            Write::Put {
                item: Self::record_item(a)?,
                cond: Cond::NotExists,
            },
            Write::Put {
                item: Self::pointer(keys::owned_annotation(&a.owner, &a.id, a.created_at), &a.id)?,
                cond: Cond::Always,
            },
        ];
        for team in &a.teams {
            writes.push(Write::Put {
                item: Self::pointer(keys::team_annotation(team, &a.id), &a.id)?,
                cond: Cond::Always,
            });
        }
        if let Some(v) = first {
            writes.push(Write::Put {
                item: Self::version_item(v)?,
                cond: Cond::NotExists,
            });
        }
        match self.store.write(writes).await {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict) => match self.store.get(&keys::dataset(&a.dataset_id)).await?
            {
                None => Err(CatalogError::NotFound),
                Some(_) => Err(CatalogError::Conflict),
            },
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get(&self, id: &AnnotationId) -> Result<Annotation, CatalogError> {
        fetch(&self.store, &keys::annotation(id)).await
    }

    /// Accepts a save on top of `base` (the version the client has), as version `base + 1`,
    /// with its content `body` (inline, or already written to object storage). Returns the
    /// updated record.
    pub async fn save(
        &self,
        id: &AnnotationId,
        base: u64,
        author: &str,
        actions: u32,
        body: &VersionBody,
        delta_of: Option<u64>,
    ) -> Result<Annotation, SaveError> {
        for attempt in 0..RETRIES {
            pause(attempt).await;
            let current = self.get(id).await?;
            if current.deleted_at.is_some() {
                return Err(SaveError::Deleted);
            }
            if current.version != base {
                return Err(SaveError::Stale {
                    base,
                    current: current.version,
                });
            }
            let mut next = current.clone();
            next.version = base + 1;
            next.revision = current.revision + 1;
            next.updated_at = now();
            let version = AnnotationVersion {
                annotation: id.clone(),
                version: next.version,
                author: author.to_owned(),
                saved_at: next.updated_at,
                actions,
                body: body.clone(),
                delta_of,
            };
            let writes = vec![
                Write::Put {
                    item: Self::record_item(&next)?,
                    cond: Cond::Version(current.revision),
                },
                Write::Put {
                    item: Self::version_item(&version)?,
                    cond: Cond::NotExists,
                },
            ];
            match self.store.write(writes).await {
                Ok(()) => return Ok(next),
                // Someone changed the record: a rename is retried, a save makes this one stale.
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let current = self.get(id).await?;
        Err(SaveError::Stale {
            base,
            current: current.version,
        })
    }

    /// One past version.
    pub async fn version(
        &self,
        id: &AnnotationId,
        version: u64,
    ) -> Result<AnnotationVersion, CatalogError> {
        fetch(&self.store, &keys::annotation_version(id, version)).await
    }

    /// An annotation's versions, newest first, a page at a time.
    pub async fn versions(
        &self,
        id: &AnnotationId,
        limit: usize,
        cursor: Option<Cursor>,
    ) -> Result<Listing<AnnotationVersion>, CatalogError> {
        let (pk, prefix) = keys::annotation_versions(id);
        let mut q = Query::new(Index::Primary, pk, prefix);
        q.limit = limit;
        q.cursor = cursor;
        q.descending = true;
        super::fetch_page(&self.store, &q).await
    }

    /// A dataset's annotations, oldest first, a page at a time.
    pub async fn of_dataset(
        &self,
        dataset: &DatasetId,
        limit: usize,
        cursor: Option<Cursor>,
    ) -> Result<Listing<Annotation>, CatalogError> {
        let mut q = Query::new(
            Index::Gsi1,
            keys::dataset_annotations_partition(dataset),
            "",
        );
        q.limit = limit;
        q.cursor = cursor;
        super::fetch_page(&self.store, &q).await
    }

    async fn pointed(&self, pk: String, prefix: &str) -> Result<Vec<Annotation>, CatalogError> {
        let pointers: Vec<Pointer> =
            super::fetch_all(&self.store, Query::new(Index::Primary, pk, prefix)).await?;
        let mut out = Vec::with_capacity(pointers.len());
        for p in pointers {
            match self.get(&p.annotation).await {
                Ok(a) => out.push(a),
                Err(CatalogError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// A user's own annotations, oldest first.
    pub async fn of_owner(&self, owner: &UserId) -> Result<Vec<Annotation>, CatalogError> {
        let (pk, prefix) = keys::owned_annotations(owner);
        self.pointed(pk, prefix).await
    }

    /// The annotations shared with a team.
    pub async fn shared_with(&self, team: &TeamId) -> Result<Vec<Annotation>, CatalogError> {
        let (pk, prefix) = keys::team_annotations(team);
        let mut out = self.pointed(pk, prefix).await?;
        // A pointer may outlive a share that a concurrent change removed: trust the record.
        out.retain(|a| a.teams.contains(team));
        Ok(out)
    }

    /// Changes the record's own fields (name, description, visibility, teams, deletion) with
    /// optimistic concurrency; `expected_revision` makes a stale change a conflict instead of a
    /// retry. Team pointers follow in the same transaction.
    pub async fn update(
        &self,
        id: &AnnotationId,
        expected_revision: Option<u64>,
        change: impl Fn(&mut Annotation),
    ) -> Result<Annotation, CatalogError> {
        for attempt in 0..RETRIES {
            pause(attempt).await;
            let current = self.get(id).await?;
            if expected_revision.is_some_and(|r| r != current.revision) {
                return Err(CatalogError::Conflict);
            }
            let mut next = current.clone();
            change(&mut next);
            // Content and identity are not the record's to change here.
            next.id = current.id.clone();
            next.version = current.version;
            next.owner = current.owner.clone();
            next.dataset_id = current.dataset_id.clone();
            next.revision = current.revision + 1;
            next.updated_at = now();
            let mut writes = vec![Write::Put {
                item: Self::record_item(&next)?,
                cond: Cond::Version(current.revision),
            }];
            let (before, after): (&BTreeSet<TeamId>, &BTreeSet<TeamId>) =
                (&current.teams, &next.teams);
            for gone in before.difference(after) {
                writes.push(Write::Delete {
                    key: keys::team_annotation(gone, id),
                    cond: Cond::Always,
                });
            }
            for added in after.difference(before) {
                writes.push(Write::Put {
                    item: Self::pointer(keys::team_annotation(added, id), id)?,
                    cond: Cond::Always,
                });
            }
            match self.store.write(writes).await {
                Ok(()) => return Ok(next),
                Err(StoreError::Conflict) if expected_revision.is_none() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CatalogError::Conflict)
    }
}
