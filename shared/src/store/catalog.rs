//! Datasets and share links over any [`ItemStore`], written once for every adapter.

use super::{
    Cond, Cursor, DynStore, Index, Item, Query, StoreError, Write, body, fetch, fetch_all, keys,
    parse,
};
use crate::domain::{
    Dataset, DatasetId, DatasetName, DatasetPatch, LinkId, OrgId, ShareLink, TokenHash, now,
};

/// What the catalog's callers can be told.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("not found")]
    NotFound,
    /// A unique name is taken, or a concurrent change won.
    #[error("conflict")]
    Conflict,
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for CatalogError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict => CatalogError::Conflict,
            other => CatalogError::Store(other),
        }
    }
}

/// How many times a read-modify-write is retried when a concurrent writer wins.
const OPTIMISTIC_RETRIES: usize = 5;

#[derive(Clone, Debug)]
pub struct Catalog {
    store: DynStore,
}

/// The token item: points from a token hash to its link.
#[derive(serde::Serialize, serde::Deserialize)]
struct TokenPointer {
    dataset_id: DatasetId,
    link_id: LinkId,
}

/// The name-claim item: points from an organization's dataset name to the dataset.
#[derive(serde::Serialize, serde::Deserialize)]
struct NameClaim {
    dataset_id: DatasetId,
}

/// One page of a listing.
#[derive(Clone, Debug)]
pub struct Listing<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
}

impl Catalog {
    pub fn new(store: DynStore) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &DynStore {
        &self.store
    }

    fn dataset_item(d: &Dataset) -> Result<Item, StoreError> {
        Ok(Item {
            key: keys::dataset(&d.id),
            gsi1: Some(keys::dataset_in_org_index(&d.org, &d.name)),
            ttl: None,
            version: d.version,
            body: body(d)?,
        })
    }

    /// Stores a new dataset and claims its name in one transaction: of two registrations of
    /// one name, exactly one succeeds.
    pub async fn create_dataset(&self, d: &Dataset) -> Result<(), CatalogError> {
        let claim = Item {
            key: keys::dataset_name_claim(&d.org, &d.name),
            gsi1: None,
            ttl: None,
            version: 1,
            body: body(&NameClaim {
                dataset_id: d.id.clone(),
            })?,
        };
        self.store
            .write(vec![
                Write::Put {
                    item: Self::dataset_item(d)?,
                    cond: Cond::NotExists,
                },
                Write::Put {
                    item: claim,
                    cond: Cond::NotExists,
                },
            ])
            .await?;
        Ok(())
    }

    pub async fn dataset(&self, id: &DatasetId) -> Result<Dataset, CatalogError> {
        fetch(&self.store, &keys::dataset(id)).await
    }

    /// The dataset an organization knows by `name` (case-insensitive).
    pub async fn dataset_by_name(
        &self,
        org: &OrgId,
        name: &DatasetName,
    ) -> Result<Dataset, CatalogError> {
        let pointer: NameClaim = fetch(&self.store, &keys::dataset_name_claim(org, name)).await?;
        self.dataset(&pointer.dataset_id).await
    }

    /// An organization's datasets by name, a page at a time.
    pub async fn datasets_of(
        &self,
        org: &OrgId,
        limit: usize,
        cursor: Option<Cursor>,
    ) -> Result<Listing<Dataset>, CatalogError> {
        let mut q = Query::new(Index::Gsi1, keys::org_datasets_partition(org), "");
        q.limit = limit;
        q.cursor = cursor;
        let page = self.store.query(&q).await?;
        let items = page
            .items
            .into_iter()
            .map(parse)
            .collect::<Result<_, _>>()?;
        Ok(Listing {
            items,
            next: page.next,
        })
    }

