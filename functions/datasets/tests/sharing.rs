//! Sharing through `datasets::router`: named share links (scopes, permissions, expiries,
//! passwords), batch creation, unlocks and their rate limit, link usage and the links page,
//! per-person shares with invitations, each caller's standing in listings, the public gallery
//! with its thumbnails, and the audit trail.
//!
//! Everything runs over the embedded store in a temporary directory, with OME-Zarr fixtures
//! written into the local data root; signed-in people are created straight in the directory
//! and given access tokens by the services' own issuer; mail lands in an in-memory outbox.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use serde_json::{Value, json};
use shared::Services;
use shared::config::Config;
use shared::domain::{
    AnnotationId, DatasetId, Email, LinkToken, OrgId, OrgRole, Organization, ShareLink, Team,
    TeamId, TeamRole, User, UserId, now,
};
use shared::mail::{Mail, Mailer, OutboxMailer};
use shared::store::embedded::EmbeddedStore;
use shared::usage::Use;
use tempfile::TempDir;
use tower::ServiceExt;

const ADMIN_KEY: &str = "sharing-test-admin-key-0123456789";
const BASE_URL: &str = "http://example.test";
const NG_URL: &str = "https://ng.example.test/viewer/";
const PROBLEM: &str = "application/problem+json";
/// The installation's organization (the configuration's default).
const ORG: &str = "default";
/// A link password that meets the policy.
const GOOD_PASSWORD: &str = "Tidal-Pool-4821";

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

struct TestApp {
    app: Router,
    services: Arc<Services>,
    outbox: Arc<OutboxMailer>,
    /// The one local data root datasets are registered from.
    root: PathBuf,
    _dirs: Vec<TempDir>,
}

/// A signed-in person: their stored account and an access token for it.
struct Person {
    user: User,
    token: String,
}

impl Person {
    fn email(&self) -> &str {
        self.user.email.as_str()
    }

    fn id(&self) -> &UserId {
        &self.user.id
    }
}

#[derive(Clone, Copy)]
enum Who<'a> {
    Admin,
    Anonymous,
    As(&'a Person),
}

impl Who<'_> {
    fn authorization(self) -> Option<String> {
        match self {
            Who::Admin => Some(format!("Bearer {ADMIN_KEY}")),
            Who::Anonymous => None,
            Who::As(p) => Some(format!("Bearer {}", p.token)),
        }
    }
}

fn tempdir() -> TempDir {
    tempfile::tempdir().expect("temporary directory")
}

fn spawn_app() -> TestApp {
    let db_dir = tempdir();
    let root_dir = tempdir();
    let db = db_dir.path().join("meta.redb");
    let root = std::fs::canonicalize(root_dir.path()).expect("canonical root");
    let vars = [
        ("ZARRSHARE_EMBEDDED_DB", db.to_string_lossy().into_owned()),
        ("ZARRSHARE_ADMIN_KEY", ADMIN_KEY.to_owned()),
        ("ZARRSHARE_LOCAL_ROOTS", root.to_string_lossy().into_owned()),
        ("ZARRSHARE_PUBLIC_BASE_URL", BASE_URL.to_owned()),
        ("ZARRSHARE_NEUROGLANCER_URL", NG_URL.to_owned()),
    ];
    let config = Config::from_lookup(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .expect("test configuration");
    let store = Arc::new(EmbeddedStore::open(&db).expect("embedded store"));
    let outbox = Arc::new(OutboxMailer::new(None));
    let mailer: Arc<dyn Mailer> = outbox.clone();
    let services = Arc::new(Services::with_mailer(config, store, mailer).expect("services"));
    TestApp {
        app: datasets::router(services.clone()),
        services,
        outbox,
        root,
        _dirs: vec![db_dir, root_dir],
    }
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(&name)
            .unwrap_or_else(|| panic!("no {name} header in {self:?}"))
            .to_str()
            .expect("visible ASCII header")
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// Asserts a successful JSON answer with `status` and returns its body.
    fn ok(&self, status: StatusCode) -> Value {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {}",
            self.text()
        );
        assert!(
            self.header(header::CONTENT_TYPE)
                .starts_with("application/json"),
            "content-type {:?}",
            self.headers.get(header::CONTENT_TYPE)
        );
        self.json()
    }

    /// Asserts an RFC 9457 problem document with `status` and returns its `detail`.
    fn problem(&self, status: StatusCode) -> String {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {}",
            self.text()
        );
        assert_eq!(
            self.header(header::CONTENT_TYPE),
            PROBLEM,
            "errors must be problem documents"
        );
        let p = self.json();
        assert_eq!(p["status"], json!(status.as_u16()), "{p}");
        let detail = p["detail"]
            .as_str()
            .unwrap_or_else(|| panic!("no detail in {p}"))
            .to_owned();
        assert!(!detail.is_empty(), "empty detail: {p}");
        detail
    }

    /// A problem whose detail mentions `needle` (case-insensitive).
    fn problem_about(&self, status: StatusCode, needle: &str) -> String {
        let detail = self.problem(status);
        assert!(
            detail.to_lowercase().contains(&needle.to_lowercase()),
            "detail {detail:?} does not mention {needle:?}"
        );
        detail
    }
}

impl TestApp {
    async fn send(&self, request: Request<Body>) -> Reply {
        let response = self
            .app
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("response body");
        Reply {
            status,
            headers,
            body,
        }
    }

    fn builder(method: Method, uri: &str, who: Who<'_>) -> axum::http::request::Builder {
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(auth) = who.authorization() {
            b = b.header(header::AUTHORIZATION, auth);
        }
        b
    }

    async fn call(&self, method: Method, uri: &str, who: Who<'_>, body: Option<&Value>) -> Reply {
        let b = Self::builder(method, uri, who);
        let request = match body {
            Some(v) => b
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    serde_json::to_vec(v).expect("serializable body"),
                )),
            None => b.body(Body::empty()),
        };
        self.send(request.expect("request")).await
    }

    async fn get(&self, uri: &str, who: Who<'_>) -> Reply {
        self.call(Method::GET, uri, who, None).await
    }

    async fn post(&self, uri: &str, who: Who<'_>, body: &Value) -> Reply {
        self.call(Method::POST, uri, who, Some(body)).await
    }

    async fn patch(&self, uri: &str, who: Who<'_>, body: &Value) -> Reply {
        self.call(Method::PATCH, uri, who, Some(body)).await
    }

    async fn delete(&self, uri: &str, who: Who<'_>) -> Reply {
        self.call(Method::DELETE, uri, who, None).await
    }

    /// Registers the hierarchy at `dir` (with `extra` fields) and returns the 201 body.
    async fn register(&self, who: Who<'_>, name: &str, dir: &Path, extra: Value) -> Value {
        let mut body = json!({"name": name, "url": dir.to_string_lossy()});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        self.post("/api/datasets", who, &body)
            .await
            .ok(StatusCode::CREATED)
    }

    /// A fresh OME-Zarr image with a `labels/cells` label image, registered by the admin key.
    async fn dataset(&self, name: &str, extra: Value) -> String {
        let dir = fixture(self, name, image_with_labels);
        id_of(&self.register(Who::Admin, name, &dir, extra).await)
    }

    /// A person with an account in `org` (the organization is created with them if new).
    async fn person(
        &self,
        org: &str,
        email: &str,
        role: OrgRole,
        teams: &[(TeamId, TeamRole)],
    ) -> Person {
        let org_id = OrgId::parse(org).expect("organization id");
        let user = User {
            teams: teams.iter().cloned().collect::<BTreeMap<_, _>>(),
            ..User::new(
                org_id.clone(),
                Email::parse(email).expect("e-mail address"),
                email.split('@').next().unwrap_or_default().to_owned(),
                role,
                String::new(),
            )
        };
        let directory = &self.services.directory;
        if directory.org(&org_id).await.is_ok() {
            directory.create_user(&user).await.expect("new user");
        } else {
            let organization = Organization {
                id: org_id,
                name: format!("Organization {org}"),
                auto_activate: false,
                created_at: now(),
                version: 1,
            };
            directory
                .create_org(&organization, &user)
                .await
                .expect("new organization");
        }
        let token = self
            .services
            .tokens
            .issue(&user.id, &user.org, user.token_generation)
            .expect("access token");
        Person { user, token }
    }

    /// A new team of `org` (which must exist).
    async fn team(&self, org: &str, name: &str) -> TeamId {
        let team = Team {
            id: TeamId::generate(),
            org: OrgId::parse(org).expect("organization id"),
            name: name.to_owned(),
            created_at: now(),
            version: 1,
        };
        self.services
            .directory
            .create_team(&team)
            .await
            .expect("new team");
        team.id
    }

    /// The organization's administrator account (creates the organization's record, which
    /// users of the installation's organization need).
    async fn org_admin(&self) -> Person {
        self.person(ORG, "head@lab.example", OrgRole::Admin, &[])
            .await
    }

    async fn links_of(&self, dataset: &str) -> Vec<ShareLink> {
        self.services
            .catalog
            .links_of(&DatasetId::parse(dataset).expect("dataset id"))
            .await
            .expect("links")
    }

    /// Every audit entry of a dataset, newest first (as the admin key reads it).
    async fn audit(&self, dataset: &str) -> Vec<Value> {
        let page = self
            .get(
                &format!("/api/datasets/{dataset}/audit?limit=100"),
                Who::Admin,
            )
            .await
            .ok(StatusCode::OK);
        page["items"].as_array().cloned().unwrap_or_default()
    }

    fn mails_to(&self, email: &str) -> Vec<Mail> {
        self.outbox
            .sent()
            .into_iter()
            .filter(|m| m.to.as_str() == email)
            .collect()
    }

    /// Every item of a paginated listing, following `next_cursor` with pages of `limit`.
    async fn all_pages(&self, uri: &str, who: Who<'_>, limit: usize) -> Vec<Vec<Value>> {
        let sep = if uri.contains('?') { '&' } else { '?' };
        let mut pages = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut page_uri = format!("{uri}{sep}limit={limit}");
            if let Some(c) = &cursor {
                page_uri.push_str(&format!("&cursor={c}"));
            }
            let page = self.get(&page_uri, who).await.ok(StatusCode::OK);
            let items = page["items"].as_array().cloned().unwrap_or_default();
            assert!(items.len() <= limit, "a page longer than its limit: {page}");
            pages.push(items);
            assert!(pages.len() <= 50, "pagination does not end");
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return pages,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

fn write_json(dir: &Path, rel: &str, value: &Value) {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("fixture directory");
    }
    std::fs::write(
        &path,
        serde_json::to_string_pretty(value).expect("fixture JSON"),
    )
    .expect("fixture file");
}

