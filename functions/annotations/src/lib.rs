//! The annotations function: skeleton annotations on datasets, owned by one user, with
//! visibility (private / internal / public), team sharing, versioned saves of webKnossos update
//! actions (a stale save is 409 with the current version), every version readable, downloads as
//! NML and JSON, soft deletion, and "copy to my account". Handlers stay thin: parse, ask the
//! access decision, call the store.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use shared::access::{
    Action, Actor, AnnotationFacts, DatasetFacts, Decision, GrantFacts, Resource, decide, require,
};
use shared::auth::{Authenticator, Caller};
use shared::domain::skeleton::{MAX_ACTIONS_PER_SAVE, NmlMeta, Skeleton, UpdateAction, to_nml};
use shared::domain::volume::{
    SegmentType, VolumeAction, VolumeActionError, VolumeContent, VolumeSpec, decode_actions,
};
use shared::domain::{
    Annotation, AnnotationId, AnnotationKind, AnnotationOrigin, AnnotationVersion,
    AnnotationVisibility, Dataset, DatasetId, SNAPSHOT_EVERY, TeamId, annotation_name, now,
};
use shared::error::{ApiJson, ApiQuery, Problem, bounded_text, invalid_cursor, page_request};
use shared::services::SkeletonAt;
use shared::store::annotations::SaveError;
use shared::store::catalog::CatalogError;
use shared::{ApiError, Services};
use utoipa::{IntoParams, ToSchema};

/// Saves carry at most this much JSON (5000 actions of nodes fit easily).
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
const MAX_DESCRIPTION: usize = 10_000;

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
        .route("/api/annotations", get(list).post(create))
        .route(
            "/api/annotations/{id}",
            get(show).patch(update).delete(remove),
        )
        .route("/api/annotations/{id}/restore", post(restore))
        .route("/api/annotations/{id}/saves", post(save))
        .route("/api/annotations/{id}/versions", get(versions))
        .route("/api/annotations/{id}/versions/{version}", get(version))
        .route("/api/annotations/{id}/download", get(download))
        .route("/api/annotations/{id}/copy", post(copy))
        .route("/api/annotations/{id}/viewer", get(viewer))
        .method_not_allowed_fallback(shared::error::wrong_method)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(AppState { services })
}

/// This function's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use shared::auth::SecuritySchemes;
    #[derive(utoipa::OpenApi)]
    #[openapi(
        paths(list, create, show, update, remove, restore, save, versions, version, download, copy, viewer),
        components(schemas(Problem)),
        tags((name = "annotations", description = "Skeleton and volume annotations: versioned saves, visibility, team sharing, share links, copies, NML")),
        modifiers(&SecuritySchemes),
    )]
    struct Doc;
    <Doc as utoipa::OpenApi>::openapi()
}

/// The caller of the routes a share link may use too (show, versions, downloads, saves): a
/// [`Caller`] (`Authorization: Bearer …`), or the holder of a share link
/// (`Authorization: Link {token}`, `Link {token}.{unlock}` for a password-protected link). The
/// link is read from the catalog, not a cache, so a revoked link stops at once. What it allows
/// is the access decision's: reading the annotation it is scoped to (or, for a whole-dataset
/// link, the dataset's public annotations) and, with `annotate` permission, saving to the one
/// it is scoped to.
struct CallerOrLink(Actor);

