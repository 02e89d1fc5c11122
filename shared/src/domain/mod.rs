//! Domain types. Everything that crosses the edge is parsed into one of these first.

mod account;
mod annotation;
mod dataset;
mod ids;
mod key;
mod people;
mod sharing;
pub mod skeleton;
mod storage_url;
mod token;
pub mod volume;

pub use account::{Email, OrgRole, Password, TeamRole};
pub use annotation::{
    Annotation, AnnotationKind, AnnotationOrigin, AnnotationVersion, AnnotationVisibility,
    MAX_INLINE_BODY_BYTES, SNAPSHOT_EVERY, VersionBody, annotation_name,
};
pub use dataset::{
    Dataset, DatasetName, DatasetPatch, Layer, LayerKind, Level, LinkState, NewDataset, ShareLink,
    Visibility, ZarrFormat,
};
pub use ids::{AnnotationId, DatasetId, InviteId, LinkId, OrgId, TeamId, UserId};
pub use key::ObjectKey;
pub use people::{INVITE_LIFETIME_DAYS, Invite, InviteState, Organization, Session, Team, User};
pub use sharing::{
    AuditAction, AuditEntry, Grant, LinkPermission, LinkScope, LinkUsage, UsageDelta,
};
pub use storage_url::StorageUrl;
pub use token::{LinkToken, TokenHash};

/// A value that did not parse into a domain type. Its text is safe to show to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {why}")]
pub struct ParseError {
    pub what: &'static str,
    pub why: &'static str,
}

impl ParseError {
    pub const fn new(what: &'static str, why: &'static str) -> Self {
        Self { what, why }
    }
}

/// Seconds since the Unix epoch; the one clock type stored everywhere.
pub type Timestamp = time::OffsetDateTime;

pub fn now() -> Timestamp {
    time::OffsetDateTime::now_utc()
}