fn axes_zyx() -> Value {
    json!([
        {"name": "z", "type": "space", "unit": "micrometer"},
        {"name": "y", "type": "space", "unit": "micrometer"},
        {"name": "x", "type": "space", "unit": "micrometer"}
    ])
}

fn v3_array(shape: &[u64], chunk: &[u64], data_type: &str) -> Value {
    json!({
        "zarr_format": 3,
        "node_type": "array",
        "shape": shape,
        "data_type": data_type,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunk}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0,
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
        "dimension_names": ["z", "y", "x"],
        "attributes": {}
    })
}

fn v3_group(attributes: &Value) -> Value {
    json!({"zarr_format": 3, "node_type": "group", "attributes": attributes})
}

/// Image height and width of the fixture: larger than a thumbnail on both sides.
const IMAGE_H: usize = 300;
const IMAGE_W: usize = 400;

/// OME-Zarr 0.5 on Zarr v3: a one-level `uint8` image (one uncompressed chunk holding a
/// diagonal gradient, so a thumbnail has something to draw) and a `labels` group with the
/// label image `cells` (metadata only).
fn image_with_labels(dir: &Path) {
    write_json(
        dir,
        "zarr.json",
        &v3_group(&json!({"ome": {"version": "0.5", "multiscales": [{
            "name": "cells",
            "axes": axes_zyx(),
            "datasets": [{"path": "s0", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 0.5, 0.5]}]}]
        }]}})),
    );
    let shape = [1, IMAGE_H as u64, IMAGE_W as u64];
    write_json(dir, "s0/zarr.json", &v3_array(&shape, &shape, "uint8"));
    let pixels: Vec<u8> = (0..IMAGE_H)
        .flat_map(|y| (0..IMAGE_W).map(move |x| u8::try_from((x + y) / 3 % 256).unwrap_or(0)))
        .collect();
    let chunk = dir.join("s0/c/0/0/0");
    std::fs::create_dir_all(chunk.parent().expect("chunk directory")).expect("chunk directory");
    std::fs::write(&chunk, pixels).expect("chunk");
    write_json(
        dir,
        "labels/zarr.json",
        &v3_group(&json!({"ome": {"version": "0.5", "labels": ["cells"]}})),
    );
    write_json(
        dir,
        "labels/cells/zarr.json",
        &v3_group(&json!({"ome": {
            "version": "0.5",
            "image-label": {"version": "0.5"},
            "multiscales": [{
                "name": "cells",
                "axes": axes_zyx(),
                "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 0.5, 0.5]}]}]
            }]
        }})),
    );
    write_json(
        dir,
        "labels/cells/0/zarr.json",
        &v3_array(&shape, &shape, "uint32"),
    );
}

/// A plain Zarr v2 group with one array and no OME metadata (no labels).
fn plain_v2_group(dir: &Path) {
    write_json(dir, ".zgroup", &json!({"zarr_format": 2}));
    write_json(
        dir,
        "raw/.zarray",
        &json!({
            "zarr_format": 2, "shape": [10, 20], "chunks": [5, 10], "dtype": "<f4",
            "compressor": null, "fill_value": 0, "order": "C", "filters": null,
            "dimension_separator": "/"
        }),
    );
}

fn fixture(app: &TestApp, name: &str, write: impl FnOnce(&Path)) -> PathBuf {
    let dir = app.root.join(name);
    std::fs::create_dir_all(&dir).expect("fixture root");
    write(&dir);
    dir
}

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

fn id_of(body: &Value) -> String {
    body["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {body}"))
        .to_owned()
}

fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("no string {field} in {v}"))
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

fn parse_time(v: &Value) -> time::OffsetDateTime {
    let s = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339 time")
}

fn is_base64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A 43-character base64url token (256 bits).
fn assert_token(token: &str) {
    assert_eq!(token.len(), 43, "token {token:?}");
    assert!(is_base64url(token), "token {token:?} is not base64url");
    assert!(LinkToken::parse(token).is_ok(), "{token:?}");
}

fn path_of(absolute: &str) -> &str {
    absolute
        .strip_prefix(BASE_URL)
        .unwrap_or_else(|| panic!("{absolute} is not a URL of this service"))
}

/// The item with `id` in a list of JSON objects.
fn find<'a>(items: &'a [Value], id: &str) -> &'a Value {
    items
        .iter()
        .find(|i| i["id"] == id)
        .unwrap_or_else(|| panic!("{id} not among {items:?}"))
}

fn ids(items: &[Value]) -> Vec<String> {
    items.iter().map(id_of).collect()
}

fn actions(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| str_of(e, "action").to_owned())
        .collect()
}

/// A link written straight to the catalog (e.g. one that has already expired).
fn stored_link(dataset: &str, label: &str, age_days: i64, expired: bool) -> ShareLink {
    let created = now() - time::Duration::days(age_days);
    ShareLink {
        label: label.into(),
        created_at: created,
        expires_at: expired.then(|| now() - time::Duration::hours(1)),
        ..ShareLink::new(
            DatasetId::parse(dataset).expect("dataset id"),
            OrgId::parse(ORG).expect("org"),
            LinkToken::generate().hash(),
            "test".into(),
        )
    }
}

