//! The single place where storage keys are spelled. Table layout (one table, `PK`/`SK`, one
//! index `GSI1PK`/`GSI1SK`):
//!
//! | item | PK | SK | GSI1PK | GSI1SK |
//! | --- | --- | --- | --- | --- |
//! | dataset | `DS#{id}` | `META` | `ORG#{org}#DATASETS` | `{folded name}` |
//! | dataset name claim | `ORG#{org}` | `DSNAME#{folded name}` | | |
//! | share link | `DS#{id}` | `LINK#{link id}` | `ORG#{org}#LINKS` | `{created}#{link id}` |
//! | per-person grant | `DS#{id}` | `GRANT#{email}` | `GRANTEE#{email}` | `{dataset id}` |
//! | audit entry | `AUDIT#{dataset id}` | `{at}#{random}` | | |
//! | gallery entry | `GALLERY` | `{folded display name}#{dataset id}` | | |
//! | annotation | `ANN#{id}` | `META` | `DS#{dataset id}#ANNS` | `{created}#{id}` |
//! | annotation version | `ANN#{id}` | `V#{version, 20 digits}` | | |
//! | owner → annotation | `USER#{owner}` | `ANN#{created}#{id}` | | |
//! | team → shared annotation | `TEAM#{team}` | `ANN#{id}` | | |
//! | token → link | `TOKEN#{sha256 hex}` | `TOKEN` | | |
//! | organization | `ORG#{org}` | `META` | | |
//! | user | `USER#{id}` | `META` | `ORG#{org}#USERS` | `{email}` |
//! | e-mail claim (unique per installation) | `EMAIL#{email}` | `CLAIM` | | |
//! | team | `TEAM#{id}` | `META` | `ORG#{org}#TEAMS` | `{folded name}` |
//! | team name claim | `ORG#{org}` | `TEAMNAME#{folded name}` | | |
//! | login session (refresh token) | `SESSION#{sha256 hex}` | `SESSION` | | |
//! | invitation | `INVITE#{id}` | `META` | `ORG#{org}#INVITES` | `{created}#{id}` |
//! | invitation token → invitation | `INVITETOKEN#{sha256 hex}` | `TOKEN` | | |

use super::Key;
use crate::domain::{
    AnnotationId, Dataset, DatasetId, DatasetName, Email, InviteId, LinkId, OrgId, TeamId,
    Timestamp, TokenHash, UserId,
};

/// Sorts by time: nanoseconds since the epoch, zero-padded.
fn time_key(t: Timestamp) -> String {
    format!("{:020}", t.unix_timestamp_nanos())
}

pub fn dataset(id: &DatasetId) -> Key {
    Key::new(format!("DS#{id}"), "META")
}

pub fn dataset_in_org_index(org: &OrgId, name: &DatasetName) -> Key {
    Key::new(org_datasets_partition(org), name.folded())
}

pub fn org_datasets_partition(org: &OrgId) -> String {
    format!("ORG#{org}#DATASETS")
}

pub fn dataset_name_claim(org: &OrgId, name: &DatasetName) -> Key {
    Key::new(format!("ORG#{org}"), format!("DSNAME#{}", name.folded()))
}

pub fn link(dataset: &DatasetId, link: &LinkId) -> Key {
    Key::new(format!("DS#{dataset}"), format!("LINK#{link}"))
}

/// `(partition, sort-key prefix)` of a dataset's links.
pub fn links_of(dataset: &DatasetId) -> (String, &'static str) {
    (format!("DS#{dataset}"), "LINK#")
}

pub fn org_links_partition(org: &OrgId) -> String {
    format!("ORG#{org}#LINKS")
}

pub fn link_in_org_index(org: &OrgId, link: &LinkId, created: Timestamp) -> Key {
    Key::new(
        org_links_partition(org),
        format!("{}#{link}", time_key(created)),
    )
}

pub fn grant(dataset: &DatasetId, email: &Email) -> Key {
    Key::new(format!("DS#{dataset}"), format!("GRANT#{email}"))
}

/// `(partition, sort-key prefix)` of a dataset's grants.
pub fn grants_of(dataset: &DatasetId) -> (String, &'static str) {
    (format!("DS#{dataset}"), "GRANT#")
}

pub fn grantee_partition(email: &Email) -> String {
    format!("GRANTEE#{email}")
}

pub fn grant_by_grantee_index(email: &Email, dataset: &DatasetId) -> Key {
    Key::new(grantee_partition(email), dataset.as_str())
}

pub fn audit_partition(dataset: &DatasetId) -> String {
    format!("AUDIT#{dataset}")
}

/// An audit entry's key; `nonce` keeps entries of the same instant apart.
pub fn audit(dataset: &DatasetId, at: Timestamp, nonce: &str) -> Key {
    Key::new(
        audit_partition(dataset),
        format!("{}#{nonce}", time_key(at)),
    )
}

pub const GALLERY_PARTITION: &str = "GALLERY";

/// Gallery entries sort by display name (case-folded; a name before the longer names it
/// begins: the separator sorts below every character a name keeps).
pub fn gallery(d: &Dataset) -> Key {
    let name: String = d
        .display_name
        .to_lowercase()
        .chars()
        .map(|c| if c < ' ' { ' ' } else { c })
        .take(100)
        .collect();
    Key::new(GALLERY_PARTITION, format!("{name}\u{1}{}", d.id))
}

