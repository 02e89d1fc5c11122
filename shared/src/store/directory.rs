//! Organizations, users, teams, sessions and invitations over any [`ItemStore`]. Uniqueness
//! (organization ids, e-mail addresses per installation, team names per organization) is
//! enforced by claim items written in the same transaction as the record they guard, and every
//! change is a versioned conditional write, so concurrent writers never both win.

use super::catalog::CatalogError;
use super::{
    Cond, DynStore, Index, Item, Key, Query, StoreError, Write, body, fetch, fetch_all, keys,
};
use crate::domain::{
    Email, Invite, InviteId, OrgId, Organization, Session, Team, TeamId, TokenHash, User, UserId,
};

/// How many times a read-modify-write is retried when a concurrent writer wins.
const OPTIMISTIC_RETRIES: usize = 8;

#[derive(Clone, Debug)]
pub struct Directory {
    store: DynStore,
}

fn plain(key: Key, version: u64, value: serde_json::Value) -> Item {
    Item {
        key,
        gsi1: None,
        ttl: None,
        version,
        body: value,
    }
}

/// Invitations are kept a month past expiry for the record, then the table may drop them.
fn invite_ttl(invite: &Invite) -> i64 {
    invite.expires_at.unix_timestamp() + 30 * 86_400
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Pointer<T> {
    id: T,
}

/// Why a creation was refused.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("the organization id is taken")]
    OrgTaken,
    #[error("no such organization")]
    NoOrg,
    #[error("an account with this e-mail address exists")]
    EmailTaken,
    #[error("a team with this name exists")]
    TeamNameTaken,
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for CreateError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl Directory {
    pub fn new(store: DynStore) -> Self {
        Self { store }
    }

    fn user_item(u: &User) -> Result<Item, StoreError> {
        Ok(Item {
            key: keys::user(&u.id),
            gsi1: Some(keys::user_in_org_index(&u.org, &u.email)),
            ttl: None,
            version: u.version,
            body: body(u)?,
        })
    }

    fn claim_email(u: &User) -> Result<Write, StoreError> {
        Ok(Write::Put {
            item: plain(
                keys::email_claim(&u.email),
                1,
                body(&Pointer { id: u.id.clone() })?,
            ),
            cond: Cond::NotExists,
        })
    }

    /// Finds which claim a failed creation collided with.
    async fn explain(
        &self,
        org: Option<&OrgId>,
        email: Option<&Email>,
    ) -> Result<CreateError, StoreError> {
        if let Some(email) = email
            && self.store.get(&keys::email_claim(email)).await?.is_some()
        {
            return Ok(CreateError::EmailTaken);
        }
        if let Some(org) = org {
            return Ok(if self.store.get(&keys::org(org)).await?.is_some() {
                CreateError::OrgTaken
            } else {
                CreateError::NoOrg
            });
        }
        Ok(CreateError::Store(StoreError::Conflict))
    }

    /// A new organization and its first administrator, atomically.
    pub async fn create_org(&self, org: &Organization, admin: &User) -> Result<(), CreateError> {
        let writes = vec![
            Write::Put {
                item: plain(keys::org(&org.id), org.version, body(org)?),
                cond: Cond::NotExists,
            },
            Write::Put {
                item: Self::user_item(admin)?,
                cond: Cond::NotExists,
            },
            Self::claim_email(admin)?,
        ];
        match self.store.write(writes).await {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict) => {
                let why = self.explain(None, Some(&admin.email)).await?;
                match why {
                    CreateError::EmailTaken => Err(why),
                    _ => Err(CreateError::OrgTaken),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn org(&self, id: &OrgId) -> Result<Organization, CatalogError> {
        fetch(&self.store, &keys::org(id)).await
    }

    /// A new user in an existing organization (its e-mail address unused so far).
    pub async fn create_user(&self, user: &User) -> Result<(), CreateError> {
        let writes = vec![
            Write::Check {
                key: keys::org(&user.org),
                cond: Cond::Exists,
            },
            Write::Put {
                item: Self::user_item(user)?,
                cond: Cond::NotExists,
            },
            Self::claim_email(user)?,
        ];
        match self.store.write(writes).await {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict) => {
                Err(self.explain(Some(&user.org), Some(&user.email)).await?)
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn user(&self, id: &UserId) -> Result<User, CatalogError> {
        fetch(&self.store, &keys::user(id)).await
    }

    pub async fn user_by_email(&self, email: &Email) -> Result<User, CatalogError> {
        let pointer: Pointer<UserId> = fetch(&self.store, &keys::email_claim(email)).await?;
        self.user(&pointer.id).await
    }

    /// Every user of an organization, by e-mail address.
    pub async fn users_of(&self, org: &OrgId) -> Result<Vec<User>, CatalogError> {
        fetch_all(
            &self.store,
            Query::new(Index::Gsi1, keys::org_users_partition(org), ""),
        )
        .await
    }

    /// Read-modify-write of a user with optimistic concurrency; `change` may refuse (its error
    /// is returned untouched) and is re-run on the fresh record when a concurrent writer won.
    pub async fn update_user<E: From<CatalogError>>(
        &self,
        id: &UserId,
        mut change: impl FnMut(&mut User) -> Result<(), E>,
    ) -> Result<User, E> {
        for _ in 0..OPTIMISTIC_RETRIES {
            let mut user = self.user(id).await?;
            let seen = user.version;
            change(&mut user)?;
            user.version = seen + 1;
            let item = Self::user_item(&user).map_err(CatalogError::from)?;
            match self
                .store
                .write(vec![Write::Put {
                    item,
                    cond: Cond::Version(seen),
                }])
                .await
            {
                Ok(()) => return Ok(user),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(CatalogError::from(e).into()),
            }
        }
        Err(CatalogError::Conflict.into())
    }

    pub async fn create_team(&self, team: &Team) -> Result<(), CreateError> {
        let writes = vec![
            Write::Check {
                key: keys::org(&team.org),
                cond: Cond::Exists,
            },
            Write::Put {
                item: Item {
                    key: keys::team(&team.id),
                    gsi1: Some(keys::team_in_org_index(&team.org, &team.name)),
                    ttl: None,
                    version: team.version,
                    body: body(team)?,
                },
                cond: Cond::NotExists,
            },
            Write::Put {
                item: plain(
                    keys::team_name_claim(&team.org, &team.name),
                    1,
                    body(&Pointer {
                        id: team.id.clone(),
                    })?,
                ),
                cond: Cond::NotExists,
            },
        ];
        match self.store.write(writes).await {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict) => match self.store.get(&keys::org(&team.org)).await? {
                None => Err(CreateError::NoOrg),
                Some(_) => Err(CreateError::TeamNameTaken),
            },
            Err(e) => Err(e.into()),
        }
    }

    pub async fn team(&self, id: &TeamId) -> Result<Team, CatalogError> {
        fetch(&self.store, &keys::team(id)).await
    }

    pub async fn teams_of(&self, org: &OrgId) -> Result<Vec<Team>, CatalogError> {
        fetch_all(
            &self.store,
            Query::new(Index::Gsi1, keys::org_teams_partition(org), ""),
        )
        .await
    }

    fn session_item(hash: &TokenHash, session: &Session) -> Result<Item, StoreError> {
        Ok(Item {
            key: keys::session(hash),
            gsi1: None,
            ttl: Some(session.expires_at.unix_timestamp()),
            version: 1,
            body: body(session)?,
        })
    }

    pub async fn create_session(
        &self,
        hash: &TokenHash,
        session: &Session,
    ) -> Result<(), CatalogError> {
        let item = Self::session_item(hash, session)?;
        Ok(self
            .store
            .write(vec![Write::Put {
                item,
                cond: Cond::NotExists,
            }])
            .await?)
    }

    pub async fn session(&self, hash: &TokenHash) -> Result<Session, CatalogError> {
        fetch(&self.store, &keys::session(hash)).await
    }

    /// Replaces a session by a new one atomically: of two refreshes with one token, one wins.
    pub async fn rotate_session(
        &self,
        old: &TokenHash,
        new: &TokenHash,
        session: &Session,
    ) -> Result<(), CatalogError> {
        let writes = vec![
            Write::Delete {
                key: keys::session(old),
                cond: Cond::Exists,
            },
            Write::Put {
                item: Self::session_item(new, session)?,
                cond: Cond::NotExists,
            },
        ];
        match self.store.write(writes).await {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict) => Err(CatalogError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn end_session(&self, hash: &TokenHash) -> Result<(), CatalogError> {
        Ok(self
            .store
            .write(vec![Write::Delete {
                key: keys::session(hash),
                cond: Cond::Always,
            }])
            .await?)
    }

    fn invite_item(invite: &Invite) -> Result<Item, StoreError> {
        Ok(Item {
            key: keys::invite(&invite.id),
            gsi1: Some(keys::invite_in_org_index(
                &invite.org,
                &invite.id,
                invite.created_at,
            )),
            ttl: Some(invite_ttl(invite)),
            version: invite.version,
            body: body(invite)?,
        })
    }

    /// Stores a new invitation with its token pointer.
    pub async fn create_invite(&self, invite: &Invite) -> Result<(), CatalogError> {
        self.write_invite_with_token(invite, Cond::NotExists).await
    }

    /// Stores an invitation with a new token (resend), if nobody changed it since
    /// `seen_version`: the old token no longer matches the invitation's hash.
    pub async fn reissue_invite(
        &self,
        invite: &Invite,
        seen_version: u64,
    ) -> Result<(), CatalogError> {
        self.write_invite_with_token(invite, Cond::Version(seen_version))
            .await
    }

    async fn write_invite_with_token(
        &self,
        invite: &Invite,
        cond: Cond,
    ) -> Result<(), CatalogError> {
        let pointer = Item {
            ttl: Some(invite_ttl(invite)),
            ..plain(
                keys::invite_token(&invite.token_hash),
                1,
                body(&Pointer {
                    id: invite.id.clone(),
                })?,
            )
        };
        let writes = vec![
            Write::Put {
                item: Self::invite_item(invite)?,
                cond,
            },
            Write::Put {
                item: pointer,
                cond: Cond::NotExists,
            },
        ];
        Ok(self.store.write(writes).await?)
    }

    pub async fn invite(&self, id: &InviteId) -> Result<Invite, CatalogError> {
        fetch(&self.store, &keys::invite(id)).await
    }

    pub async fn invite_by_token(&self, hash: &TokenHash) -> Result<Invite, CatalogError> {
        let pointer: Pointer<InviteId> = fetch(&self.store, &keys::invite_token(hash)).await?;
        let invite = self.invite(&pointer.id).await?;
        if invite.token_hash != *hash {
            return Err(CatalogError::NotFound);
        }
        Ok(invite)
    }

    /// An organization's invitations, newest first.
    pub async fn invites_of(&self, org: &OrgId) -> Result<Vec<Invite>, CatalogError> {
        let mut q = Query::new(Index::Gsi1, keys::org_invites_partition(org), "");
        q.descending = true;
        fetch_all(&self.store, q).await
    }

    /// Stores a changed invitation if nobody changed it since `seen_version`.
    pub async fn save_invite(
        &self,
        invite: &Invite,
        seen_version: u64,
    ) -> Result<(), CatalogError> {
        let item = Self::invite_item(invite)?;
        Ok(self
            .store
            .write(vec![Write::Put {
                item,
                cond: Cond::Version(seen_version),
            }])
            .await?)
    }

    /// Accepts an invitation by creating its account: the invitation's acceptance, the user and
    /// the e-mail claim in one transaction — of two concurrent accepts exactly one wins.
    pub async fn accept_invite_as_new_user(
        &self,
        invite: &Invite,
        seen_version: u64,
        user: &User,
    ) -> Result<(), CreateError> {
        let writes = vec![
            Write::Put {
                item: Self::invite_item(invite)?,
                cond: Cond::Version(seen_version),
            },
            Write::Put {
                item: Self::user_item(user)?,
                cond: Cond::NotExists,
            },
            Self::claim_email(user)?,
        ];
        match self.store.write(writes).await {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict) => {
                // The invitation moved on (another accept won): that is the conflict to report.
                let current = self.store.get(&keys::invite(&invite.id)).await?;
                if current.is_none_or(|i| i.version != seen_version) {
                    return Err(CreateError::Store(StoreError::Conflict));
                }
                match self.store.get(&keys::email_claim(&user.email)).await? {
                    Some(_) => Err(CreateError::EmailTaken),
                    None => Err(CreateError::Store(StoreError::Conflict)),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Accepts an invitation for an existing account: acceptance and the user's new teams and
    /// role in one transaction.
    pub async fn accept_invite_as_existing_user(
        &self,
        invite: &Invite,
        seen_invite: u64,
        user: &User,
        seen_user: u64,
    ) -> Result<(), CatalogError> {
        let writes = vec![
            Write::Put {
                item: Self::invite_item(invite)?,
                cond: Cond::Version(seen_invite),
            },
            Write::Put {
                item: Self::user_item(user)?,
                cond: Cond::Version(seen_user),
            },
        ];
        Ok(self.store.write(writes).await?)
    }
}
