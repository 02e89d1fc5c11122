//! The chunk function: what viewers (Neuroglancer, zarr-python, tensorstore) read from.
//!
//! URL contract — printed in papers, so it never changes:
//! - `GET|HEAD /data/{dataset_id}/{key...}`: a public dataset;
//! - `GET|HEAD /s/{token}/{key...}`: through a share link (the capability is in the path);
//!   a password-protected link is read as `/s/{token}.{unlock}/{key...}`, where the unlock is
//!   what `POST /api/links/unlock` signs after the right password (checked by HMAC here).
//!
//! Hot path: the dataset and link resolutions come from this instance's access cache (no
//! metadata call per chunk in steady state); bytes come from object storage, proxied or by a
//! `307` to a presigned URL.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use object_store::{GetOptions, GetRange, GetResult, GetResultPayload, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use shared::access::{
    Action, Actor, AnnotationFacts, DatasetFacts, GrantFacts, MemberFacts, Resource, require,
};
use shared::config::Delivery;
use shared::domain::skeleton::{NmlMeta, to_nml};
use shared::domain::{
    Annotation, AnnotationId, DatasetId, LinkScope, ObjectKey, ShareLink, User, now,
};
use shared::error::ApiQuery;
use shared::neuroglancer::Overlay;
use shared::neuroglancer::ViewParams;
use shared::objects::{BLOB_ROUTE_PREFIX, Location, ObjectsError};
use shared::services::ResolvedDataset;
use shared::usage::Use;
use shared::{ApiError, Services};
use utoipa::ToSchema;

/// Bodies up to this size are read in one go; larger ones stream.
const READ_WHOLE_LIMIT: u64 = 8 * 1024 * 1024;

/// Who may cache a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caching {
    /// Public data: shared caches and CDNs may keep it.
    Public,
    /// Link or presigned data: only the reader's own cache, briefly.
    Private,
    /// A name whose content moves on (an annotation's latest version): revalidate each time.
    Revalidate,
}

impl Caching {
    fn header(self) -> HeaderValue {
        match self {
            Caching::Public => HeaderValue::from_static("public, max-age=3600"),
            Caching::Private => HeaderValue::from_static("private, max-age=60"),
            Caching::Revalidate => HeaderValue::from_static("private, no-cache"),
        }
    }
}

/// The chunk routes' part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    #[derive(utoipa::OpenApi)]
    #[openapi(paths(public_read, link_read, personal_read, public_state, link_state, personal_state, public_files, link_files, personal_files), tags((name = "chunks", description = "What viewers read: metadata documents, chunks and view states")))]
    struct Doc;
    <Doc as utoipa::OpenApi>::openapi()
}

/// The function as deployed: its routes, a problem-document fallback, CORS.
pub fn router(services: Arc<Services>) -> Router {
    shared::http::served(routes(services))
}

/// Just the routes, for mounting beside other functions' in the local server. (`OPTIONS`,
/// preflight or not, is answered by the CORS layer.)
pub fn routes(services: Arc<Services>) -> Router {
    Router::new()
        .route("/data/{dataset}/{*key}", get(public_read).head(public_read))
        .route("/s/{token}/{*key}", get(link_read).head(link_read))
        .route(
            "/u/{capability}/{*key}",
            get(personal_read).head(personal_read),
        )
        .route("/_blob/{*path}", get(blob_read).head(blob_read))
        .route("/ng/data/{file}", get(public_state))
        .route("/ng/s/{file}", get(link_state))
        .route("/ng/u/{file}", get(personal_state))
        .route("/files/data/{segment}", get(public_files))
        .route("/files/s/{segment}", get(link_files))
        .route("/files/u/{segment}", get(personal_files))
        .method_not_allowed_fallback(shared::error::wrong_method)
        .with_state(services)
}

/// Splits `/{prefix}/{first}/{rest...}` from the raw (still percent-encoded) path.
fn split_raw_path<'a>(uri: &'a Uri, prefix: &str) -> Option<(&'a str, &'a str)> {
    let tail = uri.path().strip_prefix(prefix)?;
    Some(tail.split_once('/').unwrap_or((tail, "")))
}

fn parse_key(raw: &str) -> Result<ObjectKey, ApiError> {
    if raw.is_empty() {
        return Err(ApiError::NotFound(
            "name a key below the dataset root, e.g. zarr.json".into(),
        ));
    }
    Ok(ObjectKey::parse_raw(raw)?)
}

