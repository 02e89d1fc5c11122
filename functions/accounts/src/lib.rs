//! The accounts function: organizations, sign-up and login (access + rotating refresh tokens),
//! activation, roles and teams, experience levels, and e-mail invitations. Handlers parse,
//! ask the one access decision, and call the directory.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use shared::access::{
    Action, Actor, Decision, InviteTarget, MemberFacts, Resource, UserTarget, decide, require,
};
use shared::auth::{Authenticator, Caller};
use shared::domain::{
    Email, Invite, InviteId, InviteState, LinkToken, OrgId, OrgRole, Organization, Password,
    Session, Team, TeamId, TeamRole, Timestamp, User, UserId, now,
};
use shared::error::{ApiJson, ApiQuery, Problem};
use shared::mail::{Mail, html_escape};
use shared::store::catalog::CatalogError;
use shared::store::directory::CreateError;
use shared::{ApiError, Services};
use utoipa::{IntoParams, ToSchema};

const MAX_BODY_BYTES: usize = 64 * 1024;
const MAX_INVITES_PER_CALL: usize = 100;
const MAX_BULK_USERS: usize = 500;
use shared::domain::INVITE_LIFETIME_DAYS;
/// Failed logins before the account is locked for a while (doubling with each further failure).
const LOCK_AFTER_FAILURES: u32 = 5;

#[derive(Clone)]
struct AppState {
    services: Arc<Services>,
}

impl FromRef<AppState> for Arc<Authenticator> {
    fn from_ref(s: &AppState) -> Self {
        s.services.auth.clone()
    }
}

/// The function as deployed: its routes, a problem-document fallback, CORS.
pub fn router(services: Arc<Services>) -> Router {
    shared::http::served(routes(services))
}

/// Just the routes, for mounting beside other functions' in the local server.
pub fn routes(services: Arc<Services>) -> Router {
    Router::new()
        .route("/api/organizations", post(create_organization))
        .route("/api/auth/signup", post(signup))
        .route("/api/auth/login", post(login))
        .route("/api/auth/refresh", post(refresh))
        .route("/api/auth/logout", post(logout))
        .route("/api/me", get(me))
        .route("/api/users", get(list_users))
        .route("/api/users/bulk", post(bulk_edit))
        .route("/api/users/experience", post(edit_experience))
        .route("/api/users/{id}/activate", post(activate))
        .route("/api/users/{id}/deactivate", post(deactivate))
        .route("/api/teams", get(list_teams).post(create_team))
        .route("/api/invites", get(list_invites).post(invite))
        .route("/api/invites/accept", get(show_invite).post(accept_invite))
        .route("/api/invites/{id}/resend", post(resend_invite))
        .route("/api/invites/{id}", axum::routing::delete(revoke_invite))
        .method_not_allowed_fallback(shared::error::wrong_method)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(AppState { services })
}

/// This function's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use shared::auth::SecuritySchemes;
    #[derive(utoipa::OpenApi)]
    #[openapi(
        paths(
            create_organization, signup, login, refresh, logout, me, list_users, bulk_edit, edit_experience,
            activate, deactivate, list_teams, create_team, list_invites, invite, show_invite, accept_invite,
            resend_invite, revoke_invite
        ),
        components(schemas(Problem)),
        tags((name = "accounts", description = "Organizations, users, teams and invitations")),
        modifiers(&SecuritySchemes),
    )]
    struct Doc;
    <Doc as utoipa::OpenApi>::openapi()
}

fn allowed(actor: &Actor, action: Action, resource: Resource<'_>) -> bool {
    decide(actor, action, resource, now()) == Decision::Allow
}

/// The organization the caller acts in.
fn org_of(actor: &Actor) -> Result<OrgId, ApiError> {
    match actor {
        Actor::OrgAdmin { org } => Ok(org.clone()),
        Actor::User(m) => Ok(m.org.clone()),
        Actor::Anonymous | Actor::LinkHolder(_) => Err(ApiError::Unauthorized),
    }
}

fn target(u: &User) -> Resource<'_> {
    Resource::User(UserTarget {
        id: &u.id,
        org: &u.org,
        role: u.role,
        teams: &u.teams,
    })
}

fn not_found(e: CatalogError, what: &str) -> ApiError {
    match e {
        CatalogError::NotFound => ApiError::NotFound(format!("no such {what}")),
        other => other.into(),
    }
}

fn created(e: CreateError) -> ApiError {
    match e {
        CreateError::OrgTaken => ApiError::Conflict("an organization with this id exists".into()),
        CreateError::NoOrg => ApiError::NotFound("no such organization".into()),
        CreateError::EmailTaken => {
            ApiError::Conflict("an account with this e-mail address exists".into())
        }
        CreateError::TeamNameTaken => ApiError::Conflict("a team with this name exists".into()),
        CreateError::Store(s) => s.into(),
    }
}

fn name_of(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let v = value.trim();
    if v.is_empty() || v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(ApiError::Unprocessable(format!(
            "{field} must be 1-{max} printable characters"
        )));
    }
    Ok(v.to_owned())
}

async fn hash_password(password: Password) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || shared::passwords::hash(&password))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}

async fn check_password(stored: Option<String>, candidate: String) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || match stored {
        Some(h) => shared::passwords::verify(&h, &candidate),
        None => {
            shared::passwords::verify_nothing(&candidate);
            false
        }
    })
    .await
    .map_err(ApiError::internal)
}

// ---------------------------------------------------------------------------------------------
// Views

