//! Registering, listing, describing and updating datasets; their audit trail.

use std::collections::BTreeSet;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use shared::access::{Action, Actor, Resource, require};
use shared::auth::Caller;
use shared::domain::{
    AuditEntry, Dataset, DatasetId, DatasetName, DatasetPatch, StorageUrl, TeamId, Visibility, now,
};
use shared::error::{ApiJson, ApiQuery, Problem};
use shared::objects::ObjectsError;
use shared::store::catalog::CatalogError;
use shared::zarr::{InspectError, inspect};
use shared::{ApiError, Services};
use utoipa::{IntoParams, ToSchema};

use crate::{AppState, DatasetView, Page, Subject, grant_of, if_match, with_etag};
use shared::error::{bounded_text, invalid_cursor, page_request};

const MAX_DISPLAY_NAME: usize = 200;
const MAX_DESCRIPTION: usize = 10_000;
const MAX_ALLOWED_TEAMS: usize = 100;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterDataset {
    /// Unique within the organization: `[A-Za-z0-9._-]{1,100}`.
    pub name: String,
    /// `s3://bucket/prefix` or an absolute local path below the server's data roots.
    #[schema(example = "s3://lab-data/em/cells.ome.zarr")]
    pub url: String,
    #[serde(default)]
    pub visibility: Visibility,
    pub display_name: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub featured: bool,
    /// Teams of the organization whose members may read and annotate it.
    #[serde(default)]
    pub allowed_teams: Vec<String>,
}

/// The organization's teams named by `ids`, checked to exist there.
async fn teams(
    services: &Services,
    org: &shared::domain::OrgId,
    ids: &[String],
) -> Result<BTreeSet<TeamId>, ApiError> {
    if ids.len() > MAX_ALLOWED_TEAMS {
        return Err(ApiError::Unprocessable(format!(
            "at most {MAX_ALLOWED_TEAMS} allowed teams"
        )));
    }
    services.org_teams(org, ids).await
}

/// Register a Zarr v2/v3 or OME-Zarr 0.4/0.5 hierarchy; its layers and levels are read from its metadata.
#[utoipa::path(
    post, path = "/api/datasets", tag = "datasets", security(("bearer" = [])),
    request_body = RegisterDataset,
    responses(
        (status = 201, description = "Registered", body = DatasetView),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 409, description = "The name is taken", body = Problem),
        (status = 422, description = "No or invalid Zarr metadata, or unreadable storage", body = Problem),
    )
)]
pub(crate) async fn register_dataset(
    State(s): State<AppState>,
    Caller(actor): Caller,
    ApiJson(req): ApiJson<RegisterDataset>,
) -> Result<Response, ApiError> {
    let services = &s.services;
    let org = services.auth.org().clone();
    require(
        &actor,
        Action::RegisterDataset,
        Resource::Organization(&org),
    )?;
    let name = DatasetName::parse(&req.name)?;
    let storage = StorageUrl::parse(&req.url)?;
    let display_name = bounded_text("display_name", req.display_name, MAX_DISPLAY_NAME)?;
    let description =
        bounded_text("description", req.description, MAX_DESCRIPTION)?.unwrap_or_default();
    let allowed_teams = teams(services, &org, &req.allowed_teams).await?;

    let location = services.objects.locate(&storage).map_err(|e| match e {
        ObjectsError::Forbidden => {
            ApiError::Unprocessable("the local path is outside this server's data roots".into())
        }
        other => {
            tracing::warn!(error = %other, "storage client could not be built");
            ApiError::Unprocessable("the storage URL cannot be opened".into())
        }
    })?;
    let found = inspect(&location).await.map_err(|e| match e {
        InspectError::Unreachable { source } => {
            tracing::warn!(error = %source, "dataset storage unreadable");
            ApiError::Unprocessable(format!(
                "could not read {storage}: missing bucket or path, or no permission"
            ))
        }
        other => ApiError::Unprocessable(format!("{storage}: {other}")),
    })?;

    let t = now();
    let dataset = Dataset {
        id: DatasetId::generate(),
        org,
        display_name: display_name
            .or(found.title)
            .unwrap_or_else(|| name.as_str().to_owned()),
        name,
        description,
        storage,
        visibility: req.visibility,
        featured: req.featured,
        owner: actor.user_id().cloned(),
        allowed_teams,
        zarr_format: found.zarr_format,
        ome_version: found.ome_version,
        layers: found.layers,
        created_at: t,
        updated_at: t,
        version: 1,
    };
    services
        .catalog
        .create_dataset(&dataset, &actor.describe())
        .await
        .map_err(|e| match e {
            CatalogError::Conflict => ApiError::Conflict(format!(
                "a dataset named '{}' already exists",
                dataset.name.as_str()
            )),
            other => other.into(),
        })?;
    let location_header = HeaderValue::from_str(&format!("/api/datasets/{}", dataset.id)).ok();
    let version = dataset.version;
    let view = DatasetView::of(
        services,
        &actor,
        Subject {
            dataset,
            grant: None,
        },
    )
    .await?;
    let mut response = with_etag(StatusCode::CREATED, version, ApiJson(view));
    if let Some(l) = location_header {
        response.headers_mut().insert(header::LOCATION, l);
    }
    Ok(response)
}

