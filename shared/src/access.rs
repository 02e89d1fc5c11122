//! The single access decision. Every route asks [`decide`]; nothing else compares roles,
//! visibilities or link states. It is a pure function of who asks, what they want and the facts
//! of the resource, tested as a full table below.

use std::collections::{BTreeMap, BTreeSet};

use crate::domain::{
    AnnotationId, AnnotationVisibility, DatasetId, LinkId, LinkPermission, LinkScope, LinkState,
    OrgId, OrgRole, TeamId, TeamRole, Timestamp, UserId, Visibility,
};

/// Who is asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    /// No credentials.
    Anonymous,
    /// The holder of the installation's admin key: an administrator of its organization.
    OrgAdmin { org: OrgId },
    /// A signed-in user (as stored now: role, teams and whether the account is active).
    User(MemberFacts),
    /// The bearer of a share link (a capability in the URL), as resolved from storage.
    LinkHolder(LinkFacts),
}

/// A signed-in user, as far as the decision needs to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberFacts {
    /// `None` for the installation's admin key, which is nobody in particular.
    pub id: Option<UserId>,
    pub org: OrgId,
    pub role: OrgRole,
    pub teams: BTreeMap<TeamId, TeamRole>,
    pub active: bool,
    /// The account's e-mail address (per-person shares are made to it).
    pub email: Option<crate::domain::Email>,
}

impl Actor {
    /// Who this is, for audit trails and `created_by` fields (never a secret).
    pub fn describe(&self) -> String {
        match self {
            Actor::OrgAdmin { org } => format!("admin-key@{org}"),
            Actor::Anonymous => "anonymous".into(),
            Actor::LinkHolder(link) => format!("link:{}", link.id),
            Actor::User(m) => {
                m.id.as_ref()
                    .map_or_else(|| format!("admin-key@{}", m.org), |id| format!("user:{id}"))
            }
        }
    }

    /// The signed-in user's id, if the caller is one.
    pub fn user_id(&self) -> Option<&UserId> {
        match self {
            Actor::User(m) => m.id.as_ref(),
            _ => None,
        }
    }

    /// The organization the caller acts in, if any.
    pub fn org(&self) -> Option<&OrgId> {
        match self {
            Actor::OrgAdmin { org } => Some(org),
            Actor::User(m) => Some(&m.org),
            _ => None,
        }
    }
}

impl From<&crate::domain::Grant> for GrantFacts {
    fn from(g: &crate::domain::Grant) -> Self {
        Self {
            can_modify: g.can_modify,
            can_share: g.can_share,
        }
    }
}

impl<'a> DatasetFacts<'a> {
    pub fn of(d: &'a crate::domain::Dataset, grant: Option<GrantFacts>) -> Self {
        Self {
            id: &d.id,
            org: &d.org,
            visibility: d.visibility,
            owner: d.owner.as_ref(),
            allowed_teams: &d.allowed_teams,
            grant,
        }
    }
}

impl LinkFacts {
    /// The facts of a stored link, with the password state of this request.
    pub fn of(link: &crate::domain::ShareLink, unlocked: bool) -> Self {
        Self {
            id: link.id.clone(),
            dataset: link.dataset_id.clone(),
            revoked: link.revoked_at.is_some(),
            expires_at: link.expires_at,
            scope: link.scope.clone(),
            permission: link.permission,
            password: match (&link.password_hash, unlocked) {
                (None, _) => PasswordState::NotSet,
                (Some(_), true) => PasswordState::Unlocked,
                (Some(_), false) => PasswordState::Required,
            },
        }
    }
}

impl From<crate::domain::User> for MemberFacts {
    fn from(u: crate::domain::User) -> Self {
        Self {
            id: Some(u.id),
            org: u.org,
            role: u.role,
            teams: u.teams,
            active: u.active,
            email: Some(u.email),
        }
    }
}

impl MemberFacts {
    /// The installation's admin key: an administrator of its organization, nobody in particular.
    fn admin_key(org: &OrgId) -> Self {
        Self {
            id: None,
            org: org.clone(),
            role: OrgRole::Admin,
            teams: BTreeMap::new(),
            active: true,
            email: None,
        }
    }

    fn is(&self, user: &UserId) -> bool {
        self.id.as_ref() == Some(user)
    }

    fn manages(&self, team: &TeamId) -> bool {
        self.teams.get(team) == Some(&TeamRole::Manager)
    }

    fn manages_any(&self) -> bool {
        self.teams.values().any(|r| *r == TeamRole::Manager)
    }
}

/// A user as the object of an action.
#[derive(Clone, Copy, Debug)]
pub struct UserTarget<'a> {
    pub id: &'a UserId,
    pub org: &'a OrgId,
    pub role: OrgRole,
    pub teams: &'a BTreeMap<TeamId, TeamRole>,
}

/// An invitation as the object of an action.
#[derive(Clone, Copy, Debug)]
pub struct InviteTarget<'a> {
    pub org: &'a OrgId,
    pub invited_by: Option<&'a UserId>,
    pub teams: &'a BTreeMap<TeamId, TeamRole>,
}

/// Whether a link's password has been given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordState {
    /// The link has no password.
    NotSet,
    /// The link has one and this request carries no valid unlock (or a wrong password).
    Required,
    /// The request carries an unlock the server signed after the right password.
    Unlocked,
}

/// What a link grants, as far as the decision needs to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkFacts {
    /// Which link (for audit trails and authors; not the secret token).
    pub id: LinkId,
    pub dataset: DatasetId,
    pub revoked: bool,
    pub expires_at: Option<Timestamp>,
    pub scope: LinkScope,
    pub permission: LinkPermission,
    pub password: PasswordState,
}

impl LinkFacts {
    pub fn state_at(&self, now: Timestamp) -> LinkState {
        if self.revoked {
            LinkState::Revoked
        } else if self.expires_at.is_some_and(|e| e <= now) {
            LinkState::Expired
        } else {
            LinkState::Active
        }
    }
}

/// The asking user's per-person share of a dataset (bound to their account).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantFacts {
    pub can_modify: bool,
    pub can_share: bool,
}

