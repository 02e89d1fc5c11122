//! Share links: created one at a time or in a batch for several datasets, scoped to the whole
//! dataset, a sub-path or one annotation, with a permission, an expiry and a password; listed
//! with their usage (per dataset, and on the links page); revoked one by one; unlocked by
//! password; drawn as QR codes.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use shared::access::{Action, Actor, LinkFacts, PasswordState, Resource, require};
use shared::auth::Caller;
use shared::domain::{
    AuditAction, AuditEntry, DatasetId, LinkId, LinkPermission, LinkScope, LinkState, LinkToken,
    LinkUsage, Password, ShareLink, Timestamp, now,
};
use shared::error::{ApiJson, ApiQuery, Problem};
use shared::neuroglancer::ViewParams;
use shared::store::catalog::{CatalogError, MAX_LINKS_PER_BATCH};
use shared::{ApiError, Services};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use crate::{AppState, Subject, not_found};
use shared::error::{bounded_text, invalid_cursor, page_request};

const MAX_LABEL: usize = 200;
/// Wrong passwords a link takes per 15 minutes (per instance) before it answers 429.
const MAX_UNLOCK_FAILURES: u32 = 10;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkOptions {
    /// What the link is for, e.g. "Reviewer 2".
    pub label: Option<String>,
    /// An absolute expiry (RFC 3339) …
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
    /// … or a lifetime in seconds (not both).
    pub expires_in_seconds: Option<u64>,
    /// Whole dataset (default), a sub-path, or one annotation.
    pub scope: Option<LinkScope>,
    /// `view` (default), `download` or `annotate`.
    pub permission: Option<LinkPermission>,
    /// Readers must give it once (`POST /api/links/unlock`) to get a URL that opens the link.
    pub password: Option<String>,
    /// Where a Neuroglancer view of the link opens.
    pub view: Option<ViewParams>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchLinks {
    /// The datasets to make one link each for (1–20), all or none.
    pub dataset_ids: Vec<String>,
    #[serde(flatten)]
    pub options: LinkOptions,
}

/// A link as listed (never with its token).
#[derive(Serialize, ToSchema)]
pub struct LinkView {
    #[schema(value_type = String)]
    pub id: LinkId,
    #[schema(value_type = String)]
    pub dataset_id: DatasetId,
    pub label: String,
    pub state: LinkState,
    pub scope: LinkScope,
    pub permission: LinkPermission,
    pub password_protected: bool,
    pub usage: LinkUsage,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<OffsetDateTime>,
    pub created_by: String,
}

impl From<&ShareLink> for LinkView {
    fn from(l: &ShareLink) -> Self {
        Self {
            id: l.id.clone(),
            dataset_id: l.dataset_id.clone(),
            label: l.label.clone(),
            state: l.state_at(now()),
            scope: l.scope.clone(),
            permission: l.permission,
            password_protected: l.password_hash.is_some(),
            usage: l.usage.clone(),
            created_at: l.created_at,
            expires_at: l.expires_at,
            revoked_at: l.revoked_at,
            created_by: l.created_by.clone(),
        }
    }
}

/// A new link: the only time its token and URLs are shown.
#[derive(Serialize, ToSchema)]
pub struct CreatedLink {
    #[serde(flatten)]
    pub link: LinkView,
    /// Where readers open it: the dataset root, or the scope's directory (`/s/{token}/{path}/`).
    /// For a password-protected link it needs the unlock first.
    pub url: String,
    pub token: String,
    /// A Neuroglancer view whose data sources carry the link (no login needed).
    pub neuroglancer_url: String,
    /// The Neuroglancer state as JSON, at a stable URL with CORS.
    pub state_url: String,
    /// The download manifest (links with `download` or `annotate` permission).
    pub files_url: String,
    /// QR codes of `url` (from `/api/qr`, which makes one for any link of this service).
    pub qr_svg: String,
    pub qr_png: String,
}

/// The URLs of a link (reader root, state, viewer, files) for the path segment readers put
/// after `/s/`: the token, plus an unlock if any.
fn link_urls(services: &Services, link: &ShareLink, segment: &str) -> LinkUrls {
    let root = link.scope.root();
    let url = if root.is_empty() {
        services.public_url(&format!("/s/{segment}/"))
    } else {
        services.public_url(&format!("/s/{segment}/{root}/"))
    };
    let state_url = services.public_url(&format!("/ng/s/{segment}.json"));
    LinkUrls {
        neuroglancer_url: shared::neuroglancer::viewer_url_for_state_url(
            &services.config.neuroglancer_url,
            &state_url,
        ),
        files_url: services.public_url(&format!("/files/s/{segment}")),
        url,
        state_url,
    }
}

struct LinkUrls {
    url: String,
    state_url: String,
    neuroglancer_url: String,
    files_url: String,
}

fn created(services: &Services, link: &ShareLink, token: &LinkToken) -> CreatedLink {
    let urls = link_urls(services, link, token.expose());
    CreatedLink {
        link: LinkView::from(link),
        qr_svg: services.public_url(&shared::qr::endpoint_path(&urls.url, "svg")),
        qr_png: services.public_url(&shared::qr::endpoint_path(&urls.url, "png")),
        url: urls.url,
        token: token.expose().to_owned(),
        neuroglancer_url: urls.neuroglancer_url,
        state_url: urls.state_url,
        files_url: urls.files_url,
    }
}

/// Checks the options once for every dataset of a request.
struct CheckedOptions {
    label: String,
    expires_at: Option<Timestamp>,
    scope: LinkScope,
    permission: LinkPermission,
    password_hash: Option<String>,
    view: Option<ViewParams>,
}

async fn check_options(o: LinkOptions) -> Result<CheckedOptions, ApiError> {
    let t = now();
    let expires_at = match (o.expires_at, o.expires_in_seconds) {
        (Some(_), Some(_)) => {
            return Err(ApiError::Unprocessable(
                "give expires_at or expires_in_seconds, not both".into(),
            ));
        }
        (Some(at), None) => Some(at),
        (None, Some(secs)) => {
            let secs = i64::try_from(secs)
                .ok()
                .filter(|s| *s <= 100 * 365 * 86_400)
                .ok_or_else(|| ApiError::Unprocessable("expires_in_seconds is too large".into()))?;
            Some(t + time::Duration::seconds(secs))
        }
        (None, None) => None,
    };
    if expires_at.is_some_and(|e| e <= t) {
        return Err(ApiError::Unprocessable("the expiry is in the past".into()));
    }
    let scope = match o.scope.unwrap_or_default() {
        LinkScope::Path { prefix } => {
            LinkScope::path(&prefix).map_err(|e| ApiError::Unprocessable(e.to_string()))?
        }
        other => other,
    };
    let password_hash = match o.password {
        Some(p) => {
            let password =
                Password::parse_shared(&p).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
            Some(
                tokio::task::spawn_blocking(move || shared::passwords::hash(&password))
                    .await
                    .map_err(ApiError::internal)?
                    .map_err(ApiError::internal)?,
            )
        }
        None => None,
    };
    Ok(CheckedOptions {
        label: bounded_text("label", o.label, MAX_LABEL)?.unwrap_or_default(),
        expires_at,
        scope,
        permission: o.permission.unwrap_or_default(),
        password_hash,
        view: o.view,
    })
}

/// A link for one annotation: the annotation must be on this dataset, not deleted, and
/// readable by the link's maker (a link passes on no more than its maker sees).
async fn check_annotation_scope(
    services: &Services,
    actor: &Actor,
    subject: &Subject,
    scope: &LinkScope,
) -> Result<(), ApiError> {
    let LinkScope::Annotation { annotation } = scope else {
        return Ok(());
    };
    subject.require(actor, Action::ManageLinks)?;
    let missing = || {
        ApiError::Unprocessable(format!(
            "dataset {} has no annotation {annotation}",
            subject.dataset.id
        ))
    };
    let found = match services.annotations().get(annotation).await {
        Ok(a) if a.dataset_id == subject.dataset.id && a.deleted_at.is_none() => a,
        Ok(_) | Err(CatalogError::NotFound) => return Err(missing()),
        Err(e) => return Err(e.into()),
    };
    let owner_teams = services.owner_teams(&found).await?;
    let facts = shared::access::AnnotationFacts::of(&found, &owner_teams, subject.facts());
    match shared::access::decide(
        actor,
        Action::ReadAnnotation,
        Resource::Annotation(facts),
        now(),
    ) {
        shared::access::Decision::Allow => Ok(()),
        shared::access::Decision::Deny(_) => Err(missing()),
    }
}

/// A new link to `dataset` after the caller's rights and the scope are checked against it.
fn new_link(
    actor: &Actor,
    subject: &Subject,
    options: &CheckedOptions,
) -> Result<(ShareLink, LinkToken), ApiError> {
    subject.require(actor, Action::ManageLinks)?;
    let dataset = &subject.dataset;
    match &options.scope {
        LinkScope::Path { prefix } => {
            // A layer, a directory of layers, or one level (array) of a layer.
            let paths = dataset.layers.iter().flat_map(|l| {
                std::iter::once(l.path.as_str()).chain(l.levels.iter().map(|v| v.path.as_str()))
            });
            let reaches_a_layer = paths.into_iter().any(|p| {
                p == prefix
                    || p.starts_with(&format!("{prefix}/"))
                    || (!p.is_empty() && prefix.starts_with(&format!("{p}/")))
            });
            if !reaches_a_layer {
                return Err(ApiError::Unprocessable(format!(
                    "'{prefix}' is not a layer, a level or a directory of layers of dataset {}",
                    dataset.id
                )));
            }
        }
        // Checked against the annotation itself by `check_annotation_scope`.
        LinkScope::Annotation { .. } | LinkScope::Dataset => {}
    }
    if let Some(view) = &options.view {
        shared::neuroglancer::state(
            dataset,
            "https://check.invalid/",
            Some(options.scope.root()).filter(|r| !r.is_empty()),
            view,
            &[],
        )
        .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    }
    let token = LinkToken::generate();
    let link = ShareLink {
        label: options.label.clone(),
        scope: options.scope.clone(),
        permission: options.permission,
        password_hash: options.password_hash.clone(),
        view: options.view.clone(),
        expires_at: options.expires_at,
        created_by_user: actor.user_id().cloned(),
        ..ShareLink::new(
            dataset.id.clone(),
            dataset.org.clone(),
            token.hash(),
            actor.describe(),
        )
    };
    Ok((link, token))
}

/// Make a secret share link to a dataset: scoped, permissioned, optionally expiring and
/// password-protected.
#[utoipa::path(
    post, path = "/api/datasets/{id}/links", tag = "datasets", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = LinkOptions,
    responses((status = 201, body = CreatedLink), (status = 404, body = Problem), (status = 422, body = Problem))
)]
pub(crate) async fn create_link(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<LinkOptions>,
) -> Result<Response, ApiError> {
    let services = &s.services;
    let subject = Subject::load(services, &actor, &id).await?;
    let options = check_options(req).await?;
    check_annotation_scope(services, &actor, &subject, &options.scope).await?;
    let (link, token) = new_link(&actor, &subject, &options)?;
    services.catalog.create_link(&link).await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(created(services, &link, &token)),
    )
        .into_response())
}