/// Which datasets to list.
#[derive(Clone, Copy, Deserialize, ToSchema, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ListScope {
    /// The caller's organization's datasets that they can see.
    #[default]
    Organization,
    /// Datasets shared with the caller personally, from any organization.
    SharedWithMe,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `organization` (default) or `shared_with_me`.
    pub scope: Option<ListScope>,
    /// 1–100, default 50.
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct DatasetList {
    pub items: Vec<DatasetView>,
    pub next_cursor: Option<String>,
}

/// Datasets the caller can see — the organization's, or those shared with them — each with
/// the caller's status (owner, manager, shared with me, team member, public; private,
/// privately shared, public).
#[utoipa::path(
    get, path = "/api/datasets", tag = "datasets", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = DatasetList), (status = 401, body = Problem))
)]
pub(crate) async fn list_datasets(
    State(s): State<AppState>,
    Caller(actor): Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<ApiJson<DatasetList>, ApiError> {
    let services = &s.services;
    let Some(org) = actor.org().cloned() else {
        return Err(ApiError::Unauthorized);
    };
    let (limit, cursor) = page_request(q.limit, q.cursor)?;
    let mut items = Vec::new();
    let next_cursor = match q.scope.unwrap_or_default() {
        ListScope::Organization => {
            let listing = services
                .catalog
                .datasets_of(&org, limit, cursor)
                .await
                .map_err(invalid_cursor)?;
            for dataset in listing.items {
                let grant = grant_of(services, &actor, &dataset.id).await?;
                let subject = Subject { dataset, grant };
                if subject.allows(&actor, Action::ViewDataset) {
                    items.push(DatasetView::of(services, &actor, subject).await?);
                }
            }
            listing.next.map(|c| c.0)
        }
        ListScope::SharedWithMe => {
            let Actor::User(member) = &actor else {
                return Ok(ApiJson(DatasetList {
                    items,
                    next_cursor: None,
                }));
            };
            let Some(email) = &member.email else {
                return Err(ApiError::Unauthorized);
            };
            for grant in services.catalog.grants_for(email).await? {
                if grant.user.as_ref() != member.id.as_ref() {
                    continue;
                }
                let dataset = match services.catalog.dataset(&grant.dataset_id).await {
                    Ok(d) => d,
                    Err(CatalogError::NotFound) => continue,
                    Err(e) => return Err(e.into()),
                };
                let subject = Subject {
                    dataset,
                    grant: Some(grant),
                };
                if subject.allows(&actor, Action::ViewDataset) {
                    items.push(DatasetView::of(services, &actor, subject).await?);
                }
            }
            None
        }
    };
    Ok(ApiJson(DatasetList { items, next_cursor }))
}

/// A dataset's record: layers, levels, visibility, and the caller's standing to it.
#[utoipa::path(
    get, path = "/api/datasets/{id}", tag = "datasets",
    params(("id" = String, Path)),
    responses((status = 200, body = DatasetView), (status = 404, body = Problem))
)]
pub(crate) async fn get_dataset(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let subject = Subject::load(&s.services, &actor, &id).await?;
    subject.require(&actor, Action::ViewDataset)?;
    let version = subject.dataset.version;
    let view = DatasetView::of(&s.services, &actor, subject).await?;
    Ok(with_etag(StatusCode::OK, version, ApiJson(view)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateDataset {
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub visibility: Option<Visibility>,
    pub featured: Option<bool>,
    /// Replaces the allowed teams.
    pub allowed_teams: Option<Vec<String>>,
}

/// Change descriptive fields, visibility, the featured flag or the allowed teams (`If-Match` for optimistic concurrency).
#[utoipa::path(
    patch, path = "/api/datasets/{id}", tag = "datasets", security(("bearer" = [])),
    params(("id" = String, Path), ("If-Match" = Option<String>, Header, description = "ETag from a previous read")),
    request_body = UpdateDataset,
    responses((status = 200, body = DatasetView), (status = 404, body = Problem), (status = 409, body = Problem))
)]
pub(crate) async fn update_dataset(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<UpdateDataset>,
) -> Result<Response, ApiError> {
    let services = &s.services;
    let expected = if_match(&headers)?;
    let subject = Subject::load(services, &actor, &id).await?;
    subject.require(&actor, Action::UpdateDataset)?;
    let allowed_teams = match &req.allowed_teams {
        Some(ids) => Some(teams(services, &subject.dataset.org, ids).await?),
        None => None,
    };
    let patch = DatasetPatch {
        display_name: bounded_text("display_name", req.display_name, MAX_DISPLAY_NAME)?,
        description: bounded_text("description", req.description, MAX_DESCRIPTION)?,
        visibility: req.visibility,
        featured: req.featured,
        allowed_teams,
    };
    let updated = services
        .catalog
        .update_dataset(&subject.dataset.id, &patch, expected, &actor.describe())
        .await?;
    services.forget_dataset(&updated.id);
    let version = updated.version;
    let view = DatasetView::of(
        services,
        &actor,
        Subject {
            dataset: updated,
            grant: subject.grant,
        },
    )
    .await?;
    Ok(with_etag(StatusCode::OK, version, ApiJson(view)))
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub items: Vec<AuditEntry>,
    pub next_cursor: Option<String>,
}

/// A dataset's audit trail, newest first: who registered and changed it, who created and
/// revoked which link, who shared it with whom, and each link's use.
#[utoipa::path(
    get, path = "/api/datasets/{id}/audit", tag = "datasets", security(("bearer" = [])),
    params(("id" = String, Path), Page),
    responses((status = 200, body = AuditPage), (status = 403, body = Problem), (status = 404, body = Problem))
)]
pub(crate) async fn audit(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<ApiJson<AuditPage>, ApiError> {
    let services = &s.services;
    let subject = Subject::load(services, &actor, &id).await?;
    subject.require(&actor, Action::ViewAudit)?;
    let (limit, cursor) = page.parts()?;
    let listing = services
        .catalog
        .audit_of(&subject.dataset.id, limit, cursor)
        .await
        .map_err(invalid_cursor)?;
    Ok(ApiJson(AuditPage {
        items: listing.items,
        next_cursor: listing.next.map(|c| c.0),
    }))
}

/// A signed-in person's own URLs to a dataset, for viewers that cannot log in.
#[derive(Serialize, ToSchema)]
pub struct ViewerUrls {
    /// The dataset root for any Zarr reader (`/u/{capability}/`).
    pub url: String,
    /// A Neuroglancer view of it.
    pub neuroglancer_url: String,
    /// The Neuroglancer state as JSON, with CORS.
    pub state_url: String,
    /// The download manifest (when the caller may download).
    pub files_url: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: time::OffsetDateTime,
}

/// Your own viewer URLs for a dataset you can see (as a team member, a person it is shared
/// with, its owner or a manager): open it in Neuroglancer or zarr-python without a login
/// there. They are personal — they act as you, stop working when your access ends (within the
/// cache bound, ≤ 60 s) and expire after `ZARRSHARE_UNLOCK_TTL_SECS` (default 12 h). To share
/// with others, make a share link.
#[utoipa::path(
    get, path = "/api/datasets/{id}/viewer", tag = "datasets", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = ViewerUrls), (status = 404, body = Problem), (status = 422, body = Problem))
)]
pub(crate) async fn viewer(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<ApiJson<ViewerUrls>, ApiError> {
    let services = &s.services;
    let subject = Subject::load(services, &actor, &id).await?;
    subject.require(&actor, Action::ViewDataset)?;
    let Some(user) = actor.user_id() else {
        return Err(ApiError::Unprocessable(
            "personal viewer URLs are for signed-in people; the admin key can make a share link"
                .into(),
        ));
    };
    let ttl = time::Duration::try_from(services.config.unlock_ttl).unwrap_or(time::Duration::HOUR);
    let expires_at = now() + ttl;
    let capability = services
        .signer
        .personal(&subject.dataset.id, user, expires_at);
    let state_url = services.public_url(&format!("/ng/u/{capability}.json"));
    Ok(ApiJson(ViewerUrls {
        url: services.public_url(&format!("/u/{capability}/")),
        neuroglancer_url: shared::neuroglancer::viewer_url_for_state_url(
            &services.config.neuroglancer_url,
            &state_url,
        ),
        state_url,
        files_url: services.public_url(&format!("/files/u/{capability}")),
        expires_at,
    }))
}