/// The facts of a dataset that access depends on, including the asking user's grant.
#[derive(Clone, Copy, Debug)]
pub struct DatasetFacts<'a> {
    pub id: &'a DatasetId,
    pub org: &'a OrgId,
    pub visibility: Visibility,
    pub owner: Option<&'a UserId>,
    pub allowed_teams: &'a BTreeSet<TeamId>,
    /// The caller's grant on this dataset, when they have one.
    pub grant: Option<GrantFacts>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Read one metadata document or chunk ([`Resource::Object`]).
    ReadData,
    /// See the dataset's record (layers, description).
    ViewDataset,
    /// List objects with presigned URLs for bulk download ([`Resource::Object`]: the prefix).
    Download,
    /// Create and save annotations on the dataset.
    Annotate,
    /// Change its description, visibility, featured flag or allowed teams.
    UpdateDataset,
    /// Create, list and revoke its share links.
    ManageLinks,
    /// Share it with further people (per-person grants).
    Share,
    /// See everyone with access; change or revoke per-person grants.
    ManageShares,
    /// Read its audit trail.
    ViewAudit,
    /// Read an annotation (its record, versions, downloads).
    ReadAnnotation,
    /// Save new versions of an annotation.
    EditAnnotation,
    /// Rename, delete or restore an annotation; change its visibility or team sharing.
    ManageAnnotation,
    /// Copy an annotation to one's own account.
    CopyAnnotation,
    /// List an organization's datasets.
    ListDatasets,
    /// Register a dataset in an organization.
    RegisterDataset,
    /// See a user's record.
    ViewUser,
    /// List an organization's users (team managers see their teams' and unassigned users).
    ListUsers,
    /// Activate, deactivate, reactivate; change a user's team memberships.
    ManageUser,
    /// Change organization roles (admin, dataset manager, user).
    SetRole,
    /// Create teams.
    CreateTeam,
    /// Add members to a team, remove them, change their team role.
    ManageTeam,
    /// Send e-mail invitations.
    InviteUsers,
    /// Resend or revoke an invitation.
    ManageInvite,
    /// Set and remove experience levels.
    EditExperience,
}