pub fn annotation(id: &AnnotationId) -> Key {
    Key::new(format!("ANN#{id}"), "META")
}

pub fn dataset_annotations_partition(dataset: &DatasetId) -> String {
    format!("DS#{dataset}#ANNS")
}

pub fn annotation_in_dataset_index(
    dataset: &DatasetId,
    id: &AnnotationId,
    created: Timestamp,
) -> Key {
    Key::new(
        dataset_annotations_partition(dataset),
        format!("{}#{id}", time_key(created)),
    )
}

pub fn annotation_version(id: &AnnotationId, version: u64) -> Key {
    Key::new(format!("ANN#{id}"), format!("V#{version:020}"))
}

/// `(partition, sort-key prefix)` of an annotation's versions.
pub fn annotation_versions(id: &AnnotationId) -> (String, &'static str) {
    (format!("ANN#{id}"), "V#")
}

pub fn owned_annotation(owner: &UserId, id: &AnnotationId, created: Timestamp) -> Key {
    Key::new(
        format!("USER#{owner}"),
        format!("ANN#{}#{id}", time_key(created)),
    )
}

/// `(partition, sort-key prefix)` of a user's annotations.
pub fn owned_annotations(owner: &UserId) -> (String, &'static str) {
    (format!("USER#{owner}"), "ANN#")
}

pub fn team_annotation(team: &TeamId, id: &AnnotationId) -> Key {
    Key::new(format!("TEAM#{team}"), format!("ANN#{id}"))
}

/// `(partition, sort-key prefix)` of the annotations shared with a team.
pub fn team_annotations(team: &TeamId) -> (String, &'static str) {
    (format!("TEAM#{team}"), "ANN#")
}

pub fn token(hash: &TokenHash) -> Key {
    Key::new(format!("TOKEN#{}", hash.to_hex()), "TOKEN")
}

pub fn org(org: &OrgId) -> Key {
    Key::new(format!("ORG#{org}"), "META")
}

pub fn user(id: &UserId) -> Key {
    Key::new(format!("USER#{id}"), "META")
}

pub fn org_users_partition(org: &OrgId) -> String {
    format!("ORG#{org}#USERS")
}

pub fn user_in_org_index(org: &OrgId, email: &Email) -> Key {
    Key::new(org_users_partition(org), email.as_str())
}

pub fn email_claim(email: &Email) -> Key {
    Key::new(format!("EMAIL#{email}"), "CLAIM")
}

pub fn team(id: &TeamId) -> Key {
    Key::new(format!("TEAM#{id}"), "META")
}

pub fn org_teams_partition(org: &OrgId) -> String {
    format!("ORG#{org}#TEAMS")
}

pub fn team_in_org_index(org: &OrgId, name: &str) -> Key {
    Key::new(org_teams_partition(org), name.to_lowercase())
}

pub fn team_name_claim(org: &OrgId, name: &str) -> Key {
    Key::new(
        format!("ORG#{org}"),
        format!("TEAMNAME#{}", name.to_lowercase()),
    )
}

pub fn session(hash: &TokenHash) -> Key {
    Key::new(format!("SESSION#{}", hash.to_hex()), "SESSION")
}

pub fn invite(id: &InviteId) -> Key {
    Key::new(format!("INVITE#{id}"), "META")
}

pub fn org_invites_partition(org: &OrgId) -> String {
    format!("ORG#{org}#INVITES")
}

pub fn invite_in_org_index(org: &OrgId, id: &InviteId, created: Timestamp) -> Key {
    Key::new(
        org_invites_partition(org),
        format!("{}#{id}", time_key(created)),
    )
}

pub fn invite_token(hash: &TokenHash) -> Key {
    Key::new(format!("INVITETOKEN#{}", hash.to_hex()), "TOKEN")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_do_not_collide_across_kinds() {
        let ds = DatasetId::generate();
        let l = LinkId::generate();
        let (pk, prefix) = links_of(&ds);
        assert_eq!(link(&ds, &l).pk, pk);
        assert!(link(&ds, &l).sk.starts_with(prefix));
        assert_eq!(dataset(&ds).pk, pk);
        assert!(!dataset(&ds).sk.starts_with(prefix));
        let email = Email::parse("a@b.org").unwrap_or_else(|e| panic!("{e}"));
        let (gpk, gprefix) = grants_of(&ds);
        assert_eq!(grant(&ds, &email).pk, gpk);
        assert!(grant(&ds, &email).sk.starts_with(gprefix));
        assert!(!link(&ds, &l).sk.starts_with(gprefix));
        assert_ne!(audit_partition(&ds), pk);
        let a = AnnotationId::generate();
        let (vpk, vprefix) = annotation_versions(&a);
        assert_eq!(annotation(&a).pk, vpk);
        assert!(!annotation(&a).sk.starts_with(vprefix));
        assert!(annotation_version(&a, 2).sk < annotation_version(&a, 10).sk);
        let owner = UserId::generate();
        let (opk, oprefix) = owned_annotations(&owner);
        assert_eq!(user(&owner).pk, opk);
        assert!(!user(&owner).sk.starts_with(oprefix));
        let t = TeamId::generate();
        let (tpk, tprefix) = team_annotations(&t);
        assert_eq!(team(&t).pk, tpk);
        assert!(!team(&t).sk.starts_with(tprefix));
    }
}
