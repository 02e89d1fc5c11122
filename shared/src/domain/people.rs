//! Organizations, users, teams, invitations and login sessions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Email, InviteId, OrgId, OrgRole, TeamId, TeamRole, Timestamp, TokenHash, UserId};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    pub id: OrgId,
    pub name: String,
    /// Self-signed-up users are active at once (otherwise they wait for an admin).
    pub auto_activate: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    pub version: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub org: OrgId,
    pub email: Email,
    pub name: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    pub active: bool,
    pub role: OrgRole,
    pub teams: BTreeMap<TeamId, TeamRole>,
    /// `domain: value` pairs, e.g. `nuclei: 10`.
    pub experience: BTreeMap<String, i64>,
    /// Bumped on deactivation and logout-everywhere: tokens of older generations stop working.
    pub token_generation: u64,
    pub failed_logins: u32,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub locked_until: Option<Timestamp>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    pub version: u64,
}

impl User {
    /// A new, active account with a fresh id: in no team yet, with no experience, no failed
    /// logins and its first token generation. Change what differs with struct update syntax,
    /// e.g. `User { active: false, ..User::new(…) }`.
    pub fn new(
        org: OrgId,
        email: Email,
        name: String,
        role: OrgRole,
        password_hash: String,
    ) -> Self {
        Self {
            id: UserId::generate(),
            org,
            email,
            name,
            password_hash,
            active: true,
            role,
            teams: BTreeMap::new(),
            experience: BTreeMap::new(),
            token_generation: 0,
            failed_logins: 0,
            locked_until: None,
            created_at: super::now(),
            version: 1,
        }
    }

    pub fn team_role(&self, team: &TeamId) -> Option<TeamRole> {
        self.teams.get(team).copied()
    }

    /// Teams this user manages.
    pub fn managed_teams(&self) -> impl Iterator<Item = &TeamId> {
        self.teams
            .iter()
            .filter(|(_, r)| **r == TeamRole::Manager)
            .map(|(t, _)| t)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Team {
    pub id: TeamId,
    pub org: OrgId,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    pub version: u64,
}

/// An e-mail invitation into an organization, with everything decided up front.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    pub id: InviteId,
    pub org: OrgId,
    pub email: Email,
    /// `None` when the installation's admin key sent it.
    pub invited_by: Option<UserId>,
    pub role: OrgRole,
    pub teams: BTreeMap<TeamId, TeamRole>,
    pub token_hash: TokenHash,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: Timestamp,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub accepted_at: Option<Timestamp>,
    #[serde(default)]
    pub accepted_by: Option<UserId>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<Timestamp>,
    /// How many times the e-mail was sent.
    pub sent: u32,
    pub version: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum InviteState {
    Pending,
    Accepted,
    Revoked,
    Expired,
}

/// How long an invitation link stays valid.
pub const INVITE_LIFETIME_DAYS: i64 = 14;

impl Invite {
    /// A new, pending invitation with a fresh id, valid for [`INVITE_LIFETIME_DAYS`].
    pub fn new(
        org: OrgId,
        email: Email,
        invited_by: Option<UserId>,
        role: OrgRole,
        teams: BTreeMap<TeamId, TeamRole>,
        token_hash: TokenHash,
    ) -> Self {
        let t = super::now();
        Self {
            id: InviteId::generate(),
            org,
            email,
            invited_by,
            role,
            teams,
            token_hash,
            created_at: t,
            expires_at: t + time::Duration::days(INVITE_LIFETIME_DAYS),
            accepted_at: None,
            accepted_by: None,
            revoked_at: None,
            sent: 1,
            version: 1,
        }
    }

    pub fn state_at(&self, now: Timestamp) -> InviteState {
        if self.accepted_at.is_some() {
            InviteState::Accepted
        } else if self.revoked_at.is_some() {
            InviteState::Revoked
        } else if self.expires_at <= now {
            InviteState::Expired
        } else {
            InviteState::Pending
        }
    }
}

/// A refresh token's stored side (the token itself is never stored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub user: UserId,
    /// The user's token generation when the session began.
    pub generation: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: Timestamp,
}
