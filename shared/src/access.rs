//! The single access decision. Every route asks [`decide`]; nothing else compares roles,
//! visibilities or link states. It is a pure function of who asks, what they want and the facts
//! of the resource, tested as a full table below.

use std::collections::BTreeMap;

use crate::domain::{
    DatasetId, LinkState, OrgId, OrgRole, TeamId, TeamRole, Timestamp, UserId, Visibility,
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
}

impl MemberFacts {
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

/// What a link grants, as far as the decision needs to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkFacts {
    pub dataset: DatasetId,
    pub revoked: bool,
    pub expires_at: Option<Timestamp>,
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

/// The facts of a dataset that access depends on.
#[derive(Clone, Copy, Debug)]
pub struct DatasetFacts<'a> {
    pub id: &'a DatasetId,
    pub org: &'a OrgId,
    pub visibility: Visibility,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Read metadata documents and chunks through the chunk function.
    ReadData,
    /// See the dataset's record (layers, description).
    ViewDataset,
    /// Change its description, visibility or featured flag.
    UpdateDataset,
    /// Create, list and revoke its share links.
    ManageLinks,
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
    /// Organization-wide actions (registering datasets, listing users, creating teams, …).
    Organization(&'a OrgId),
    User(UserTarget<'a>),
    Team {
        org: &'a OrgId,
        team: &'a TeamId,
    },
    Invite(InviteTarget<'a>),
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
    let member = match actor {
        Actor::Anonymous => return anonymous(action, resource),
        Actor::LinkHolder(link) => return link_holder(link, action, resource, now),
        Actor::OrgAdmin { org } => {
            admin_key = MemberFacts {
                id: None,
                org: org.clone(),
                role: OrgRole::Admin,
                teams: BTreeMap::new(),
                active: true,
            };
            &admin_key
        }
        Actor::User(m) => m,
    };
    if !member.active {
        return Deny(Denial::Deactivated);
    }
    let admin = member.role == OrgRole::Admin;
    match resource {
        Resource::Dataset(d) => {
            let reading = matches!(action, Action::ReadData | Action::ViewDataset);
            let manages_data = member.role >= OrgRole::DatasetManager;
            match (&member.org == d.org, d.visibility) {
                (true, _) if manages_data => Allow,
                (_, Visibility::Public) if reading => Allow,
                (true, _) | (false, Visibility::Public) => Deny(Denial::Forbidden),
                (false, Visibility::Private) => Deny(Denial::Hidden),
            }
        }
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

fn anonymous(action: Action, resource: Resource<'_>) -> Decision {
    match resource {
        Resource::Dataset(d) => match (d.visibility, action) {
            (Visibility::Public, Action::ReadData | Action::ViewDataset) => Decision::Allow,
            (Visibility::Public, _) => Decision::Deny(Denial::Unauthenticated),
            (Visibility::Private, _) => Decision::Deny(Denial::Hidden),
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
    let Resource::Dataset(d) = resource else {
        return Decision::Deny(Denial::Unauthenticated);
    };
    if &link.dataset != d.id {
        return Decision::Deny(Denial::Hidden);
    }
    match link.state_at(now) {
        LinkState::Revoked => Decision::Deny(Denial::LinkRevoked),
        LinkState::Expired => Decision::Deny(Denial::LinkExpired),
        LinkState::Active => match action {
            Action::ReadData | Action::ViewDataset => Decision::Allow,
            _ => Decision::Deny(Denial::Forbidden),
        },
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
                Resource::Dataset(_) => "dataset",
                Resource::Organization(_) => "organization",
                Resource::User(_) => "user",
                Resource::Team { .. } => "team",
                Resource::Invite(_) => "invitation",
            };
            ApiError::NotFound(format!("no such {what}"))
        }
        Denial::LinkRevoked => ApiError::Gone("this share link has been revoked".into()),
        Denial::LinkExpired => ApiError::Gone("this share link has expired".into()),
        Denial::Deactivated => ApiError::Forbidden("your account is deactivated".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::now;
    use Action::*;
    use Decision::Allow;
    use Denial::*;
    use time::Duration;

    fn org(s: &str) -> OrgId {
        OrgId::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Every principal × every action × public and private datasets, each cell asserted.
    #[test]
    fn dataset_access_table() {
        let t = now();
        let home = org("home-lab");
        let ds = DatasetId::generate();
        let other_ds = DatasetId::generate();
        let link = |dataset: &DatasetId, revoked: bool, expires: Option<Timestamp>| {
            Actor::LinkHolder(LinkFacts {
                dataset: dataset.clone(),
                revoked,
                expires_at: expires,
            })
        };
        let principals: Vec<(&str, Actor)> = vec![
            ("anonymous", Actor::Anonymous),
            ("admin", Actor::OrgAdmin { org: home.clone() }),
            (
                "other org admin",
                Actor::OrgAdmin {
                    org: org("rival-lab"),
                },
            ),
            ("link", link(&ds, false, None)),
            (
                "link with future expiry",
                link(&ds, false, Some(t + Duration::hours(1))),
            ),
            (
                "expired link",
                link(&ds, false, Some(t - Duration::seconds(1))),
            ),
            ("revoked link", link(&ds, true, None)),
            ("link to another dataset", link(&other_ds, false, None)),
        ];
        let d = |v| Decision::Deny(v);
        //                         ReadData   ViewDataset  UpdateDataset  ManageLinks
        let public: [[Decision; 4]; 8] = [
            [Allow, Allow, d(Unauthenticated), d(Unauthenticated)],
            [Allow, Allow, Allow, Allow],
            [Allow, Allow, d(Forbidden), d(Forbidden)],
            [Allow, Allow, d(Forbidden), d(Forbidden)],
            [Allow, Allow, d(Forbidden), d(Forbidden)],
            [
                d(LinkExpired),
                d(LinkExpired),
                d(LinkExpired),
                d(LinkExpired),
            ],
            [
                d(LinkRevoked),
                d(LinkRevoked),
                d(LinkRevoked),
                d(LinkRevoked),
            ],
            [d(Hidden), d(Hidden), d(Hidden), d(Hidden)],
        ];
        let private: [[Decision; 4]; 8] = [
            [d(Hidden), d(Hidden), d(Hidden), d(Hidden)],
            [Allow, Allow, Allow, Allow],
            [d(Hidden), d(Hidden), d(Hidden), d(Hidden)],
            [Allow, Allow, d(Forbidden), d(Forbidden)],
            [Allow, Allow, d(Forbidden), d(Forbidden)],
            [
                d(LinkExpired),
                d(LinkExpired),
                d(LinkExpired),
                d(LinkExpired),
            ],
            [
                d(LinkRevoked),
                d(LinkRevoked),
                d(LinkRevoked),
                d(LinkRevoked),
            ],
            [d(Hidden), d(Hidden), d(Hidden), d(Hidden)],
        ];
        let actions = [ReadData, ViewDataset, UpdateDataset, ManageLinks];
        for (visibility, table) in [(Visibility::Public, public), (Visibility::Private, private)] {
            let facts = DatasetFacts {
                id: &ds,
                org: &home,
                visibility,
            };
            for ((who, actor), row) in principals.iter().zip(table) {
                for (action, expected) in actions.iter().zip(row) {
                    let got = decide(actor, *action, Resource::Dataset(facts), t);
                    assert_eq!(
                        got, expected,
                        "{who} × {action:?} on a {visibility:?} dataset"
                    );
                }
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
                Actor::LinkHolder(LinkFacts {
                    dataset: DatasetId::generate(),
                    revoked: false,
                    expires_at: None,
                }),
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
