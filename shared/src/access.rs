//! The single access decision. Every route asks [`decide`]; nothing else compares roles,
//! visibilities or link states. It is a pure function of who asks, what they want and the facts
//! of the resource, tested as a full table below.

use crate::domain::{DatasetId, LinkState, OrgId, Timestamp, Visibility};

/// Who is asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    /// No credentials.
    Anonymous,
    /// An organization administrator (until accounts exist: the holder of the admin key).
    OrgAdmin { org: OrgId },
    /// The bearer of a share link (a capability in the URL), as resolved from storage.
    LinkHolder(LinkFacts),
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
}

#[derive(Clone, Copy, Debug)]
pub enum Resource<'a> {
    Dataset(DatasetFacts<'a>),
    /// Registering or listing datasets in an organization.
    Organization(&'a OrgId),
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(Denial),
}

pub fn decide(actor: &Actor, action: Action, resource: Resource<'_>, now: Timestamp) -> Decision {
    use Decision::{Allow, Deny};
    match (actor, resource) {
        (Actor::OrgAdmin { org }, Resource::Organization(target)) => {
            if org == target {
                Allow
            } else {
                Deny(Denial::Forbidden)
            }
        }
        (Actor::OrgAdmin { org }, Resource::Dataset(d)) => {
            let reading = matches!(action, Action::ReadData | Action::ViewDataset);
            match (org == d.org, d.visibility) {
                (true, _) => Allow,
                (false, Visibility::Public) if reading => Allow,
                (false, Visibility::Public) => Deny(Denial::Forbidden),
                (false, Visibility::Private) => Deny(Denial::Hidden),
            }
        }
        (Actor::Anonymous, Resource::Organization(_)) => Deny(Denial::Unauthenticated),
        (Actor::Anonymous, Resource::Dataset(d)) => match (d.visibility, action) {
            (Visibility::Public, Action::ReadData | Action::ViewDataset) => Allow,
            (Visibility::Public, _) => Deny(Denial::Unauthenticated),
            (Visibility::Private, _) => Deny(Denial::Hidden),
        },
        (Actor::LinkHolder(_), Resource::Organization(_)) => Deny(Denial::Unauthenticated),
        (Actor::LinkHolder(link), Resource::Dataset(d)) => {
            if &link.dataset != d.id {
                return Deny(Denial::Hidden);
            }
            match link.state_at(now) {
                LinkState::Revoked => Deny(Denial::LinkRevoked),
                LinkState::Expired => Deny(Denial::LinkExpired),
                LinkState::Active => match action {
                    Action::ReadData | Action::ViewDataset => Allow,
                    _ => Deny(Denial::Forbidden),
                },
            }
        }
    }
}

impl From<Denial> for crate::ApiError {
    fn from(d: Denial) -> Self {
        use crate::ApiError;
        match d {
            Denial::Unauthenticated => ApiError::Unauthorized,
            Denial::Forbidden => ApiError::Forbidden("you may not do this".into()),
            Denial::Hidden => ApiError::NotFound("no such dataset".into()),
            Denial::LinkRevoked => ApiError::Gone("this share link has been revoked".into()),
            Denial::LinkExpired => ApiError::Gone("this share link has expired".into()),
        }
    }
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
}