impl FromRequestParts<AppState> for CallerOrLink {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        let link = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Link "))
            .map(str::trim);
        match link {
            Some(segment) => {
                let (_, facts) = s
                    .services
                    .link_holder(segment, true)
                    .await?
                    .ok_or(ApiError::Unauthorized)?;
                Ok(Self(Actor::LinkHolder(facts)))
            }
            None => s.services.auth.authenticate(&parts.headers).await.map(Self),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Loading and deciding

/// An annotation with everything the decision needs about it.
struct Subject {
    annotation: Annotation,
    dataset: Dataset,
    grant: Option<GrantFacts>,
    owner_teams: BTreeSet<TeamId>,
}

impl Subject {
    fn facts(&self) -> AnnotationFacts<'_> {
        AnnotationFacts::of(
            &self.annotation,
            &self.owner_teams,
            DatasetFacts::of(&self.dataset, self.grant),
        )
    }

    fn require(&self, actor: &Actor, action: Action) -> Result<(), ApiError> {
        require(actor, action, Resource::Annotation(self.facts()))
    }

    fn allows(&self, actor: &Actor, action: Action) -> bool {
        decide(actor, action, Resource::Annotation(self.facts()), now()) == Decision::Allow
    }
}

fn not_found(e: CatalogError) -> ApiError {
    match e {
        CatalogError::NotFound => ApiError::NotFound("no such annotation".into()),
        other => other.into(),
    }
}

/// The caller's grant on a dataset (bound to their account), from the access cache.
async fn grant_of(
    services: &Services,
    actor: &Actor,
    dataset: &DatasetId,
) -> Result<Option<GrantFacts>, ApiError> {
    Ok(services
        .caller_grant(actor, dataset)
        .await?
        .as_deref()
        .map(GrantFacts::from))
}

async fn dataset(services: &Services, id: &DatasetId) -> Result<Dataset, ApiError> {
    services.catalog.dataset(id).await.map_err(|e| match e {
        CatalogError::NotFound => ApiError::NotFound("no such dataset".into()),
        other => other.into(),
    })
}

async fn subject(s: &AppState, actor: &Actor, id: &str) -> Result<Subject, ApiError> {
    let id =
        AnnotationId::parse(id).map_err(|_| ApiError::NotFound("no such annotation".into()))?;
    let annotation = s.services.annotations().get(&id).await.map_err(not_found)?;
    let dataset = dataset(&s.services, &annotation.dataset_id).await?;
    let grant = grant_of(&s.services, actor, &dataset.id).await?;
    let owner_teams = s.services.owner_teams(&annotation).await?;
    Ok(Subject {
        annotation,
        dataset,
        grant,
        owner_teams,
    })
}

// ---------------------------------------------------------------------------------------------
// Views

/// What the caller may do with an annotation.
#[derive(Serialize, ToSchema)]
pub struct AnnotationAccess {
    pub read: bool,
    pub edit: bool,
    pub manage: bool,
    pub copy: bool,
}

#[derive(Serialize, ToSchema)]
pub struct AnnotationView {
    #[serde(flatten)]
    pub annotation: Annotation,
    pub access: AnnotationAccess,
}

impl AnnotationView {
    fn of(subject: Subject, actor: &Actor) -> Self {
        let access = AnnotationAccess {
            read: subject.allows(actor, Action::ReadAnnotation),
            edit: subject.allows(actor, Action::EditAnnotation),
            manage: subject.allows(actor, Action::ManageAnnotation),
            copy: subject.allows(actor, Action::CopyAnnotation),
        };
        Self {
            annotation: subject.annotation,
            access,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Routes

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAnnotation {
    pub dataset_id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// `skeleton` or `volume`.
    pub kind: AnnotationKind,
    /// For a volume annotation: the image layer it segments and its segment id type.
    #[serde(default)]
    pub volume: Option<NewVolume>,
    #[serde(default)]
    pub visibility: AnnotationVisibility,
    /// Teams (of your organization) to share it with.
    #[serde(default)]
    pub teams: Vec<String>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct NewVolume {
    /// The image layer's path in the dataset (default: its first image layer). The volume has
    /// the shape and voxel size of that layer's finest level (spatial axes z, y, x).
    pub layer: Option<String>,
    /// `uint8`, `uint16`, `uint32` (default) or `uint64`.
    #[serde(default)]
    pub data_type: SegmentType,
}

/// The volume geometry for a new volume annotation on `dataset`.
fn volume_spec(dataset: &Dataset, req: Option<NewVolume>) -> Result<VolumeSpec, ApiError> {
    let req = req.unwrap_or_default();
    let layer = match &req.layer {
        Some(path) => dataset
            .layers
            .iter()
            .find(|l| &l.path == path)
            .ok_or_else(|| {
                ApiError::Unprocessable(format!("the dataset has no layer at {path:?}"))
            })?,
        None => dataset
            .layers
            .iter()
            .find(|l| l.kind != shared::domain::LayerKind::Labels)
            .ok_or_else(|| {
                ApiError::Unprocessable("the dataset has no image layer to segment".into())
            })?,
    };
    VolumeSpec::for_layer(layer, req.data_type).map_err(|e| ApiError::Unprocessable(e.to_string()))
}

/// Start an annotation on a dataset you may annotate; you own it. A volume annotation gets an
/// empty segmentation over the chosen image layer (written as Zarr metadata at once).
#[utoipa::path(post, path = "/api/annotations", tag = "annotations", request_body = NewAnnotation,
    responses((status = 201, body = AnnotationView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn create(
    State(s): State<AppState>,
    Caller(actor): Caller,
    ApiJson(req): ApiJson<NewAnnotation>,
) -> Result<Response, ApiError> {
    let services = &s.services;
    let dataset_id = DatasetId::parse(&req.dataset_id)
        .map_err(|_| ApiError::NotFound("no such dataset".into()))?;
    let dataset = dataset(services, &dataset_id).await?;
    let grant = grant_of(services, &actor, &dataset.id).await?;
    require(
        &actor,
        Action::Annotate,
        Resource::Dataset(DatasetFacts::of(&dataset, grant)),
    )?;
    let Actor::User(member) = &actor else {
        return Err(ApiError::Unprocessable(
            "annotations are owned by people: sign in to create one".into(),
        ));
    };
    let Some(owner) = member.id.clone() else {
        return Err(ApiError::Unprocessable(
            "annotations are owned by people: sign in to create one".into(),
        ));
    };
    let volume = match req.kind {
        AnnotationKind::Skeleton if req.volume.is_some() => {
            return Err(ApiError::Unprocessable(
                "volume settings are for volume annotations".into(),
            ));
        }
        AnnotationKind::Skeleton => None,
        AnnotationKind::Volume => Some(volume_spec(&dataset, req.volume)?),
    };
    let teams = services.org_teams(&member.org, &req.teams).await?;
    let t = now();
    let annotation = Annotation {
        id: AnnotationId::generate(),
        dataset_id: dataset.id.clone(),
        org: member.org.clone(),
        owner,
        name: annotation_name(&req.name)?,
        description: bounded_text("description", req.description, MAX_DESCRIPTION)?
            .unwrap_or_default(),
        kind: req.kind,
        visibility: req.visibility,
        teams,
        forked_from: None,
        volume,
        version: 0,
        revision: 1,
        created_at: t,
        updated_at: t,
        deleted_at: None,
    };
    if let Some(spec) = &annotation.volume {
        shared::volumes::create(
            services.bodies.location(),
            &annotation.id,
            &annotation.name,
            spec,
        )
        .await
        .map_err(ApiError::internal)?;
    }
    s.services.annotations().create(&annotation, None).await?;
    let subject = Subject {
        owner_teams: member.teams.keys().cloned().collect(),
        annotation,
        dataset,
        grant,
    };
    Ok((
        StatusCode::CREATED,
        ApiJson(AnnotationView::of(subject, &actor)),
    )
        .into_response())
}

/// Which annotations to list.
#[derive(Clone, Copy, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ListScope {
    /// Your own annotations.
    Mine,
    /// Annotations shared with your teams.
    SharedWithMyTeams,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// The annotations of one dataset (that you may read) …
    pub dataset: Option<String>,
    /// … or yours, or those shared with your teams.
    pub scope: Option<ListScope>,
}

/// Annotations you may read: of one dataset, yours, or shared with your teams.
#[utoipa::path(get, path = "/api/annotations", tag = "annotations", params(ListQuery),
    responses((status = 200, body = Vec<AnnotationView>), (status = 400, body = Problem), (status = 401, body = Problem)))]
async fn list(
    State(s): State<AppState>,
    Caller(actor): Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<ApiJson<Vec<AnnotationView>>, ApiError> {
    let found: Vec<Annotation> = match (&q.dataset, q.scope) {
        (Some(id), None) => {
            let id =
                DatasetId::parse(id).map_err(|_| ApiError::NotFound("no such dataset".into()))?;
            let mut all = Vec::new();
            let mut cursor = None;
            loop {
                let page = s
                    .services
                    .annotations()
                    .of_dataset(&id, 100, cursor)
                    .await?;
                all.extend(page.items);
                match page.next {
                    Some(c) => cursor = Some(c),
                    None => break all,
                }
            }
        }
        (None, Some(scope)) => {
            let Actor::User(member) = &actor else {
                return Err(ApiError::Unprocessable(
                    "these lists are for signed-in people".into(),
                ));
            };
            let Some(me) = &member.id else {
                return Err(ApiError::Unprocessable(
                    "these lists are for signed-in people".into(),
                ));
            };
            match scope {
                ListScope::Mine => s.services.annotations().of_owner(me).await?,
                ListScope::SharedWithMyTeams => {
                    let mut out: Vec<Annotation> = Vec::new();
                    for team in member.teams.keys() {
                        for a in s.services.annotations().shared_with(team).await? {
                            if &a.owner != me && !out.iter().any(|o| o.id == a.id) {
                                out.push(a);
                            }
                        }
                    }
                    out
                }
            }
        }
        _ => {
            return Err(ApiError::BadRequest("give either dataset or scope".into()));
        }
    };
    let mut out = Vec::new();
    for a in found {
        let subject = subject(&s, &actor, a.id.as_str()).await?;
        if subject.allows(&actor, Action::ReadAnnotation)
            && (subject.annotation.deleted_at.is_none() || q.scope == Some(ListScope::Mine))
        {
            out.push(AnnotationView::of(subject, &actor));
        }
    }
    Ok(ApiJson(out))
}

/// An annotation's record, with what you may do with it.
#[utoipa::path(get, path = "/api/annotations/{id}", tag = "annotations", security(("bearer" = []), ("link" = [])), params(("id" = String, Path)),
    responses((status = 200, body = AnnotationView), (status = 404, body = Problem)))]
async fn show(
    State(s): State<AppState>,
    CallerOrLink(actor): CallerOrLink,
    Path(id): Path<String>,
) -> Result<ApiJson<AnnotationView>, ApiError> {
    let subject = subject(&s, &actor, &id).await?;
    subject.require(&actor, Action::ReadAnnotation)?;
    Ok(ApiJson(AnnotationView::of(subject, &actor)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnnotationPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub visibility: Option<AnnotationVisibility>,
    /// Replaces the teams it is shared with.
    pub teams: Option<Vec<String>>,
    /// The revision you saw (optimistic concurrency); without it, the change applies to the latest.
    pub revision: Option<u64>,
}

/// Rename, describe, change visibility or team sharing (owner or admin).
#[utoipa::path(patch, path = "/api/annotations/{id}", tag = "annotations", params(("id" = String, Path)), request_body = AnnotationPatch,
    responses((status = 200, body = AnnotationView), (status = 403, body = Problem), (status = 409, body = Problem)))]
async fn update(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<AnnotationPatch>,
) -> Result<ApiJson<AnnotationView>, ApiError> {
    let subject = subject(&s, &actor, &id).await?;
    subject.require(&actor, Action::ManageAnnotation)?;
    let name = req.name.as_deref().map(annotation_name).transpose()?;
    let description = bounded_text("description", req.description, MAX_DESCRIPTION)?;
    let teams = match &req.teams {
        Some(ids) => Some(s.services.org_teams(&subject.annotation.org, ids).await?),
        None => None,
    };
    let updated = s
        .services
        .annotations()
        .update(&subject.annotation.id, req.revision, |a| {
            if let Some(n) = &name {
                a.name.clone_from(n);
            }
            if let Some(d) = &description {
                a.description.clone_from(d);
            }
            if let Some(v) = req.visibility {
                a.visibility = v;
            }
            if let Some(t) = &teams {
                a.teams.clone_from(t);
            }
        })
        .await
        .map_err(|e| match e {
            CatalogError::Conflict => {
                ApiError::Conflict("the annotation changed meanwhile; reload it".into())
            }
            other => not_found(other),
        })?;
    s.services.forget_annotation(&updated.id);
    Ok(ApiJson(AnnotationView::of(
        Subject {
            annotation: updated,
            ..subject
        },
        &actor,
    )))
}

async fn set_deleted(
    s: &AppState,
    actor: &Actor,
    id: &str,
    deleted: bool,
) -> Result<AnnotationView, ApiError> {
    let subject = subject(s, actor, id).await?;
    subject.require(actor, Action::ManageAnnotation)?;
    let at = deleted.then(now);
    let updated = s
        .services
        .annotations()
        .update(&subject.annotation.id, None, |a| a.deleted_at = at)
        .await
        .map_err(not_found)?;
    s.services.forget_annotation(&updated.id);
    Ok(AnnotationView::of(
        Subject {
            annotation: updated,
            ..subject
        },
        actor,
    ))
}

/// Delete an annotation (soft: its owner and admins can restore it; others no longer see it).
#[utoipa::path(delete, path = "/api/annotations/{id}", tag = "annotations", params(("id" = String, Path)),
    responses((status = 200, body = AnnotationView), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn remove(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<ApiJson<AnnotationView>, ApiError> {
    Ok(ApiJson(set_deleted(&s, &actor, &id, true).await?))
}

/// Restore a deleted annotation.
#[utoipa::path(post, path = "/api/annotations/{id}/restore", tag = "annotations", params(("id" = String, Path)),
    responses((status = 200, body = AnnotationView), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn restore(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<ApiJson<AnnotationView>, ApiError> {
    Ok(ApiJson(set_deleted(&s, &actor, &id, false).await?))
}

/// What one version of an annotation holds.
#[derive(Serialize)]
#[serde(untagged)]
enum Content {
    Skeleton(Skeleton),
    Volume(VolumeContent),
}

/// The content of `version` of `a` (0: empty).
async fn content_of(s: &AppState, a: &Annotation, version: u64) -> Result<Content, ApiError> {
    Ok(match a.kind {
        AnnotationKind::Skeleton => Content::Skeleton(content(s, &a.id, version).await?),
        AnnotationKind::Volume => Content::Volume(VolumeContent::clone(
            &*s.services.volume_content(&a.id, version).await?,
        )),
    })
}

/// The skeleton at `version` (0: empty).
async fn content(s: &AppState, id: &AnnotationId, version: u64) -> Result<Skeleton, ApiError> {
    s.services.skeleton(id, version).await
}

/// A save onto a deleted annotation (told only to those who may restore it).
fn deleted_conflict() -> ApiError {
    ApiError::Conflict("the annotation is deleted; restore it first".into())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Save {
    /// The version these actions build on (the one you loaded).
    pub base_version: u64,
    /// webKnossos update actions, applied in order, all or nothing: for skeletons
    /// `{"name": "createNode", "value": {...}}` and the other tree actions; for volumes
    /// `{"name": "updateBucket", "value": {"position": [x, y, z], "mag": [1, 1, 1],
    /// "cubeSize": 32, "base64Data": "…"}}` (32³ voxels, little-endian, x fastest; buckets of
    /// coarser mags, `[2, 2, 2]` …, are checked and counted but not stored: the coarser levels
    /// are recomputed from full resolution).
    #[schema(value_type = Vec<Object>)]
    pub actions: Vec<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub struct Saved {
    pub version: u64,
    /// Skeletons: the trees, nodes and edges now held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trees: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edges: Option<usize>,
    /// Volumes: the buckets holding segments, and the largest segment id painted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buckets: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub largest_segment_id: Option<u64>,
    /// Volumes: how many of the save's buckets were of coarser levels (mag 2, 4 …), checked and
    /// then left out: every coarser level is recomputed from full resolution.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub derived_buckets: Option<usize>,
}

/// Each action parsed as `T`; the error names the first bad one.
fn parse_actions<T: serde::de::DeserializeOwned>(
    actions: Vec<serde_json::Value>,
) -> Result<Vec<T>, ApiError> {
    actions
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            serde_json::from_value(a)
                .map_err(|e| ApiError::Unprocessable(format!("action {i}: {e}")))
        })
        .collect()
}

/// Save a batch of update actions on top of `base_version`. Accepted saves get consecutive
/// versions; a save on an older version is 409 with the current one (load it, rebase, retry).
#[utoipa::path(post, path = "/api/annotations/{id}/saves", tag = "annotations", security(("bearer" = []), ("link" = [])), params(("id" = String, Path)), request_body = Save,
    responses((status = 201, body = Saved), (status = 403, body = Problem), (status = 409, description = "Stale: the detail names the current version", body = Problem), (status = 422, body = Problem)))]
async fn save(
    State(s): State<AppState>,
    CallerOrLink(actor): CallerOrLink,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<Save>,
) -> Result<Response, ApiError> {
    let subject = subject(&s, &actor, &id).await?;
    if subject.annotation.deleted_at.is_some() && subject.allows(&actor, Action::ManageAnnotation) {
        return Err(deleted_conflict());
    }
    subject.require(&actor, Action::EditAnnotation)?;
    let a = &subject.annotation;
    if req.actions.is_empty() || req.actions.len() > MAX_ACTIONS_PER_SAVE {
        return Err(ApiError::Unprocessable(format!(
            "a save carries 1-{MAX_ACTIONS_PER_SAVE} actions"
        )));
    }
    let stale = |current: u64| {
        ApiError::Conflict(format!(
            "this save builds on version {}, but the latest is version {current}: load it and save again",
            req.base_version
        ))
    };
    if req.base_version != a.version {
        return Err(stale(a.version));
    }
    let action_count = u32::try_from(req.actions.len()).unwrap_or(u32::MAX);
    // The new content, and (volumes) the save's own bucket directory and what it wrote.
    let mut written: Option<(String, Vec<String>)> = None;
    // Skeletons: the saved skeleton (kept in this instance's cache once accepted).
    let mut kept: Option<SkeletonAt> = None;
    let next_version = req.base_version + 1;
    let (value, delta_of, mut reply) = match &a.volume {
        None => {
            let actions: Vec<UpdateAction> = parse_actions(req.actions)?;
            let base = s.services.skeleton_at(&a.id, req.base_version).await?;
            let mut skeleton = base.skeleton.clone();
            skeleton
                .apply(&actions)
                .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
            let stats = skeleton.stats();
            // The batch alone, on top of the last snapshot; a whole snapshot now and then.
            let (value, delta_of, anchor) = if next_version - base.anchor >= SNAPSHOT_EVERY {
                let value = serde_json::to_value(&skeleton).map_err(ApiError::internal)?;
                (value, None, next_version)
            } else {
                let value = serde_json::to_value(&actions).map_err(ApiError::internal)?;
                (value, Some(base.anchor), base.anchor)
            };
            kept = Some(SkeletonAt { skeleton, anchor });
            (
                value,
                delta_of,
                Saved {
                    version: 0,
                    trees: Some(stats.trees),
                    nodes: Some(stats.nodes),
                    edges: Some(stats.edges),
                    buckets: None,
                    largest_segment_id: None,
                    derived_buckets: None,
                },
            )
        }
        Some(spec) => {
            let actions: Vec<VolumeAction> = parse_actions(req.actions)?;
            let decoded = decode_actions(spec, &actions)
                .map_err(|e: VolumeActionError| ApiError::Unprocessable(e.to_string()))?;
            let base = s.services.volume_content(&a.id, a.version).await?;
            let save_id = format!(
                "s{}-{}",
                req.base_version + 1,
                shared::domain::LinkId::generate()
            );
            let saved = shared::volumes::save(
                s.services.bodies.location(),
                &a.id,
                spec,
                &save_id,
                decoded.buckets,
                &base,
            )
            .await
            .map_err(ApiError::internal)?;
            let mut next = saved.content;
            next.largest_segment_id = next.largest_segment_id.max(decoded.largest);
            written = Some((save_id, saved.written));
            let reply = Saved {
                version: 0,
                trees: None,
                nodes: None,
                edges: None,
                buckets: Some(next.painted_buckets()),
                largest_segment_id: Some(next.largest_segment_id),
                derived_buckets: Some(decoded.derived),
            };
            (
                serde_json::to_value(&next).map_err(ApiError::internal)?,
                None,
                reply,
            )
        }
    };
    let body = s
        .services
        .bodies
        .store(&a.id, req.base_version + 1, &value)
        .await
        .map_err(ApiError::internal)?;
    let outcome = s
        .services
        .annotations()
        .save(
            &a.id,
            req.base_version,
            &actor.describe(),
            action_count,
            &body,
            delta_of,
        )
        .await;
    if outcome.is_err()
        && let Some((save_id, keys)) = &written
    {
        shared::volumes::discard(s.services.bodies.location(), &a.id, save_id, keys).await;
    }
    let saved = outcome.map_err(|e| match e {
        SaveError::Stale { current, .. } => stale(current),
        SaveError::Deleted => deleted_conflict(),
        SaveError::NotFound => ApiError::NotFound("no such annotation".into()),
        SaveError::Store(e) => e.into(),
    })?;
    s.services.forget_annotation(&a.id);
    if let Some(kept) = kept {
        s.services.remember_skeleton(&a.id, saved.version, kept);
    }
    reply.version = saved.version;
    Ok((StatusCode::CREATED, ApiJson(reply)).into_response())
}

#[derive(Serialize, ToSchema)]
pub struct VersionInfo {
    pub version: u64,
    pub author: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub saved_at: time::OffsetDateTime,
    pub actions: u32,
}

impl From<&AnnotationVersion> for VersionInfo {
    fn from(v: &AnnotationVersion) -> Self {
        Self {
            version: v.version,
            author: v.author.clone(),
            saved_at: v.saved_at,
            actions: v.actions,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// 1–100, default 50.
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct VersionPage {
    /// Newest first.
    pub items: Vec<VersionInfo>,
    pub next_cursor: Option<String>,
}

/// The saved versions, newest first.
#[utoipa::path(get, path = "/api/annotations/{id}/versions", tag = "annotations", security(("bearer" = []), ("link" = [])), params(("id" = String, Path), Page),
    responses((status = 200, body = VersionPage), (status = 404, body = Problem)))]
async fn versions(
    State(s): State<AppState>,
    CallerOrLink(actor): CallerOrLink,
    Path(id): Path<String>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<ApiJson<VersionPage>, ApiError> {
    let subject = subject(&s, &actor, &id).await?;
    subject.require(&actor, Action::ReadAnnotation)?;
    let (limit, cursor) = page_request(page.limit, page.cursor)?;
    let listing = s
        .services
        .annotations()
        .versions(&subject.annotation.id, limit, cursor)
        .await
        .map_err(invalid_cursor)?;
    Ok(ApiJson(VersionPage {
        items: listing.items.iter().map(VersionInfo::from).collect(),
        next_cursor: listing.next.map(|c| c.0),
    }))
}

/// The content as it was at one version: a skeleton, or a volume's bucket index (its voxels
/// are read as Zarr at `…/__annotations/{id}/versions/{version}/volume/`).
#[utoipa::path(get, path = "/api/annotations/{id}/versions/{version}", tag = "annotations", security(("bearer" = []), ("link" = [])),
    params(("id" = String, Path), ("version" = u64, Path)),
    responses((status = 200, description = "The skeleton, or the volume's bucket index (JSON)"), (status = 404, body = Problem)))]
async fn version(
    State(s): State<AppState>,
    CallerOrLink(actor): CallerOrLink,
    Path((id, version)): Path<(String, u64)>,
) -> Result<Response, ApiError> {
    let subject = subject(&s, &actor, &id).await?;
    subject.require(&actor, Action::ReadAnnotation)?;
    if version > subject.annotation.version {
        return Err(ApiError::NotFound(format!("no version {version}")));
    }
    Ok(ApiJson(content_of(&s, &subject.annotation, version).await?).into_response())
}

#[derive(Clone, Copy, Deserialize, ToSchema, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Nml,
    Json,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DownloadQuery {
    /// `nml` (default) or `json`.
    pub format: Option<Format>,
    /// A past version (default: the latest).
    pub version: Option<u64>,
}

/// Download the skeleton as NML (webKnossos, and any NML reader) or JSON.
#[utoipa::path(get, path = "/api/annotations/{id}/download", tag = "annotations", security(("bearer" = []), ("link" = [])), params(("id" = String, Path), DownloadQuery),
    responses((status = 200, description = "The file", content_type = "application/xml"), (status = 404, body = Problem)))]
async fn download(
    State(s): State<AppState>,
    CallerOrLink(actor): CallerOrLink,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<DownloadQuery>,
) -> Result<Response, ApiError> {
    let subject = subject(&s, &actor, &id).await?;
    subject.require(&actor, Action::ReadAnnotation)?;
    let a = &subject.annotation;
    let version = q.version.unwrap_or(a.version);
    if version > a.version {
        return Err(ApiError::NotFound(format!("no version {version}")));
    }
    let format = q.format.unwrap_or_default();
    if a.kind == AnnotationKind::Volume && format == Format::Nml {
        return Err(ApiError::Unprocessable(
            "NML holds skeletons; read a volume as Zarr below /data/{dataset}/__annotations/{id}/volume/ (or a link's or viewer URL's), or download its bucket index with format=json".into(),
        ));
    }
    let safe_name: String = a
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let (content_type, extension, body) = match format {
        Format::Nml => {
            let skeleton = content(&s, &a.id, version).await?;
            let meta = NmlMeta::of(a, &subject.dataset);
            (
                "application/xml",
                "nml",
                to_nml(&skeleton, &meta).into_bytes(),
            )
        }
        Format::Json => (
            "application/json",
            "json",
            serde_json::to_vec(&content_of(&s, a, version).await?).map_err(ApiError::internal)?,
        ),
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{safe_name}-v{version}.{extension}\""),
            ),
        ],
        body,
    )
        .into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ViewerQuery {
    /// Centre in voxels of the image's finest level, comma-separated in the dataset's axis
    /// order (e.g. `64,128,128` for z, y, x).
    pub position: Option<String>,
    /// Rotation in degrees about x, y and z, comma-separated (e.g. `0,0,45`).
    pub rotation: Option<String>,
    /// Screen pixels per voxel.
    pub zoom: Option<f64>,
    /// `xy`, `xz`, `yz`, `3d` or `4panel`.
    pub layout: Option<shared::neuroglancer::Layout>,
    /// A past version (default: the latest).
    pub version: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct AnnotationViewer {
    /// Opens Neuroglancer on the dataset with this annotation drawn over it, at the view given.
    pub neuroglancer_url: String,
    /// The view state itself (JSON, with CORS): stable while the URL is valid.
    pub state_url: String,
    /// Volume annotations: the segmentation as Zarr v3 (OME-Zarr 0.5), for zarr-python,
    /// tensorstore or any Zarr reader.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zarr_url: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: time::OffsetDateTime,
}

/// A view link to this annotation: Neuroglancer opens the dataset with the annotation over
/// it, at the position, rotation, zoom and layout given, through your personal viewer URL
/// (valid for `ZARRSHARE_UNLOCK_TTL_SECS`, and only while you may read it). To give others a
/// lasting view link, make a share link scoped to the annotation with a stored `view`.
#[utoipa::path(get, path = "/api/annotations/{id}/viewer", tag = "annotations", params(("id" = String, Path), ViewerQuery),
    responses((status = 200, body = AnnotationViewer), (status = 400, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn viewer(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ViewerQuery>,
) -> Result<ApiJson<AnnotationViewer>, ApiError> {
    let subject = subject(&s, &actor, &id).await?;
    subject.require(&actor, Action::ReadAnnotation)?;
    let a = &subject.annotation;
    if q.version.is_some_and(|v| v > a.version) {
        return Err(ApiError::NotFound("no such version".into()));
    }
    let Some(user) = actor.user_id() else {
        return Err(ApiError::Unprocessable(
            "view links are personal; the admin key can make a share link for the annotation"
                .into(),
        ));
    };
    // The view is checked against the data now, so that the link never fails later for it.
    let view = shared::neuroglancer::view_from_query(
        None,
        q.position.as_deref(),
        q.rotation.as_deref(),
        q.zoom,
        q.layout,
    )
    .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    shared::neuroglancer::state(&subject.dataset, "https://check.invalid/", None, &view, &[])
        .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let services = &s.services;
    let ttl = time::Duration::try_from(services.config.unlock_ttl).unwrap_or(time::Duration::HOUR);
    let expires_at = now() + ttl;
    let capability = services
        .signer
        .personal(&subject.dataset.id, user, expires_at);
    let mut query = vec![format!("annotation={}", a.id)];
    let join = |values: &[f64]| {
        values
            .iter()
            .map(f64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    if let Some(p) = &view.position {
        query.push(format!("position={}", join(p)));
    }
    if let Some(r) = &view.rotation {
        query.push(format!("rotation={}", join(r)));
    }
    if let Some(z) = q.zoom {
        query.push(format!("zoom={z}"));
    }
    if let Some(l) = q.layout {
        query.push(format!("layout={}", l.as_str()));
    }
    if let Some(v) = q.version {
        query.push(format!("version={v}"));
    }
    let state_url = services.public_url(&format!("/ng/u/{capability}.json?{}", query.join("&")));
    let zarr_url = a.volume.as_ref().map(|_| {
        let at = match q.version {
            Some(v) if v != a.version => format!("versions/{v}/"),
            _ => String::new(),
        };
        services.public_url(&format!(
            "/u/{capability}/__annotations/{}/{at}volume/",
            a.id
        ))
    });
    Ok(ApiJson(AnnotationViewer {
        neuroglancer_url: shared::neuroglancer::viewer_url_for_state_url(
            &services.config.neuroglancer_url,
            &state_url,
        ),
        state_url,
        zarr_url,
        expires_at,
    }))
}

/// Copy an annotation to your account: a new annotation of yours with the same content at
/// version 1, remembering its origin; nothing syncs afterwards.
#[utoipa::path(post, path = "/api/annotations/{id}/copy", tag = "annotations", params(("id" = String, Path)),
    responses((status = 201, body = AnnotationView), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn copy(
    State(s): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let subject = subject(&s, &actor, &id).await?;
    subject.require(&actor, Action::CopyAnnotation)?;
    let Actor::User(member) = &actor else {
        return Err(ApiError::Unprocessable(
            "copies are owned by people: sign in".into(),
        ));
    };
    let Some(owner) = member.id.clone() else {
        return Err(ApiError::Unprocessable(
            "copies are owned by people: sign in".into(),
        ));
    };
    let origin = &subject.annotation;
    let t = now();
    let mut copy = Annotation {
        id: AnnotationId::generate(),
        org: member.org.clone(),
        owner,
        name: annotation_name(&format!(
            "{} (copy)",
            origin.name.chars().take(190).collect::<String>()
        ))?,
        teams: BTreeSet::new(),
        visibility: AnnotationVisibility::Internal,
        forked_from: Some(AnnotationOrigin {
            annotation: origin.id.clone(),
            version: origin.version,
        }),
        version: 0,
        revision: 1,
        created_at: t,
        updated_at: t,
        deleted_at: None,
        ..origin.clone()
    };
    if let Some(spec) = &copy.volume {
        shared::volumes::create(s.services.bodies.location(), &copy.id, &copy.name, spec)
            .await
            .map_err(ApiError::internal)?;
    }
    let first = if origin.version > 0 {
        let value = match content_of(&s, origin, origin.version).await? {
            Content::Skeleton(skeleton) => serde_json::to_value(&skeleton),
            // The copy reads the origin's buckets where they are: they never change.
            Content::Volume(volume) => serde_json::to_value(volume.copied_from(&origin.id)),
        }
        .map_err(ApiError::internal)?;
        let body = s
            .services
            .bodies
            .store(&copy.id, 1, &value)
            .await
            .map_err(ApiError::internal)?;
        copy.version = 1;
        Some(AnnotationVersion {
            annotation: copy.id.clone(),
            version: 1,
            author: actor.describe(),
            saved_at: t,
            actions: 0,
            body,
            delta_of: None,
        })
    } else {
        None
    };
    s.services
        .annotations()
        .create(&copy, first.as_ref())
        .await?;
    let view = AnnotationView::of(
        Subject {
            annotation: copy,
            owner_teams: member.teams.keys().cloned().collect(),
            ..subject
        },
        &actor,
    );
    Ok((StatusCode::CREATED, ApiJson(view)).into_response())
}