/// How a reader reached the dataset: the three capability kinds of the URL contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    /// `/data/{dataset_id}`: a public dataset.
    Public,
    /// `/s/{token}` or `/s/{token}.{unlock}`: a share link.
    Link,
    /// `/u/{dataset}.{user}.{exp}.{sig}`: a signed-in person's own viewer URL.
    Personal,
}

impl Via {
    fn prefix(self) -> &'static str {
        match self {
            Via::Public => "data",
            Via::Link => "s",
            Via::Personal => "u",
        }
    }
}

/// Who reads which dataset, as resolved from the URL's first segment (from this instance's
/// caches in steady state: no database call).
struct Reader {
    actor: Actor,
    dataset: Arc<ResolvedDataset>,
    /// The caller's grant facts (personal URLs only).
    grant: Option<GrantFacts>,
    /// The link read through, for usage counting.
    link: Option<Arc<ShareLink>>,
    caching: Caching,
}

impl Reader {
    fn facts(&self) -> DatasetFacts<'_> {
        DatasetFacts::of(&self.dataset.dataset, self.grant)
    }

    fn require(&self, action: Action, key: Option<&str>) -> Result<(), ApiError> {
        let resource = match key {
            Some(key) => Resource::Object {
                dataset: self.facts(),
                key,
            },
            None => Resource::Dataset(self.facts()),
        };
        require(&self.actor, action, resource)
    }

    /// Where keys start for this reader (a sub-path link's directory, else the root).
    fn root(&self) -> &str {
        self.link.as_ref().map_or("", |l| l.scope.root())
    }
}

async fn resolve(services: &Services, via: Via, segment: &str) -> Result<Reader, ApiError> {
    match via {
        Via::Public => {
            let no_dataset = || ApiError::NotFound("no such dataset".into());
            let id = DatasetId::parse(segment).map_err(|_| no_dataset())?;
            let dataset = services
                .resolve_dataset(&id)
                .await?
                .ok_or_else(no_dataset)?;
            Ok(Reader {
                actor: Actor::Anonymous,
                dataset,
                grant: None,
                link: None,
                caching: Caching::Public,
            })
        }
        Via::Link => {
            let no_link = || ApiError::NotFound("no such share link".into());
            let (link, facts) = services
                .link_holder(segment, false)
                .await?
                .ok_or_else(no_link)?;
            let dataset = services
                .resolve_dataset(&link.dataset_id)
                .await?
                .ok_or_else(no_link)?;
            // A link made for one annotation ends with it (deleted: until it is restored).
            if let LinkScope::Annotation { annotation } = &link.scope {
                let shared = services.resolve_annotation(annotation).await?;
                if shared.is_none_or(|a| a.deleted_at.is_some()) {
                    return Err(ApiError::Gone(
                        "the annotation this link shares was deleted".into(),
                    ));
                }
            }
            Ok(Reader {
                actor: Actor::LinkHolder(facts),
                dataset,
                grant: None,
                link: Some(link),
                caching: Caching::Private,
            })
        }
        Via::Personal => {
            let expired = || {
                ApiError::Forbidden(
                    "this viewer URL is invalid or has expired: ask for a new one at /api/datasets/{id}/viewer"
                        .into(),
                )
            };
            let (dataset_id, user_id) = services
                .signer
                .verify_personal(segment, now())
                .ok_or_else(expired)?;
            let user = services.resolve_user(&user_id).await?.ok_or_else(expired)?;
            let dataset = services
                .resolve_dataset(&dataset_id)
                .await?
                .ok_or_else(|| ApiError::NotFound("no such dataset".into()))?;
            let actor = Actor::User(MemberFacts::from(User::clone(&user)));
            let grant = services
                .caller_grant(&actor, &dataset_id)
                .await?
                .as_deref()
                .map(GrantFacts::from);
            Ok(Reader {
                actor,
                dataset,
                grant,
                link: None,
                caching: Caching::Private,
            })
        }
    }
}

