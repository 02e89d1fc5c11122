//! Datasets, their layers and multiscale levels, and share links.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use std::collections::BTreeSet;

use super::{
    DatasetId, LinkId, LinkPermission, LinkScope, LinkUsage, OrgId, ParseError, StorageUrl, TeamId,
    Timestamp, TokenHash, UserId,
};

/// A dataset's name within its organization: `[A-Za-z0-9._-]{1,100}`, unique per organization.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DatasetName(String);

impl DatasetName {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let ok = (1..=100).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            && !s.starts_with('.');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ParseError::new(
                "dataset name",
                "must be 1-100 characters of A-Z, a-z, 0-9, '.', '_' and '-', not starting with '.'",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-folded form that uniqueness is decided on.
    pub fn folded(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl TryFrom<String> for DatasetName {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        Self::parse(&s)
    }
}

impl From<DatasetName> for String {
    fn from(n: DatasetName) -> String {
        n.0
    }
}

/// Who may read a dataset without any other grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Everyone, without login, at `/data/{id}/...`.
    Public,
    /// Only its owner, its organization's admins and dataset managers, members of its allowed
    /// teams, the people it is shared with, and holders of a share link.
    #[default]
    Private,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum ZarrFormat {
    #[serde(rename = "2")]
    V2,
    #[serde(rename = "3")]
    V3,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LayerKind {
    /// An OME-Zarr multiscale image.
    Image,
    /// An OME-Zarr label image (segmentation).
    Labels,
    /// A plain Zarr array without OME metadata.
    Array,
}

/// One resolution level of a layer: one Zarr array.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Level {
    /// The array's key within the dataset (`""` when the dataset root is the array).
    pub path: String,
    pub shape: Vec<u64>,
    /// The unit a reader fetches: the chunk, or the inner chunk of a sharded array.
    pub chunk_shape: Vec<u64>,
    /// For Zarr v3 sharding: the shard (stored object) shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard_shape: Option<Vec<u64>>,
    /// The Zarr data type (`uint16`, `float32`, …).
    pub data_type: String,
    /// The codec or compressor names in order (`bytes`, `zstd`, `sharding_indexed`, …).
    pub codecs: Vec<String>,
    /// OME-Zarr `scale` transformation, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<Vec<f64>>,
    /// OME-Zarr `translation` transformation, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub translation: Option<Vec<f64>>,
}

/// A viewer layer: an image, a label image, or a plain array, with its levels finest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Layer {
    pub name: String,
    pub kind: LayerKind,
    /// The layer's group key within the dataset (`""` for the root).
    pub path: String,
    /// Axis names (OME `axes`, or Zarr `dimension_names`), when known.
    pub axes: Vec<String>,
    /// Axis units (OME `axes[].unit`), aligned with `axes`; empty strings where none is given.
    #[serde(default)]
    pub units: Vec<String>,
    pub levels: Vec<Level>,
}

/// A registered dataset. `version` increases with every change (optimistic concurrency).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Dataset {
    #[schema(value_type = String, example = "k3v7q2mnb4xw5rta")]
    pub id: DatasetId,
    #[schema(value_type = String)]
    pub org: OrgId,
    #[schema(value_type = String)]
    pub name: DatasetName,
    pub display_name: String,
    pub description: String,
    #[schema(value_type = String, example = "s3://lab-data/em/cells.ome.zarr")]
    pub storage: StorageUrl,
    pub visibility: Visibility,
    /// Shown in the public gallery (only meaningful when public).
    pub featured: bool,
    /// Who registered it (`None` for the installation's admin key).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub owner: Option<UserId>,
    /// Teams of its organization whose members may read and annotate it.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub allowed_teams: BTreeSet<TeamId>,
    pub zarr_format: ZarrFormat,
    /// OME-Zarr version (`0.4`, `0.5`) when the root carries OME metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ome_version: Option<String>,
    pub layers: Vec<Layer>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    pub version: u64,
}

/// What registration needs besides what is read from the hierarchy itself.
#[derive(Clone, Debug)]
pub struct NewDataset {
    pub org: OrgId,
    pub name: DatasetName,
    pub display_name: Option<String>,
    pub description: String,
    pub storage: StorageUrl,
    pub visibility: Visibility,
    pub featured: bool,
}