async fn unlock(app: &TestApp, token: &str, password: &str) -> Reply {
    app.post(
        "/api/links/unlock",
        Who::Anonymous,
        &json!({"token": token, "password": password}),
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// 1. Named links
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_dataset_has_many_named_links_each_with_its_own_scope_permission_expiry_and_password() {
    let app = spawn_app();
    let d = app
        .register(
            Who::Admin,
            "cells",
            &fixture(&app, "cells", image_with_labels),
            json!({}),
        )
        .await;
    assert!(
        d["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .any(|l| l["path"] == "labels/cells" && l["kind"] == "labels"),
        "the fixture has a label image at labels/cells: {d}"
    );
    let id = id_of(&d);
    let links_uri = format!("/api/datasets/{id}/links");
    let week = now() + time::Duration::days(7);

    let requests = [
        json!({"label": "Reviewer 1", "scope": {"kind": "dataset"}, "permission": "view"}),
        json!({
            "label": "Segmentation only",
            "scope": {"kind": "path", "prefix": "labels/cells"},
            "permission": "download",
            "expires_in_seconds": 86_400
        }),
        json!({"label": "Annotators", "permission": "annotate", "expires_at": rfc3339(week)}),
        json!({"label": "Poster", "password": GOOD_PASSWORD}),
    ];
    let mut created = Vec::new();
    for body in &requests {
        let start = now();
        let link = app
            .post(&links_uri, Who::Admin, body)
            .await
            .ok(StatusCode::CREATED);
        assert_eq!(link["label"], body["label"], "{link}");
        assert_eq!(link["state"], "active", "{link}");
        assert_eq!(link["dataset_id"], id.as_str());
        assert_eq!(
            link["permission"],
            body.get("permission").cloned().unwrap_or(json!("view")),
            "{link}"
        );
        assert_eq!(
            link["password_protected"],
            json!(body.get("password").is_some())
        );
        let token = str_of(&link, "token").to_owned();
        assert_token(&token);
        // The Neuroglancer view opens the link's state, which lives at a stable URL.
        let state_url = format!("{BASE_URL}/ng/s/{token}.json");
        assert_eq!(link["state_url"], state_url.as_str(), "{link}");
        let viewer = str_of(&link, "neuroglancer_url");
        assert!(
            viewer.starts_with(&format!("{NG_URL}#!")),
            "the viewer opens on the configured Neuroglancer: {viewer}"
        );
        assert_eq!(
            viewer.strip_prefix(&format!("{NG_URL}#!")),
            Some(state_url.as_str())
        );
        // QR codes of the URL, served by this function.
        let url = str_of(&link, "url").to_owned();
        for (field, format, content_type) in [
            ("qr_svg", "svg", "image/svg+xml"),
            ("qr_png", "png", "image/png"),
        ] {
            let qr = str_of(&link, field);
            assert_eq!(
                qr,
                format!("{BASE_URL}{}", shared::qr::endpoint_path(&url, format))
            );
            let image = app.get(path_of(qr), Who::Anonymous).await;
            assert_eq!(image.status, StatusCode::OK, "{field}: {}", image.text());
            assert_eq!(image.header(header::CONTENT_TYPE), content_type);
            assert!(!image.body.is_empty());
        }
        if let Some(secs) = body["expires_in_seconds"].as_i64() {
            let delta = (parse_time(&link["expires_at"]) - start).whole_seconds();
            assert!((secs - 1..=secs + 2).contains(&delta), "{delta}");
        }
        created.push(link);
    }
    let [whole, labels, annotators, poster] = &created[..] else {
        panic!("four links")
    };

    // Each link keeps its own scope, URL and expiry.
    let t = |l: &Value| str_of(l, "token").to_owned();
    assert_eq!(whole["scope"], json!({"kind": "dataset"}));
    assert_eq!(whole["url"], format!("{BASE_URL}/s/{}/", t(whole)));
    assert!(whole["expires_at"].is_null());
    assert_eq!(
        labels["scope"],
        json!({"kind": "path", "prefix": "labels/cells"})
    );
    let labels_url = str_of(labels, "url");
    assert!(
        labels_url.ends_with(&format!("/s/{}/labels/cells/", t(labels))),
        "{labels_url}"
    );
    assert_eq!(
        labels_url,
        format!("{BASE_URL}/s/{}/labels/cells/", t(labels))
    );
    assert_eq!(
        parse_time(&annotators["expires_at"]).unix_timestamp(),
        week.unix_timestamp()
    );
    assert_eq!(poster["permission"], "view", "view is the default");
    assert_eq!(poster["scope"], json!({"kind": "dataset"}), "the default");
    let mut tokens: Vec<String> = created.iter().map(t).collect();
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 4, "every link has its own token");

    // Scopes that do not fit the dataset are refused, and nothing is stored.
    let before = app.links_of(&id).await;
    for (body, needle) in [
        (
            json!({"scope": {"kind": "path", "prefix": "labels/nuclei"}}),
            "not a layer",
        ),
        (
            json!({"scope": {"kind": "path", "prefix": "nowhere"}}),
            "not a layer",
        ),
        (
            json!({"scope": {"kind": "path", "prefix": "labels/../s0"}}),
            "..",
        ),
        (json!({"scope": {"kind": "path", "prefix": ".."}}), ".."),
        (
            json!({"scope": {"kind": "annotation", "annotation": AnnotationId::generate().as_str()}}),
            "no annotation",
        ),
    ] {
        app.post(&links_uri, Who::Admin, &body)
            .await
            .problem_about(StatusCode::UNPROCESSABLE_ENTITY, needle);
    }
    assert_eq!(app.links_of(&id).await, before, "a refused link was stored");

    // Revoking one leaves the others active.
    let revoked = app
        .delete(&format!("{links_uri}/{}", id_of(labels)), Who::Admin)
        .await
        .ok(StatusCode::OK);
    assert_eq!(revoked["state"], "revoked");
    let listed = app.get(&links_uri, Who::Admin).await.ok(StatusCode::OK);
    let listed = listed.as_array().expect("a list of links");
    assert_eq!(listed.len(), 4);
    for (link, state) in [
        (whole, "active"),
        (labels, "revoked"),
        (annotators, "active"),
        (poster, "active"),
    ] {
        let row = find(listed, &id_of(link));
        assert_eq!(row["state"], state, "{row}");
        assert_eq!(row["label"], link["label"]);
        assert_eq!(row["scope"], link["scope"]);
        assert_eq!(row["permission"], link["permission"]);
        assert_eq!(row["password_protected"], link["password_protected"]);
        assert_eq!(row["expires_at"], link["expires_at"]);
        assert!(row.get("token").is_none(), "{row}");
    }
}

/// Scoping a link to one array is documented ("a group, a label image, one array") and works for
/// an array of a label image, but an array of the image at the dataset root is refused: the
/// layer check skips the root layer (`path == ""`), so no prefix below the root ever matches.
#[tokio::test]
async fn a_path_scope_may_name_one_level_of_the_root_image() {
    let app = spawn_app();
    let id = app.dataset("cells", json!({})).await;
    let links_uri = format!("/api/datasets/{id}/links");
    let label_level = app
        .post(
            &links_uri,
            Who::Admin,
            &json!({"scope": {"kind": "path", "prefix": "labels/cells/0"}}),
        )
        .await
        .ok(StatusCode::CREATED);
    assert!(str_of(&label_level, "url").ends_with("/labels/cells/0/"));
    let image_level = app
        .post(
            &links_uri,
            Who::Admin,
            &json!({"scope": {"kind": "path", "prefix": "s0"}}),
        )
        .await
        .ok(StatusCode::CREATED);
    assert!(str_of(&image_level, "url").ends_with("/s0/"));
}

// ---------------------------------------------------------------------------------------------
// 2. Batch creation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn batch_links_are_created_for_several_datasets_all_or_none() {
    let app = spawn_app();
    let a = app.dataset("alpha", json!({})).await;
    let b = app.dataset("beta", json!({})).await;
    let c = app.dataset("gamma", json!({})).await;
    let plain = id_of(
        &app.register(
            Who::Admin,
            "plain",
            &fixture(&app, "plain", plain_v2_group),
            json!({}),
        )
        .await,
    );
    let all = [&a, &b, &c, &plain];
    let assert_no_links = |what: String| {
        let app = &app;
        async move {
            for d in all {
                assert!(
                    app.links_of(d).await.is_empty(),
                    "a link was created by {what}"
                );
                let listed = app
                    .get(&format!("/api/datasets/{d}/links"), Who::Admin)
                    .await
                    .ok(StatusCode::OK);
                assert_eq!(listed, json!([]), "{what}");
            }
        }
    };

    let unknown = DatasetId::generate();
    let many: Vec<String> = (0..21)
        .map(|_| DatasetId::generate().as_str().to_owned())
        .collect();
    let refusals: Vec<(Value, StatusCode, &str)> = vec![
        (
            json!({"dataset_ids": [a, unknown.as_str(), c], "label": "batch"}),
            StatusCode::NOT_FOUND,
            "no such dataset",
        ),
        (
            json!({"dataset_ids": [a, b, "not-a-dataset-id"]}),
            StatusCode::NOT_FOUND,
            "no such dataset",
        ),
        (
            json!({"dataset_ids": [a, b, a]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "twice",
        ),
        (
            json!({"dataset_ids": many}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "1-20",
        ),
        (
            json!({"dataset_ids": []}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "1-20",
        ),
        // The scope fits three of the four datasets: none gets a link.
        (
            json!({"dataset_ids": [a, b, c, plain], "scope": {"kind": "path", "prefix": "labels/cells"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a layer",
        ),
    ];
    for (body, status, needle) in refusals {
        app.post("/api/links", Who::Admin, &body)
            .await
            .problem_about(status, needle);
        assert_no_links(body.to_string()).await;
    }
    // Without credentials: nothing either.
    app.post("/api/links", Who::Anonymous, &json!({"dataset_ids": [a]}))
        .await
        .problem(StatusCode::NOT_FOUND);
    assert_no_links("an anonymous batch".into()).await;

    // Three datasets, one link each, with the same options.
    let made = app
        .post(
            "/api/links",
            Who::Admin,
            &json!({
                "dataset_ids": [a, b, c],
                "label": "Paper figure 3",
                "permission": "download",
                "scope": {"kind": "path", "prefix": "labels/cells"},
                "expires_in_seconds": 3600
            }),
        )
        .await
        .ok(StatusCode::CREATED);
    let made = made.as_array().expect("a list of created links");
    assert_eq!(made.len(), 3);
    let mut tokens = Vec::new();
    for (link, dataset) in made.iter().zip([&a, &b, &c]) {
        assert_eq!(link["dataset_id"], dataset.as_str(), "{link}");
        assert_eq!(link["label"], "Paper figure 3");
        assert_eq!(link["permission"], "download");
        assert_eq!(link["state"], "active");
        assert!(!link["expires_at"].is_null());
        let token = str_of(link, "token");
        assert_token(token);
        assert_eq!(
            link["url"],
            format!("{BASE_URL}/s/{token}/labels/cells/"),
            "{link}"
        );
        tokens.push(token.to_owned());
        let stored = app.links_of(dataset).await;
        assert_eq!(stored.len(), 1, "one link for {dataset}");
        assert_eq!(stored[0].id.as_str(), id_of(link));
    }
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 3, "every link has its own token");
    assert!(app.links_of(&plain).await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// 3. Passwords
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn password_protected_links_unlock_with_the_right_password_only() {
    let app = spawn_app();
    let id = app.dataset("cells", json!({})).await;
    let links_uri = format!("/api/datasets/{id}/links");

    // Weak passwords are refused, and no link is made.
    for weak in [
        "short",
        "aaaaaaaaaaaaaaa",
        "abababababab",
        "password123",
        "Qwertyuiop",
    ] {
        app.post(&links_uri, Who::Admin, &json!({"password": weak}))
            .await
            .problem_about(StatusCode::UNPROCESSABLE_ENTITY, "password");
    }
    assert!(app.links_of(&id).await.is_empty());

    let locked = app
        .post(
            &links_uri,
            Who::Admin,
            &json!({"label": "locked", "password": GOOD_PASSWORD, "scope": {"kind": "path", "prefix": "labels/cells"}}),
        )
        .await
        .ok(StatusCode::CREATED);
    assert_eq!(locked["password_protected"], true);
    let token = str_of(&locked, "token").to_owned();
    let link_id = id_of(&locked);
    assert!(
        app.links_of(&id).await[0]
            .password_hash
            .as_deref()
            .is_some_and(|h| !h.contains(GOOD_PASSWORD)),
        "the password is stored only as a hash"
    );

    // A wrong password: 401, and the attempt is in the audit trail.
    let wrong = unlock(&app, &token, "Not-The-Password-1").await;
    wrong.problem_about(StatusCode::UNAUTHORIZED, "password");
    let trail = app.audit(&id).await;
    let failed = trail
        .iter()
        .find(|e| e["action"] == "link_password_failed")
        .unwrap_or_else(|| panic!("no link_password_failed entry in {trail:?}"));
    assert_eq!(failed["target"], link_id.as_str());
    assert_eq!(failed["actor"], format!("link:{link_id}"));
    assert!(
        !serde_json::to_string(&trail)
            .expect("JSON")
            .contains("Not-The-Password-1"),
        "the audit trail keeps no password"
    );

    // The right one: a URL carrying a signed, expiring unlock.
    let start = now();
    let opened = unlock(&app, &token, GOOD_PASSWORD).await.ok(StatusCode::OK);
    let url = str_of(&opened, "url");
    let segment = url
        .strip_prefix(&format!("{BASE_URL}/s/"))
        .and_then(|s| s.strip_suffix("/labels/cells/"))
        .unwrap_or_else(|| panic!("{url} is not /s/{{token}}.{{exp}}.{{sig}}/labels/cells/"));
    let parts: Vec<&str> = segment.split('.').collect();
    assert_eq!(parts.len(), 3, "{segment}");
    assert_eq!(parts[0], token);
    let exp: i64 = parts[1].parse().expect("expiry in seconds");
    assert!(exp > start.unix_timestamp(), "{exp}");
    assert!(!parts[2].is_empty() && is_base64url(parts[2]), "{segment}");
    assert_eq!(parse_time(&opened["expires_at"]).unix_timestamp(), exp);
    let hash = LinkToken::parse(&token).expect("token").hash();
    let suffix = format!("{}.{}", parts[1], parts[2]);
    assert!(app.services.signer.verify_unlock(&hash, &suffix, now()));
    assert!(
        !app.services
            .signer
            .verify_unlock(&hash, &format!("{}.{}", exp + 1, parts[2]), now()),
        "the signature covers the expiry"
    );
    assert_eq!(
        opened["state_url"],
        format!("{BASE_URL}/ng/s/{segment}.json")
    );
    assert!(
        str_of(&opened, "neuroglancer_url").starts_with(&format!("{NG_URL}#!")),
        "{opened}"
    );
    assert!(
        app.audit(&id)
            .await
            .iter()
            .any(|e| e["action"] == "link_unlocked" && e["target"] == link_id.as_str())
    );

    // Ten wrong passwords on another link: then it answers 429, even to the right one.
    let limited = app
        .post(
            &links_uri,
            Who::Admin,
            &json!({"label": "limited", "password": GOOD_PASSWORD}),
        )
        .await
        .ok(StatusCode::CREATED);
    let limited_token = str_of(&limited, "token").to_owned();
    for i in 0..10 {
        unlock(&app, &limited_token, &format!("Wrong-Guess-{i:03}"))
            .await
            .problem(StatusCode::UNAUTHORIZED);
    }
    for password in ["Wrong-Guess-999", GOOD_PASSWORD] {
        let throttled = unlock(&app, &limited_token, password).await;
        throttled.problem(StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = throttled
            .header(header::RETRY_AFTER)
            .parse()
            .expect("Retry-After in seconds");
        assert!(retry > 0);
    }
    let failures = app
        .audit(&id)
        .await
        .iter()
        .filter(|e| e["action"] == "link_password_failed" && e["target"] == id_of(&limited))
        .count();
    assert_eq!(failures, 10, "throttled attempts are not even tried");
    // The limit is per link: the first one still opens.
    unlock(&app, &token, GOOD_PASSWORD).await.ok(StatusCode::OK);

    // A link without a password: 400. A revoked one: 410. No such link: 404.
    let open = app
        .post(&links_uri, Who::Admin, &json!({"label": "open"}))
        .await
        .ok(StatusCode::CREATED);
    unlock(&app, str_of(&open, "token"), GOOD_PASSWORD)
        .await
        .problem_about(StatusCode::BAD_REQUEST, "no password");
    app.delete(&format!("{links_uri}/{link_id}"), Who::Admin)
        .await
        .ok(StatusCode::OK);
    unlock(&app, &token, GOOD_PASSWORD)
        .await
        .problem_about(StatusCode::GONE, "revoked");
    unlock(&app, LinkToken::generate().expose(), GOOD_PASSWORD)
        .await
        .problem(StatusCode::NOT_FOUND);
    unlock(&app, "not-a-token", GOOD_PASSWORD)
        .await
        .problem(StatusCode::NOT_FOUND);
}

/// The limit is "ten wrong passwords per link per 15 minutes (per instance)", but the count is
/// read before the password is checked and written after: guesses that arrive together are all
/// checked. (One Lambda instance serves one request at a time; the local server, and any host
/// that serves requests concurrently, does not.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_wrong_passwords_are_limited_too() {
    let app = spawn_app();
    let id = app.dataset("cells", json!({})).await;
    let link = app
        .post(
            &format!("/api/datasets/{id}/links"),
            Who::Admin,
            &json!({"password": GOOD_PASSWORD}),
        )
        .await
        .ok(StatusCode::CREATED);
    let token = str_of(&link, "token").to_owned();
    let mut guesses = tokio::task::JoinSet::new();
    for i in 0..30 {
        let router = app.app.clone();
        let body = json!({"token": token, "password": format!("Wrong-Guess-{i:03}")});
        guesses.spawn(async move {
            let request = Request::builder()
                .method(Method::POST)
                .uri("/api/links/unlock")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .expect("request");
            router
                .oneshot(request)
                .await
                .expect("the router is infallible")
                .status()
        });
    }
    let statuses = guesses.join_all().await;
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let throttled = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(checked + throttled, 30, "{statuses:?}");
    assert!(
        checked <= 10,
        "{checked} of 30 concurrent guesses were checked"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Usage and the links page
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn link_usage_is_counted_and_the_links_page_filters_and_pages() {
    let app = spawn_app();
    let a = app
        .dataset("alpha", json!({"display_name": "Alpha cells"}))
        .await;
    let b = app
        .dataset("beta", json!({"display_name": "Beta cells"}))
        .await;
    let mk = |dataset: &str, label: &str| {
        let (app, uri, label) = (
            &app,
            format!("/api/datasets/{dataset}/links"),
            label.to_owned(),
        );
        async move {
            app.post(&uri, Who::Admin, &json!({"label": label}))
                .await
                .ok(StatusCode::CREATED)
        }
    };
    let expired = stored_link(&b, "expired", 2, true);
    app.services
        .catalog
        .create_link(&expired)
        .await
        .expect("expired link");
    let a1 = mk(&a, "a1").await;
    let a2 = mk(&a, "a2").await;
    let b1 = mk(&b, "b1").await;
    app.delete(
        &format!("/api/datasets/{a}/links/{}", id_of(&a2)),
        Who::Admin,
    )
    .await
    .ok(StatusCode::OK);

    // Reads through a1, as the chunk function counts them, then flushed.
    let token = LinkToken::parse(str_of(&a1, "token")).expect("token");
    let link = app
        .services
        .resolve_link(&token.hash())
        .await
        .expect("resolve")
        .expect("a1 resolves");
    for _ in 0..3 {
        app.services.record_use(&link, Use::Read, false, 1000);
    }
    app.services.record_use(&link, Use::View, false, 500);
    let before_flush = now();
    assert_eq!(app.services.flush_usage().await, 1, "one link was used");
    assert_eq!(app.services.flush_usage().await, 0, "nothing left to flush");

    let listed = app
        .get(&format!("/api/datasets/{a}/links"), Who::Admin)
        .await
        .ok(StatusCode::OK);
    let listed = listed.as_array().expect("links");
    let usage = &find(listed, &id_of(&a1))["usage"];
    assert_eq!(usage["views"], 1, "{usage}");
    assert_eq!(usage["chunk_reads"], 3, "{usage}");
    assert_eq!(usage["bytes"], 3500, "{usage}");
    let last = parse_time(&usage["last_access"]);
    assert!(
        (last - before_flush).whole_seconds().abs() < 60,
        "last access {last}"
    );
    let unused = &find(listed, &id_of(&a2))["usage"];
    assert_eq!(
        (&unused["views"], &unused["chunk_reads"], &unused["bytes"]),
        (&json!(0), &json!(0), &json!(0))
    );
    assert!(unused["last_access"].is_null(), "{unused}");

    let page = app.get("/api/links", Who::Admin).await.ok(StatusCode::OK);
    let items = page["items"].as_array().expect("items");
    let row = find(items, &id_of(&a1));
    assert_eq!(&row["usage"], usage);
    assert_eq!(row["dataset_name"], "Alpha cells");
    assert_eq!(row["dataset_id"], a.as_str());

    let trail = app.audit(&a).await;
    let used = trail
        .iter()
        .find(|e| e["action"] == "link_used")
        .unwrap_or_else(|| panic!("no link_used entry in {trail:?}"));
    assert_eq!(used["target"], id_of(&a1).as_str());
    assert_eq!(used["detail"]["views"], 1);
    assert_eq!(used["detail"]["chunk_reads"], 3);
    assert_eq!(used["detail"]["bytes"], 3500);

    // Newest first; filtered by state and by dataset; paged.
    let newest_first = vec![
        id_of(&b1),
        id_of(&a2),
        id_of(&a1),
        expired.id.as_str().to_owned(),
    ];
    assert_eq!(ids(items), newest_first, "{page}");
    assert!(page["next_cursor"].is_null());
    let created: Vec<time::OffsetDateTime> =
        items.iter().map(|i| parse_time(&i["created_at"])).collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]), "{created:?}");
    let filtered = |query: &str| {
        let app = &app;
        let uri = format!("/api/links?{query}");
        async move {
            let pages = app.all_pages(&uri, Who::Admin, 100).await;
            ids(&pages.concat())
        }
    };
    assert_eq!(filtered("state=revoked").await, vec![id_of(&a2)]);
    assert_eq!(
        filtered("state=expired").await,
        vec![expired.id.as_str().to_owned()]
    );
    assert_eq!(filtered("state=active").await, vec![id_of(&b1), id_of(&a1)]);
    assert_eq!(
        filtered(&format!("dataset={b}")).await,
        vec![id_of(&b1), expired.id.as_str().to_owned()]
    );
    assert_eq!(
        filtered(&format!("dataset={a}&state=active")).await,
        vec![id_of(&a1)]
    );
    let pages = app.all_pages("/api/links", Who::Admin, 1).await;
    assert_eq!(pages.len(), 4, "four pages of one: {pages:?}");
    assert!(pages.iter().all(|p| p.len() == 1));
    assert_eq!(ids(&pages.concat()), newest_first);
    let pages = app.all_pages("/api/links", Who::Admin, 3).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 1]);
    for bad in [
        "/api/links?limit=0",
        "/api/links?limit=101",
        "/api/links?cursor=garbage",
        "/api/links?state=sleeping",
    ] {
        app.get(bad, Who::Admin)
            .await
            .problem(StatusCode::BAD_REQUEST);
    }

    // A plain user sees the links they made, and no one else's.
    app.org_admin().await;
    let dana = app
        .person(ORG, "dana@lab.example", OrgRole::DatasetManager, &[])
        .await;
    let own = id_of(
        &app.register(
            Who::As(&dana),
            "danas",
            &fixture(&app, "danas", image_with_labels),
            json!({}),
        )
        .await,
    );
    let dana1 = app
        .post(
            &format!("/api/datasets/{own}/links"),
            Who::As(&dana),
            &json!({"label": "dana 1"}),
        )
        .await
        .ok(StatusCode::CREATED);
    let admin_on_own = mk(&own, "by the admin").await;
    app.services
        .directory
        .update_user::<shared::store::catalog::CatalogError>(dana.id(), |u| {
            u.role = OrgRole::User;
            Ok(())
        })
        .await
        .expect("demoted");
    // Still the owner of their dataset, so still making links to it.
    let dana2 = app
        .post(
            &format!("/api/datasets/{own}/links"),
            Who::As(&dana),
            &json!({"label": "dana 2"}),
        )
        .await
        .ok(StatusCode::CREATED);
    let theirs = app
        .get("/api/links", Who::As(&dana))
        .await
        .ok(StatusCode::OK);
    assert_eq!(
        ids(theirs["items"].as_array().expect("items")),
        vec![id_of(&dana2), id_of(&dana1)],
        "{theirs}"
    );
    let everyone = app
        .get("/api/links?limit=100", Who::Admin)
        .await
        .ok(StatusCode::OK);
    let everyone = ids(everyone["items"].as_array().expect("items"));
    assert!(everyone.contains(&id_of(&dana1)) && everyone.contains(&id_of(&admin_on_own)));
    let pat = app.person(ORG, "pat@lab.example", OrgRole::User, &[]).await;
    let none = app
        .get("/api/links", Who::As(&pat))
        .await
        .ok(StatusCode::OK);
    assert_eq!(none["items"], json!([]), "{none}");

    // Anonymous: 401.
    let anonymous = app.get("/api/links", Who::Anonymous).await;
    anonymous.problem(StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.header(header::WWW_AUTHENTICATE), "Bearer");
}

// ---------------------------------------------------------------------------------------------
// 5. Per-person shares
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn datasets_are_shared_with_people_by_email_with_rights_that_can_change() {
    let app = spawn_app();
    let head = app.org_admin().await;
    let id = app
        .dataset("embryo", json!({"display_name": "Embryo atlas"}))
        .await;
    let dataset_uri = format!("/api/datasets/{id}");
    let shares_uri = format!("{dataset_uri}/shares");
    // Someone with an account in another organization.
    app.person("partner", "lead@partner.example", OrgRole::Admin, &[])
        .await;
    let bob = app
        .person("partner", "bob@partner.example", OrgRole::User, &[])
        .await;

    // (a) An existing account: shared at once, told by mail.
    let shared = app
        .post(
            &shares_uri,
            Who::Admin,
            &json!({"emails": ["Bob@Partner.example"], "message": "Have a look"}),
        )
        .await
        .ok(StatusCode::CREATED);
    assert_eq!(shared[0]["email"], bob.email());
    assert_eq!(shared[0]["outcome"], "shared", "{shared}");
    assert_eq!(shared[0]["grant"]["state"], "active");
    assert_eq!(shared[0]["grant"]["user"], bob.id().as_str());
    let mails = app.mails_to(bob.email());
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(
        mails[0].subject.contains("shared") && mails[0].subject.contains("with you"),
        "{}",
        mails[0].subject
    );
    assert!(mails[0].subject.contains("Embryo atlas"));
    assert!(mails[0].text.contains("Have a look"));
    assert!(
        mails[0]
            .text
            .contains(&format!("{BASE_URL}/api/datasets/{id}"))
    );

    // (b) An unknown address: an invitation, and a pending share until it is accepted.
    let carol_email = "carol@elsewhere.example";
    let invited = app
        .post(&shares_uri, Who::Admin, &json!({"emails": [carol_email]}))
        .await
        .ok(StatusCode::CREATED);
    assert_eq!(invited[0]["outcome"], "invited", "{invited}");
    assert_eq!(invited[0]["grant"]["state"], "pending");
    assert!(invited[0]["grant"]["user"].is_null());
    let mails = app.mails_to(carol_email);
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(mails[0].subject.contains("with you"));
    let accept = format!("{BASE_URL}/api/invites/accept?token=");
    assert!(mails[0].text.contains(&accept), "{}", mails[0].text);
    assert!(mails[0].html.contains(&accept));
    let person_in = |list: &Value, email: &str| -> Value {
        list["people"]
            .as_array()
            .expect("people")
            .iter()
            .find(|p| p["email"] == email)
            .cloned()
            .unwrap_or_else(|| panic!("{email} not in {list}"))
    };
    let access = app.get(&shares_uri, Who::Admin).await.ok(StatusCode::OK);
    assert_eq!(person_in(&access, carol_email)["state"], "pending");
    assert_eq!(person_in(&access, bob.email())["state"], "active");
    assert_eq!(access["visibility"], "private");

    // A pending share grants nothing; once the account exists and the share is bound, it does.
    let carol = app
        .person("elsewhere", carol_email, OrgRole::Admin, &[])
        .await;
    app.get(&dataset_uri, Who::As(&carol))
        .await
        .problem(StatusCode::NOT_FOUND);
    let bound = app
        .services
        .catalog
        .bind_pending_grants(&carol.user.email, carol.id())
        .await
        .expect("bound");
    assert_eq!(bound.len(), 1);
    let access = app.get(&shares_uri, Who::Admin).await.ok(StatusCode::OK);
    assert_eq!(person_in(&access, carol_email)["state"], "active");
    assert_eq!(person_in(&access, carol_email)["user"], carol.id().as_str());

    // What the grantee sees and may do.
    let seen = app
        .get(&dataset_uri, Who::As(&bob))
        .await
        .ok(StatusCode::OK);
    assert_eq!(seen["access"]["relation"], "shared_with_me", "{seen}");
    assert_eq!(seen["access"]["can"]["view"], true);
    assert_eq!(seen["access"]["can"]["annotate"], false);
    assert_eq!(seen["access"]["can"]["share"], false);
    let mine = app
        .get("/api/datasets?scope=shared_with_me", Who::As(&bob))
        .await
        .ok(StatusCode::OK);
    assert_eq!(
        ids(mine["items"].as_array().expect("items")),
        vec![id.clone()]
    );
    assert_eq!(mine["items"][0]["access"]["relation"], "shared_with_me");
    app.patch(
        &dataset_uri,
        Who::As(&bob),
        &json!({"description": "mine now"}),
    )
    .await
    .problem(StatusCode::FORBIDDEN);
    app.get(&shares_uri, Who::As(&bob))
        .await
        .problem(StatusCode::FORBIDDEN);
    let before = app.outbox.sent().len();
    app.post(
        &shares_uri,
        Who::As(&bob),
        &json!({"emails": ["friend@partner.example"]}),
    )
    .await
    .problem(StatusCode::FORBIDDEN);
    assert_eq!(
        app.outbox.sent().len(),
        before,
        "no mail for a refused share"
    );

    // "Can share again" without "can modify": may share view-only, never "can modify".
    let bob_share = format!("{shares_uri}/{}", bob.email());
    let changed = app
        .patch(&bob_share, Who::Admin, &json!({"can_share": true}))
        .await
        .ok(StatusCode::OK);
    assert_eq!(
        (&changed["can_share"], &changed["can_modify"]),
        (&json!(true), &json!(false))
    );
    app.post(
        &shares_uri,
        Who::As(&bob),
        &json!({"emails": ["friend@partner.example"], "can_modify": true}),
    )
    .await
    .problem_about(StatusCode::FORBIDDEN, "can modify");
    let friend = app
        .post(
            &shares_uri,
            Who::As(&bob),
            &json!({"emails": ["friend@partner.example"]}),
        )
        .await
        .ok(StatusCode::CREATED);
    assert_eq!(friend[0]["outcome"], "invited");
    assert_eq!(friend[0]["grant"]["can_modify"], false);
    assert_eq!(app.mails_to("friend@partner.example").len(), 1);
    // Nobody shares with themselves.
    app.post(
        &shares_uri,
        Who::As(&bob),
        &json!({"emails": ["BOB@partner.example"]}),
    )
    .await
    .problem_about(StatusCode::UNPROCESSABLE_ENTITY, "yourself");
    app.post(
        &shares_uri,
        Who::As(&head),
        &json!({"emails": [head.email()]}),
    )
    .await
    .problem_about(StatusCode::UNPROCESSABLE_ENTITY, "yourself");

    // Rights change: the grantee's capabilities follow.
    app.patch(&bob_share, Who::Admin, &json!({"can_modify": true}))
        .await
        .ok(StatusCode::OK);
    let seen = app
        .get(&dataset_uri, Who::As(&bob))
        .await
        .ok(StatusCode::OK);
    assert_eq!(seen["access"]["can"]["annotate"], true, "{seen}");
    app.patch(&bob_share, Who::Admin, &json!({"can_modify": false}))
        .await
        .ok(StatusCode::OK);
    let seen = app
        .get(&dataset_uri, Who::As(&bob))
        .await
        .ok(StatusCode::OK);
    assert_eq!(seen["access"]["can"]["annotate"], false, "{seen}");
    app.patch(&bob_share, Who::As(&bob), &json!({"can_modify": true}))
        .await
        .problem(StatusCode::FORBIDDEN);

    // Sharing again changes nothing.
    let mails_before = app.mails_to(bob.email()).len();
    let again = app
        .post(
            &shares_uri,
            Who::Admin,
            &json!({"emails": [bob.email()], "can_modify": true}),
        )
        .await
        .ok(StatusCode::CREATED);
    assert_eq!(again[0]["outcome"], "already_shared", "{again}");
    assert_eq!(again[0]["grant"]["can_modify"], false, "unchanged");
    assert_eq!(app.mails_to(bob.email()).len(), mails_before);

    // Revoking: the grantee no longer sees the private dataset at all.
    let revoked = app.delete(&bob_share, Who::Admin).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.text());
    app.get(&dataset_uri, Who::As(&bob))
        .await
        .problem(StatusCode::NOT_FOUND);
    let mine = app
        .get("/api/datasets?scope=shared_with_me", Who::As(&bob))
        .await
        .ok(StatusCode::OK);
    assert_eq!(mine["items"], json!([]));

    // A grantee may remove a share of their own, not someone else's.
    app.delete(
        &format!("{shares_uri}/friend@partner.example"),
        Who::As(&carol),
    )
    .await
    .problem(StatusCode::FORBIDDEN);
    let left = app
        .delete(&format!("{shares_uri}/{carol_email}"), Who::As(&carol))
        .await;
    assert_eq!(left.status, StatusCode::NO_CONTENT, "{}", left.text());
    app.get(&dataset_uri, Who::As(&carol))
        .await
        .problem(StatusCode::NOT_FOUND);
    let access = app.get(&shares_uri, Who::Admin).await.ok(StatusCode::OK);
    let emails: Vec<&str> = access["people"]
        .as_array()
        .expect("people")
        .iter()
        .map(|p| str_of(p, "email"))
        .collect();
    assert_eq!(emails, vec!["friend@partner.example"]);

    // Revoking a pending share withdraws its invitation.
    let friend_invite = || async {
        let invites = app
            .services
            .directory
            .invites_of(&OrgId::parse(ORG).expect("org"))
            .await
            .expect("invitations");
        invites
            .into_iter()
            .find(|i| i.email.as_str() == "friend@partner.example")
            .expect("the friend's invitation")
    };
    assert!(friend_invite().await.revoked_at.is_none());
    let withdrawn = app
        .delete(&format!("{shares_uri}/friend@partner.example"), Who::Admin)
        .await;
    assert_eq!(
        withdrawn.status,
        StatusCode::NO_CONTENT,
        "{}",
        withdrawn.text()
    );
    assert!(friend_invite().await.revoked_at.is_some());
    let access = app.get(&shares_uri, Who::Admin).await.ok(StatusCode::OK);
    assert_eq!(access["people"], json!([]));
}

// ---------------------------------------------------------------------------------------------
// 6. Status in listings
// ---------------------------------------------------------------------------------------------

/// The caller's `access` on dataset `id`, read through `GET /api/datasets/{id}`.
async fn access_of(app: &TestApp, id: &str, who: Who<'_>) -> Value {
    app.get(&format!("/api/datasets/{id}"), who)
        .await
        .ok(StatusCode::OK)["access"]
        .clone()
}

/// The caller's `access` on each dataset of the organization listing, by id.
async fn listed_access(app: &TestApp, who: Who<'_>) -> BTreeMap<String, Value> {
    let list = app
        .get("/api/datasets?limit=100", who)
        .await
        .ok(StatusCode::OK);
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|d| (id_of(d), d["access"].clone()))
        .collect()
}

#[tokio::test]
async fn listings_show_each_callers_relation_and_how_widely_a_dataset_is_shared() {
    let app = spawn_app();
    app.org_admin().await;
    let team = app.team(ORG, "Imaging").await;
    let mia = app
        .person(ORG, "mia@lab.example", OrgRole::DatasetManager, &[])
        .await;
    let max = app
        .person(ORG, "max@lab.example", OrgRole::DatasetManager, &[])
        .await;
    let tom = app
        .person(
            ORG,
            "tom@lab.example",
            OrgRole::User,
            &[(team.clone(), TeamRole::Member)],
        )
        .await;

    let linked = app.dataset("linked", json!({})).await;
    let granted = app.dataset("granted", json!({})).await;
    let teamed = app.dataset("teamed", json!({})).await;
    let open = app.dataset("open", json!({"visibility": "public"})).await;
    let expired_only = app.dataset("expired-only", json!({})).await;
    let mias = id_of(
        &app.register(
            Who::As(&mia),
            "mias",
            &fixture(&app, "mias", image_with_labels),
            json!({}),
        )
        .await,
    );
    let sharing = |m: &BTreeMap<String, Value>, id: &str| m[id]["sharing"].clone();

    // Fresh private datasets are private.
    let admin = listed_access(&app, Who::Admin).await;
    for id in [&linked, &granted, &teamed, &expired_only, &mias] {
        assert_eq!(sharing(&admin, id), "private", "{id}: {admin:?}");
        assert_eq!(admin[id.as_str()]["relation"], "manager");
    }
    assert_eq!(sharing(&admin, &open), "public");

    // A link, a person or a team makes them privately shared; an expired link does not.
    let link = app
        .post(
            &format!("/api/datasets/{linked}/links"),
            Who::Admin,
            &json!({}),
        )
        .await
        .ok(StatusCode::CREATED);
    app.post(
        &format!("/api/datasets/{granted}/shares"),
        Who::Admin,
        &json!({"emails": ["someone@elsewhere.example"]}),
    )
    .await
    .ok(StatusCode::CREATED);
    app.services
        .catalog
        .create_link(&stored_link(&expired_only, "old", 3, true))
        .await
        .expect("expired link");
    app.patch(
        &format!("/api/datasets/{teamed}"),
        Who::As(&tom),
        &json!({"allowed_teams": [team.as_str()]}),
    )
    .await
    .problem(StatusCode::FORBIDDEN);
    assert_eq!(
        access_of(&app, &teamed, Who::Admin).await["sharing"],
        "private"
    );
    for bad in [json!([TeamId::generate().as_str()]), json!(["not a team"])] {
        app.patch(
            &format!("/api/datasets/{teamed}"),
            Who::Admin,
            &json!({"allowed_teams": bad}),
        )
        .await
        .problem_about(StatusCode::UNPROCESSABLE_ENTITY, "no team");
    }
    app.person("rival", "boss@rival.example", OrgRole::Admin, &[])
        .await;
    let foreign_team = app.team("rival", "Imaging").await;
    app.patch(
        &format!("/api/datasets/{teamed}"),
        Who::Admin,
        &json!({"allowed_teams": [foreign_team.as_str()]}),
    )
    .await
    .problem_about(StatusCode::UNPROCESSABLE_ENTITY, "no team");
    // Before its team is allowed, the team member has no access.
    app.get(&format!("/api/datasets/{teamed}"), Who::As(&tom))
        .await
        .problem(StatusCode::FORBIDDEN);
    let patched = app
        .patch(
            &format!("/api/datasets/{teamed}"),
            Who::Admin,
            &json!({"allowed_teams": [team.as_str()]}),
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(patched["allowed_teams"], json!([team.as_str()]));

    let admin = listed_access(&app, Who::Admin).await;
    for id in [&linked, &granted, &teamed] {
        assert_eq!(sharing(&admin, id), "privately_shared", "{id}: {admin:?}");
    }
    assert_eq!(sharing(&admin, &expired_only), "private");
    assert_eq!(sharing(&admin, &mias), "private");
    assert_eq!(sharing(&admin, &open), "public");
    assert_eq!(
        access_of(&app, &linked, Who::Admin).await["sharing"],
        "privately_shared"
    );

    // Revoking the only link makes it private again; making it public makes it public.
    app.delete(
        &format!("/api/datasets/{linked}/links/{}", id_of(&link)),
        Who::Admin,
    )
    .await
    .ok(StatusCode::OK);
    assert_eq!(
        access_of(&app, &linked, Who::Admin).await["sharing"],
        "private"
    );
    app.patch(
        &format!("/api/datasets/{linked}"),
        Who::Admin,
        &json!({"visibility": "public"}),
    )
    .await
    .ok(StatusCode::OK);
    assert_eq!(
        access_of(&app, &linked, Who::Admin).await["sharing"],
        "public"
    );

    // Dataset managers manage everything; the one who registered a dataset owns it.
    let by_mia = listed_access(&app, Who::As(&mia)).await;
    assert_eq!(by_mia[mias.as_str()]["relation"], "owner");
    assert_eq!(by_mia[granted.as_str()]["relation"], "manager");
    assert_eq!(by_mia[mias.as_str()]["can"]["update"], true);
    let by_max = listed_access(&app, Who::As(&max)).await;
    assert_eq!(by_max[mias.as_str()]["relation"], "manager");
    assert_eq!(by_max.len(), 6, "a manager sees every dataset: {by_max:?}");
    assert_eq!(
        access_of(&app, &mias, Who::As(&mia)).await["relation"],
        "owner"
    );

    // A member of an allowed team: can view (and annotate), cannot update.
    let tom_sees = access_of(&app, &teamed, Who::As(&tom)).await;
    assert_eq!(tom_sees["relation"], "team_member", "{tom_sees}");
    assert_eq!(tom_sees["can"]["view"], true);
    assert_eq!(tom_sees["can"]["annotate"], true);
    assert_eq!(tom_sees["can"]["update"], false);
    assert_eq!(tom_sees["can"]["manage_links"], false);
    assert_eq!(tom_sees["sharing"], "privately_shared");
    app.patch(
        &format!("/api/datasets/{teamed}"),
        Who::As(&tom),
        &json!({"description": "tom's"}),
    )
    .await
    .problem(StatusCode::FORBIDDEN);
    let by_tom = listed_access(&app, Who::As(&tom)).await;
    assert_eq!(by_tom[teamed.as_str()]["relation"], "team_member");
    assert_eq!(by_tom[open.as_str()]["relation"], "public");
    assert!(
        !by_tom.contains_key(&granted) && !by_tom.contains_key(&mias),
        "a team member lists only what they can see: {by_tom:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Gallery and thumbnails
// ---------------------------------------------------------------------------------------------

fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
    let info = reader.next_frame(&mut buf).expect("a frame");
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

#[tokio::test]
async fn the_gallery_lists_public_featured_datasets_by_name_with_thumbnails() {
    let app = spawn_app();
    let zebra = app
        .dataset(
            "zebra",
            json!({"visibility": "public", "featured": true, "display_name": "Zebra fish"}),
        )
        .await;
    let alpha = app
        .dataset(
            "alpha",
            json!({"visibility": "public", "featured": true, "display_name": "alpha cells", "description": "Stained"}),
        )
        .await;
    let mango = app
        .dataset(
            "mango",
            json!({"visibility": "public", "featured": true, "display_name": "Mango leaf"}),
        )
        .await;
    let hidden_gem = app
        .dataset(
            "gem",
            json!({"visibility": "public", "display_name": "Aardvark (not featured)"}),
        )
        .await;
    let secret = app
        .dataset(
            "secret",
            json!({"visibility": "private", "featured": true, "display_name": "Aaa secret"}),
        )
        .await;

    let gallery = app.get("/api/gallery", Who::Anonymous).await;
    let page = gallery.ok(StatusCode::OK);
    let cards = page["items"].as_array().expect("cards").clone();
    assert_eq!(
        ids(&cards),
        vec![alpha.clone(), mango.clone(), zebra.clone()],
        "{page}"
    );
    assert!(page["next_cursor"].is_null());
    assert_eq!(cards[0]["display_name"], "alpha cells");
    assert_eq!(cards[0]["description"], "Stained");
    assert_eq!(cards[0]["data_url"], format!("{BASE_URL}/data/{alpha}/"));
    assert!(str_of(&cards[0], "neuroglancer_url").starts_with(&format!("{NG_URL}#!")));

    // Public but not featured: not listed, yet readable by its URL.
    let gem = app
        .get(&format!("/api/datasets/{hidden_gem}"), Who::Anonymous)
        .await
        .ok(StatusCode::OK);
    assert_eq!(gem["access"]["relation"], "public");
    app.get(&format!("/api/datasets/{secret}"), Who::Anonymous)
        .await
        .problem(StatusCode::NOT_FOUND);

    // One card a page.
    let pages = app.all_pages("/api/gallery", Who::Anonymous, 1).await;
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert!(pages.iter().all(|p| p.len() == 1));
    assert_eq!(ids(&pages.concat()), ids(&cards));

    // Thumbnails: small PNGs with something in them, cached by ETag.
    for card in &cards {
        let uri = path_of(str_of(card, "thumbnail_url")).to_owned();
        assert_eq!(uri, format!("/api/datasets/{}/thumbnail.png", id_of(card)));
        let thumb = app.get(&uri, Who::Anonymous).await;
        assert_eq!(thumb.status, StatusCode::OK, "{}", thumb.text());
        assert_eq!(thumb.header(header::CONTENT_TYPE), "image/png");
        let (w, h, pixels) = decode_png(&thumb.body);
        assert!(w.max(h) <= 256, "{w} × {h}");
        assert!(w > 0 && h > 0);
        assert!(
            w < IMAGE_W as u32,
            "the {IMAGE_W}-pixel-wide image was scaled down to {w}"
        );
        let first = pixels[0];
        assert!(
            pixels.iter().any(|p| *p != first),
            "a flat thumbnail of a gradient"
        );
        let etag = thumb.header(header::ETAG).to_owned();
        let request = Request::builder()
            .uri(&uri)
            .header(header::IF_NONE_MATCH, &etag)
            .body(Body::empty())
            .expect("request");
        let unchanged = app.send(request).await;
        assert_eq!(unchanged.status, StatusCode::NOT_MODIFIED);
        assert!(unchanged.body.is_empty());
        assert_eq!(unchanged.header(header::ETAG), etag);
        let request = Request::builder()
            .uri(&uri)
            .header(header::IF_NONE_MATCH, "\"something-else\"")
            .body(Body::empty())
            .expect("request");
        assert_eq!(app.send(request).await.status, StatusCode::OK);
    }
    // A private dataset's thumbnail is not there for anonymous callers, but is for the admin.
    let private_thumb = format!("/api/datasets/{secret}/thumbnail.png");
    app.get(&private_thumb, Who::Anonymous)
        .await
        .problem(StatusCode::NOT_FOUND);
    let thumb = app.get(&private_thumb, Who::Admin).await;
    assert_eq!(thumb.status, StatusCode::OK);
    assert_eq!(thumb.header(header::CONTENT_TYPE), "image/png");

    // Un-featuring takes a dataset out of the gallery; it stays public.
    app.patch(
        &format!("/api/datasets/{mango}"),
        Who::Admin,
        &json!({"featured": false}),
    )
    .await
    .ok(StatusCode::OK);
    let page = app
        .get("/api/gallery", Who::Anonymous)
        .await
        .ok(StatusCode::OK);
    assert_eq!(
        ids(page["items"].as_array().expect("cards")),
        vec![alpha.clone(), zebra.clone()]
    );
    app.get(&format!("/api/datasets/{mango}"), Who::Anonymous)
        .await
        .ok(StatusCode::OK);
    // Renaming re-sorts.
    app.patch(
        &format!("/api/datasets/{zebra}"),
        Who::Admin,
        &json!({"display_name": "Aardwolf"}),
    )
    .await
    .ok(StatusCode::OK);
    let page = app
        .get("/api/gallery", Who::Anonymous)
        .await
        .ok(StatusCode::OK);
    assert_eq!(
        ids(page["items"].as_array().expect("cards")),
        vec![zebra, alpha]
    );
}

// ---------------------------------------------------------------------------------------------
// 8. Audit
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_audit_trail_lists_every_change_newest_first_for_managers_only() {
    let app = spawn_app();
    app.org_admin().await;
    let pat = app.person(ORG, "pat@lab.example", OrgRole::User, &[]).await;
    let id = app.dataset("audited", json!({})).await;
    let uri = format!("/api/datasets/{id}");
    app.patch(
        &uri,
        Who::Admin,
        &json!({"display_name": "Audited cells", "featured": true}),
    )
    .await
    .ok(StatusCode::OK);
    let link = app
        .post(
            &format!("{uri}/links"),
            Who::Admin,
            &json!({"label": "reviewer"}),
        )
        .await
        .ok(StatusCode::CREATED);
    let link_id = id_of(&link);
    app.delete(&format!("{uri}/links/{link_id}"), Who::Admin)
        .await
        .ok(StatusCode::OK);
    let grantee = "guest@elsewhere.example";
    app.post(
        &format!("{uri}/shares"),
        Who::Admin,
        &json!({"emails": [grantee]}),
    )
    .await
    .ok(StatusCode::CREATED);
    app.patch(
        &format!("{uri}/shares/{grantee}"),
        Who::Admin,
        &json!({"can_modify": true}),
    )
    .await
    .ok(StatusCode::OK);
    let gone = app
        .delete(&format!("{uri}/shares/{grantee}"), Who::Admin)
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT, "{}", gone.text());

    let trail = app.audit(&id).await;
    assert_eq!(
        actions(&trail),
        vec![
            "grant_revoked",
            "grant_changed",
            "grant_created",
            "link_revoked",
            "link_created",
            "dataset_updated",
            "dataset_registered",
        ],
        "{trail:?}"
    );
    let times: Vec<time::OffsetDateTime> = trail.iter().map(|e| parse_time(&e["at"])).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    for e in &trail {
        assert_eq!(e["dataset_id"], id.as_str());
        assert_eq!(e["actor"], format!("admin-key@{ORG}"), "{e}");
    }
    let updated = &trail[5]["detail"];
    assert_eq!(
        updated["display_name"],
        json!({"from": "cells", "to": "Audited cells"}),
        "{updated}"
    );
    assert_eq!(updated["featured"], json!({"from": false, "to": true}));
    assert!(updated.get("visibility").is_none(), "unchanged: {updated}");
    assert_eq!(trail[4]["target"], link_id.as_str());
    assert_eq!(trail[4]["detail"]["label"], "reviewer");
    assert_eq!(trail[3]["target"], link_id.as_str());
    for e in &trail[..3] {
        assert_eq!(e["target"], grantee);
    }
    assert_eq!(
        trail[1]["detail"]["can_modify"],
        json!({"from": false, "to": true})
    );

    // Paging through the trail gives the same entries.
    let pages = app.all_pages(&format!("{uri}/audit"), Who::Admin, 2).await;
    assert_eq!(pages.len(), 4);
    assert_eq!(pages.concat(), trail);

    // Only those who manage the dataset read it.
    app.get(&format!("{uri}/audit"), Who::As(&pat))
        .await
        .problem(StatusCode::FORBIDDEN);
    let anonymous = app.get(&format!("{uri}/audit"), Who::Anonymous).await;
    assert!(
        [StatusCode::UNAUTHORIZED, StatusCode::NOT_FOUND].contains(&anonymous.status),
        "{anonymous:?}"
    );
    anonymous.problem(anonymous.status);
    app.patch(&uri, Who::Admin, &json!({"visibility": "public"}))
        .await
        .ok(StatusCode::OK);
    app.get(&format!("{uri}/audit"), Who::Anonymous)
        .await
        .problem(StatusCode::UNAUTHORIZED);
    app.get(&format!("{uri}/audit"), Who::As(&pat))
        .await
        .problem(StatusCode::FORBIDDEN);
}

/// "By display name": a name sorts before the longer names it begins, as any collation has
/// it. The gallery's sort key is `{lower-cased name}#{id}`, and a space (or `!`, `"`) sorts
/// before `#`, so "Cell atlas" is listed before "Cell".
#[tokio::test]
async fn the_gallery_lists_a_name_before_longer_names_it_begins() {
    let app = spawn_app();
    let featured =
        |name: &str| json!({"visibility": "public", "featured": true, "display_name": name});
    let atlas = app.dataset("atlas", featured("Cell atlas")).await;
    let cell = app.dataset("cell", featured("Cell")).await;
    let cells = app.dataset("cells", featured("Cells")).await;
    let page = app
        .get("/api/gallery", Who::Anonymous)
        .await
        .ok(StatusCode::OK);
    let names: Vec<&str> = page["items"]
        .as_array()
        .expect("cards")
        .iter()
        .map(|c| str_of(c, "display_name"))
        .collect();
    assert_eq!(names, vec!["Cell", "Cell atlas", "Cells"]);
    assert_eq!(
        ids(page["items"].as_array().expect("cards")),
        vec![cell, atlas, cells]
    );
}