#[derive(Clone, Copy, Debug)]
pub enum Resource<'a> {
    Dataset(DatasetFacts<'a>),
    /// One key (or, for [`Action::Download`], a prefix) inside a dataset.
    Object {
        dataset: DatasetFacts<'a>,
        key: &'a str,
    },
    /// Organization-wide actions (registering datasets, listing users, creating teams, …).
    Organization(&'a OrgId),
    User(UserTarget<'a>),
    Team {
        org: &'a OrgId,
        team: &'a TeamId,
    },
    Invite(InviteTarget<'a>),
    Annotation(AnnotationFacts<'a>),
}

/// The facts of an annotation that access depends on, with its dataset's.
#[derive(Clone, Copy, Debug)]
pub struct AnnotationFacts<'a> {
    pub id: &'a AnnotationId,
    pub owner: &'a UserId,
    /// The owner's organization.
    pub org: &'a OrgId,
    pub visibility: AnnotationVisibility,
    /// The owner's teams: their managers may read even private annotations.
    pub owner_teams: &'a BTreeSet<TeamId>,
    pub deleted: bool,
    pub dataset: DatasetFacts<'a>,
}

impl<'a> AnnotationFacts<'a> {
    /// The facts of `annotation`, whose owner is in `owner_teams`, on a dataset with `dataset`.
    pub fn of(
        annotation: &'a crate::domain::Annotation,
        owner_teams: &'a BTreeSet<TeamId>,
        dataset: DatasetFacts<'a>,
    ) -> Self {
        Self {
            id: &annotation.id,
            owner: &annotation.owner,
            org: &annotation.org,
            visibility: annotation.visibility,
            owner_teams,
            deleted: annotation.deleted_at.is_some(),
            dataset,
        }
    }
}

/// Why a request is refused; the HTTP status follows from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denial {
    /// Credentials are needed (401).
    Unauthenticated,
    /// Known caller, not allowed (403).
    Forbidden,
    /// Pretend it does not exist, so private ids leak nothing (404).
    Hidden,
    /// The link was revoked (410).
    LinkRevoked,
    /// The link has expired (410).
    LinkExpired,
    /// The link needs its password (401).
    LinkPasswordRequired,
    /// The link does not reach this part of the dataset, or does not allow this (403).
    OutOfScope,
    /// The caller's account is deactivated (403).
    Deactivated,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(Denial),
}

pub fn decide(actor: &Actor, action: Action, resource: Resource<'_>, now: Timestamp) -> Decision {
    use Decision::{Allow, Deny};
    let admin_key;
    if let Resource::Annotation(a) = resource {
        return on_annotation(actor, action, &a, now);
    }
    let member = match actor {
        Actor::Anonymous => return anonymous(action, resource),
        Actor::LinkHolder(link) => return link_holder(link, action, resource, now),
        Actor::OrgAdmin { org } => {
            admin_key = MemberFacts::admin_key(org);
            &admin_key
        }
        Actor::User(m) => m,
    };
    if !member.active {
        return Deny(Denial::Deactivated);
    }
    let admin = member.role == OrgRole::Admin;
    match resource {
        Resource::Dataset(d) | Resource::Object { dataset: d, .. } => {
            member_on_dataset(member, action, &d)
        }
        Resource::Annotation(_) => Deny(Denial::Hidden),
        Resource::Organization(org) => {
            if &member.org != org {
                return Deny(Denial::Forbidden);
            }
            let allowed = match action {
                Action::ListDatasets | Action::RegisterDataset => {
                    member.role >= OrgRole::DatasetManager
                }
                Action::ListUsers | Action::InviteUsers => admin || member.manages_any(),
                Action::CreateTeam | Action::EditExperience | Action::SetRole => admin,
                _ => false,
            };
            if allowed {
                Allow
            } else {
                Deny(Denial::Forbidden)
            }
        }
        Resource::User(target) => {
            if &member.org != target.org {
                return Deny(Denial::Hidden);
            }
            // A team manager reaches the members of the teams they manage, and people in no
            // team yet (whom they may activate into theirs) — never an administrator.
            let reaches = target.role != OrgRole::Admin
                && member.manages_any()
                && (target.teams.is_empty() || target.teams.keys().any(|t| member.manages(t)));
            let allowed = match action {
                Action::ViewUser => admin || member.is(target.id) || reaches,
                Action::ManageUser => admin || (reaches && !member.is(target.id)),
                Action::SetRole | Action::EditExperience => admin,
                _ => false,
            };
            if allowed {
                Allow
            } else {
                Deny(Denial::Forbidden)
            }
        }
        Resource::Team { org, team } => {
            if &member.org != org {
                return Deny(Denial::Hidden);
            }
            match action {
                Action::ManageTeam if admin || member.manages(team) => Allow,
                _ => Deny(Denial::Forbidden),
            }
        }
        Resource::Invite(invite) => {
            if &member.org != invite.org {
                return Deny(Denial::Hidden);
            }
            let manages_all =
                !invite.teams.is_empty() && invite.teams.keys().all(|t| member.manages(t));
            match action {
                Action::ManageInvite
                    if admin
                        || invite.invited_by.is_some_and(|by| member.is(by))
                        || manages_all =>
                {
                    Allow
                }
                _ => Deny(Denial::Forbidden),
            }
        }
    }
}

/// Annotations: the owner edits (while they may annotate the dataset); the owner and the
/// organization's admins manage; others read according to the visibility — private: the
/// managers of the owner's teams; internal: the owner's organization; public: everyone — and
/// only while they can see the dataset; a share link reads public annotations of its dataset,
/// or the one annotation it is scoped to (and edits it with `annotate` permission).
fn on_annotation(
    actor: &Actor,
    action: Action,
    a: &AnnotationFacts<'_>,
    now: Timestamp,
) -> Decision {
    use Decision::{Allow, Deny};
    let dataset = |act| decide(actor, act, Resource::Dataset(a.dataset), now) == Allow;
    let admin_key;
    let member = match actor {
        Actor::LinkHolder(link) => {
            if let Deny(why) = decide(
                actor,
                Action::ViewDataset,
                Resource::Dataset(a.dataset),
                now,
            ) {
                return Deny(why);
            }
            let this =
                matches!(&link.scope, LinkScope::Annotation { annotation } if annotation == a.id);
            let public = a.visibility == AnnotationVisibility::Public
                && matches!(link.scope, LinkScope::Dataset);
            if a.deleted || !(this || public) {
                return Deny(Denial::Hidden);
            }
            return match action {
                Action::ReadAnnotation => Allow,
                Action::EditAnnotation if this && link.permission >= LinkPermission::Annotate => {
                    Allow
                }
                _ => Deny(Denial::Forbidden),
            };
        }
        Actor::Anonymous => {
            if !dataset(Action::ViewDataset) {
                return Deny(Denial::Hidden);
            }
            return match action {
                Action::ReadAnnotation
                    if !a.deleted && a.visibility == AnnotationVisibility::Public =>
                {
                    Allow
                }
                _ => Deny(Denial::Unauthenticated),
            };
        }
        Actor::OrgAdmin { org } => {
            admin_key = MemberFacts::admin_key(org);
            &admin_key
        }
        Actor::User(m) => m,
    };
    if !member.active {
        return Deny(Denial::Deactivated);
    }
    let owner = member.is(a.owner);
    let same_org = &member.org == a.org;
    let admin = same_org && member.role == OrgRole::Admin;
    let view = dataset(Action::ViewDataset);
    let readable = owner
        || admin
        || (!a.deleted
            && view
            && ((same_org
                && (a.visibility != AnnotationVisibility::Private
                    || a.owner_teams.iter().any(|t| member.manages(t))))
                || a.visibility == AnnotationVisibility::Public));
    if !readable {
        return Deny(if same_org || view {
            Denial::Forbidden
        } else {
            Denial::Hidden
        });
    }
    let allowed = match action {
        Action::ReadAnnotation => true,
        Action::EditAnnotation => owner && !a.deleted && dataset(Action::Annotate),
        Action::ManageAnnotation => owner || admin,
        Action::CopyAnnotation => !a.deleted && dataset(Action::Annotate),
        _ => false,
    };
    if allowed {
        Allow
    } else {
        Deny(Denial::Forbidden)
    }
}

/// Reading: what a public dataset allows everyone.
fn reading(action: Action) -> bool {
    matches!(
        action,
        Action::ReadData | Action::ViewDataset | Action::Download
    )
}

fn member_on_dataset(member: &MemberFacts, action: Action, d: &DatasetFacts<'_>) -> Decision {
    use Decision::{Allow, Deny};
    let same_org = &member.org == d.org;
    // Owners, and their organization's admins and dataset managers, may do everything.
    let owns = d.owner.is_some_and(|o| member.is(o));
    if owns || (same_org && member.role >= OrgRole::DatasetManager) {
        return Allow;
    }
    let in_team = same_org && d.allowed_teams.iter().any(|t| member.teams.contains_key(t));
    let allowed = match d.grant {
        Some(g) => match action {
            a if reading(a) => true,
            Action::Annotate => g.can_modify || in_team,
            Action::Share => g.can_share,
            _ => false,
        },
        None if in_team => reading(action) || action == Action::Annotate,
        None => d.visibility == Visibility::Public && reading(action),
    };
    match allowed {
        true => Allow,
        false if same_org || d.grant.is_some() || d.visibility == Visibility::Public => {
            Deny(Denial::Forbidden)
        }
        false => Deny(Denial::Hidden),
    }
}

fn anonymous(action: Action, resource: Resource<'_>) -> Decision {
    match resource {
        Resource::Dataset(d) | Resource::Object { dataset: d, .. } => match d.visibility {
            Visibility::Public if reading(action) => Decision::Allow,
            Visibility::Public => Decision::Deny(Denial::Unauthenticated),
            Visibility::Private => Decision::Deny(Denial::Hidden),
        },
        _ => Decision::Deny(Denial::Unauthenticated),
    }
}

fn link_holder(
    link: &LinkFacts,
    action: Action,
    resource: Resource<'_>,
    now: Timestamp,
) -> Decision {
    use Decision::{Allow, Deny};
    let (d, key) = match resource {
        Resource::Dataset(d) => (d, None),
        Resource::Object { dataset, key } => (dataset, Some(key)),
        _ => return Deny(Denial::Unauthenticated),
    };
    if &link.dataset != d.id {
        return Deny(Denial::Hidden);
    }
    match link.state_at(now) {
        LinkState::Revoked => return Deny(Denial::LinkRevoked),
        LinkState::Expired => return Deny(Denial::LinkExpired),
        LinkState::Active => {}
    }
    if link.password == PasswordState::Required {
        return Deny(Denial::LinkPasswordRequired);
    }
    // Object actions need a key inside the scope; without one only a whole-dataset scope does.
    let in_scope = match key {
        Some(k) => link.scope.covers(k),
        None => !matches!(link.scope, LinkScope::Path { .. }),
    };
    match action {
        Action::ViewDataset => Allow,
        Action::ReadData if in_scope => Allow,
        Action::Download if in_scope && link.permission >= LinkPermission::Download => Allow,
        Action::Annotate
            if link.permission >= LinkPermission::Annotate
                && !matches!(link.scope, LinkScope::Path { .. }) =>
        {
            Allow
        }
        Action::ReadData | Action::Download | Action::Annotate => Deny(Denial::OutOfScope),
        _ => Deny(Denial::Forbidden),
    }
}

/// How the caller stands to a dataset, as every listing shows it (SCiLS' status icons).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    /// They registered it.
    Owner,
    /// An admin or dataset manager of its organization.
    Manager,
    /// Shared with them personally.
    SharedWithMe,
    /// One of their teams is allowed.
    TeamMember,
    /// Through a share link.
    LinkHolder,
    /// Only because it is public.
    Public,
    /// No access.
    None,
}

pub fn relation(actor: &Actor, d: &DatasetFacts<'_>) -> Relation {
    let public = || {
        if d.visibility == Visibility::Public {
            Relation::Public
        } else {
            Relation::None
        }
    };
    let member = match actor {
        Actor::Anonymous => return public(),
        Actor::LinkHolder(l) if &l.dataset == d.id => return Relation::LinkHolder,
        Actor::LinkHolder(_) => return public(),
        Actor::OrgAdmin { org } if org == d.org => return Relation::Manager,
        Actor::OrgAdmin { .. } => return public(),
        Actor::User(m) => m,
    };
    if !member.active {
        return Relation::None;
    }
    let same_org = &member.org == d.org;
    if d.owner.is_some_and(|o| member.is(o)) {
        Relation::Owner
    } else if same_org && member.role >= OrgRole::DatasetManager {
        Relation::Manager
    } else if d.grant.is_some() {
        Relation::SharedWithMe
    } else if same_org && d.allowed_teams.iter().any(|t| member.teams.contains_key(t)) {
        Relation::TeamMember
    } else {
        public()
    }
}

/// [`decide`] as the routes need it: `Ok` to go on, or the error to answer with. A hidden
/// resource is reported as not existing, named by its kind.
pub fn require(
    actor: &Actor,
    action: Action,
    resource: Resource<'_>,
) -> Result<(), crate::ApiError> {
    use crate::ApiError;
    let why = match decide(actor, action, resource, crate::domain::now()) {
        Decision::Allow => return Ok(()),
        Decision::Deny(why) => why,
    };
    Err(match why {
        Denial::Unauthenticated => ApiError::Unauthorized,
        Denial::Forbidden => ApiError::Forbidden("you may not do this".into()),
        Denial::Hidden => {
            let what = match resource {
                Resource::Dataset(_) | Resource::Object { .. } => "dataset",
                Resource::Organization(_) => "organization",
                Resource::User(_) => "user",
                Resource::Team { .. } => "team",
                Resource::Invite(_) => "invitation",
                Resource::Annotation(_) => "annotation",
            };
            ApiError::NotFound(format!("no such {what}"))
        }
        Denial::LinkRevoked => ApiError::Gone("this share link has been revoked".into()),
        Denial::LinkExpired => ApiError::Gone("this share link has expired".into()),
        Denial::LinkPasswordRequired => ApiError::PasswordRequired(
            "this share link needs its password: POST it to /api/links/unlock to get a URL that opens it"
                .into(),
        ),
        Denial::OutOfScope => ApiError::Forbidden(
            "this share link does not reach this part of the dataset, or does not allow this"
                .into(),
        ),
        Denial::Deactivated => ApiError::Forbidden("your account is deactivated".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::now;
    use Action::*;
    use Decision::{Allow, Deny};
    use Denial::*;
    use time::Duration;

    fn org(s: &str) -> OrgId {
        OrgId::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn link(
        dataset: &DatasetId,
        state: &str,
        scope: LinkScope,
        permission: LinkPermission,
    ) -> Actor {
        let t = now();
        Actor::LinkHolder(LinkFacts {
            id: LinkId::generate(),
            dataset: dataset.clone(),
            revoked: state == "revoked",
            expires_at: match state {
                "expired" => Some(t - Duration::seconds(1)),
                _ => Some(t + Duration::hours(1)),
            },
            scope,
            permission,
            password: match state {
                "locked" => PasswordState::Required,
                "unlocked" => PasswordState::Unlocked,
                _ => PasswordState::NotSet,
            },
        })
    }

    /// Every principal × every dataset action × public and private datasets × link states
    /// (valid, expired, revoked, wrong scope, password missing or wrong, unlocked), each cell
    /// asserted.
    #[test]
    fn dataset_access_table() {
        let t = now();
        let home = org("home-lab");
        let rival = org("rival-lab");
        let ds = DatasetId::generate();
        let other_ds = DatasetId::generate();
        let owner = UserId::generate();
        let (team, other_team) = (TeamId::generate(), TeamId::generate());
        let allowed: BTreeSet<TeamId> = [team.clone()].into();
        let user = |id: Option<UserId>, o: &OrgId, role, teams: &[TeamId], active| {
            Actor::User(MemberFacts {
                id: Some(id.unwrap_or_else(UserId::generate)),
                org: o.clone(),
                role,
                teams: teams
                    .iter()
                    .map(|t| (t.clone(), TeamRole::Member))
                    .collect(),
                active,
                email: None,
            })
        };
        let labels = || LinkScope::path("labels/cells").unwrap_or_else(|e| panic!("{e}"));
        let (view, download, annotate) = (
            LinkPermission::View,
            LinkPermission::Download,
            LinkPermission::Annotate,
        );
        let grant = |m, s| {
            Some(GrantFacts {
                can_modify: m,
                can_share: s,
            })
        };
        // (who, actor, the caller's grant)
        let principals: Vec<(&str, Actor, Option<GrantFacts>)> = vec![
            ("anonymous", Actor::Anonymous, None),
            ("admin key", Actor::OrgAdmin { org: home.clone() }, None),
            (
                "other org's admin key",
                Actor::OrgAdmin { org: rival.clone() },
                None,
            ),
            (
                "owner (now a plain user)",
                user(Some(owner.clone()), &home, OrgRole::User, &[], true),
                None,
            ),
            (
                "dataset manager",
                user(None, &home, OrgRole::DatasetManager, &[], true),
                None,
            ),
            (
                "plain user",
                user(
                    None,
                    &home,
                    OrgRole::User,
                    std::slice::from_ref(&other_team),
                    true,
                ),
                None,
            ),
            (
                "allowed team's member",
                user(
                    None,
                    &home,
                    OrgRole::User,
                    std::slice::from_ref(&team),
                    true,
                ),
                None,
            ),
            (
                "allowed team id, other org",
                user(
                    None,
                    &rival,
                    OrgRole::User,
                    std::slice::from_ref(&team),
                    true,
                ),
                None,
            ),
            (
                "grantee (view)",
                user(None, &rival, OrgRole::User, &[], true),
                grant(false, false),
            ),
            (
                "grantee (modify, share)",
                user(None, &rival, OrgRole::User, &[], true),
                grant(true, true),
            ),
            (
                "deactivated dataset manager",
                user(None, &home, OrgRole::DatasetManager, &[], false),
                None,
            ),
            (
                "view link",
                link(&ds, "valid", LinkScope::Dataset, view),
                None,
            ),
            (
                "download link",
                link(&ds, "valid", LinkScope::Dataset, download),
                None,
            ),
            (
                "annotate link",
                link(&ds, "valid", LinkScope::Dataset, annotate),
                None,
            ),
            (
                "sub-path link",
                link(&ds, "valid", labels(), annotate),
                None,
            ),
            (
                "expired link",
                link(&ds, "expired", LinkScope::Dataset, view),
                None,
            ),
            (
                "revoked link",
                link(&ds, "revoked", LinkScope::Dataset, view),
                None,
            ),
            (
                "link, password missing or wrong",
                link(&ds, "locked", LinkScope::Dataset, view),
                None,
            ),
            (
                "link, unlocked",
                link(&ds, "unlocked", LinkScope::Dataset, view),
                None,
            ),
            (
                "link to another dataset",
                link(&other_ds, "valid", LinkScope::Dataset, view),
                None,
            ),
        ];
        // Columns: read an image chunk, read a label chunk, view the record, download
        // everything, annotate, update, manage links, share, manage shares, read the audit.
        let (a, f, h, u, x) = (
            Allow,
            Deny(Forbidden),
            Deny(Hidden),
            Deny(Unauthenticated),
            Deny(Deactivated),
        );
        let (e, r, p, o) = (
            Deny(LinkExpired),
            Deny(LinkRevoked),
            Deny(LinkPasswordRequired),
            Deny(OutOfScope),
        );
        let links: [[Decision; 10]; 9] = [
            [a, a, a, o, o, f, f, f, f, f],
            [a, a, a, a, o, f, f, f, f, f],
            [a, a, a, a, a, f, f, f, f, f],
            [o, a, a, o, o, f, f, f, f, f],
            [e; 10],
            [r; 10],
            [p; 10],
            [a, a, a, o, o, f, f, f, f, f],
            [h; 10],
        ];
        let private: Vec<[Decision; 10]> = [
            [h; 10],
            [a; 10],
            [h; 10],
            [a; 10],
            [a; 10],
            [f; 10],
            [a, a, a, a, a, f, f, f, f, f],
            [h; 10],
            [a, a, a, a, f, f, f, f, f, f],
            [a, a, a, a, a, f, f, a, f, f],
            [x; 10],
        ]
        .into_iter()
        .chain(links)
        .collect();
        let public: Vec<[Decision; 10]> = [
            [a, a, a, a, u, u, u, u, u, u],
            [a; 10],
            [a, a, a, a, f, f, f, f, f, f],
            [a; 10],
            [a; 10],
            [a, a, a, a, f, f, f, f, f, f],
            [a, a, a, a, a, f, f, f, f, f],
            [a, a, a, a, f, f, f, f, f, f],
            [a, a, a, a, f, f, f, f, f, f],
            [a, a, a, a, a, f, f, a, f, f],
            [x; 10],
        ]
        .into_iter()
        .chain(links)
        .collect();
        for (visibility, table) in [(Visibility::Public, public), (Visibility::Private, private)] {
            assert_eq!(table.len(), principals.len());
            for ((who, actor, grant), row) in principals.iter().zip(table) {
                let facts = DatasetFacts {
                    id: &ds,
                    org: &home,
                    visibility,
                    owner: Some(&owner),
                    allowed_teams: &allowed,
                    grant: *grant,
                };
                let object = |key| Resource::Object {
                    dataset: facts,
                    key,
                };
                let columns = [
                    ("read image chunk", ReadData, object("0/c/0/0/0")),
                    (
                        "read label chunk",
                        ReadData,
                        object("labels/cells/0/c/0/0/0"),
                    ),
                    ("view", ViewDataset, Resource::Dataset(facts)),
                    ("download all", Download, object("")),
                    ("annotate", Annotate, Resource::Dataset(facts)),
                    ("update", UpdateDataset, Resource::Dataset(facts)),
                    ("manage links", ManageLinks, Resource::Dataset(facts)),
                    ("share", Share, Resource::Dataset(facts)),
                    ("manage shares", ManageShares, Resource::Dataset(facts)),
                    ("audit", ViewAudit, Resource::Dataset(facts)),
                ];
                for ((what, action, resource), expected) in columns.into_iter().zip(row) {
                    assert_eq!(
                        decide(actor, action, resource, t),
                        expected,
                        "{who} × {what} on a {visibility:?} dataset"
                    );
                }
            }
        }
    }

    #[test]
    fn relation_follows_the_strongest_tie() {
        let home = org("home-lab");
        let ds = DatasetId::generate();
        let owner = UserId::generate();
        let team = TeamId::generate();
        let allowed: BTreeSet<TeamId> = [team.clone()].into();
        let facts = |visibility, grant| DatasetFacts {
            id: &ds,
            org: &home,
            visibility,
            owner: Some(&owner),
            allowed_teams: &allowed,
            grant,
        };
        let member = |id: UserId, role, teams: Vec<TeamId>| {
            Actor::User(MemberFacts {
                id: Some(id),
                org: home.clone(),
                role,
                teams: teams.into_iter().map(|t| (t, TeamRole::Member)).collect(),
                active: true,
                email: None,
            })
        };
        let g = Some(GrantFacts {
            can_modify: false,
            can_share: false,
        });
        let private = Visibility::Private;
        let cases = [
            (
                member(owner.clone(), OrgRole::User, vec![]),
                facts(private, None),
                Relation::Owner,
            ),
            (
                member(UserId::generate(), OrgRole::Admin, vec![]),
                facts(private, g),
                Relation::Manager,
            ),
            (
                member(UserId::generate(), OrgRole::User, vec![team.clone()]),
                facts(private, g),
                Relation::SharedWithMe,
            ),
            (
                member(UserId::generate(), OrgRole::User, vec![team.clone()]),
                facts(private, None),
                Relation::TeamMember,
            ),
            (
                member(UserId::generate(), OrgRole::User, vec![]),
                facts(Visibility::Public, None),
                Relation::Public,
            ),
            (
                member(UserId::generate(), OrgRole::User, vec![]),
                facts(private, None),
                Relation::None,
            ),
            (
                Actor::Anonymous,
                facts(Visibility::Public, None),
                Relation::Public,
            ),
            (
                link(&ds, "valid", LinkScope::Dataset, LinkPermission::View),
                facts(private, None),
                Relation::LinkHolder,
            ),
        ];
        for (actor, facts, expected) in cases {
            assert_eq!(relation(&actor, &facts), expected, "{actor:?}");
        }
    }

    /// Principals × annotation actions × annotation visibility × dataset visibility, every
    /// cell asserted. The dataset lets team T read and annotate; the owner is in T and O; the
    /// annotation is shared with team S.
    #[test]
    fn annotation_access_table() {
        let t = now();
        let home = org("home-lab");
        let rival = org("rival-lab");
        let ds = DatasetId::generate();
        let ann = AnnotationId::generate();
        let other_ann = AnnotationId::generate();
        let owner = UserId::generate();
        let (team_t, team_o, team_s) = (TeamId::generate(), TeamId::generate(), TeamId::generate());
        let allowed: BTreeSet<TeamId> = [team_t.clone()].into();
        let owner_teams: BTreeSet<TeamId> = [team_t.clone(), team_o.clone()].into();
        let user = |id: Option<UserId>, o: &OrgId, role, teams: &[(TeamId, TeamRole)], active| {
            Actor::User(MemberFacts {
                id: Some(id.unwrap_or_else(UserId::generate)),
                org: o.clone(),
                role,
                teams: teams.iter().cloned().collect(),
                active,
                email: None,
            })
        };
        let member = TeamRole::Member;
        let annotate = LinkPermission::Annotate;
        let on = |a: &AnnotationId| LinkScope::Annotation {
            annotation: a.clone(),
        };
        let principals: Vec<(&str, Actor, Option<GrantFacts>)> = vec![
            ("anonymous", Actor::Anonymous, None),
            (
                "owner",
                user(
                    Some(owner.clone()),
                    &home,
                    OrgRole::User,
                    &[(team_t.clone(), member), (team_o.clone(), member)],
                    true,
                ),
                None,
            ),
            (
                "owner, deactivated",
                user(
                    Some(owner.clone()),
                    &home,
                    OrgRole::User,
                    &[(team_t.clone(), member)],
                    false,
                ),
                None,
            ),
            ("admin", user(None, &home, OrgRole::Admin, &[], true), None),
            (
                "manager of the owner's team O",
                user(
                    None,
                    &home,
                    OrgRole::User,
                    &[(team_o.clone(), TeamRole::Manager)],
                    true,
                ),
                None,
            ),
            (
                "member of the dataset's team T",
                user(
                    None,
                    &home,
                    OrgRole::User,
                    &[(team_t.clone(), member)],
                    true,
                ),
                None,
            ),
            (
                "member of the shared team S",
                user(
                    None,
                    &home,
                    OrgRole::User,
                    &[(team_s.clone(), member)],
                    true,
                ),
                None,
            ),
            (
                "grantee from another org",
                user(None, &rival, OrgRole::User, &[], true),
                Some(GrantFacts {
                    can_modify: false,
                    can_share: false,
                }),
            ),
            (
                "another org's user",
                user(None, &rival, OrgRole::User, &[], true),
                None,
            ),
            (
                "dataset link",
                link(&ds, "valid", LinkScope::Dataset, LinkPermission::View),
                None,
            ),
            (
                "this annotation's link (annotate)",
                link(&ds, "valid", on(&ann), annotate),
                None,
            ),
            (
                "another annotation's link",
                link(&ds, "valid", on(&other_ann), annotate),
                None,
            ),
            (
                "revoked dataset link",
                link(&ds, "revoked", LinkScope::Dataset, annotate),
                None,
            ),
            (
                "sub-path link",
                link(
                    &ds,
                    "valid",
                    LinkScope::path("labels").unwrap_or_else(|e| panic!("{e}")),
                    annotate,
                ),
                None,
            ),
        ];
        let (a, f, h, u, x, r) = (
            Allow,
            Deny(Forbidden),
            Deny(Hidden),
            Deny(Unauthenticated),
            Deny(Deactivated),
            Deny(LinkRevoked),
        );
        // Columns: read, edit, manage, copy; for private / internal / public annotations.
        type Row = [[Decision; 4]; 3];
        let same = |c: [Decision; 4]| -> Row { [c, c, c] };
        let private_dataset: Vec<Row> = vec![
            same([h, h, h, h]),
            same([a, a, a, a]),
            same([x, x, x, x]),
            same([a, f, a, a]),
            same([f, f, f, f]),
            [[f, f, f, f], [a, f, f, a], [a, f, f, a]],
            same([f, f, f, f]),
            [[f, f, f, f], [f, f, f, f], [a, f, f, f]],
            same([h, h, h, h]),
            [[h, h, h, h], [h, h, h, h], [a, f, f, f]],
            same([a, a, f, f]),
            same([h, h, h, h]),
            same([r, r, r, r]),
            same([h, h, h, h]),
        ];
        let public_dataset: Vec<Row> = vec![
            [[u, u, u, u], [u, u, u, u], [a, u, u, u]],
            same([a, a, a, a]),
            same([x, x, x, x]),
            same([a, f, a, a]),
            same([a, f, f, f]),
            [[f, f, f, f], [a, f, f, a], [a, f, f, a]],
            [[f, f, f, f], [a, f, f, f], [a, f, f, f]],
            [[f, f, f, f], [f, f, f, f], [a, f, f, f]],
            [[f, f, f, f], [f, f, f, f], [a, f, f, f]],
            [[h, h, h, h], [h, h, h, h], [a, f, f, f]],
            same([a, a, f, f]),
            same([h, h, h, h]),
            same([r, r, r, r]),
            same([h, h, h, h]),
        ];
        let visibilities = [
            AnnotationVisibility::Private,
            AnnotationVisibility::Internal,
            AnnotationVisibility::Public,
        ];
        let actions = [
            ReadAnnotation,
            EditAnnotation,
            ManageAnnotation,
            CopyAnnotation,
        ];
        for (dataset_visibility, table) in [
            (Visibility::Private, private_dataset),
            (Visibility::Public, public_dataset),
        ] {
            assert_eq!(table.len(), principals.len());
            for ((who, actor, grant), row) in principals.iter().zip(table) {
                for (visibility, cells) in visibilities.iter().zip(row) {
                    let facts = AnnotationFacts {
                        id: &ann,
                        owner: &owner,
                        org: &home,
                        visibility: *visibility,
                        owner_teams: &owner_teams,
                        deleted: false,
                        dataset: DatasetFacts {
                            id: &ds,
                            org: &home,
                            visibility: dataset_visibility,
                            owner: None,
                            allowed_teams: &allowed,
                            grant: *grant,
                        },
                    };
                    for (action, expected) in actions.iter().zip(cells) {
                        assert_eq!(
                            decide(actor, *action, Resource::Annotation(facts), t),
                            expected,
                            "{who} × {action:?} on a {visibility:?} annotation of a {dataset_visibility:?} dataset"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn deleted_annotations_are_the_owners_and_admins_only() {
        let t = now();
        let home = org("home-lab");
        let (ds, ann, owner) = (
            DatasetId::generate(),
            AnnotationId::generate(),
            UserId::generate(),
        );
        let team = TeamId::generate();
        let allowed: BTreeSet<TeamId> = [team.clone()].into();
        let facts = AnnotationFacts {
            id: &ann,
            owner: &owner,
            org: &home,
            visibility: AnnotationVisibility::Public,
            owner_teams: &allowed,
            deleted: true,
            dataset: DatasetFacts {
                id: &ds,
                org: &home,
                visibility: Visibility::Public,
                owner: None,
                allowed_teams: &allowed,
                grant: None,
            },
        };
        let member = |id: UserId, role| {
            Actor::User(MemberFacts {
                id: Some(id),
                org: home.clone(),
                role,
                teams: [(team.clone(), TeamRole::Member)].into(),
                active: true,
                email: None,
            })
        };
        let cases = [
            (
                member(owner.clone(), OrgRole::User),
                [Allow, Deny(Forbidden), Allow, Deny(Forbidden)],
            ),
            (
                member(UserId::generate(), OrgRole::Admin),
                [Allow, Deny(Forbidden), Allow, Deny(Forbidden)],
            ),
            (
                member(UserId::generate(), OrgRole::User),
                [Deny(Forbidden); 4],
            ),
            (Actor::Anonymous, [Deny(Unauthenticated); 4]),
            (
                link(
                    &ds,
                    "valid",
                    LinkScope::Annotation {
                        annotation: ann.clone(),
                    },
                    LinkPermission::Annotate,
                ),
                [Deny(Hidden); 4],
            ),
        ];
        let actions = [
            ReadAnnotation,
            EditAnnotation,
            ManageAnnotation,
            CopyAnnotation,
        ];
        for (actor, expected) in cases {
            for (action, e) in actions.iter().zip(expected) {
                assert_eq!(
                    decide(&actor, *action, Resource::Annotation(facts), t),
                    e,
                    "{actor:?} × {action:?}"
                );
            }
        }
    }

    #[test]
    fn organization_access_table() {
        let t = now();
        let home = org("home-lab");
        let cases = [
            (Actor::Anonymous, Decision::Deny(Unauthenticated)),
            (Actor::OrgAdmin { org: home.clone() }, Allow),
            (
                Actor::OrgAdmin {
                    org: org("rival-lab"),
                },
                Decision::Deny(Forbidden),
            ),
            (
                link(
                    &DatasetId::generate(),
                    "valid",
                    LinkScope::Dataset,
                    LinkPermission::Annotate,
                ),
                Decision::Deny(Unauthenticated),
            ),
        ];
        for (actor, expected) in cases {
            for action in [ListDatasets, RegisterDataset] {
                let got = decide(&actor, action, Resource::Organization(&home), t);
                assert_eq!(got, expected, "{actor:?} × {action:?}");
            }
        }
    }

    /// Principals × actions on users, teams and invitations, every cell asserted.
    #[test]
    fn people_access_table() {
        let t = now();
        let home = org("home-lab");
        let (team_a, team_b) = (TeamId::generate(), TeamId::generate());
        let member = |role: OrgRole, teams: &[(TeamId, TeamRole)], active: bool, o: &OrgId| {
            Actor::User(MemberFacts {
                id: Some(UserId::generate()),
                org: o.clone(),
                role,
                teams: teams.iter().cloned().collect(),
                active,
                email: None,
            })
        };
        let principals: Vec<(&str, Actor)> = vec![
            ("anonymous", Actor::Anonymous),
            (
                "deactivated admin",
                member(OrgRole::Admin, &[], false, &home),
            ),
            (
                "user in team A",
                member(
                    OrgRole::User,
                    &[(team_a.clone(), TeamRole::Member)],
                    true,
                    &home,
                ),
            ),
            (
                "manager of team A",
                member(
                    OrgRole::User,
                    &[(team_a.clone(), TeamRole::Manager)],
                    true,
                    &home,
                ),
            ),
            (
                "dataset manager",
                member(OrgRole::DatasetManager, &[], true, &home),
            ),
            ("admin", member(OrgRole::Admin, &[], true, &home)),
            ("admin key", Actor::OrgAdmin { org: home.clone() }),
            (
                "other org's admin",
                member(OrgRole::Admin, &[], true, &org("rival-lab")),
            ),
        ];
        let in_a: BTreeMap<TeamId, TeamRole> = [(team_a.clone(), TeamRole::Member)].into();
        let in_b: BTreeMap<TeamId, TeamRole> = [(team_b.clone(), TeamRole::Member)].into();
        let none: BTreeMap<TeamId, TeamRole> = BTreeMap::new();
        let ids: Vec<UserId> = (0..5).map(|_| UserId::generate()).collect();
        let user = |i: usize, role, teams| {
            Resource::User(UserTarget {
                id: &ids[i],
                org: &home,
                role,
                teams,
            })
        };
        let invite = |teams| {
            Resource::Invite(InviteTarget {
                org: &home,
                invited_by: Some(&ids[4]),
                teams,
            })
        };
        let columns: Vec<(&str, Action, Resource<'_>)> = vec![
            (
                "list users",
                Action::ListUsers,
                Resource::Organization(&home),
            ),
            ("invite", Action::InviteUsers, Resource::Organization(&home)),
            (
                "create team",
                Action::CreateTeam,
                Resource::Organization(&home),
            ),
            (
                "edit experience",
                Action::EditExperience,
                Resource::Organization(&home),
            ),
            ("set roles", Action::SetRole, Resource::Organization(&home)),
            (
                "view member of A",
                Action::ViewUser,
                user(0, OrgRole::User, &in_a),
            ),
            (
                "manage member of A",
                Action::ManageUser,
                user(0, OrgRole::User, &in_a),
            ),
            (
                "manage member of B",
                Action::ManageUser,
                user(1, OrgRole::User, &in_b),
            ),
            (
                "manage unassigned user",
                Action::ManageUser,
                user(2, OrgRole::User, &none),
            ),
            (
                "manage an admin",
                Action::ManageUser,
                user(3, OrgRole::Admin, &none),
            ),
            (
                "manage team A",
                Action::ManageTeam,
                Resource::Team {
                    org: &home,
                    team: &team_a,
                },
            ),
            (
                "manage team B",
                Action::ManageTeam,
                Resource::Team {
                    org: &home,
                    team: &team_b,
                },
            ),
            ("manage invite into A", Action::ManageInvite, invite(&in_a)),
            ("manage invite into B", Action::ManageInvite, invite(&in_b)),
        ];
        use Decision::Deny as D;
        let (a, f, h, u, x) = (
            Allow,
            D(Forbidden),
            D(Hidden),
            D(Unauthenticated),
            D(Deactivated),
        );
        let table: [[Decision; 14]; 8] = [
            [u, u, u, u, u, u, u, u, u, u, u, u, u, u],
            [x, x, x, x, x, x, x, x, x, x, x, x, x, x],
            [f, f, f, f, f, f, f, f, f, f, f, f, f, f],
            [a, a, f, f, f, a, a, f, a, f, a, f, a, f],
            [f, f, f, f, f, f, f, f, f, f, f, f, f, f],
            [a, a, a, a, a, a, a, a, a, a, a, a, a, a],
            [a, a, a, a, a, a, a, a, a, a, a, a, a, a],
            [f, f, f, f, f, h, h, h, h, h, h, h, h, h],
        ];
        for ((who, actor), row) in principals.iter().zip(table) {
            for ((what, action, resource), expected) in columns.iter().zip(row) {
                assert_eq!(
                    decide(actor, *action, *resource, t),
                    expected,
                    "{who} × {what}"
                );
            }
        }
        // Everyone may see their own record; a team manager may not manage themselves.
        let me = MemberFacts {
            id: Some(ids[0].clone()),
            org: home.clone(),
            role: OrgRole::User,
            teams: [(team_a.clone(), TeamRole::Manager)].into(),
            active: true,
            email: None,
        };
        let own = user(0, OrgRole::User, &me.teams);
        assert_eq!(
            decide(&Actor::User(me.clone()), Action::ViewUser, own, t),
            Allow
        );
        assert_eq!(
            decide(&Actor::User(me.clone()), Action::ManageUser, own, t),
            D(Forbidden)
        );
    }
}