/// A partial update of a dataset's descriptive and access fields.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DatasetPatch {
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub visibility: Option<Visibility>,
    pub featured: Option<bool>,
    pub allowed_teams: Option<BTreeSet<TeamId>>,
}

impl DatasetPatch {
    pub fn apply(&self, d: &mut Dataset) {
        if let Some(v) = &self.display_name {
            d.display_name.clone_from(v);
        }
        if let Some(v) = &self.description {
            d.description.clone_from(v);
        }
        if let Some(v) = self.visibility {
            d.visibility = v;
        }
        if let Some(v) = self.featured {
            d.featured = v;
        }
        if let Some(v) = &self.allowed_teams {
            d.allowed_teams.clone_from(v);
        }
    }
}

impl Dataset {
    /// Whether it is listed in the public gallery.
    pub fn in_gallery(&self) -> bool {
        self.visibility == Visibility::Public && self.featured
    }
}

/// A secret share link to a dataset. The token itself is never stored, only its hash.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShareLink {
    pub id: LinkId,
    pub dataset_id: DatasetId,
    /// The dataset's organization (links are listed per organization).
    pub org: OrgId,
    pub token_hash: TokenHash,
    pub label: String,
    #[serde(default)]
    pub scope: LinkScope,
    #[serde(default)]
    pub permission: LinkPermission,
    /// Argon2id PHC string when the link needs a password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// The view a Neuroglancer state of this link opens at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view: Option<crate::neuroglancer::ViewParams>,
    #[serde(default)]
    pub usage: LinkUsage,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<Timestamp>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<Timestamp>,
    /// Who made it (a principal's description, e.g. `admin-key`).
    pub created_by: String,
    /// The account that made it, if any.
    #[serde(default)]
    pub created_by_user: Option<UserId>,
    pub version: u64,
}

/// The state of a link at a moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LinkState {
    Active,
    Expired,
    Revoked,
}

impl ShareLink {
    /// A new link to the whole of a dataset: unlabelled, view permission, no password, stored
    /// view or expiry, unused, first version. Change what differs with struct update syntax,
    /// e.g. `ShareLink { permission: LinkPermission::Download, ..ShareLink::new(…) }`.
    pub fn new(
        dataset_id: DatasetId,
        org: OrgId,
        token_hash: TokenHash,
        created_by: String,
    ) -> Self {
        Self {
            id: LinkId::generate(),
            dataset_id,
            org,
            token_hash,
            label: String::new(),
            scope: LinkScope::Dataset,
            permission: LinkPermission::View,
            password_hash: None,
            view: None,
            usage: LinkUsage::default(),
            created_at: super::now(),
            expires_at: None,
            revoked_at: None,
            created_by,
            created_by_user: None,
            version: 1,
        }
    }

    pub fn state_at(&self, now: Timestamp) -> LinkState {
        if self.revoked_at.is_some() {
            LinkState::Revoked
        } else if self.expires_at.is_some_and(|e| e <= now) {
            LinkState::Expired
        } else {
            LinkState::Active
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{LinkToken, now};
    use time::Duration;

    #[test]
    fn names_are_checked_and_folded() {
        assert_eq!(
            DatasetName::parse("Cells_v2.ome").map(|n| n.folded()),
            Ok("cells_v2.ome".into())
        );
        for bad in ["", ".hidden", "a/b", "a b", &"x".repeat(101)] {
            assert!(DatasetName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn link_state_follows_revocation_then_expiry() {
        let t = now();
        let mut link = ShareLink {
            created_at: t,
            expires_at: Some(t + Duration::hours(1)),
            ..ShareLink::new(
                DatasetId::generate(),
                crate::domain::OrgId::parse("home-lab").unwrap_or_else(|e| panic!("{e}")),
                LinkToken::generate().hash(),
                "test".into(),
            )
        };
        assert_eq!(link.state_at(t), LinkState::Active);
        assert_eq!(link.state_at(t + Duration::hours(2)), LinkState::Expired);
        link.revoked_at = Some(t);
        assert_eq!(link.state_at(t), LinkState::Revoked);
    }
}
