//! Per-person shares (SCiLS): share a dataset with e-mail addresses — an invitation when the
//! address has no account — choosing "can modify" and "can share again"; list everyone with
//! access; change or revoke each person's rights.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use shared::access::{Action, Actor};
use shared::auth::Caller;
use shared::domain::{
    AuditAction, AuditEntry, Dataset, Email, Grant, INVITE_LIFETIME_DAYS, Invite, LinkToken,
    OrgRole, TeamId, UserId, Visibility, now,
};
use shared::error::{ApiJson, Problem};
use shared::mail::{Mail, html_escape};
use shared::store::catalog::CatalogError;
use shared::{ApiError, Services};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::links::LinkView;
use crate::{AppState, Subject};
use shared::error::bounded_text;

const MAX_EMAILS_PER_CALL: usize = 50;
const MAX_MESSAGE: usize = 2_000;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShareRequest {
    /// 1–50 addresses.
    pub emails: Vec<String>,
    /// "Can modify": may annotate.
    #[serde(default)]
    pub can_modify: bool,
    /// "Can share again": may share the dataset with further people.
    #[serde(default)]
    pub can_share: bool,
    /// A note for the recipients, included in the e-mail.
    pub message: Option<String>,
}

/// A per-person share as the owner sees it.
#[derive(Serialize, ToSchema)]
pub struct GrantView {
    #[schema(value_type = String)]
    pub email: Email,
    /// `active` once bound to an account; `pending` while its invitation is open.
    pub state: GrantState,
    #[schema(value_type = Option<String>)]
    pub user: Option<UserId>,
    pub can_modify: bool,
    pub can_share: bool,
    pub granted_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

#[derive(Clone, Copy, Serialize, ToSchema, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum GrantState {
    Active,
    Pending,
}

impl From<&Grant> for GrantView {
    fn from(g: &Grant) -> Self {
        Self {
            email: g.email.clone(),
            state: if g.user.is_some() {
                GrantState::Active
            } else {
                GrantState::Pending
            },
            user: g.user.clone(),
            can_modify: g.can_modify,
            can_share: g.can_share,
            granted_by: g.granted_by.clone(),
            created_at: g.created_at,
            updated_at: g.updated_at,
        }
    }
}

#[derive(Clone, Copy, Serialize, ToSchema, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum ShareOutcome {
    /// The address has an account: it has access now (and was told by e-mail).
    Shared,
    /// No account yet: an invitation went out; access starts when it is accepted.
    Invited,
    /// Already shared with this address: nothing changed (change rights with PATCH).
    AlreadyShared,
}

#[derive(Serialize, ToSchema)]
pub struct ShareResult {
    #[schema(value_type = String)]
    pub email: Email,
    pub outcome: ShareOutcome,
    pub grant: GrantView,
}

fn share_mail(
    services: &Services,
    dataset: &Dataset,
    sharer: &str,
    to: &Email,
    message: Option<&str>,
    invite: Option<&LinkToken>,
    rights: &str,
) -> Mail {
    let title = &dataset.display_name;
    let note = message
        .map(|m| format!("\nTheir message:\n{m}\n"))
        .unwrap_or_default();
    let note_html = message
        .map(|m| format!("<blockquote>{}</blockquote>", html_escape(m)))
        .unwrap_or_default();
    let (action, url) = match invite {
        Some(token) => (
            format!(
                "Create your account to open it (the invitation is valid for {INVITE_LIFETIME_DAYS} days):"
            ),
            services.invite_accept_url(token),
        ),
        None => (
            "Sign in to open it:".to_owned(),
            services.public_url(&format!("/api/datasets/{}", dataset.id)),
        ),
    };
    Mail {
        to: to.clone(),
        subject: format!("{sharer} shared \"{title}\" with you on zarrshare"),
        text: format!(
            "{sharer} shared the dataset \"{title}\" with you on zarrshare ({rights}).\n{note}\n{action}\n{url}\n"
        ),
        html: format!(
            "<p>{sharer} shared the dataset <strong>{title}</strong> with you on zarrshare ({rights}).</p>{note_html}<p>{action} <a href=\"{url}\">{url}</a></p>",
            sharer = html_escape(sharer),
            title = html_escape(title),
            rights = html_escape(rights),
            action = html_escape(&action),
            url = html_escape(&url),
        ),
    }
}