/// Read a metadata document or chunk of a public dataset.
#[utoipa::path(
    get,
    path = "/data/{dataset_id}/{key}",
    tag = "chunks",
    params(
        ("dataset_id" = String, Path, description = "The dataset's id"),
        ("key" = String, Path, description = "Key below the dataset root; may contain '/' (e.g. `0/c/1/2/3`)"),
        ("Range" = Option<String>, Header, description = "One byte range: `bytes=a-b`, `bytes=a-` or `bytes=-n`"),
    ),
    responses(
        (status = 200, description = "The whole object", content_type = "application/octet-stream"),
        (status = 206, description = "The requested byte range, with Content-Range"),
        (status = 304, description = "Unchanged (If-None-Match)"),
        (status = 400, description = "A key with '..', '//', backslashes or encoded separators", body = shared::error::Problem),
        (status = 404, description = "No such dataset, not public, or no such key (readers treat it as fill value)", body = shared::error::Problem),
        (status = 416, description = "The range starts past the end", body = shared::error::Problem),
        (status = 307, description = "Redirect to a short-lived presigned storage URL (redirect delivery)"),
    )
)]
async fn public_read(
    State(services): State<Arc<Services>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    read(&services, Via::Public, method, uri, headers).await
}

/// Read a metadata document or chunk through a share link; the token is the capability. A
/// password-protected link is read as `/s/{token}.{unlock}/{key}` after `POST /api/links/unlock`.
#[utoipa::path(
    get,
    path = "/s/{token}/{key}",
    tag = "chunks",
    params(
        ("token" = String, Path, description = "The share link's secret token (with its unlock, for a password-protected link)"),
        ("key" = String, Path, description = "Key below the dataset root; may contain '/'"),
        ("Range" = Option<String>, Header, description = "One byte range"),
    ),
    responses(
        (status = 200, description = "The whole object", content_type = "application/octet-stream"),
        (status = 206, description = "The requested byte range"),
        (status = 401, description = "The link needs its password", body = shared::error::Problem),
        (status = 403, description = "The key is outside the link's scope", body = shared::error::Problem),
        (status = 404, description = "No such link or key", body = shared::error::Problem),
        (status = 410, description = "The link was revoked or has expired", body = shared::error::Problem),
        (status = 416, description = "The range starts past the end", body = shared::error::Problem),
    )
)]
async fn link_read(
    State(services): State<Arc<Services>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    read(&services, Via::Link, method, uri, headers).await
}

/// Read a metadata document or chunk with a signed-in person's own viewer URL (from
/// `GET /api/datasets/{id}/viewer`): team members and people a dataset is shared with open it
/// in any viewer without a login there. Their access is re-checked within the cache bound.
#[utoipa::path(
    get,
    path = "/u/{capability}/{key}",
    tag = "chunks",
    params(
        ("capability" = String, Path, description = "The personal viewer capability"),
        ("key" = String, Path, description = "Key below the dataset root; may contain '/'"),
        ("Range" = Option<String>, Header, description = "One byte range"),
    ),
    responses(
        (status = 200, description = "The whole object", content_type = "application/octet-stream"),
        (status = 206, description = "The requested byte range"),
        (status = 403, description = "The URL is invalid or expired, or access was withdrawn", body = shared::error::Problem),
        (status = 404, description = "No such key", body = shared::error::Problem),
    )
)]
async fn personal_read(
    State(services): State<Arc<Services>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    read(&services, Via::Personal, method, uri, headers).await
}

async fn read(
    services: &Services,
    via: Via,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (segment, raw_key) = split_raw_path(&uri, &format!("/{}/", via.prefix()))
        .ok_or_else(|| ApiError::NotFound("no such dataset".into()))?;
    let key = parse_key(raw_key)?;
    let reader = resolve(services, via, segment).await?;
    let response = match key.as_str().strip_prefix(ANNOTATIONS_PREFIX) {
        Some(rest) => annotation_read(services, &reader, rest, &method, &headers).await?,
        None => {
            reader.require(Action::ReadData, Some(key.as_str()))?;
            serve(
                services,
                &reader.dataset.location,
                &key,
                &method,
                &headers,
                reader.caching,
            )
            .await?
        }
    };
    if let Some(link) = &reader.link {
        count(services, link, &key, &method, &response);
    }
    Ok(response)
}

/// Where annotations appear inside a dataset's URL space (Zarr v3 reserves `__` names).
const ANNOTATIONS_PREFIX: &str = "__annotations/";

