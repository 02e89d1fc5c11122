//! Annotations on a dataset: their record (owner, visibility, team sharing, origin of a copy)
//! and their saved versions. The content of a version is a skeleton or a volume description;
//! each accepted save makes the next version, and every version stays readable.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{AnnotationId, DatasetId, OrgId, ParseError, TeamId, Timestamp, UserId};

/// Who may read an annotation besides its owner (webKnossos' three levels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum AnnotationVisibility {
    /// The owner, the managers of the owner's teams, and the organization's admins.
    Private,
    /// Also every member of the owner's organization who can see the dataset.
    #[default]
    Internal,
    /// Everyone — but only where the dataset itself is public or reached through a link.
    Public,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnnotationKind {
    /// Trees of nodes and edges (tracings), with comments, branch points and groups.
    Skeleton,
    /// A segmentation layer written as Zarr chunks.
    Volume,
}

/// An annotation's name: 1–200 characters, no control characters.
pub fn annotation_name(name: &str) -> Result<String, ParseError> {
    let trimmed = name.trim();
    if trimmed.is_empty() || trimmed.chars().count() > 200 {
        return Err(ParseError::new(
            "annotation name",
            "must be 1-200 characters",
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(ParseError::new(
            "annotation name",
            "must not contain control characters",
        ));
    }
    Ok(trimmed.to_owned())
}

/// Where a copy came from ("copy to my account" remembers it; nothing syncs afterwards).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AnnotationOrigin {
    #[schema(value_type = String)]
    pub annotation: AnnotationId,
    /// The version that was copied.
    pub version: u64,
}

/// An annotation's record. `version` counts accepted saves (0: nothing saved yet); `revision`
/// counts every change of the record (saves, renames, visibility, sharing) and guards them all.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Annotation {
    #[schema(value_type = String)]
    pub id: AnnotationId,
    #[schema(value_type = String)]
    pub dataset_id: DatasetId,
    /// The owner's organization.
    #[schema(value_type = String)]
    pub org: OrgId,
    #[schema(value_type = String)]
    pub owner: UserId,
    pub name: String,
    pub description: String,
    pub kind: AnnotationKind,
    pub visibility: AnnotationVisibility,
    /// Teams it is shared with (their members find it under "shared with my teams").
    #[schema(value_type = Vec<String>)]
    pub teams: BTreeSet<TeamId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forked_from: Option<AnnotationOrigin>,
    /// A volume annotation's geometry (fixed at creation); none for skeletons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<super::volume::VolumeSpec>,
    pub version: u64,
    pub revision: u64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    /// Set while deleted (soft: restorable).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub deleted_at: Option<Timestamp>,
}

/// Where a version's content is kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "in", rename_all = "snake_case")]
pub enum VersionBody {
    /// Small contents live in the version item itself.
    Inline { content: serde_json::Value },
    /// Larger ones in object storage (S3), never near DynamoDB's 400 KB item limit.
    Object {
        key: String,
        bytes: u64,
        sha256: String,
    },
}

/// Contents up to this size (serialized) stay in the version item.
pub const MAX_INLINE_BODY_BYTES: usize = 32 * 1024;

/// A skeleton save stores its update actions only; every this many versions it stores the
/// whole skeleton instead, so that reading any version applies at most this many batches.
pub const SNAPSHOT_EVERY: u64 = 32;

/// One accepted save.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnnotationVersion {
    pub annotation: AnnotationId,
    pub version: u64,
    /// Who saved it (`user:{id}`, `link:{id}`).
    pub author: String,
    #[serde(with = "time::serde::rfc3339")]
    pub saved_at: Timestamp,
    /// How many update actions it applied.
    pub actions: u32,
    pub body: VersionBody,
    /// None: the body is the whole content at this version (a snapshot). `Some(s)`: the body
    /// is this save's update actions, to be applied on top of snapshot version `s` and the
    /// saves between (webKnossos keeps skeletons the same way: update batches plus snapshots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_of: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(annotation_name("  axon 3 "), Ok("axon 3".to_owned()));
        for bad in ["", "   ", "a\u{7}b", &"x".repeat(201)] {
            assert!(annotation_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn version_bodies_say_where_they_live() {
        let inline = VersionBody::Inline {
            content: serde_json::json!({"trees": []}),
        };
        let json = serde_json::to_value(&inline).unwrap_or_default();
        assert_eq!(json["in"], "inline");
        let stored = VersionBody::Object {
            key: "annotations/x/v1.json".into(),
            bytes: 10,
            sha256: "ab".into(),
        };
        let back: VersionBody =
            serde_json::from_value(serde_json::to_value(&stored).unwrap_or_default())
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, stored);
    }
}
