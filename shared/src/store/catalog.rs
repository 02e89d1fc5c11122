//! Datasets, share links, per-person grants, the public gallery and the audit trail over any
//! [`ItemStore`], written once for every adapter. Every change writes its audit entry in the
//! same transaction, so the trail cannot miss a change that happened.

use super::{
    Cond, Cursor, DynStore, Index, Item, Query, StoreError, Write, body, fetch, fetch_all, keys,
};
use crate::domain::{
    AuditAction, AuditEntry, Dataset, DatasetId, DatasetName, DatasetPatch, Email, Grant, LinkId,
    OrgId, ShareLink, TokenHash, UsageDelta, UserId, now,
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
/// Usage flushes of many instances may meet on one busy link; they back off and retry longer
/// (a flush that still fails keeps its counts for the next one).
const USAGE_RETRIES: usize = 24;

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

/// A dataset as the public gallery lists it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GalleryEntry {
    pub id: DatasetId,
    pub org: OrgId,
    pub display_name: String,
    pub description: String,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: crate::domain::Timestamp,
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

    fn gallery_item(d: &Dataset) -> Result<Item, StoreError> {
        Ok(Item {
            key: keys::gallery(d),
            gsi1: None,
            ttl: None,
            version: d.version,
            body: body(&GalleryEntry {
                id: d.id.clone(),
                org: d.org.clone(),
                display_name: d.display_name.clone(),
                description: d.description.clone(),
                updated_at: d.updated_at,
            })?,
        })
    }

    fn audit_write(entry: &AuditEntry) -> Result<Write, StoreError> {
        let nonce = LinkId::generate();
        Ok(Write::Put {
            item: Item {
                key: keys::audit(&entry.dataset_id, entry.at, nonce.as_str()),
                gsi1: None,
                ttl: None,
                version: 1,
                body: body(entry)?,
            },
            cond: Cond::NotExists,
        })
    }

    /// Stores a new dataset and claims its name in one transaction: of two registrations of
    /// one name, exactly one succeeds. A public, featured dataset enters the gallery with it.
    pub async fn create_dataset(&self, d: &Dataset, actor: &str) -> Result<(), CatalogError> {
        let claim = Item {
            key: keys::dataset_name_claim(&d.org, &d.name),
            gsi1: None,
            ttl: None,
            version: 1,
            body: body(&NameClaim {
                dataset_id: d.id.clone(),
            })?,
        };
        let mut writes = vec![
            Write::Put {
                item: Self::dataset_item(d)?,
                cond: Cond::NotExists,
            },
            Write::Put {
                item: claim,
                cond: Cond::NotExists,
            },
            Self::audit_write(
                &AuditEntry::new(&d.id, actor, AuditAction::DatasetRegistered).detail(
                    serde_json::json!({ "name": d.name.as_str(), "storage": d.storage.to_string(), "visibility": d.visibility }),
                ),
            )?,
        ];
        if d.in_gallery() {
            writes.push(Write::Put {
                item: Self::gallery_item(d)?,
                cond: Cond::Always,
            });
        }
        self.store.write(writes).await?;
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
        self.page(q).await
    }

    async fn page<T: serde::de::DeserializeOwned>(
        &self,
        q: Query,
    ) -> Result<Listing<T>, CatalogError> {
        super::fetch_page(&self.store, &q).await
    }

    /// The public gallery (public and featured datasets), by display name, a page at a time.
    pub async fn gallery(
        &self,
        limit: usize,
        cursor: Option<Cursor>,
    ) -> Result<Listing<GalleryEntry>, CatalogError> {
        let mut q = Query::new(Index::Primary, keys::GALLERY_PARTITION, "");
        q.limit = limit;
        q.cursor = cursor;
        self.page(q).await
    }

    /// Applies `patch` with optimistic concurrency; `expected_version` (from `If-Match`) makes a
    /// stale update a conflict instead of a retry. The gallery entry follows in the same
    /// transaction, with the audit entry naming the changed fields.
    pub async fn update_dataset(
        &self,
        id: &DatasetId,
        patch: &DatasetPatch,
        expected_version: Option<u64>,
        actor: &str,
    ) -> Result<Dataset, CatalogError> {
        for _ in 0..OPTIMISTIC_RETRIES {
            let old = self.dataset(id).await?;
            if expected_version.is_some_and(|v| v != old.version) {
                return Err(CatalogError::Conflict);
            }
            let mut d = old.clone();
            patch.apply(&mut d);
            d.version = old.version + 1;
            d.updated_at = now();
            let mut writes = vec![Write::Put {
                item: Self::dataset_item(&d)?,
                cond: Cond::Version(old.version),
            }];
            if old.in_gallery() && (!d.in_gallery() || keys::gallery(&old) != keys::gallery(&d)) {
                writes.push(Write::Delete {
                    key: keys::gallery(&old),
                    cond: Cond::Always,
                });
            }
            if d.in_gallery() {
                writes.push(Write::Put {
                    item: Self::gallery_item(&d)?,
                    cond: Cond::Always,
                });
            }
            writes.push(Self::audit_write(
                &AuditEntry::new(id, actor, AuditAction::DatasetUpdated).detail(changes(&old, &d)),
            )?);
            match self.store.write(writes).await {
                Ok(()) => return Ok(d),
                Err(StoreError::Conflict) if expected_version.is_none() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CatalogError::Conflict)
    }

    fn link_item(link: &ShareLink) -> Result<Item, StoreError> {
        Ok(Item {
            key: keys::link(&link.dataset_id, &link.id),
            gsi1: Some(keys::link_in_org_index(
                &link.org,
                &link.id,
                link.created_at,
            )),
            ttl: None,
            version: link.version,
            body: body(link)?,
        })
    }

    /// Stores a link and its token pointer atomically, provided the dataset exists.
    pub async fn create_link(&self, link: &ShareLink) -> Result<(), CatalogError> {
        self.create_links(std::slice::from_ref(link)).await
    }

    /// Stores several links (for one or several datasets) in one transaction: all of them or,
    /// if any dataset is missing, none. At most [`MAX_LINKS_PER_BATCH`].
    pub async fn create_links(&self, links: &[ShareLink]) -> Result<(), CatalogError> {
        if links.is_empty() || links.len() > MAX_LINKS_PER_BATCH {
            return Err(CatalogError::Store(StoreError::Invalid {
                what: "a link batch of the wrong size",
            }));
        }
        let mut writes = Vec::with_capacity(links.len() * 4);
        let mut checked = std::collections::BTreeSet::new();
        for link in links {
            if checked.insert(link.dataset_id.clone()) {
                writes.push(Write::Check {
                    key: keys::dataset(&link.dataset_id),
                    cond: Cond::Exists,
                });
            }
            writes.push(Write::Put {
                item: Self::link_item(link)?,
                cond: Cond::NotExists,
            });
            writes.push(Write::Put {
                item: Item {
                    key: keys::token(&link.token_hash),
                    gsi1: None,
                    ttl: None,
                    version: 1,
                    body: body(&TokenPointer {
                        dataset_id: link.dataset_id.clone(),
                        link_id: link.id.clone(),
                    })?,
                },
                cond: Cond::NotExists,
            });
            writes.push(Self::audit_write(
                &AuditEntry::new(&link.dataset_id, &link.created_by, AuditAction::LinkCreated)
                    .target(link.id.as_str())
                    .detail(serde_json::json!({
                        "label": link.label,
                        "scope": link.scope,
                        "permission": link.permission,
                        "expires_at": link.expires_at.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
                        "password": link.password_hash.is_some(),
                    })),
            )?);
        }
        match self.store.write(writes).await {
            Ok(()) => Ok(()),
            // The likely failed condition is a dataset check; tell which.
            Err(StoreError::Conflict) => {
                for id in &checked {
                    if self.store.get(&keys::dataset(id)).await?.is_none() {
                        return Err(CatalogError::NotFound);
                    }
                }
                Err(CatalogError::Conflict)
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

    /// An organization's links, newest first, a page at a time.
    pub async fn links_of_org(
        &self,
        org: &OrgId,
        limit: usize,
        cursor: Option<Cursor>,
    ) -> Result<Listing<ShareLink>, CatalogError> {
        let mut q = Query::new(Index::Gsi1, keys::org_links_partition(org), "");
        q.limit = limit;
        q.cursor = cursor;
        q.descending = true;
        self.page(q).await
    }

    /// Read-modify-write of one link with optimistic concurrency; `change` returns `false` to
    /// leave the link as it is. The audit entry, if any, is written with the change.
    async fn change_link(
        &self,
        dataset: &DatasetId,
        id: &LinkId,
        change: impl Fn(&mut ShareLink) -> bool,
        audit: Option<AuditEntry>,
        retries: usize,
    ) -> Result<ShareLink, CatalogError> {
        for attempt in 0..retries {
            if attempt > 0 {
                // Spread racing writers apart (usage flushes of many instances).
                let pause = rand::random_range(1..=4 * attempt as u64);
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            }
            let mut link = self.link(dataset, id).await?;
            if !change(&mut link) {
                return Ok(link);
            }
            let seen = link.version;
            link.version = seen + 1;
            let mut writes = vec![Write::Put {
                item: Self::link_item(&link)?,
                cond: Cond::Version(seen),
            }];
            if let Some(entry) = &audit {
                writes.push(Self::audit_write(entry)?);
            }
            match self.store.write(writes).await {
                Ok(()) => return Ok(link),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CatalogError::Conflict)
    }

    /// Revokes a link (idempotent: revoking twice keeps the first time).
    pub async fn revoke_link(
        &self,
        dataset: &DatasetId,
        id: &LinkId,
        actor: &str,
    ) -> Result<ShareLink, CatalogError> {
        let t = now();
        self.change_link(
            dataset,
            id,
            |link| {
                if link.revoked_at.is_some() {
                    return false;
                }
                link.revoked_at = Some(t);
                true
            },
            Some(AuditEntry::new(dataset, actor, AuditAction::LinkRevoked).target(id.as_str())),
            OPTIMISTIC_RETRIES,
        )
        .await
    }

    /// Adds counts gathered by a function instance to a link's usage, with a `link_used` audit
    /// entry for the window they cover.
    pub async fn record_usage(
        &self,
        dataset: &DatasetId,
        id: &LinkId,
        delta: &UsageDelta,
    ) -> Result<ShareLink, CatalogError> {
        let fmt = |t: Option<crate::domain::Timestamp>| {
            t.and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
        };
        let entry = AuditEntry::new(dataset, format!("link:{id}"), AuditAction::LinkUsed)
            .target(id.as_str())
            .detail(serde_json::json!({
                "views": delta.views,
                "chunk_reads": delta.chunk_reads,
                "bytes": delta.bytes,
                "redirects": delta.redirects,
                "from": fmt(delta.first_access),
                "to": fmt(delta.last_access),
            }));
        self.change_link(
            dataset,
            id,
            |link| {
                link.usage.add(delta);
                true
            },
            Some(entry),
            USAGE_RETRIES,
        )
        .await
    }

    fn grant_item(g: &Grant) -> Result<Item, StoreError> {
        Ok(Item {
            key: keys::grant(&g.dataset_id, &g.email),
            gsi1: Some(keys::grant_by_grantee_index(&g.email, &g.dataset_id)),
            ttl: None,
            version: g.version,
            body: body(g)?,
        })
    }

    pub async fn grant(&self, dataset: &DatasetId, email: &Email) -> Result<Grant, CatalogError> {
        fetch(&self.store, &keys::grant(dataset, email)).await
    }

    /// Everyone a dataset is shared with, by e-mail address.
    pub async fn grants_of(&self, dataset: &DatasetId) -> Result<Vec<Grant>, CatalogError> {
        let (pk, prefix) = keys::grants_of(dataset);
        fetch_all(&self.store, Query::new(Index::Primary, pk, prefix)).await
    }

    /// Every grant made to an e-mail address (bound or pending), across organizations.
    pub async fn grants_for(&self, email: &Email) -> Result<Vec<Grant>, CatalogError> {
        fetch_all(
            &self.store,
            Query::new(Index::Gsi1, keys::grantee_partition(email), ""),
        )
        .await
    }

    /// Creates a grant (`expected_version` `None`: the address must not have one yet) or
    /// replaces the one at `expected_version`, with its audit entry.
    pub async fn save_grant(
        &self,
        grant: &Grant,
        expected_version: Option<u64>,
        audit: &AuditEntry,
    ) -> Result<(), CatalogError> {
        let mut writes = vec![Write::Put {
            item: Self::grant_item(grant)?,
            cond: expected_version.map_or(Cond::NotExists, Cond::Version),
        }];
        if expected_version.is_none() {
            writes.push(Write::Check {
                key: keys::dataset(&grant.dataset_id),
                cond: Cond::Exists,
            });
        }
        writes.push(Self::audit_write(audit)?);
        self.store.write(writes).await?;
        Ok(())
    }

    /// Removes a grant (at `expected_version`), with its audit entry.
    pub async fn delete_grant(
        &self,
        grant: &Grant,
        audit: &AuditEntry,
    ) -> Result<(), CatalogError> {
        self.store
            .write(vec![
                Write::Delete {
                    key: keys::grant(&grant.dataset_id, &grant.email),
                    cond: Cond::Version(grant.version),
                },
                Self::audit_write(audit)?,
            ])
            .await?;
        Ok(())
    }

    /// Binds every pending grant of `email` to `user`: called once the person proved they read
    /// that mailbox by accepting an invitation. Returns the grants bound now.
    pub async fn bind_pending_grants(
        &self,
        email: &Email,
        user: &UserId,
    ) -> Result<Vec<Grant>, CatalogError> {
        let mut bound = Vec::new();
        for g in self.grants_for(email).await? {
            if g.user.is_some() {
                continue;
            }
            let mut next = g.clone();
            next.user = Some(user.clone());
            next.version = g.version + 1;
            next.updated_at = now();
            let entry = AuditEntry::new(
                &g.dataset_id,
                format!("user:{user}"),
                AuditAction::GrantAccepted,
            )
            .target(email.as_str());
            match self.save_grant(&next, Some(g.version), &entry).await {
                Ok(()) => bound.push(next),
                // Changed or revoked meanwhile: whoever won decides.
                Err(CatalogError::Conflict) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(bound)
    }

    /// Appends one entry to a dataset's audit trail.
    pub async fn append_audit(&self, entry: &AuditEntry) -> Result<(), CatalogError> {
        self.store.write(vec![Self::audit_write(entry)?]).await?;
        Ok(())
    }

    /// A dataset's audit trail, newest first, a page at a time.
    pub async fn audit_of(
        &self,
        dataset: &DatasetId,
        limit: usize,
        cursor: Option<Cursor>,
    ) -> Result<Listing<AuditEntry>, CatalogError> {
        let mut q = Query::new(Index::Primary, keys::audit_partition(dataset), "");
        q.limit = limit;
        q.cursor = cursor;
        q.descending = true;
        self.page(q).await
    }
}

/// Most links one batch creates (each takes up to four writes of a 100-write transaction).
pub const MAX_LINKS_PER_BATCH: usize = 20;

/// The fields an update changed, old and new, for the audit trail.
fn changes(old: &Dataset, new: &Dataset) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    let mut note = |field: &str, a: serde_json::Value, b: serde_json::Value| {
        if a != b {
            out.insert(field.into(), serde_json::json!({ "from": a, "to": b }));
        }
    };
    use serde_json::json;
    note(
        "display_name",
        json!(old.display_name),
        json!(new.display_name),
    );
    note(
        "description",
        json!(old.description.len()),
        json!(new.description.len()),
    );
    note("visibility", json!(old.visibility), json!(new.visibility));
    note("featured", json!(old.featured), json!(new.featured));
    note(
        "allowed_teams",
        json!(old.allowed_teams),
        json!(new.allowed_teams),
    );
    serde_json::Value::Object(out)
}