/// Reads an annotation, for readers who may read it: a volume as Zarr below
/// `{annotation}/volume/` (its latest version) or `{annotation}/versions/{n}/volume/`; a
/// skeleton as `{annotation}/[versions/{n}/]skeleton.nml` or `skeleton.json`.
async fn annotation_read(
    services: &Services,
    reader: &Reader,
    rest: &str,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let (id, tail) = rest
        .split_once('/')
        .ok_or_else(|| ApiError::NotFound("no such annotation".into()))?;
    let annotation = readable_annotation(services, reader, id).await?;
    let id = annotation.id.clone();
    let (version, tail, caching) = match tail.strip_prefix("versions/") {
        Some(v) => {
            let no_version = || ApiError::NotFound("no such version".into());
            let (n, tail) = v.split_once('/').ok_or_else(no_version)?;
            let n: u64 = n.parse().map_err(|_| no_version())?;
            if n > annotation.version {
                return Err(no_version());
            }
            (n, tail, reader.caching)
        }
        None => (annotation.version, tail, Caching::Revalidate),
    };
    if annotation.volume.is_none() {
        let (content_type, body) = match tail {
            "skeleton.nml" => {
                let skeleton = services.skeleton(&id, version).await?;
                let meta = NmlMeta::of(&annotation, &reader.dataset.dataset);
                ("application/xml", to_nml(&skeleton, &meta).into_bytes())
            }
            "skeleton.json" => {
                let skeleton = services.skeleton(&id, version).await?;
                (
                    "application/json",
                    serde_json::to_vec(&skeleton).map_err(ApiError::internal)?,
                )
            }
            _ => {
                return Err(ApiError::NotFound(
                    "a skeleton annotation is read as skeleton.nml or skeleton.json".into(),
                ));
            }
        };
        let mut response = (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (header::CACHE_CONTROL, caching.header()),
            ],
            body,
        )
            .into_response();
        if method == Method::HEAD {
            *response.body_mut() = Body::empty();
        }
        return Ok(response);
    }
    let Some(key) = tail.strip_prefix("volume/") else {
        return Err(ApiError::NotFound(
            "a volume annotation is read as Zarr below volume/".into(),
        ));
    };
    let location = services
        .bodies
        .location()
        .ok_or_else(|| ApiError::internal(shared::volumes::VolumeError::NoStorage))?;
    let content = services.volume_content(&id, version).await?;
    let object = content
        .object_key(&id, key)
        .ok_or_else(|| ApiError::NotFound(format!("no object at '{key}'")))?;
    let object = ObjectKey::parse(&object).map_err(ApiError::internal)?;
    serve(services, location, &object, method, headers, caching).await
}

/// The annotation `id` of the reader's dataset, if the reader may read it.
async fn readable_annotation(
    services: &Services,
    reader: &Reader,
    id: &str,
) -> Result<Arc<Annotation>, ApiError> {
    let missing = || ApiError::NotFound("no such annotation".into());
    let id = AnnotationId::parse(id).map_err(|_| missing())?;
    let annotation = services
        .resolve_annotation(&id)
        .await?
        .filter(|a| a.dataset_id == reader.dataset.dataset.id)
        .ok_or_else(missing)?;
    let owner_teams = services.owner_teams(&annotation).await?;
    require(
        &reader.actor,
        Action::ReadAnnotation,
        Resource::Annotation(AnnotationFacts::of(
            &annotation,
            &owner_teams,
            reader.facts(),
        )),
    )?;
    Ok(annotation)
}

/// An annotation drawn over the data in a view state: a volume as a segmentation layer read
/// through the same capability (`root`), a skeleton as points and lines.
async fn overlay(
    services: &Services,
    reader: &Reader,
    root: &str,
    id: &str,
    version: Option<u64>,
) -> Result<Overlay, ApiError> {
    let annotation = readable_annotation(services, reader, id).await?;
    let version = version.unwrap_or(annotation.version);
    if version > annotation.version {
        return Err(ApiError::NotFound(format!("no version {version}")));
    }
    let id = &annotation.id;
    if annotation.volume.is_some() {
        let at = match version == annotation.version {
            true => String::new(),
            false => format!("versions/{version}/"),
        };
        return Ok(Overlay::Segmentation {
            name: annotation.name.clone(),
            source: format!("{root}{ANNOTATIONS_PREFIX}{id}/{at}volume/"),
        });
    }
    Ok(services
        .skeleton(id, version)
        .await?
        .overlay(&annotation.name))
}