    /// Applies `patch` with optimistic concurrency; `expected_version` (from `If-Match`) makes a
    /// stale update a conflict instead of a retry.
    pub async fn update_dataset(
        &self,
        id: &DatasetId,
        patch: &DatasetPatch,
        expected_version: Option<u64>,
    ) -> Result<Dataset, CatalogError> {
        for _ in 0..OPTIMISTIC_RETRIES {
            let mut d = self.dataset(id).await?;
            if expected_version.is_some_and(|v| v != d.version) {
                return Err(CatalogError::Conflict);
            }
            let seen = d.version;
            patch.apply(&mut d);
            d.version = seen + 1;
            d.updated_at = now();
            match self
                .store
                .write(vec![Write::Put {
                    item: Self::dataset_item(&d)?,
                    cond: Cond::Version(seen),
                }])
                .await
            {
                Ok(()) => return Ok(d),
                Err(StoreError::Conflict) if expected_version.is_none() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CatalogError::Conflict)
    }

    /// Stores a link and its token pointer atomically, provided the dataset exists.
    pub async fn create_link(&self, link: &ShareLink) -> Result<(), CatalogError> {
        let link_item = Item {
            key: keys::link(&link.dataset_id, &link.id),
            gsi1: None,
            ttl: None,
            version: link.version,
            body: body(link)?,
        };
        let pointer = Item {
            key: keys::token(&link.token_hash),
            gsi1: None,
            ttl: None,
            version: 1,
            body: body(&TokenPointer {
                dataset_id: link.dataset_id.clone(),
                link_id: link.id.clone(),
            })?,
        };
        let result = self
            .store
            .write(vec![
                Write::Check {
                    key: keys::dataset(&link.dataset_id),
                    cond: Cond::Exists,
                },
                Write::Put {
                    item: link_item,
                    cond: Cond::NotExists,
                },
                Write::Put {
                    item: pointer,
                    cond: Cond::NotExists,
                },
            ])
            .await;
        match result {
            Ok(()) => Ok(()),
            // The likely failed condition is the dataset check; tell which.
            Err(StoreError::Conflict) => {
                match self.store.get(&keys::dataset(&link.dataset_id)).await? {
                    None => Err(CatalogError::NotFound),
                    Some(_) => Err(CatalogError::Conflict),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn link(&self, dataset: &DatasetId, id: &LinkId) -> Result<ShareLink, CatalogError> {
        fetch(&self.store, &keys::link(dataset, id)).await
    }

    /// Resolves a presented token to its link (whatever its state).
    pub async fn link_by_token(&self, hash: &TokenHash) -> Result<ShareLink, CatalogError> {
        let pointer: TokenPointer = fetch(&self.store, &keys::token(hash)).await?;
        let link = self.link(&pointer.dataset_id, &pointer.link_id).await?;
        // The pointer and the link were written together; a mismatch means tampering.
        if link.token_hash != *hash {
            return Err(CatalogError::NotFound);
        }
        Ok(link)
    }

    /// All of a dataset's links, in link-id order.
    pub async fn links_of(&self, dataset: &DatasetId) -> Result<Vec<ShareLink>, CatalogError> {
        let (pk, prefix) = keys::links_of(dataset);
        fetch_all(&self.store, Query::new(Index::Primary, pk, prefix)).await
    }

    /// Revokes a link (idempotent: revoking twice keeps the first time).
    pub async fn revoke_link(
        &self,
        dataset: &DatasetId,
        id: &LinkId,
    ) -> Result<ShareLink, CatalogError> {
        for _ in 0..OPTIMISTIC_RETRIES {
            let mut link = self.link(dataset, id).await?;
            if link.revoked_at.is_some() {
                return Ok(link);
            }
            let seen = link.version;
            link.revoked_at = Some(now());
            link.version = seen + 1;
            let item = Item {
                key: keys::link(dataset, id),
                gsi1: None,
                ttl: None,
                version: link.version,
                body: body(&link)?,
            };
            match self
                .store
                .write(vec![Write::Put {
                    item,
                    cond: Cond::Version(seen),
                }])
                .await
            {
                Ok(()) => return Ok(link),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CatalogError::Conflict)
    }
}