/// A user as the API shows it (never the password hash).
#[derive(Serialize, ToSchema)]
pub struct UserView {
    #[schema(value_type = String)]
    pub id: UserId,
    #[schema(value_type = String)]
    pub organization: OrgId,
    #[schema(value_type = String)]
    pub email: Email,
    pub name: String,
    pub active: bool,
    pub role: OrgRole,
    #[schema(value_type = BTreeMap<String, TeamRole>)]
    pub teams: BTreeMap<TeamId, TeamRole>,
    pub experience: BTreeMap<String, i64>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            organization: u.org,
            email: u.email,
            name: u.name,
            active: u.active,
            role: u.role,
            teams: u.teams,
            experience: u.experience,
            created_at: u.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct TokenPair {
    /// A short-lived JWT for `Authorization: Bearer`.
    pub access_token: String,
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Single-use: `/api/auth/refresh` exchanges it for a new pair.
    pub refresh_token: String,
}

async fn issue_tokens(services: &Services, user: &User) -> Result<TokenPair, ApiError> {
    let access_token = services
        .tokens
        .issue(&user.id, &user.org, user.token_generation)
        .map_err(ApiError::internal)?;
    let refresh = LinkToken::generate();
    let ttl = time::Duration::try_from(services.config.refresh_token_ttl)
        .unwrap_or(time::Duration::days(30));
    let session = Session {
        user: user.id.clone(),
        generation: user.token_generation,
        expires_at: now() + ttl,
    };
    services
        .directory
        .create_session(&refresh.hash(), &session)
        .await?;
    Ok(TokenPair {
        access_token,
        token_type: "Bearer",
        expires_in: services.tokens.ttl().as_secs(),
        refresh_token: refresh.expose().to_owned(),
    })
}

// ---------------------------------------------------------------------------------------------
// Organizations, sign-up, login

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    pub email: String,
    pub password: String,
    pub name: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrganization {
    /// A slug: `[a-z0-9-]{2,40}`.
    pub id: String,
    pub name: String,
    /// Self-signed-up users are active at once.
    #[serde(default)]
    pub auto_activate: bool,
    /// The first administrator.
    pub admin: NewAccount,
}

#[derive(Serialize, ToSchema)]
pub struct OrganizationCreated {
    pub organization: OrganizationView,
    pub admin: UserView,
    pub tokens: TokenPair,
}

#[derive(Serialize, ToSchema)]
pub struct OrganizationView {
    #[schema(value_type = String)]
    pub id: OrgId,
    pub name: String,
    pub auto_activate: bool,
}

async fn new_user(
    org: &OrgId,
    account: NewAccount,
    active: bool,
    role: OrgRole,
) -> Result<User, ApiError> {
    let email = Email::parse(&account.email)?;
    let password = Password::parse(&account.password, &email)?;
    let name = name_of("name", &account.name, 200)?;
    Ok(User {
        active,
        ..User::new(
            org.clone(),
            email,
            name,
            role,
            hash_password(password).await?,
        )
    })
}

/// Create an organization with its first administrator (signed in at once).
#[utoipa::path(post, path = "/api/organizations", tag = "accounts", request_body = CreateOrganization,
    responses((status = 201, body = OrganizationCreated), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn create_organization(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<CreateOrganization>,
) -> Result<Response, ApiError> {
    let id = OrgId::parse(&req.id)?;
    let org = Organization {
        id: id.clone(),
        name: name_of("name", &req.name, 200)?,
        auto_activate: req.auto_activate,
        created_at: now(),
        version: 1,
    };
    let admin = new_user(&id, req.admin, true, OrgRole::Admin).await?;
    s.services
        .directory
        .create_org(&org, &admin)
        .await
        .map_err(created)?;
    let tokens = issue_tokens(&s.services, &admin).await?;
    let body = OrganizationCreated {
        organization: OrganizationView {
            id: org.id,
            name: org.name,
            auto_activate: org.auto_activate,
        },
        admin: admin.into(),
        tokens,
    };
    Ok((StatusCode::CREATED, ApiJson(body)).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Signup {
    pub organization: String,
    pub email: String,
    pub password: String,
    pub name: String,
}

/// Sign up to an organization; the account waits for activation unless the organization auto-activates.
#[utoipa::path(post, path = "/api/auth/signup", tag = "accounts", request_body = Signup,
    responses((status = 201, body = UserView), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn signup(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<Signup>,
) -> Result<Response, ApiError> {
    let org_id = OrgId::parse(&req.organization)
        .map_err(|_| ApiError::NotFound("no such organization".into()))?;
    let org = s
        .services
        .directory
        .org(&org_id)
        .await
        .map_err(|e| not_found(e, "organization"))?;
    let account = NewAccount {
        email: req.email,
        password: req.password,
        name: req.name,
    };
    let user = new_user(&org.id, account, org.auto_activate, OrgRole::User).await?;
    s.services
        .directory
        .create_user(&user)
        .await
        .map_err(created)?;
    Ok((StatusCode::CREATED, ApiJson(UserView::from(user))).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub email: String,
    pub password: String,
}

/// Log in: an access token and a rotating refresh token. Repeated failures lock the account
/// for a while (15 minutes after 5, doubling with each further failure, at most a day).
#[utoipa::path(post, path = "/api/auth/login", tag = "accounts", request_body = Login,
    responses((status = 200, body = TokenPair), (status = 401, body = Problem), (status = 403, description = "Not activated", body = Problem),
        (status = 429, description = "Locked after repeated failures", body = Problem)))]
async fn login(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<Login>,
) -> Result<ApiJson<TokenPair>, ApiError> {
    let dir = &s.services.directory;
    let Ok(email) = Email::parse(&req.email) else {
        check_password(None, req.password).await?;
        return Err(ApiError::Unauthorized);
    };
    let user = match dir.user_by_email(&email).await {
        Ok(u) => u,
        Err(CatalogError::NotFound) => {
            check_password(None, req.password).await?;
            return Err(ApiError::Unauthorized);
        }
        Err(e) => return Err(e.into()),
    };
    let t = now();
    if let Some(until) = user.locked_until.filter(|u| *u > t) {
        let secs = (until - t).whole_seconds().max(1) as u64;
        return Err(ApiError::TooManyRequests {
            retry_after_secs: secs,
        });
    }
    if !check_password(Some(user.password_hash.clone()), req.password).await? {
        dir.update_user::<ApiError>(&user.id, |u| {
            u.failed_logins += 1;
            if u.failed_logins >= LOCK_AFTER_FAILURES {
                let doublings = (u.failed_logins - LOCK_AFTER_FAILURES).min(7);
                let minutes = (15i64 << doublings).min(24 * 60);
                u.locked_until = Some(now() + time::Duration::minutes(minutes));
            }
            Ok(())
        })
        .await?;
        return Err(ApiError::Unauthorized);
    }
    if !user.active {
        return Err(ApiError::Forbidden("this account is not activated".into()));
    }
    let user = if user.failed_logins > 0 || user.locked_until.is_some() {
        dir.update_user::<ApiError>(&user.id, |u| {
            u.failed_logins = 0;
            u.locked_until = None;
            Ok(())
        })
        .await?
    } else {
        user
    };
    Ok(ApiJson(issue_tokens(&s.services, &user).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// Exchange a refresh token for a new pair; the old one stops working (rotation).
#[utoipa::path(post, path = "/api/auth/refresh", tag = "accounts", request_body = RefreshRequest,
    responses((status = 200, body = TokenPair), (status = 401, body = Problem)))]
async fn refresh(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<ApiJson<TokenPair>, ApiError> {
    let dir = &s.services.directory;
    let old = LinkToken::parse(&req.refresh_token)
        .map_err(|_| ApiError::Unauthorized)?
        .hash();
    let session = dir.session(&old).await.map_err(|e| match e {
        CatalogError::NotFound => ApiError::Unauthorized,
        other => other.into(),
    })?;
    if session.expires_at <= now() {
        dir.end_session(&old).await?;
        return Err(ApiError::Unauthorized);
    }
    let user = dir
        .user(&session.user)
        .await
        .map_err(|_| ApiError::Unauthorized)?;
    if !user.active || user.token_generation != session.generation {
        dir.end_session(&old).await?;
        return Err(ApiError::Unauthorized);
    }
    let next = LinkToken::generate();
    let rotated = Session {
        expires_at: session.expires_at,
        ..session
    };
    dir.rotate_session(&old, &next.hash(), &rotated)
        .await
        .map_err(|e| match e {
            CatalogError::NotFound => ApiError::Unauthorized,
            other => other.into(),
        })?;
    let access_token = s
        .services
        .tokens
        .issue(&user.id, &user.org, user.token_generation)
        .map_err(ApiError::internal)?;
    Ok(ApiJson(TokenPair {
        access_token,
        token_type: "Bearer",
        expires_in: s.services.tokens.ttl().as_secs(),
        refresh_token: next.expose().to_owned(),
    }))
}

/// End a session: its refresh token stops working.
#[utoipa::path(post, path = "/api/auth/logout", tag = "accounts", request_body = RefreshRequest,
    responses((status = 204, description = "Logged out")))]
async fn logout(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<StatusCode, ApiError> {
    if let Ok(token) = LinkToken::parse(&req.refresh_token) {
        s.services.directory.end_session(&token.hash()).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

fn me_id(actor: &Actor) -> Result<&UserId, ApiError> {
    match actor {
        Actor::User(m) => m.id.as_ref().ok_or(ApiError::Unauthorized),
        Actor::OrgAdmin { .. } => Err(ApiError::NotFound(
            "the admin key is not a user account".into(),
        )),
        _ => Err(ApiError::Unauthorized),
    }
}

/// The signed-in user.
#[utoipa::path(get, path = "/api/me", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 401, body = Problem)))]
async fn me(
    State(s): State<AppState>,
    Caller(actor): Caller,
) -> Result<ApiJson<UserView>, ApiError> {
    let id = me_id(&actor)?;
    let user = s
        .services
        .directory
        .user(id)
        .await
        .map_err(|e| not_found(e, "user"))?;
    Ok(ApiJson(user.into()))
}

// ---------------------------------------------------------------------------------------------
// Users

#[derive(Clone, Copy, Deserialize, ToSchema, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StatusFilter {
    #[default]
    All,
    Active,
    Inactive,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UserQuery {
    /// `active`, `inactive` or `all` (default).
    pub status: Option<StatusFilter>,
    /// Only members of this team.
    pub team: Option<String>,
    /// An experience condition, e.g. `nuclei>=5` (operators `>=`, `<=`, `>`, `<`, `=`).
    pub experience: Option<String>,
}

/// `domain`, comparison, value.
fn parse_condition(text: &str) -> Result<(String, &'static str, i64), ApiError> {
    for op in [">=", "<=", ">", "<", "="] {
        if let Some((domain, value)) = text.split_once(op) {
            let domain = parse_domain(domain)?;
            let value = value.trim().parse().map_err(|_| {
                ApiError::BadRequest("experience value must be a whole number".into())
            })?;
            return Ok((domain, op, value));
        }
    }
    Err(ApiError::BadRequest(
        "experience must look like nuclei>=5".into(),
    ))
}

fn parse_domain(domain: &str) -> Result<String, ApiError> {
    let d = domain.trim().to_lowercase();
    let ok = (1..=40).contains(&d.len())
        && d.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    if ok {
        Ok(d)
    } else {
        Err(ApiError::Unprocessable(format!(
            "'{domain}' is not an experience domain (1-40 of a-z 0-9 _ - .)"
        )))
    }
}

fn meets(
    experience: &BTreeMap<String, i64>,
    (domain, op, value): &(String, &'static str, i64),
) -> bool {
    experience.get(domain).is_some_and(|v| match *op {
        ">=" => v >= value,
        "<=" => v <= value,
        ">" => v > value,
        "<" => v < value,
        _ => v == value,
    })
}

/// The organization's users the caller may see, filtered by status, team and experience.
#[utoipa::path(get, path = "/api/users", tag = "accounts", security(("bearer" = [])), params(UserQuery),
    responses((status = 200, body = Vec<UserView>), (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn list_users(
    State(s): State<AppState>,
    Caller(actor): Caller,
    ApiQuery(q): ApiQuery<UserQuery>,
) -> Result<ApiJson<Vec<UserView>>, ApiError> {
    let org = org_of(&actor)?;
    require(&actor, Action::ListUsers, Resource::Organization(&org))?;
    let team = q.team.as_deref().map(TeamId::parse).transpose()?;
    let condition = q.experience.as_deref().map(parse_condition).transpose()?;
    let status = q.status.unwrap_or_default();
    let users = s.services.directory.users_of(&org).await?;
    let visible = users
        .into_iter()
        .filter(|u| allowed(&actor, Action::ViewUser, target(u)))
        .filter(|u| match status {
            StatusFilter::All => true,
            StatusFilter::Active => u.active,
            StatusFilter::Inactive => !u.active,
        })
        .filter(|u| team.as_ref().is_none_or(|t| u.teams.contains_key(t)))
        .filter(|u| condition.as_ref().is_none_or(|c| meets(&u.experience, c)))
        .map(UserView::from)
        .collect();
    Ok(ApiJson(visible))
}

/// The user `id` names, if the caller may manage them.
async fn managed_user(services: &Services, actor: &Actor, id: &str) -> Result<User, ApiError> {
    let id = UserId::parse(id).map_err(|_| ApiError::NotFound("no such user".into()))?;
    let user = services
        .directory
        .user(&id)
        .await
        .map_err(|e| not_found(e, "user"))?;
    require(actor, Action::ManageUser, target(&user))?;
    Ok(user)
}

/// The users of a bulk call: 1–500 ids, parsed, duplicates merged.
fn parse_user_ids(ids: &[String]) -> Result<BTreeSet<UserId>, ApiError> {
    if ids.is_empty() || ids.len() > MAX_BULK_USERS {
        return Err(ApiError::Unprocessable(format!(
            "name 1-{MAX_BULK_USERS} users"
        )));
    }
    Ok(ids
        .iter()
        .map(|i| UserId::parse(i))
        .collect::<Result<_, _>>()?)
}

/// Checks that every team exists in `org` and that the caller may manage each of them.
async fn check_teams(
    services: &Services,
    actor: &Actor,
    org: &OrgId,
    teams: impl Iterator<Item = &TeamId>,
) -> Result<(), ApiError> {
    for team in teams {
        let t = services
            .directory
            .team(team)
            .await
            .map_err(|e| not_found(e, "team"))?;
        if &t.org != org {
            return Err(ApiError::NotFound("no such team".into()));
        }
        require(actor, Action::ManageTeam, Resource::Team { org, team })?;
    }
    Ok(())
}

fn parse_teams(teams: &BTreeMap<String, TeamRole>) -> Result<BTreeMap<TeamId, TeamRole>, ApiError> {
    teams
        .iter()
        .map(|(t, r)| Ok((TeamId::parse(t)?, *r)))
        .collect()
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Activation {
    /// Organization role to set (admins only).
    pub role: Option<OrgRole>,
    /// Teams to put the user in, with their role there.
    #[serde(default)]
    pub teams: BTreeMap<String, TeamRole>,
}

/// Activate (or reactivate) a user, assigning teams and role in the same step.
#[utoipa::path(post, path = "/api/users/{id}/activate", tag = "accounts", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = Activation,
    responses((status = 200, body = UserView), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn activate(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<Activation>,
) -> Result<ApiJson<UserView>, ApiError> {
    let user = managed_user(&s.services, &actor, &id).await?;
    let id = user.id.clone();
    if req.role.is_some() {
        require(&actor, Action::SetRole, target(&user))?;
    }
    let teams = parse_teams(&req.teams)?;
    check_teams(&s.services, &actor, &user.org, teams.keys()).await?;
    let updated = s
        .services
        .directory
        .update_user::<ApiError>(&id, |u| {
            u.active = true;
            u.failed_logins = 0;
            u.locked_until = None;
            if let Some(role) = req.role {
                u.role = role;
            }
            u.teams.extend(teams.iter().map(|(t, r)| (t.clone(), *r)));
            Ok(())
        })
        .await?;
    s.services.forget_user(&id);
    Ok(ApiJson(updated.into()))
}

/// Deactivate a user: their access and refresh tokens stop working at once. Nobody is deleted.
#[utoipa::path(post, path = "/api/users/{id}/deactivate", tag = "accounts", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = UserView), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn deactivate(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<ApiJson<UserView>, ApiError> {
    let user = managed_user(&s.services, &actor, &id).await?;
    let id = user.id.clone();
    let updated = s
        .services
        .directory
        .update_user::<ApiError>(&id, |u| {
            if u.active {
                u.active = false;
                u.token_generation += 1;
            }
            Ok(())
        })
        .await?;
    s.services.forget_user(&id);
    Ok(ApiJson(updated.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkEdit {
    pub user_ids: Vec<String>,
    /// Teams to add (or whose role to change), with the role there.
    #[serde(default)]
    pub add_teams: BTreeMap<String, TeamRole>,
    #[serde(default)]
    pub remove_teams: Vec<String>,
    /// Organization role for all of them (admins only).
    pub role: Option<OrgRole>,
}

/// Edit teams and permissions of several users at once: all are checked before any changes.
#[utoipa::path(post, path = "/api/users/bulk", tag = "accounts", security(("bearer" = [])), request_body = BulkEdit,
    responses((status = 200, body = Vec<UserView>), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn bulk_edit(
    State(s): State<AppState>,
    Caller(actor): Caller,
    ApiJson(req): ApiJson<BulkEdit>,
) -> Result<ApiJson<Vec<UserView>>, ApiError> {
    let org = org_of(&actor)?;
    let ids = parse_user_ids(&req.user_ids)?;
    let add = parse_teams(&req.add_teams)?;
    let remove: Vec<TeamId> = req
        .remove_teams
        .iter()
        .map(|t| TeamId::parse(t))
        .collect::<Result<_, _>>()?;
    check_teams(&s.services, &actor, &org, add.keys().chain(remove.iter())).await?;
    let dir = &s.services.directory;
    for id in &ids {
        let user = dir.user(id).await.map_err(|e| not_found(e, "user"))?;
        require(&actor, Action::ManageUser, target(&user))?;
        if req.role.is_some() {
            require(&actor, Action::SetRole, target(&user))?;
        }
    }
    let mut out = Vec::with_capacity(ids.len());
    for id in &ids {
        let updated = dir
            .update_user::<ApiError>(id, |u| {
                for t in &remove {
                    u.teams.remove(t);
                }
                u.teams.extend(add.iter().map(|(t, r)| (t.clone(), *r)));
                if let Some(role) = req.role {
                    u.role = role;
                }
                Ok(())
            })
            .await?;
        s.services.forget_user(id);
        out.push(updated.into());
    }
    Ok(ApiJson(out))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExperienceEdit {
    pub user_ids: Vec<String>,
    /// `domain: value` pairs to set; a new domain is created by naming it.
    #[serde(default)]
    pub set: BTreeMap<String, i64>,
    #[serde(default)]
    pub remove: Vec<String>,
}

/// Set and remove experience levels of several users (admins).
#[utoipa::path(post, path = "/api/users/experience", tag = "accounts", security(("bearer" = [])), request_body = ExperienceEdit,
    responses((status = 200, body = Vec<UserView>), (status = 403, body = Problem)))]
async fn edit_experience(
    State(s): State<AppState>,
    Caller(actor): Caller,
    ApiJson(req): ApiJson<ExperienceEdit>,
) -> Result<ApiJson<Vec<UserView>>, ApiError> {
    let org = org_of(&actor)?;
    require(&actor, Action::EditExperience, Resource::Organization(&org))?;
    let ids = parse_user_ids(&req.user_ids)?;
    let set: BTreeMap<String, i64> = req
        .set
        .iter()
        .map(|(d, v)| Ok((parse_domain(d)?, *v)))
        .collect::<Result<_, ApiError>>()?;
    let remove: Vec<String> = req
        .remove
        .iter()
        .map(|d| parse_domain(d))
        .collect::<Result<_, _>>()?;
    let dir = &s.services.directory;
    for id in &ids {
        let user = dir.user(id).await.map_err(|e| not_found(e, "user"))?;
        require(&actor, Action::EditExperience, target(&user))?;
    }
    let mut out = Vec::new();
    for id in &ids {
        let updated = dir
            .update_user::<ApiError>(id, |u| {
                for d in &remove {
                    u.experience.remove(d);
                }
                u.experience
                    .extend(set.iter().map(|(d, v)| (d.clone(), *v)));
                Ok(())
            })
            .await?;
        s.services.forget_user(id);
        out.push(updated.into());
    }
    Ok(ApiJson(out))
}

// ---------------------------------------------------------------------------------------------
// Teams

#[derive(Serialize, ToSchema)]
pub struct TeamView {
    #[schema(value_type = String)]
    pub id: TeamId,
    pub name: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTeam {
    pub name: String,
}

/// The organization's teams.
#[utoipa::path(get, path = "/api/teams", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, body = Vec<TeamView>), (status = 401, body = Problem)))]
async fn list_teams(
    State(s): State<AppState>,
    Caller(actor): Caller,
) -> Result<ApiJson<Vec<TeamView>>, ApiError> {
    let org = org_of(&actor)?;
    let teams = s.services.directory.teams_of(&org).await?;
    Ok(ApiJson(
        teams
            .into_iter()
            .map(|t| TeamView {
                id: t.id,
                name: t.name,
            })
            .collect(),
    ))
}

/// Create a team (admins).
#[utoipa::path(post, path = "/api/teams", tag = "accounts", security(("bearer" = [])), request_body = NewTeam,
    responses((status = 201, body = TeamView), (status = 403, body = Problem), (status = 409, body = Problem)))]
async fn create_team(
    State(s): State<AppState>,
    Caller(actor): Caller,
    ApiJson(req): ApiJson<NewTeam>,
) -> Result<Response, ApiError> {
    let org = org_of(&actor)?;
    require(&actor, Action::CreateTeam, Resource::Organization(&org))?;
    let team = Team {
        id: TeamId::generate(),
        org,
        name: name_of("name", &req.name, 100)?,
        created_at: now(),
        version: 1,
    };
    s.services
        .directory
        .create_team(&team)
        .await
        .map_err(created)?;
    Ok((
        StatusCode::CREATED,
        ApiJson(TeamView {
            id: team.id,
            name: team.name,
        }),
    )
        .into_response())
}

// ---------------------------------------------------------------------------------------------
// Invitations

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInvites {
    pub emails: Vec<String>,
    #[serde(default)]
    pub role: OrgRole,
    #[serde(default)]
    pub teams: BTreeMap<String, TeamRole>,
}

#[derive(Serialize, ToSchema)]
pub struct InviteView {
    #[schema(value_type = String)]
    pub id: InviteId,
    #[schema(value_type = String)]
    pub email: Email,
    pub role: OrgRole,
    #[schema(value_type = BTreeMap<String, TeamRole>)]
    pub teams: BTreeMap<TeamId, TeamRole>,
    pub state: InviteState,
    /// `null` when the installation's admin key sent it.
    #[schema(value_type = Option<String>)]
    pub invited_by: Option<UserId>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
    pub sent: u32,
}

impl From<&Invite> for InviteView {
    fn from(i: &Invite) -> Self {
        Self {
            id: i.id.clone(),
            email: i.email.clone(),
            role: i.role,
            teams: i.teams.clone(),
            state: i.state_at(now()),
            invited_by: i.invited_by.clone(),
            expires_at: i.expires_at,
            sent: i.sent,
        }
    }
}

fn accept_url(services: &Services, token: &LinkToken) -> String {
    services.invite_accept_url(token)
}

fn invitation_mail(
    services: &Services,
    invite: &Invite,
    inviter: &str,
    org: &Organization,
    token: &LinkToken,
) -> Mail {
    let url = accept_url(services, token);
    let days = ((invite.expires_at - now()).whole_seconds() + 86_399)
        .div_euclid(86_400)
        .max(1);
    let text = format!(
        "{inviter} invited you to join {org} on zarrshare.\n\nAccept the invitation (valid for {days} days):\n{url}\n\n\
         If you already have an account with this address, you join with it; otherwise you choose a password.\n",
        org = org.name
    );
    let html = format!(
        "<p>{inviter} invited you to join <strong>{org}</strong> on zarrshare.</p>\
         <p><a href=\"{url}\">Accept the invitation</a> (valid for {days} days).</p>\
         <p>If you already have an account with this address, you join with it; otherwise you choose a password.</p>",
        inviter = html_escape(inviter),
        org = html_escape(&org.name),
        url = html_escape(&url),
    );
    Mail {
        to: invite.email.clone(),
        subject: format!("{inviter} invited you to {} on zarrshare", org.name),
        text,
        html,
    }
}

/// An organization's record. The installation's own organization (the one the admin key
/// administers) exists without one until someone creates it: it is then known by its id.
async fn organization(services: &Services, id: &OrgId) -> Result<Organization, ApiError> {
    match services.directory.org(id).await {
        Ok(org) => Ok(org),
        Err(CatalogError::NotFound) if id == services.auth.org() => Ok(Organization {
            id: id.clone(),
            name: id.to_string(),
            auto_activate: false,
            created_at: now(),
            version: 0,
        }),
        Err(e) => Err(not_found(e, "organization")),
    }
}

fn inviter_name(actor: &Actor, user: Option<&User>) -> String {
    match (actor, user) {
        (_, Some(u)) => format!("{} ({})", u.name, u.email),
        _ => "An administrator".into(),
    }
}

/// The sender of an invitation as stored now (the admin key's invitations act as its organization's admin).
async fn inviter_actor(services: &Services, invite: &Invite) -> Result<Actor, ApiError> {
    let Some(id) = &invite.invited_by else {
        return Ok(Actor::OrgAdmin {
            org: invite.org.clone(),
        });
    };
    match services.directory.user(id).await {
        Ok(u) => Ok(Actor::User(MemberFacts::from(u))),
        Err(CatalogError::NotFound) => Ok(Actor::Anonymous),
        Err(e) => Err(e.into()),
    }
}

async fn caller_user(services: &Services, actor: &Actor) -> Result<Option<User>, ApiError> {
    match actor {
        Actor::User(m) => match &m.id {
            Some(id) => Ok(Some(services.directory.user(id).await?)),
            None => Ok(None),
        },
        _ => Ok(None),
    }
}

/// Invite e-mail addresses, with role and teams chosen up front; each gets a single-use link.
#[utoipa::path(post, path = "/api/invites", tag = "accounts", security(("bearer" = [])), request_body = NewInvites,
    responses((status = 201, body = Vec<InviteView>), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn invite(
    State(s): State<AppState>,
    Caller(actor): Caller,
    ApiJson(req): ApiJson<NewInvites>,
) -> Result<Response, ApiError> {
    let org_id = org_of(&actor)?;
    require(&actor, Action::InviteUsers, Resource::Organization(&org_id))?;
    if req.role != OrgRole::User {
        require(&actor, Action::SetRole, Resource::Organization(&org_id))?;
    }
    if req.emails.is_empty() || req.emails.len() > MAX_INVITES_PER_CALL {
        return Err(ApiError::Unprocessable(format!(
            "name 1-{MAX_INVITES_PER_CALL} e-mail addresses"
        )));
    }
    let emails: BTreeSet<Email> = req
        .emails
        .iter()
        .map(|e| Email::parse(e))
        .collect::<Result<_, _>>()?;
    let teams = parse_teams(&req.teams)?;
    // Only administrators invite people into no team at all; team managers invite into theirs.
    if teams.is_empty() && !allowed(&actor, Action::CreateTeam, Resource::Organization(&org_id)) {
        return Err(ApiError::Forbidden(
            "team managers invite into teams they manage: name at least one".into(),
        ));
    }
    check_teams(&s.services, &actor, &org_id, teams.keys()).await?;
    let org = organization(&s.services, &org_id).await?;
    let me = caller_user(&s.services, &actor).await?;
    let inviter = inviter_name(&actor, me.as_ref());
    let mut out = Vec::new();
    for email in emails {
        let token = LinkToken::generate();
        let invite = Invite::new(
            org_id.clone(),
            email,
            me.as_ref().map(|u| u.id.clone()),
            req.role,
            teams.clone(),
            token.hash(),
        );
        s.services.directory.create_invite(&invite).await?;
        s.services
            .mailer
            .send(&invitation_mail(
                &s.services,
                &invite,
                &inviter,
                &org,
                &token,
            ))
            .await
            .map_err(|e| ApiError::Unavailable {
                retry_after_secs: 5,
                source: e.into(),
            })?;
        out.push(InviteView::from(&invite));
    }
    Ok((StatusCode::CREATED, ApiJson(out)).into_response())
}

/// The organization's invitations (newest first) the caller may manage.
#[utoipa::path(get, path = "/api/invites", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, body = Vec<InviteView>), (status = 403, body = Problem)))]
async fn list_invites(
    State(s): State<AppState>,
    Caller(actor): Caller,
) -> Result<ApiJson<Vec<InviteView>>, ApiError> {
    let org = org_of(&actor)?;
    require(&actor, Action::InviteUsers, Resource::Organization(&org))?;
    let invites = s.services.directory.invites_of(&org).await?;
    Ok(ApiJson(
        invites
            .iter()
            .filter(|i| allowed(&actor, Action::ManageInvite, invite_target(i)))
            .map(InviteView::from)
            .collect(),
    ))
}

fn invite_target(i: &Invite) -> Resource<'_> {
    Resource::Invite(InviteTarget {
        org: &i.org,
        invited_by: i.invited_by.as_ref(),
        teams: &i.teams,
    })
}

async fn managed_invite(s: &AppState, actor: &Actor, id: &str) -> Result<Invite, ApiError> {
    let id = InviteId::parse(id).map_err(|_| ApiError::NotFound("no such invitation".into()))?;
    let invite = s
        .services
        .directory
        .invite(&id)
        .await
        .map_err(|e| not_found(e, "invitation"))?;
    require(actor, Action::ManageInvite, invite_target(&invite))?;
    Ok(invite)
}

/// Send a pending invitation again, with a fresh link and a fresh expiry (the old link dies).
#[utoipa::path(post, path = "/api/invites/{id}/resend", tag = "accounts", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = InviteView), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn resend_invite(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<ApiJson<InviteView>, ApiError> {
    let invite = managed_invite(&s, &actor, &id).await?;
    match invite.state_at(now()) {
        InviteState::Pending | InviteState::Expired => {}
        state => {
            return Err(ApiError::Conflict(format!(
                "the invitation is {}",
                serde_json::to_string(&state).unwrap_or_default()
            )));
        }
    }
    let token = LinkToken::generate();
    let t = now();
    let renewed = Invite {
        token_hash: token.hash(),
        expires_at: t + time::Duration::days(INVITE_LIFETIME_DAYS),
        sent: invite.sent + 1,
        version: invite.version + 1,
        ..invite.clone()
    };
    s.services
        .directory
        .reissue_invite(&renewed, invite.version)
        .await?;
    let org = organization(&s.services, &invite.org).await?;
    let me = caller_user(&s.services, &actor).await?;
    let mail = invitation_mail(
        &s.services,
        &renewed,
        &inviter_name(&actor, me.as_ref()),
        &org,
        &token,
    );
    s.services
        .mailer
        .send(&mail)
        .await
        .map_err(|e| ApiError::Unavailable {
            retry_after_secs: 5,
            source: e.into(),
        })?;
    Ok(ApiJson(InviteView::from(&renewed)))
}

/// Revoke a pending invitation: its link stops working.
#[utoipa::path(delete, path = "/api/invites/{id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = InviteView), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn revoke_invite(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<ApiJson<InviteView>, ApiError> {
    let invite = managed_invite(&s, &actor, &id).await?;
    if invite.accepted_at.is_some() {
        return Err(ApiError::Conflict(
            "the invitation was already accepted".into(),
        ));
    }
    if invite.revoked_at.is_some() {
        return Ok(ApiJson(InviteView::from(&invite)));
    }
    let revoked = Invite {
        revoked_at: Some(now()),
        version: invite.version + 1,
        ..invite.clone()
    };
    s.services
        .directory
        .save_invite(&revoked, invite.version)
        .await?;
    Ok(ApiJson(InviteView::from(&revoked)))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TokenQuery {
    pub token: String,
}

#[derive(Serialize, ToSchema)]
pub struct InvitationInfo {
    pub organization: String,
    #[schema(value_type = String)]
    pub email: Email,
    pub role: OrgRole,
    #[schema(value_type = BTreeMap<String, TeamRole>)]
    pub teams: BTreeMap<TeamId, TeamRole>,
    /// Whether an account with this address exists (then accepting needs its password).
    pub existing_account: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
    /// `POST` here with `{"token", "name", "password"}` to accept.
    pub accept_url: String,
}

async fn pending_invite(services: &Services, token: &str) -> Result<Invite, ApiError> {
    let token =
        LinkToken::parse(token).map_err(|_| ApiError::NotFound("no such invitation".into()))?;
    let invite = services
        .directory
        .invite_by_token(&token.hash())
        .await
        .map_err(|e| not_found(e, "invitation"))?;
    match invite.state_at(now()) {
        InviteState::Pending => Ok(invite),
        InviteState::Accepted => Err(ApiError::Gone("this invitation was already used".into())),
        InviteState::Revoked => Err(ApiError::Gone("this invitation was revoked".into())),
        InviteState::Expired => Err(ApiError::Gone("this invitation has expired".into())),
    }
}

/// What an invitation link offers (where the e-mail's link leads).
#[utoipa::path(get, path = "/api/invites/accept", tag = "accounts", params(TokenQuery),
    responses((status = 200, body = InvitationInfo), (status = 404, body = Problem), (status = 410, body = Problem)))]
async fn show_invite(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<TokenQuery>,
) -> Result<ApiJson<InvitationInfo>, ApiError> {
    let invite = pending_invite(&s.services, &q.token).await?;
    let org = organization(&s.services, &invite.org).await?;
    let existing_account = s
        .services
        .directory
        .user_by_email(&invite.email)
        .await
        .is_ok();
    Ok(ApiJson(InvitationInfo {
        organization: org.name,
        email: invite.email,
        role: invite.role,
        teams: invite.teams,
        existing_account,
        expires_at: invite.expires_at,
        accept_url: s.services.public_url("/api/invites/accept"),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptInvite {
    pub token: String,
    /// For a new account.
    pub name: Option<String>,
    /// The new account's password, or the existing account's.
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct Accepted {
    pub user: UserView,
    pub tokens: TokenPair,
}

/// Accept an invitation: a new person signs up, an existing account joins — either way active
/// and in the invitation's teams. Of two concurrent accepts exactly one wins.
#[utoipa::path(post, path = "/api/invites/accept", tag = "accounts", request_body = AcceptInvite,
    responses((status = 201, description = "New account", body = Accepted), (status = 200, description = "Existing account joined", body = Accepted),
        (status = 401, body = Problem), (status = 409, body = Problem), (status = 410, body = Problem)))]
async fn accept_invite(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<AcceptInvite>,
) -> Result<Response, ApiError> {
    let dir = &s.services.directory;
    let invite = pending_invite(&s.services, &req.token).await?;
    let accepted = |by: &UserId| Invite {
        accepted_at: Some(now()),
        accepted_by: Some(by.clone()),
        version: invite.version + 1,
        ..invite.clone()
    };
    match dir.user_by_email(&invite.email).await {
        Ok(existing) => {
            if existing.org != invite.org {
                return Err(ApiError::Conflict(
                    "this address has an account in another organization".into(),
                ));
            }
            if !check_password(Some(existing.password_hash.clone()), req.password).await? {
                return Err(ApiError::Unauthorized);
            }
            // Joining activates the account: only if its inviter may (still) activate it, so an
            // invitation cannot bring back someone its sender could not reactivate directly.
            if !existing.active
                && !allowed(
                    &inviter_actor(&s.services, &invite).await?,
                    Action::ManageUser,
                    target(&existing),
                )
            {
                return Err(ApiError::Forbidden(
                    "this account is deactivated; ask an administrator to reactivate it".into(),
                ));
            }
            let seen = existing.version;
            let mut joined = existing.clone();
            joined.active = true;
            joined.role = joined.role.max(invite.role);
            joined
                .teams
                .extend(invite.teams.iter().map(|(t, r)| (t.clone(), *r)));
            joined.version = seen + 1;
            dir.accept_invite_as_existing_user(
                &accepted(&joined.id),
                invite.version,
                &joined,
                seen,
            )
            .await
            .map_err(|e| match e {
                CatalogError::Conflict => {
                    ApiError::Conflict("the invitation was used concurrently".into())
                }
                other => other.into(),
            })?;
            // Accepting proves the mailbox: datasets shared with it now open for this account.
            s.services
                .catalog
                .bind_pending_grants(&invite.email, &joined.id)
                .await?;
            let tokens = issue_tokens(&s.services, &joined).await?;
            Ok((
                StatusCode::OK,
                ApiJson(Accepted {
                    user: joined.into(),
                    tokens,
                }),
            )
                .into_response())
        }
        Err(CatalogError::NotFound) => {
            let name = req
                .name
                .ok_or_else(|| ApiError::Unprocessable("a new account needs a name".into()))?;
            let account = NewAccount {
                email: invite.email.as_str().to_owned(),
                password: req.password,
                name,
            };
            let mut user = new_user(&invite.org, account, true, invite.role).await?;
            user.teams = invite.teams.clone();
            dir.accept_invite_as_new_user(&accepted(&user.id), invite.version, &user)
                .await
                .map_err(|e| match e {
                    CreateError::Store(shared::store::StoreError::Conflict) => {
                        ApiError::Conflict("the invitation was used concurrently".into())
                    }
                    other => created(other),
                })?;
            s.services
                .catalog
                .bind_pending_grants(&invite.email, &user.id)
                .await?;
            let tokens = issue_tokens(&s.services, &user).await?;
            Ok((
                StatusCode::CREATED,
                ApiJson(Accepted {
                    user: user.into(),
                    tokens,
                }),
            )
                .into_response())
        }
        Err(e) => Err(e.into()),
    }
}