/// Counts a successful read through a link (in memory; flushed in the background).
fn count(services: &Services, link: &ShareLink, key: &ObjectKey, method: &Method, r: &Response) {
    let status = r.status();
    if !(status.is_success() || status == StatusCode::TEMPORARY_REDIRECT) {
        return;
    }
    let (dir, name) = key.as_str().rsplit_once('/').unwrap_or(("", key.as_str()));
    let opens = matches!(name, "zarr.json" | ".zgroup" | ".zarray") && dir == link.scope.root();
    let what = if opens { Use::View } else { Use::Read };
    let redirected = status.is_redirection();
    let bytes = r
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .filter(|_| method == Method::GET)
        .unwrap_or(0);
    services.record_use(link, what, redirected, bytes);
}

/// Where a view state looks, from the query (overrides what the link stores).
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ViewQuery {
    /// Centre in voxels of the finest level, comma-separated in the dataset's axis order
    /// (e.g. `64,128,128` for z,y,x).
    pub position: Option<String>,
    /// Screen pixels per voxel.
    pub zoom: Option<f64>,
    /// `xy`, `xz`, `yz`, `3d` or `4panel`.
    pub layout: Option<shared::neuroglancer::Layout>,
    /// Rotation in degrees about x, y and z, comma-separated (e.g. `0,0,45`).
    pub rotation: Option<String>,
    /// Show this annotation over the data: a skeleton as points and lines, a volume as a
    /// segmentation layer. A link made for one annotation shows it without this.
    pub annotation: Option<String>,
    /// The annotation's version to show (default: its latest).
    pub version: Option<u64>,
}

impl ViewQuery {
    fn over(&self, stored: Option<&ViewParams>) -> Result<ViewParams, ApiError> {
        shared::neuroglancer::view_from_query(
            stored,
            self.position.as_deref(),
            self.rotation.as_deref(),
            self.zoom,
            self.layout,
        )
        .map_err(|e| ApiError::BadRequest(e.to_string()))
    }
}

/// The absolute URL of `path` here: the configured public base, or the request's own host.
fn absolute(services: &Services, headers: &HeaderMap, path: &str) -> String {
    match (
        &services.config.public_base_url,
        headers.get(header::HOST).and_then(|h| h.to_str().ok()),
    ) {
        (Some(_), _) | (None, None) => services.public_url(path),
        (None, Some(host)) => format!("http://{host}{path}"),
    }
}

async fn view_state(
    services: &Services,
    via: Via,
    file: &str,
    headers: &HeaderMap,
    q: ViewQuery,
) -> Result<Response, ApiError> {
    let segment = file
        .strip_suffix(".json")
        .ok_or_else(|| ApiError::NotFound("view states end in .json".into()))?;
    let reader = resolve(services, via, segment).await?;
    reader.require(Action::ViewDataset, None)?;
    let root = absolute(services, headers, &format!("/{}/{segment}/", via.prefix()));
    let scope = Some(reader.root()).filter(|s| !s.is_empty());
    let view = q.over(reader.link.as_ref().and_then(|l| l.view.as_ref()))?;
    let scoped = reader.link.as_ref().and_then(|l| match &l.scope {
        LinkScope::Annotation { annotation } => Some(annotation.to_string()),
        _ => None,
    });
    let overlays = match q.annotation.or(scoped) {
        Some(id) => vec![overlay(services, &reader, &root, &id, q.version).await?],
        None if q.version.is_some() => {
            return Err(ApiError::BadRequest(
                "version needs an annotation to show".into(),
            ));
        }
        None => Vec::new(),
    };
    let state =
        shared::neuroglancer::state(&reader.dataset.dataset, &root, scope, &view, &overlays)
            .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    if let Some(link) = &reader.link {
        services.record_use(link, Use::View, false, 0);
    }
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, reader.caching.header()),
        ],
        state.to_string(),
    )
        .into_response())
}

/// The Neuroglancer view state of a public dataset (open it as `{neuroglancer}#!{this URL}`).
#[utoipa::path(
    get, path = "/ng/data/{dataset_id}.json", tag = "chunks",
    params(("dataset_id" = String, Path), ViewQuery),
    responses(
        (status = 200, description = "The view state", content_type = "application/json"),
        (status = 404, description = "No such public dataset", body = shared::error::Problem),
        (status = 422, description = "The view does not fit the data", body = shared::error::Problem),
    )
)]
async fn public_state(
    State(services): State<Arc<Services>>,
    Path(file): Path<String>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ViewQuery>,
) -> Result<Response, ApiError> {
    view_state(&services, Via::Public, &file, &headers, q).await
}