/// Make one link each for several datasets, with the same options, in one transaction: all
/// of them or none.
#[utoipa::path(
    post, path = "/api/links", tag = "datasets", security(("bearer" = [])),
    request_body = BatchLinks,
    responses((status = 201, body = Vec<CreatedLink>), (status = 404, body = Problem), (status = 422, body = Problem))
)]
pub(crate) async fn create_batch(
    State(s): State<AppState>,
    Caller(actor): Caller,
    ApiJson(req): ApiJson<BatchLinks>,
) -> Result<Response, ApiError> {
    let services = &s.services;
    if req.dataset_ids.is_empty() || req.dataset_ids.len() > MAX_LINKS_PER_BATCH {
        return Err(ApiError::Unprocessable(format!(
            "name 1-{MAX_LINKS_PER_BATCH} datasets"
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    if !req.dataset_ids.iter().all(|id| seen.insert(id.as_str())) {
        return Err(ApiError::Unprocessable("a dataset is named twice".into()));
    }
    let options = check_options(req.options).await?;
    if matches!(options.scope, LinkScope::Annotation { .. }) {
        return Err(ApiError::Unprocessable(
            "an annotation belongs to one dataset: make its link at /api/datasets/{id}/links"
                .into(),
        ));
    }
    let mut made = Vec::with_capacity(req.dataset_ids.len());
    for id in &req.dataset_ids {
        let subject = Subject::load(services, &actor, id).await?;
        made.push(new_link(&actor, &subject, &options)?);
    }
    let links: Vec<ShareLink> = made.iter().map(|(l, _)| l.clone()).collect();
    services
        .catalog
        .create_links(&links)
        .await
        .map_err(not_found("dataset"))?;
    let out: Vec<CreatedLink> = made
        .iter()
        .map(|(link, token)| created(services, link, token))
        .collect();
    Ok((StatusCode::CREATED, ApiJson(out)).into_response())
}

/// A dataset's share links with their state and usage (tokens are never shown again).
#[utoipa::path(
    get, path = "/api/datasets/{id}/links", tag = "datasets", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Vec<LinkView>), (status = 404, body = Problem))
)]
pub(crate) async fn list_links(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<ApiJson<Vec<LinkView>>, ApiError> {
    let subject = Subject::load(&s.services, &actor, &id).await?;
    subject.require(&actor, Action::ManageLinks)?;
    // Where the chunk function runs in this process (the local server), its counts are current.
    s.services.flush_usage().await;
    let links = s.services.catalog.links_of(&subject.dataset.id).await?;
    Ok(ApiJson(links.iter().map(LinkView::from).collect()))
}

/// Revoke one link; the others are untouched. Takes effect at once on this instance and
/// within the access-cache bound (≤ 60 s, default 30 s) on every other.
#[utoipa::path(
    delete, path = "/api/datasets/{id}/links/{link_id}", tag = "datasets", security(("bearer" = [])),
    params(("id" = String, Path), ("link_id" = String, Path)),
    responses((status = 200, body = LinkView), (status = 404, body = Problem))
)]
pub(crate) async fn revoke_link(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Path((id, link_id)): Path<(String, String)>,
) -> Result<ApiJson<LinkView>, ApiError> {
    let subject = Subject::load(&s.services, &actor, &id).await?;
    subject.require(&actor, Action::ManageLinks)?;
    let link_id = LinkId::parse(&link_id).map_err(|_| ApiError::NotFound("no such link".into()))?;
    let link = s
        .services
        .catalog
        .revoke_link(&subject.dataset.id, &link_id, &actor.describe())
        .await
        .map_err(not_found("link"))?;
    s.services.forget_link(&link.token_hash);
    Ok(ApiJson(LinkView::from(&link)))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LinksQuery {
    /// Only links in this state.
    pub state: Option<LinkState>,
    /// Only links to this dataset.
    pub dataset: Option<String>,
    /// 1–100, default 50.
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A link on the links page, with its dataset's name.
#[derive(Serialize, ToSchema)]
pub struct LinkRow {
    #[serde(flatten)]
    pub link: LinkView,
    pub dataset_name: String,
}

#[derive(Serialize, ToSchema)]
pub struct LinksPage {
    /// Newest first.
    pub items: Vec<LinkRow>,
    pub next_cursor: Option<String>,
}

/// The links page: the caller's share links across datasets with their usage — every link of
/// the organization for its admins and dataset managers, the caller's own links otherwise.
#[utoipa::path(
    get, path = "/api/links", tag = "datasets", security(("bearer" = [])), params(LinksQuery),
    responses((status = 200, body = LinksPage), (status = 401, body = Problem))
)]
pub(crate) async fn links_page(
    State(s): State<AppState>,
    Caller(actor): Caller,
    ApiQuery(q): ApiQuery<LinksQuery>,
) -> Result<ApiJson<LinksPage>, ApiError> {
    let services = &s.services;
    let Some(org) = actor.org().cloned() else {
        return Err(ApiError::Unauthorized);
    };
    let everyone = shared::access::decide(
        &actor,
        Action::ListDatasets,
        Resource::Organization(&org),
        now(),
    ) == shared::access::Decision::Allow;
    if !everyone && actor.user_id().is_none() {
        return Err(ApiError::Forbidden("you may not do this".into()));
    }
    let dataset = match &q.dataset {
        Some(id) => Some(crate::parse_id(id)?),
        None => None,
    };
    let (limit, cursor) = page_request(q.limit, q.cursor)?;
    services.flush_usage().await;
    let listing = services
        .catalog
        .links_of_org(&org, limit, cursor)
        .await
        .map_err(invalid_cursor)?;
    let t = now();
    let mut names: HashMap<DatasetId, String> = HashMap::new();
    let mut items = Vec::new();
    for link in listing.items {
        let mine = actor.user_id().is_some() && link.created_by_user.as_ref() == actor.user_id();
        if !(everyone || mine)
            || dataset.as_ref().is_some_and(|d| d != &link.dataset_id)
            || q.state.is_some_and(|st| st != link.state_at(t))
        {
            continue;
        }
        if !names.contains_key(&link.dataset_id) {
            let name = match services.catalog.dataset(&link.dataset_id).await {
                Ok(d) => d.display_name,
                Err(CatalogError::NotFound) => String::new(),
                Err(e) => return Err(e.into()),
            };
            names.insert(link.dataset_id.clone(), name);
        }
        items.push(LinkRow {
            dataset_name: names.get(&link.dataset_id).cloned().unwrap_or_default(),
            link: LinkView::from(&link),
        });
    }
    Ok(ApiJson(LinksPage {
        items,
        next_cursor: listing.next.map(|c| c.0),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Unlock {
    /// The link's token (the part after `/s/`).
    pub token: String,
    pub password: String,
}

/// What a right password buys: URLs that open the link until `expires_at`.
#[derive(Serialize, ToSchema)]
pub struct Unlocked {
    pub url: String,
    pub neuroglancer_url: String,
    pub state_url: String,
    pub files_url: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
}

/// Give a password-protected link's password; get URLs that open it (for `ZARRSHARE_UNLOCK_TTL_SECS`,
/// default 12 h, and never past the link's expiry or revocation).
#[utoipa::path(
    post, path = "/api/links/unlock", tag = "datasets", request_body = Unlock,
    responses(
        (status = 200, body = Unlocked),
        (status = 401, description = "Wrong password", body = Problem),
        (status = 404, body = Problem), (status = 410, body = Problem),
        (status = 429, description = "Too many wrong passwords", body = Problem),
    )
)]
pub(crate) async fn unlock(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<Unlock>,
) -> Result<Response, ApiError> {
    let services = &s.services;
    let no_link = || ApiError::NotFound("no such share link".into());
    let token = LinkToken::parse(&req.token).map_err(|_| no_link())?;
    let hash = token.hash();
    let link = services.resolve_link(&hash).await?.ok_or_else(no_link)?;
    let Some(stored) = link.password_hash.clone() else {
        return Err(ApiError::BadRequest(
            "this share link has no password".into(),
        ));
    };
    let facts = LinkFacts {
        password: PasswordState::NotSet,
        ..LinkFacts::of(&link, false)
    };
    let dataset = services
        .catalog
        .dataset(&link.dataset_id)
        .await
        .map_err(not_found("share link"))?;
    require(
        &Actor::LinkHolder(facts),
        Action::ViewDataset,
        Resource::Dataset(shared::access::DatasetFacts::of(&dataset, None)),
    )?;
    // Every attempt takes a slot first (atomically), so parallel guesses are limited too; a
    // right password gives its slot back.
    let attempts = s
        .unlock_failures
        .entry(link.id.clone())
        .and_upsert_with(|e| e.map_or(1, |e| e.into_value().saturating_add(1)))
        .into_value();
    if attempts > MAX_UNLOCK_FAILURES {
        return Err(ApiError::TooManyRequests {
            retry_after_secs: 15 * 60,
        });
    }
    let candidate = req.password;
    let right = tokio::task::spawn_blocking(move || shared::passwords::verify(&stored, &candidate))
        .await
        .map_err(ApiError::internal)?;
    let actor = format!("link:{}", link.id);
    if right {
        s.unlock_failures
            .entry(link.id.clone())
            .and_upsert_with(|e| e.map_or(0, |e| e.into_value().saturating_sub(1)));
    } else {
        services
            .catalog
            .append_audit(
                &AuditEntry::new(&link.dataset_id, actor, AuditAction::LinkPasswordFailed)
                    .target(link.id.as_str()),
            )
            .await?;
        return Err(ApiError::PasswordRequired(
            "wrong password for this share link".into(),
        ));
    }
    let ttl = time::Duration::try_from(services.config.unlock_ttl).unwrap_or(time::Duration::HOUR);
    let mut expires_at = now() + ttl;
    if let Some(e) = link.expires_at {
        expires_at = expires_at.min(e);
    }
    let segment = format!(
        "{}.{}",
        token.expose(),
        services.signer.unlock(&hash, expires_at)
    );
    services
        .catalog
        .append_audit(
            &AuditEntry::new(&link.dataset_id, actor, AuditAction::LinkUnlocked)
                .target(link.id.as_str()),
        )
        .await?;
    let urls = link_urls(services, &link, &segment);
    Ok(ApiJson(Unlocked {
        url: urls.url,
        neuroglancer_url: urls.neuroglancer_url,
        state_url: urls.state_url,
        files_url: urls.files_url,
        expires_at,
    })
    .into_response())
}

#[derive(Clone, Copy, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum QrFormat {
    #[default]
    Svg,
    Png,
    /// Unicode blocks for a terminal.
    Text,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct QrQuery {
    /// The link to encode: a data URL, a share link, a Neuroglancer link of this service.
    pub url: String,
    /// `svg` (default), `png`, or `text` (Unicode blocks for a terminal).
    pub format: Option<QrFormat>,
    /// Pixels (PNG) or user units (SVG) per module, 1–32 (default 8).
    pub scale: Option<u32>,
}

/// A QR code (SVG or PNG) for a link of this service, for posters and papers.
#[utoipa::path(
    get, path = "/api/qr", tag = "datasets", params(QrQuery),
    responses(
        (status = 200, description = "The QR code", content_type = "image/svg+xml"),
        (status = 400, description = "Not a link of this service, or too long", body = Problem),
    )
)]
pub(crate) async fn qr_code(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<QrQuery>,
) -> Result<Response, ApiError> {
    let config = &s.services.config;
    let ours = match &config.public_base_url {
        Some(base) => {
            q.url.starts_with(&format!("{base}/"))
                // Neuroglancer links whose state lives here.
                || q.url.starts_with(&config.neuroglancer_url) && q.url.contains(&format!("#!{base}/"))
        }
        None => q.url.starts_with("https://") || q.url.starts_with("http://"),
    };
    if !ours || q.url.len() > 2048 {
        return Err(ApiError::BadRequest(
            "url must be a link of this service (at most 2048 characters)".into(),
        ));
    }
    let scale = q.scale.unwrap_or(8);
    if !(1..=32).contains(&scale) {
        return Err(ApiError::BadRequest(
            "scale must be between 1 and 32".into(),
        ));
    }
    let (content_type, body) = match q.format.unwrap_or_default() {
        QrFormat::Svg => (
            "image/svg+xml",
            shared::qr::svg(&q.url, scale).map(String::into_bytes),
        ),
        QrFormat::Png => ("image/png", shared::qr::png(&q.url, scale)),
        QrFormat::Text => (
            "text/plain; charset=utf-8",
            shared::qr::text(&q.url).map(String::into_bytes),
        ),
    };
    let body = body.map_err(|e| match e {
        shared::qr::QrError::TooLong => {
            ApiError::BadRequest("the link is too long for a QR code".into())
        }
        other => ApiError::internal(other),
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response())
}