async fn sharer_name(services: &Services, actor: &Actor) -> Result<String, ApiError> {
    Ok(match actor.user_id() {
        Some(id) => match services.directory.user(id).await {
            Ok(u) => format!("{} ({})", u.name, u.email),
            Err(CatalogError::NotFound) => "Someone".into(),
            Err(e) => return Err(e.into()),
        },
        None => "An administrator".into(),
    })
}

/// Share a dataset with people by e-mail address. Addresses with an account get access at
/// once; others get an invitation and access once they accept it. Someone the dataset was
/// shared with may share it further only with "can share again", and never with more rights
/// than their own.
#[utoipa::path(
    post, path = "/api/datasets/{id}/shares", tag = "datasets", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = ShareRequest,
    responses((status = 201, body = Vec<ShareResult>), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem))
)]
pub(crate) async fn share(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ShareRequest>,
) -> Result<Response, ApiError> {
    let services = &s.services;
    let subject = Subject::load(services, &actor, &id).await?;
    subject.require(&actor, Action::Share)?;
    if !subject.allows(&actor, Action::ManageShares) {
        // A recipient sharing again passes on at most what they have.
        let mine = subject.grant.as_ref().is_some_and(|g| g.can_modify);
        if req.can_modify && !mine {
            return Err(ApiError::Forbidden(
                "you cannot give \"can modify\": you do not have it".into(),
            ));
        }
    }
    if req.emails.is_empty() || req.emails.len() > MAX_EMAILS_PER_CALL {
        return Err(ApiError::Unprocessable(format!(
            "name 1-{MAX_EMAILS_PER_CALL} e-mail addresses"
        )));
    }
    let emails: std::collections::BTreeSet<Email> = req
        .emails
        .iter()
        .map(|e| Email::parse(e))
        .collect::<Result<_, _>>()?;
    let message = bounded_text("message", req.message, MAX_MESSAGE)?;
    let me = match &actor {
        Actor::User(m) => m.email.clone(),
        _ => None,
    };
    if me.as_ref().is_some_and(|m| emails.contains(m)) {
        return Err(ApiError::Unprocessable(
            "you cannot share a dataset with yourself".into(),
        ));
    }
    let dataset = &subject.dataset;
    let sharer = sharer_name(services, &actor).await?;
    let rights = match (req.can_modify, req.can_share) {
        (true, true) => "can view, annotate and share it",
        (true, false) => "can view and annotate it",
        (false, true) => "can view and share it",
        (false, false) => "can view it",
    };
    let mut out = Vec::new();
    for email in emails {
        match services.catalog.grant(&dataset.id, &email).await {
            Ok(existing) => {
                out.push(ShareResult {
                    email,
                    outcome: ShareOutcome::AlreadyShared,
                    grant: GrantView::from(&existing),
                });
                continue;
            }
            Err(CatalogError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        let t = now();
        let mut grant = Grant {
            dataset_id: dataset.id.clone(),
            email: email.clone(),
            user: None,
            invite: None,
            can_modify: req.can_modify,
            can_share: req.can_share,
            granted_by: actor.describe(),
            granted_by_user: actor.user_id().cloned(),
            created_at: t,
            updated_at: t,
            version: 1,
        };
        let (outcome, token) = match services.directory.user_by_email(&email).await {
            Ok(user) => {
                grant.user = Some(user.id);
                (ShareOutcome::Shared, None)
            }
            Err(CatalogError::NotFound) => {
                let token = LinkToken::generate();
                let invite = Invite::new(
                    dataset.org.clone(),
                    email.clone(),
                    // Only a member of the dataset's organization is recorded as its sender.
                    actor
                        .user_id()
                        .filter(|_| actor.org() == Some(&dataset.org))
                        .cloned(),
                    OrgRole::User,
                    std::collections::BTreeMap::new(),
                    token.hash(),
                );
                services.directory.create_invite(&invite).await?;
                grant.invite = Some(invite.id);
                (ShareOutcome::Invited, Some(token))
            }
            Err(e) => return Err(e.into()),
        };
        let audit = AuditEntry::new(&dataset.id, actor.describe(), AuditAction::GrantCreated)
            .target(email.as_str())
            .detail(serde_json::json!({
                "can_modify": grant.can_modify,
                "can_share": grant.can_share,
                "invited": token.is_some(),
            }));
        match services.catalog.save_grant(&grant, None, &audit).await {
            Ok(()) => {}
            // Shared concurrently by someone else: theirs stands.
            Err(CatalogError::Conflict) => {
                let existing = services.catalog.grant(&dataset.id, &email).await?;
                out.push(ShareResult {
                    email,
                    outcome: ShareOutcome::AlreadyShared,
                    grant: GrantView::from(&existing),
                });
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        services
            .mailer
            .send(&share_mail(
                services,
                dataset,
                &sharer,
                &email,
                message.as_deref(),
                token.as_ref(),
                rights,
            ))
            .await
            .map_err(|e| ApiError::Unavailable {
                retry_after_secs: 5,
                source: e.into(),
            })?;
        out.push(ShareResult {
            email,
            outcome,
            grant: GrantView::from(&grant),
        });
    }
    Ok((StatusCode::CREATED, ApiJson(out)).into_response())
}

#[derive(Serialize, ToSchema)]
pub struct TeamRef {
    #[schema(value_type = String)]
    pub id: TeamId,
    pub name: String,
}

/// Everyone with access to a dataset.
#[derive(Serialize, ToSchema)]
pub struct AccessList {
    pub visibility: Visibility,
    pub featured: bool,
    /// The owner (who registered it), when a user did.
    #[schema(value_type = Option<String>)]
    pub owner: Option<UserId>,
    /// Teams whose members may read and annotate it.
    pub teams: Vec<TeamRef>,
    /// People it is shared with.
    pub people: Vec<GrantView>,
    /// Its share links, with state and usage.
    pub links: Vec<LinkView>,
}

/// Everyone with access: public or not, teams, people (with their rights) and links.
#[utoipa::path(
    get, path = "/api/datasets/{id}/shares", tag = "datasets", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = AccessList), (status = 403, body = Problem), (status = 404, body = Problem))
)]
pub(crate) async fn list_access(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<ApiJson<AccessList>, ApiError> {
    let services = &s.services;
    let subject = Subject::load(services, &actor, &id).await?;
    subject.require(&actor, Action::ManageShares)?;
    let d = &subject.dataset;
    let mut teams = Vec::new();
    for team in &d.allowed_teams {
        let name = match services.directory.team(team).await {
            Ok(t) => t.name,
            Err(CatalogError::NotFound) => continue,
            Err(e) => return Err(e.into()),
        };
        teams.push(TeamRef {
            id: team.clone(),
            name,
        });
    }
    let people = services.catalog.grants_of(&d.id).await?;
    let links = services.catalog.links_of(&d.id).await?;
    Ok(ApiJson(AccessList {
        visibility: d.visibility,
        featured: d.featured,
        owner: d.owner.clone(),
        teams,
        people: people.iter().map(GrantView::from).collect(),
        links: links.iter().map(LinkView::from).collect(),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeShare {
    pub can_modify: Option<bool>,
    pub can_share: Option<bool>,
}

fn changed_concurrently(e: CatalogError) -> ApiError {
    match e {
        CatalogError::Conflict => {
            ApiError::Conflict("the share changed concurrently; retry".into())
        }
        other => other.into(),
    }
}

async fn grant_at(services: &Services, dataset: &Dataset, email: &str) -> Result<Grant, ApiError> {
    let no_share = || ApiError::NotFound("this dataset is not shared with that address".into());
    let email = Email::parse(email).map_err(|_| no_share())?;
    services
        .catalog
        .grant(&dataset.id, &email)
        .await
        .map_err(|e| match e {
            CatalogError::NotFound => no_share(),
            other => other.into(),
        })
}

/// Change one person's rights ("can modify", "can share again").
#[utoipa::path(
    patch, path = "/api/datasets/{id}/shares/{email}", tag = "datasets", security(("bearer" = [])),
    params(("id" = String, Path), ("email" = String, Path)), request_body = ChangeShare,
    responses((status = 200, body = GrantView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem))
)]
pub(crate) async fn change_share(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Path((id, email)): Path<(String, String)>,
    ApiJson(req): ApiJson<ChangeShare>,
) -> Result<ApiJson<GrantView>, ApiError> {
    let services = &s.services;
    let subject = Subject::load(services, &actor, &id).await?;
    subject.require(&actor, Action::ManageShares)?;
    let grant = grant_at(services, &subject.dataset, &email).await?;
    let mut next = grant.clone();
    next.can_modify = req.can_modify.unwrap_or(grant.can_modify);
    next.can_share = req.can_share.unwrap_or(grant.can_share);
    next.updated_at = now();
    next.version = grant.version + 1;
    let audit = AuditEntry::new(
        &grant.dataset_id,
        actor.describe(),
        AuditAction::GrantChanged,
    )
    .target(grant.email.as_str())
    .detail(serde_json::json!({
        "can_modify": { "from": grant.can_modify, "to": next.can_modify },
        "can_share": { "from": grant.can_share, "to": next.can_share },
    }));
    services
        .catalog
        .save_grant(&next, Some(grant.version), &audit)
        .await
        .map_err(changed_concurrently)?;
    services.forget_grant(&next.dataset_id, &next.email);
    Ok(ApiJson(GrantView::from(&next)))
}

/// Revoke one person's access (their pending invitation, if any, is revoked with it). The
/// person themselves may also remove a dataset shared with them.
#[utoipa::path(
    delete, path = "/api/datasets/{id}/shares/{email}", tag = "datasets", security(("bearer" = [])),
    params(("id" = String, Path), ("email" = String, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem))
)]
pub(crate) async fn revoke_share(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Path((id, email)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let services = &s.services;
    let subject = Subject::load(services, &actor, &id).await?;
    let leaving = match (&actor, &subject.grant) {
        (Actor::User(m), Some(g)) => {
            m.email.as_ref() == Some(&g.email)
                && Email::parse(&email).ok().as_ref() == Some(&g.email)
        }
        _ => false,
    };
    if !leaving {
        subject.require(&actor, Action::ManageShares)?;
    }
    let grant = grant_at(services, &subject.dataset, &email).await?;
    let audit = AuditEntry::new(
        &grant.dataset_id,
        actor.describe(),
        AuditAction::GrantRevoked,
    )
    .target(grant.email.as_str());
    services
        .catalog
        .delete_grant(&grant, &audit)
        .await
        .map_err(changed_concurrently)?;
    services.forget_grant(&grant.dataset_id, &grant.email);
    if let (None, Some(invite_id)) = (&grant.user, &grant.invite) {
        match services.directory.invite(invite_id).await {
            Ok(invite) if invite.accepted_at.is_none() && invite.revoked_at.is_none() => {
                let revoked = Invite {
                    revoked_at: Some(now()),
                    version: invite.version + 1,
                    ..invite.clone()
                };
                // A concurrent accept wins; the grant is gone either way.
                if let Err(e) = services
                    .directory
                    .save_invite(&revoked, invite.version)
                    .await
                    && !matches!(e, CatalogError::Conflict)
                {
                    return Err(e.into());
                }
            }
            Ok(_) | Err(CatalogError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