/// The Neuroglancer view state of a share link: its data sources carry the link, so the
/// viewer needs no login. Counts as a view of the link.
#[utoipa::path(
    get, path = "/ng/s/{token}.json", tag = "chunks",
    params(("token" = String, Path, description = "The link's token (with its unlock, for a password-protected link)"), ViewQuery),
    responses(
        (status = 200, description = "The view state", content_type = "application/json"),
        (status = 401, description = "The link needs its password", body = shared::error::Problem),
        (status = 404, description = "No such link", body = shared::error::Problem),
        (status = 410, description = "The link was revoked or has expired", body = shared::error::Problem),
    )
)]
async fn link_state(
    State(services): State<Arc<Services>>,
    Path(file): Path<String>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ViewQuery>,
) -> Result<Response, ApiError> {
    view_state(&services, Via::Link, &file, &headers, q).await
}

/// The Neuroglancer view state behind a personal viewer URL.
#[utoipa::path(
    get, path = "/ng/u/{capability}.json", tag = "chunks",
    params(("capability" = String, Path), ViewQuery),
    responses(
        (status = 200, description = "The view state", content_type = "application/json"),
        (status = 403, description = "Invalid or expired, or access was withdrawn", body = shared::error::Problem),
    )
)]
async fn personal_state(
    State(services): State<Arc<Services>>,
    Path(file): Path<String>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ViewQuery>,
) -> Result<Response, ApiError> {
    view_state(&services, Via::Personal, &file, &headers, q).await
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FilesQuery {
    /// Only keys below this directory (default: the link's scope, or the dataset root).
    pub prefix: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1–1000, default 1000.
    pub limit: Option<usize>,
}

/// One object of a download manifest.
#[derive(Serialize, ToSchema)]
pub struct FileEntry {
    /// The key below the dataset root.
    pub key: String,
    pub size: u64,
    /// Where to fetch it (through this function, with the same capability).
    pub url: String,
}

#[derive(Serialize, ToSchema)]
pub struct FileManifest {
    /// In key order.
    pub files: Vec<FileEntry>,
    pub next_cursor: Option<String>,
}

async fn manifest(
    services: &Services,
    via: Via,
    segment: &str,
    headers: &HeaderMap,
    q: FilesQuery,
) -> Result<Response, ApiError> {
    let reader = resolve(services, via, segment).await?;
    let prefix = match q.prefix.as_deref().map(|p| p.trim_matches('/')) {
        Some("") | None => reader.root().to_owned(),
        Some(p) => ObjectKey::parse(p)?.as_str().to_owned(),
    };
    reader.require(Action::Download, Some(&prefix))?;
    let limit = q.limit.unwrap_or(1000);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::BadRequest(
            "limit must be between 1 and 1000".into(),
        ));
    }
    let after = match q.cursor {
        Some(c) => {
            Some(ObjectKey::parse(&c).map_err(|_| ApiError::BadRequest("invalid cursor".into()))?)
        }
        None => None,
    };
    let location = &reader.dataset.location;
    let mut files = location
        .list(Some(&prefix), after.as_ref(), limit + 1)
        .await
        .map_err(ApiError::internal)?;
    let next_cursor = (files.len() > limit).then(|| {
        files.truncate(limit);
        files.last().map(|(k, _)| k.as_str().to_owned())
    });
    let base = absolute(services, headers, &format!("/{}/{segment}/", via.prefix()));
    let files = files
        .into_iter()
        .map(|(key, size)| FileEntry {
            url: format!("{base}{}", key.as_str()),
            key: key.as_str().to_owned(),
            size,
        })
        .collect();
    Ok((
        [(header::CACHE_CONTROL, reader.caching.header())],
        axum::Json(FileManifest {
            files,
            next_cursor: next_cursor.flatten(),
        }),
    )
        .into_response())
}

/// The download manifest of a public dataset: every object with its size and URL, to mirror
/// the data in bulk.
#[utoipa::path(
    get, path = "/files/data/{dataset_id}", tag = "chunks",
    params(("dataset_id" = String, Path), FilesQuery),
    responses((status = 200, body = FileManifest), (status = 404, body = shared::error::Problem))
)]
async fn public_files(
    State(services): State<Arc<Services>>,
    Path(segment): Path<String>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<FilesQuery>,
) -> Result<Response, ApiError> {
    manifest(&services, Via::Public, &segment, &headers, q).await
}

