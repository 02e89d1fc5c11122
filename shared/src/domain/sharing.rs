//! What sharing is made of besides the link record itself: a link's scope and permission, its
//! usage counters, per-person grants, and the audit trail.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{AnnotationId, DatasetId, Email, InviteId, ObjectKey, ParseError, Timestamp, UserId};

/// What part of a dataset a link opens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LinkScope {
    /// Every key of the dataset.
    #[default]
    Dataset,
    /// Only keys at or below one directory (a group, a label image, one array): directory-level
    /// sharing. Readers open `/s/{token}/{prefix}/`.
    Path {
        #[schema(example = "labels/cells")]
        prefix: String,
    },
    /// One annotation, on top of the dataset it annotates (its pixels stay readable so that the
    /// annotation can be seen in place), and no other annotation.
    Annotation {
        #[schema(value_type = String)]
        annotation: AnnotationId,
    },
}

impl LinkScope {
    /// A sub-path scope, with its prefix checked like any object key (no `..`, no `//`).
    pub fn path(prefix: &str) -> Result<Self, ParseError> {
        let trimmed = prefix.trim_matches('/');
        let key = ObjectKey::parse(trimmed).map_err(|_| {
            ParseError::new(
                "scope prefix",
                "must be a key below the dataset root, without '..' or '//'",
            )
        })?;
        Ok(LinkScope::Path {
            prefix: key.as_str().to_owned(),
        })
    }

    /// Whether an object key lies inside this scope.
    pub fn covers(&self, key: &str) -> bool {
        match self {
            LinkScope::Dataset | LinkScope::Annotation { .. } => true,
            LinkScope::Path { prefix } => {
                key == prefix
                    || key
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            }
        }
    }

    /// The key prefix readers start from (`""` for the dataset root).
    pub fn root(&self) -> &str {
        match self {
            LinkScope::Path { prefix } => prefix,
            _ => "",
        }
    }
}

/// What a link lets its holder do, each level including the ones before it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum LinkPermission {
    /// Read metadata and chunks: what a viewer needs.
    #[default]
    View,
    /// Also list every object with its size and a presigned URL, to mirror the data in bulk.
    Download,
    /// Also create and save annotations on the dataset.
    Annotate,
}

/// A link's use as counted by the chunk function (aggregated per instance, then flushed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LinkUsage {
    /// Viewers opening the link: reads of the node document at its root (`zarr.json`,
    /// `.zgroup` or `.zarray`: one per open, whatever the Zarr version) and view-state fetches.
    pub views: u64,
    /// Every other read: chunks and the other metadata documents.
    pub chunk_reads: u64,
    /// Bytes served through the function (redirected reads are counted, their bytes are not).
    pub bytes: u64,
    /// Reads of either kind answered with a redirect to storage.
    pub redirects: u64,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_access: Option<Timestamp>,
}

/// Counts gathered since the last flush.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageDelta {
    pub views: u64,
    pub chunk_reads: u64,
    pub bytes: u64,
    pub redirects: u64,
    pub first_access: Option<Timestamp>,
    pub last_access: Option<Timestamp>,
}

impl UsageDelta {
    pub fn is_empty(&self) -> bool {
        self.views == 0 && self.chunk_reads == 0 && self.redirects == 0
    }

    pub fn merge(&mut self, other: &UsageDelta) {
        self.views += other.views;
        self.chunk_reads += other.chunk_reads;
        self.bytes += other.bytes;
        self.redirects += other.redirects;
        self.first_access = match (self.first_access, other.first_access) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_access = self.last_access.max(other.last_access);
    }
}

impl LinkUsage {
    pub fn add(&mut self, delta: &UsageDelta) {
        self.views += delta.views;
        self.chunk_reads += delta.chunk_reads;
        self.bytes += delta.bytes;
        self.redirects += delta.redirects;
        self.last_access = self.last_access.max(delta.last_access);
    }
}

/// A dataset shared with one person, by e-mail address. Until that person has an account
/// (they were sent an invitation), the grant is pending and grants nothing; accepting the
/// invitation — which proves they read that mailbox — binds it to their account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub dataset_id: DatasetId,
    pub email: Email,
    /// The account it is bound to; `None` while pending.
    pub user: Option<UserId>,
    /// The invitation sent because the address had no account.
    pub invite: Option<InviteId>,
    /// May annotate ("can modify").
    pub can_modify: bool,
    /// May share the dataset with further people ("can share again").
    pub can_share: bool,
    /// Who shared it (a principal's description) and their account, if any.
    pub granted_by: String,
    pub granted_by_user: Option<UserId>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: Timestamp,
    pub version: u64,
}

/// What happened, in the audit trail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    DatasetRegistered,
    DatasetUpdated,
    LinkCreated,
    LinkRevoked,
    /// Reads through a link, aggregated over a flush window.
    LinkUsed,
    LinkUnlocked,
    LinkPasswordFailed,
    GrantCreated,
    GrantChanged,
    GrantRevoked,
    /// A pending grant was bound to the account that accepted its invitation.
    GrantAccepted,
}

/// One entry of a dataset's audit trail.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    #[schema(value_type = String)]
    pub dataset_id: DatasetId,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// Who: `user:{id}`, `admin-key@{org}`, `link:{id}`, `anonymous`.
    pub actor: String,
    pub action: AuditAction,
    /// What it was done to: a link id, an e-mail address, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Details that depend on the action (changed fields, counts, …).
    #[serde(default)]
    pub detail: serde_json::Value,
}

impl AuditEntry {
    pub fn new(dataset: &DatasetId, actor: impl Into<String>, action: AuditAction) -> Self {
        Self {
            dataset_id: dataset.clone(),
            at: super::now(),
            actor: actor.into(),
            action,
            target: None,
            detail: serde_json::Value::Null,
        }
    }

    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_scopes_cover_their_subtree_only() {
        let scope = LinkScope::path("/labels/cells/").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(scope.root(), "labels/cells");
        assert!(scope.covers("labels/cells"));
        assert!(scope.covers("labels/cells/zarr.json"));
        assert!(scope.covers("labels/cells/0/c/0/0/0"));
        assert!(!scope.covers("labels/cellsX/zarr.json"));
        assert!(!scope.covers("labels/zarr.json"));
        assert!(!scope.covers("zarr.json"));
        assert!(LinkScope::Dataset.covers("anything/at/all"));
        for bad in ["", "/", "a/../b", "a//b", "..", "a\\b"] {
            assert!(LinkScope::path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn permissions_are_ordered() {
        assert!(LinkPermission::View < LinkPermission::Download);
        assert!(LinkPermission::Download < LinkPermission::Annotate);
    }

    #[test]
    fn usage_deltas_merge_and_add() {
        let t = super::super::now();
        let mut a = UsageDelta {
            views: 1,
            chunk_reads: 2,
            bytes: 100,
            redirects: 0,
            first_access: Some(t),
            last_access: Some(t),
        };
        let later = t + time::Duration::seconds(5);
        a.merge(&UsageDelta {
            views: 0,
            chunk_reads: 3,
            bytes: 50,
            redirects: 1,
            first_access: Some(later),
            last_access: Some(later),
        });
        assert_eq!(
            (a.views, a.chunk_reads, a.bytes, a.redirects),
            (1, 5, 150, 1)
        );
        assert_eq!((a.first_access, a.last_access), (Some(t), Some(later)));
        let mut usage = LinkUsage::default();
        usage.add(&a);
        usage.add(&a);
        assert_eq!(usage.chunk_reads, 10);
        assert_eq!(usage.last_access, Some(later));
        assert!(UsageDelta::default().is_empty());
    }
}