/// The download manifest through a share link with `download` (or `annotate`) permission;
/// a `view` link is 403. Only keys inside the link's scope are listed.
#[utoipa::path(
    get, path = "/files/s/{token}", tag = "chunks",
    params(("token" = String, Path), FilesQuery),
    responses(
        (status = 200, body = FileManifest),
        (status = 403, description = "The link does not allow downloads here", body = shared::error::Problem),
        (status = 410, body = shared::error::Problem),
    )
)]
async fn link_files(
    State(services): State<Arc<Services>>,
    Path(segment): Path<String>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<FilesQuery>,
) -> Result<Response, ApiError> {
    manifest(&services, Via::Link, &segment, &headers, q).await
}

/// The download manifest behind a personal viewer URL.
#[utoipa::path(
    get, path = "/files/u/{capability}", tag = "chunks",
    params(("capability" = String, Path), FilesQuery),
    responses((status = 200, body = FileManifest), (status = 403, body = shared::error::Problem))
)]
async fn personal_files(
    State(services): State<Arc<Services>>,
    Path(segment): Path<String>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<FilesQuery>,
) -> Result<Response, ApiError> {
    manifest(&services, Via::Personal, &segment, &headers, q).await
}

#[derive(Deserialize)]
struct BlobQuery {
    sig: String,
}

/// Serves a local presigned URL (the local stand-in for S3's): no metadata lookup at all.
async fn blob_read(
    State(services): State<Arc<Services>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    shared::error::ApiQuery(q): shared::error::ApiQuery<BlobQuery>,
) -> Result<Response, ApiError> {
    let raw = uri
        .path()
        .strip_prefix(BLOB_ROUTE_PREFIX)
        .unwrap_or_default();
    let key = ObjectKey::parse_raw(raw)?;
    let path = services
        .objects
        .verify_local_signature(key.as_str(), &q.sig)
        .ok_or_else(|| ApiError::Forbidden("the signature is invalid or has expired".into()))?;
    let store = services.objects.local_store();
    let options = read_options(&method, &headers);
    let range = options.range.clone();
    let result = store
        .get_opts(&path, options)
        .await
        .map_err(ObjectsError::from);
    respond(result, range, &key, Caching::Private, || async {
        store
            .head(&path)
            .await
            .map(|m| m.size)
            .map_err(ObjectsError::from)
    })
    .await
}

fn read_options(method: &Method, headers: &HeaderMap) -> GetOptions {
    GetOptions {
        range: requested_range(headers),
        if_none_match: headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        head: method == Method::HEAD,
        ..Default::default()
    }
}

/// A single byte range from `Range`; anything else (several ranges, other units, bad syntax)
/// is ignored and the whole object served, as RFC 9110 allows.
fn requested_range(headers: &HeaderMap) -> Option<GetRange> {
    let value = headers.get(header::RANGE)?.to_str().ok()?;
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let (start, end) = (start.trim(), end.trim());
    match (start.is_empty(), end.is_empty()) {
        (true, false) => end.parse().ok().map(GetRange::Suffix),
        (false, true) => start.parse().ok().map(GetRange::Offset),
        (false, false) => {
            let (s, e): (u64, u64) = (start.parse().ok()?, end.parse().ok()?);
            (e >= s).then(|| GetRange::Bounded(s..e.saturating_add(1)))
        }
        (true, true) => None,
    }
}

async fn serve(
    services: &Services,
    location: &Location,
    key: &ObjectKey,
    method: &Method,
    headers: &HeaderMap,
    caching: Caching,
) -> Result<Response, ApiError> {
    if services.config.delivery == Delivery::Redirect && method == Method::GET {
        return redirect(services, location, key).await;
    }
    let options = read_options(method, headers);
    let range = options.range.clone();
    let whole_get = range.is_none() && method == Method::GET;
    let result = location.get(key, options).await;
    // Lambda cannot return more than 6 MB: hand large whole objects to storage instead.
    if let Ok(r) = &result
        && whole_get
        && r.meta.size > services.config.max_proxy_bytes
    {
        return redirect(services, location, key).await;
    }
    respond(result, range, key, caching, || async {
        location
            .store()
            .head(&location.path(key))
            .await
            .map(|m| m.size)
            .map_err(ObjectsError::from)
    })
    .await
}

async fn redirect(
    services: &Services,
    location: &Location,
    key: &ObjectKey,
) -> Result<Response, ApiError> {
    let url = location
        .presign_get(key, services.config.presign_ttl)
        .await
        .map_err(ApiError::internal)?;
    let location = HeaderValue::from_str(&url).map_err(ApiError::internal)?;
    Ok((
        StatusCode::TEMPORARY_REDIRECT,
        [
            (header::LOCATION, location),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-store"),
            ),
        ],
    )
        .into_response())
}

fn quoted_etag(tag: &str) -> Option<HeaderValue> {
    let tag = tag.trim_start_matches("W/");
    if tag.starts_with('"') {
        HeaderValue::from_str(tag).ok()
    } else {
        HeaderValue::from_str(&format!("\"{tag}\"")).ok()
    }
}

/// Turns a storage read into the HTTP answer: 200/206/304/404/416.
async fn respond<F, Fut>(
    result: Result<GetResult, ObjectsError>,
    requested: Option<GetRange>,
    key: &ObjectKey,
    caching: Caching,
    size_of: F,
) -> Result<Response, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<u64, ObjectsError>>,
{
    let result = match result {
        Ok(r) => r,
        Err(ObjectsError::NotFound) => {
            return Err(ApiError::NotFound(format!("no object at '{key}'")));
        }
        Err(ObjectsError::NotModified) => return Ok(StatusCode::NOT_MODIFIED.into_response()),
        Err(other) => {
            // A range past the end is reported as a generic storage error: ask for the size.
            if let Some(range) = &requested
                && let Ok(size) = size_of().await
                && unsatisfiable(range, size)
            {
                return Err(ApiError::RangeNotSatisfiable { size });
            }
            return Err(ApiError::internal(other));
        }
    };
    let size = result.meta.size;
    let served = result.range.clone();
    let mut builder = Response::builder()
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CACHE_CONTROL, caching.header())
        .header(header::CONTENT_LENGTH, served.end - served.start)
        .header(
            header::CONTENT_TYPE,
            if key.is_metadata() {
                "application/json"
            } else {
                "application/octet-stream"
            },
        )
        .header(
            header::LAST_MODIFIED,
            result
                .meta
                .last_modified
                .format("%a, %d %b %Y %H:%M:%S GMT")
                .to_string(),
        );
    if let Some(tag) = result.meta.e_tag.as_deref().and_then(quoted_etag) {
        builder = builder.header(header::ETAG, tag);
    }
    if requested.is_some() {
        if served.start >= served.end && size > 0 {
            return Err(ApiError::RangeNotSatisfiable { size });
        }
        builder = builder.status(StatusCode::PARTIAL_CONTENT).header(
            header::CONTENT_RANGE,
            format!(
                "bytes {}-{}/{size}",
                served.start,
                served.end.saturating_sub(1)
            ),
        );
    } else {
        builder = builder.status(StatusCode::OK);
    }
    let body = if matches!(result.payload, GetResultPayload::File(..))
        || served.end - served.start <= READ_WHOLE_LIMIT
    {
        Body::from(
            result
                .bytes()
                .await
                .map_err(|e| ApiError::internal(ObjectsError::from(e)))?,
        )
    } else {
        Body::from_stream(result.into_stream())
    };
    builder.body(body).map_err(ApiError::internal)
}

fn unsatisfiable(range: &GetRange, size: u64) -> bool {
    match range {
        GetRange::Bounded(r) => r.start >= size,
        GetRange::Offset(o) => *o >= size,
        GetRange::Suffix(n) => *n == 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_range(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::RANGE,
            HeaderValue::from_str(v).unwrap_or_else(|e| panic!("{e}")),
        );
        h
    }

    #[test]
    fn parses_single_byte_ranges() {
        assert_eq!(
            requested_range(&with_range("bytes=0-9")),
            Some(GetRange::Bounded(0..10))
        );
        assert_eq!(
            requested_range(&with_range("bytes=5-")),
            Some(GetRange::Offset(5))
        );
        assert_eq!(
            requested_range(&with_range("bytes=-16")),
            Some(GetRange::Suffix(16))
        );
        for ignored in [
            "bytes=9-5",
            "bytes=0-1,4-5",
            "items=0-1",
            "bytes=-",
            "bytes=a-b",
        ] {
            assert_eq!(requested_range(&with_range(ignored)), None, "{ignored}");
        }
    }

    #[test]
    fn etags_are_quoted_once() {
        assert_eq!(
            quoted_etag("abc"),
            Some(HeaderValue::from_static("\"abc\""))
        );
        assert_eq!(
            quoted_etag("\"abc\""),
            Some(HeaderValue::from_static("\"abc\""))
        );
    }
}
