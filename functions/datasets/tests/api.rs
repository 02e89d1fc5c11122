//! Handler tests for the datasets function: every route through `datasets::router`, over the
//! embedded store and a temporary local data root holding small Zarr / OME-Zarr hierarchies
//! written as plain JSON metadata (no chunks: registration reads metadata only).
//!
//! Every rejected request is checked for its status, for `application/problem+json` and its
//! fields, and for leaving the stored datasets and links exactly as they were.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use serde_json::{Value, json};
use shared::Services;
use shared::config::Config;
use shared::domain::{Dataset, LinkToken, ShareLink, now};
use shared::store::embedded::EmbeddedStore;
use tempfile::TempDir;
use tower::ServiceExt;

const ADMIN_KEY: &str = "test-admin-key-0123456789-abcdef";
const BASE_URL: &str = "http://example.test";
const PROBLEM: &str = "application/problem+json";

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// A router over fresh storage, and the handles a test needs around it.
struct TestApp {
    app: Router,
    services: Arc<Services>,
    /// The one local data root the server may register datasets from.
    root: PathBuf,
    /// A directory outside every data root.
    outside: PathBuf,
    _dirs: Vec<TempDir>,
}

/// A dataset view without the caller-dependent `access` part.
fn without_access(view: &Value) -> Value {
    let mut v = view.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("access");
    }
    v
}

fn tempdir() -> TempDir {
    tempfile::tempdir().expect("temporary directory")
}

/// Builds the app as a function's `main` would, over an embedded store in a temp directory.
fn spawn_app() -> TestApp {
    let db_dir = tempdir();
    let root_dir = tempdir();
    let outside_dir = tempdir();
    let db = db_dir.path().join("meta.redb");
    let root = std::fs::canonicalize(root_dir.path()).expect("canonical root");
    let outside = std::fs::canonicalize(outside_dir.path()).expect("canonical outside dir");
    let vars = [
        ("ZARRSHARE_EMBEDDED_DB", db.to_string_lossy().into_owned()),
        ("ZARRSHARE_ADMIN_KEY", ADMIN_KEY.to_owned()),
        ("ZARRSHARE_LOCAL_ROOTS", root.to_string_lossy().into_owned()),
        ("ZARRSHARE_PUBLIC_BASE_URL", BASE_URL.to_owned()),
    ];
    let config = Config::from_lookup(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .expect("test configuration");
    let store = Arc::new(EmbeddedStore::open(&db).expect("embedded store"));
    let services = Arc::new(Services::new(config, store).expect("services"));
    TestApp {
        app: datasets::router(services.clone()),
        services,
        root,
        outside,
        _dirs: vec![db_dir, root_dir, outside_dir],
    }
}

#[derive(Clone, Copy, Debug)]
enum Who {
    Admin,
    Anonymous,
    WrongKey,
}

impl Who {
    fn authorization(self) -> Option<String> {
        match self {
            Who::Admin => Some(format!("Bearer {ADMIN_KEY}")),
            Who::Anonymous => None,
            Who::WrongKey => Some("Bearer not-the-admin-key-but-long-enough".into()),
        }
    }
}

/// A response, its body read.
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
        assert_eq!(
            p["title"],
            json!(status.canonical_reason().unwrap_or("Error")),
            "{p}"
        );
        let kind = p["type"]
            .as_str()
            .unwrap_or_else(|| panic!("no type in {p}"));
        assert!(kind.starts_with("https://"), "type must be a URI: {p}");
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

/// What the catalog holds: every dataset of the organization with its links.
type Stored = Vec<(Dataset, Vec<ShareLink>)>;

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

    fn builder(method: Method, uri: &str, who: Who) -> axum::http::request::Builder {
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(auth) = who.authorization() {
            b = b.header(header::AUTHORIZATION, auth);
        }
        b
    }

    async fn call(&self, method: Method, uri: &str, who: Who, body: Option<&Value>) -> Reply {
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

    /// A request with a raw body and content type (`None`: no `Content-Type` header).
    async fn raw(
        &self,
        method: Method,
        uri: &str,
        who: Who,
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> Reply {
        let mut b = Self::builder(method, uri, who);
        if let Some(ct) = content_type {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        self.send(b.body(body.into()).expect("request")).await
    }

    async fn get(&self, uri: &str, who: Who) -> Reply {
        self.call(Method::GET, uri, who, None).await
    }

    async fn post(&self, uri: &str, who: Who, body: &Value) -> Reply {
        self.call(Method::POST, uri, who, Some(body)).await
    }

    async fn patch(&self, uri: &str, if_match: Option<&str>, body: &Value) -> Reply {
        self.patch_as(Who::Admin, uri, if_match, body).await
    }

    async fn patch_as(&self, who: Who, uri: &str, if_match: Option<&str>, body: &Value) -> Reply {
        let mut b =
            Self::builder(Method::PATCH, uri, who).header(header::CONTENT_TYPE, "application/json");
        if let Some(tag) = if_match {
            b = b.header(header::IF_MATCH, tag);
        }
        self.send(b.body(Body::from(body.to_string())).expect("request"))
            .await
    }

    async fn delete(&self, uri: &str, who: Who) -> Reply {
        self.call(Method::DELETE, uri, who, None).await
    }

    async fn register(&self, name: &str, url: &str, visibility: &str) -> Reply {
        self.post(
            "/api/datasets",
            Who::Admin,
            &json!({"name": name, "url": url, "visibility": visibility}),
        )
        .await
    }

    /// Registers the hierarchy at `path` and returns the 201 body.
    async fn registered(&self, name: &str, path: &Path, visibility: &str) -> Value {
        self.register(name, &path.to_string_lossy(), visibility)
            .await
            .ok(StatusCode::CREATED)
    }

    async fn stored(&self) -> Stored {
        let org = self.services.auth.org().clone();
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .services
                .catalog
                .datasets_of(&org, 100, cursor)
                .await
                .expect("listing");
            for d in page.items {
                let links = self.services.catalog.links_of(&d.id).await.expect("links");
                out.push((d, links));
            }
            match page.next {
                Some(c) => cursor = Some(c),
                None => return out,
            }
        }
    }

    async fn assert_unchanged(&self, before: &Stored, what: &str) {
        assert_eq!(
            &self.stored().await,
            before,
            "stored data changed after a rejected request: {what}"
        );
    }

    /// The name is free again (no claim was left behind by a rejected registration).
    async fn assert_name_free(&self, name: &str) {
        let name = shared::domain::DatasetName::parse(name).expect("name");
        let found = self
            .services
            .catalog
            .dataset_by_name(self.services.auth.org(), &name)
            .await;
        assert!(
            matches!(found, Err(shared::store::catalog::CatalogError::NotFound)),
            "name {name:?} is claimed: {found:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures: metadata-only hierarchies written from the test
// ---------------------------------------------------------------------------------------------

fn write_text(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("fixture directory");
    }
    std::fs::write(&path, text).expect("fixture file");
}

fn write_json(dir: &Path, rel: &str, value: &Value) {
    write_text(
        dir,
        rel,
        &serde_json::to_string_pretty(value).expect("fixture JSON"),
    );
}

fn axes_zyx() -> Value {
    json!([
        {"name": "z", "type": "space", "unit": "micrometer"},
        {"name": "y", "type": "space", "unit": "micrometer"},
        {"name": "x", "type": "space", "unit": "micrometer"}
    ])
}

fn v2_array(shape: &[u64], chunks: &[u64], dtype: &str, compressor: &Value) -> Value {
    json!({
        "zarr_format": 2,
        "shape": shape,
        "chunks": chunks,
        "dtype": dtype,
        "compressor": compressor,
        "fill_value": 0,
        "order": "C",
        "filters": null,
        "dimension_separator": "/"
    })
}

fn v3_array(shape: &[u64], chunk: &[u64], data_type: &str, codecs: &Value, dims: &[&str]) -> Value {
    json!({
        "zarr_format": 3,
        "node_type": "array",
        "shape": shape,
        "data_type": data_type,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunk}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0,
        "codecs": codecs,
        "dimension_names": dims,
        "attributes": {}
    })
}

fn v3_group(attributes: &Value) -> Value {
    json!({"zarr_format": 3, "node_type": "group", "attributes": attributes})
}

fn bytes_zstd() -> Value {
    json!([
        {"name": "bytes", "configuration": {"endian": "little"}},
        {"name": "zstd", "configuration": {"level": 3, "checksum": false}}
    ])
}

/// (a) OME-Zarr 0.4 on Zarr v2: a `c, y, x` image in two levels (zstd and gzip compressed).
fn ome_04_v2(dir: &Path) {
    write_json(dir, ".zgroup", &json!({"zarr_format": 2}));
    write_json(
        dir,
        ".zattrs",
        &json!({"multiscales": [{
            "version": "0.4",
            "name": "cells-v2",
            "axes": [
                {"name": "c", "type": "channel"},
                {"name": "y", "type": "space", "unit": "micrometer"},
                {"name": "x", "type": "space", "unit": "micrometer"}
            ],
            "datasets": [
                {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 0.5, 0.5]}]},
                {"path": "1", "coordinateTransformations": [
                    {"type": "scale", "scale": [1.0, 1.0, 1.0]},
                    {"type": "translation", "translation": [0.0, 0.25, 0.25]}
                ]}
            ]
        }]}),
    );
    write_json(
        dir,
        "0/.zarray",
        &v2_array(
            &[2, 512, 512],
            &[1, 256, 256],
            "<u2",
            &json!({"id": "zstd", "level": 3}),
        ),
    );
    write_json(
        dir,
        "1/.zarray",
        &v2_array(
            &[2, 256, 256],
            &[1, 128, 128],
            "<u2",
            &json!({"id": "gzip", "level": 5}),
        ),
    );
}

/// (b) OME-Zarr 0.5 on Zarr v3: a two-level image plus a `labels` group with one sharded label image.
fn ome_05_v3(dir: &Path) {
    write_json(
        dir,
        "zarr.json",
        &v3_group(&json!({"ome": {"version": "0.5", "multiscales": [{
            "name": "embryo",
            "axes": axes_zyx(),
            "datasets": [
                {"path": "s0", "coordinateTransformations": [{"type": "scale", "scale": [0.5, 0.25, 0.25]}]},
                {"path": "s1", "coordinateTransformations": [
                    {"type": "scale", "scale": [1.0, 0.5, 0.5]},
                    {"type": "translation", "translation": [0.25, 0.125, 0.125]}
                ]}
            ]
        }]}})),
    );
    write_json(
        dir,
        "s0/zarr.json",
        &v3_array(
            &[64, 128, 128],
            &[32, 64, 64],
            "float32",
            &bytes_zstd(),
            &["z", "y", "x"],
        ),
    );
    write_json(
        dir,
        "s1/zarr.json",
        &v3_array(
            &[32, 64, 64],
            &[32, 64, 64],
            "float32",
            &bytes_zstd(),
            &["z", "y", "x"],
        ),
    );
    write_json(
        dir,
        "labels/zarr.json",
        &v3_group(&json!({"ome": {"version": "0.5", "labels": ["nuclei"]}})),
    );
    write_json(
        dir,
        "labels/nuclei/zarr.json",
        &v3_group(&json!({"ome": {
            "version": "0.5",
            "image-label": {"version": "0.5"},
            "multiscales": [{
                "name": "nuclei",
                "axes": axes_zyx(),
                "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [0.5, 0.25, 0.25]}]}]
            }]
        }})),
    );
    let sharded = json!([{"name": "sharding_indexed", "configuration": {
        "chunk_shape": [32, 64, 64],
        "codecs": bytes_zstd(),
        "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}],
        "index_location": "end"
    }}]);
    write_json(
        dir,
        "labels/nuclei/0/zarr.json",
        &v3_array(
            &[64, 128, 128],
            &[64, 128, 128],
            "uint32",
            &sharded,
            &["z", "y", "x"],
        ),
    );
}

/// (c) A plain Zarr v3 array at the dataset root.
fn plain_v3_array(dir: &Path) {
    let codecs = json!([{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "gzip", "configuration": {"level": 5}}]);
    write_json(
        dir,
        "zarr.json",
        &v3_array(&[100, 200], &[50, 100], "int16", &codecs, &["y", "x"]),
    );
}

/// (d) A plain Zarr v2 group with two arrays and no OME metadata.
fn plain_v2_group(dir: &Path) {
    write_json(dir, ".zgroup", &json!({"zarr_format": 2}));
    write_json(dir, ".zattrs", &json!({"instrument": "not OME"}));
    write_json(
        dir,
        "raw/.zarray",
        &v2_array(&[10, 20], &[5, 10], "<f4", &Value::Null),
    );
    write_json(
        dir,
        "mask/.zarray",
        &v2_array(
            &[10, 20],
            &[10, 20],
            "|u1",
            &json!({"id": "zstd", "level": 1}),
        ),
    );
}

/// An OME 0.5 image group whose multiscales list `paths`, with the given arrays present.
fn ome_05_image(dir: &Path, paths: &[&str], axes: &Value, arrays: &[(&str, Value)]) {
    let datasets: Vec<Value> = paths
        .iter()
        .map(|p| json!({"path": p, "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0, 1.0]}]}))
        .collect();
    write_json(
        dir,
        "zarr.json",
        &v3_group(&json!({"ome": {"version": "0.5", "multiscales": [{
            "name": "broken", "axes": axes, "datasets": datasets
        }]}})),
    );
    for (path, meta) in arrays {
        write_json(dir, &format!("{path}/zarr.json"), meta);
    }
}

/// A fresh directory below the data root.
fn fixture(app: &TestApp, name: &str, write: impl FnOnce(&Path)) -> PathBuf {
    let dir = app.root.join(name);
    std::fs::create_dir_all(&dir).expect("fixture root");
    write(&dir);
    dir
}

// ---------------------------------------------------------------------------------------------
// Small assertions on dataset views
// ---------------------------------------------------------------------------------------------

fn level(shape: &[u64], chunk: &[u64]) -> (Value, Value) {
    (json!(shape), json!(chunk))
}

fn assert_level(l: &Value, path: &str, (shape, chunk): (Value, Value), data_type: &str) {
    assert_eq!(l["path"], json!(path), "{l}");
    assert_eq!(l["shape"], shape, "{l}");
    assert_eq!(l["chunk_shape"], chunk, "{l}");
    assert_eq!(l["data_type"], json!(data_type), "{l}");
}

fn assert_created_headers(reply: &Reply, body: &Value) {
    let id = body["id"].as_str().expect("id");
    assert_eq!(
        reply.header(header::LOCATION),
        format!("/api/datasets/{id}")
    );
    assert_eq!(
        reply.header(header::ETAG),
        format!("\"v{}\"", body["version"])
    );
    assert_eq!(body["version"], json!(1));
}

fn id_of(body: &Value) -> String {
    body["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {body}"))
        .to_owned()
}

fn names_of(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {list}"))
        .iter()
        .map(|d| d["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Registration
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn registers_ome_zarr_0_4_on_zarr_v2() {
    let app = spawn_app();
    let dir = fixture(&app, "cells.ome.zarr", ome_04_v2);
    let reply = app
        .register("cells", &dir.to_string_lossy(), "public")
        .await;
    let d = reply.ok(StatusCode::CREATED);
    assert_created_headers(&reply, &d);

    assert_eq!(d["name"], "cells");
    assert_eq!(
        d["display_name"], "cells-v2",
        "the OME name is the default display name"
    );
    assert_eq!(d["zarr_format"], "2");
    assert_eq!(d["ome_version"], "0.4");
    assert_eq!(d["visibility"], "public");
    assert_eq!(d["storage"], format!("file://{}", dir.display()));
    let id = id_of(&d);
    assert_eq!(d["data_url"], format!("{BASE_URL}/data/{id}/"));

    let layers = d["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "{d}");
    let image = &layers[0];
    assert_eq!(image["name"], "cells-v2");
    assert_eq!(image["kind"], "image");
    assert_eq!(image["path"], "");
    assert_eq!(image["axes"], json!(["c", "y", "x"]));
    assert_eq!(image["units"], json!(["", "micrometer", "micrometer"]));
    let levels = image["levels"].as_array().expect("levels");
    assert_eq!(levels.len(), 2);
    assert_level(
        &levels[0],
        "0",
        level(&[2, 512, 512], &[1, 256, 256]),
        "uint16",
    );
    assert_level(
        &levels[1],
        "1",
        level(&[2, 256, 256], &[1, 128, 128]),
        "uint16",
    );
    assert_eq!(levels[0]["codecs"], json!(["zstd"]));
    assert_eq!(levels[1]["codecs"], json!(["gzip"]));
    assert_eq!(levels[0]["scale"], json!([1.0, 0.5, 0.5]));
    assert!(levels[0].get("translation").is_none(), "{}", levels[0]);
    assert_eq!(levels[1]["scale"], json!([1.0, 1.0, 1.0]));
    assert_eq!(levels[1]["translation"], json!([0.0, 0.25, 0.25]));
    for l in levels {
        assert!(
            l.get("shard_shape").is_none(),
            "v2 arrays are never sharded: {l}"
        );
    }

    // The stored record is what GET shows, with the same ETag.
    let got = app.get(&format!("/api/datasets/{id}"), Who::Admin).await;
    assert_eq!(got.ok(StatusCode::OK), d);
    assert_eq!(got.header(header::ETAG), "\"v1\"");
}

#[tokio::test]
async fn registers_ome_zarr_0_5_with_sharded_labels() {
    let app = spawn_app();
    let dir = fixture(&app, "embryo.ome.zarr", ome_05_v3);
    let reply = app
        .post(
            "/api/datasets",
            Who::Admin,
            &json!({"name": "embryo", "url": format!("file://{}", dir.display()), "display_name": "Embryo", "description": "E12"}),
        )
        .await;
    let d = reply.ok(StatusCode::CREATED);
    assert_created_headers(&reply, &d);
    assert_eq!(d["zarr_format"], "3");
    assert_eq!(d["ome_version"], "0.5");
    assert_eq!(d["display_name"], "Embryo");
    assert_eq!(d["description"], "E12");
    assert_eq!(d["visibility"], "private", "private is the default");
    assert_eq!(d["featured"], false);
    assert!(
        d.get("data_url").is_none(),
        "a private dataset has no public data URL: {d}"
    );

    let layers = d["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 2, "image and label image: {d}");
    let image = &layers[0];
    assert_eq!(image["name"], "embryo");
    assert_eq!(image["kind"], "image");
    assert_eq!(image["axes"], json!(["z", "y", "x"]));
    assert_eq!(
        image["units"],
        json!(["micrometer", "micrometer", "micrometer"])
    );
    let levels = image["levels"].as_array().expect("levels");
    assert_eq!(levels.len(), 2);
    assert_level(
        &levels[0],
        "s0",
        level(&[64, 128, 128], &[32, 64, 64]),
        "float32",
    );
    assert_level(
        &levels[1],
        "s1",
        level(&[32, 64, 64], &[32, 64, 64]),
        "float32",
    );
    assert_eq!(levels[0]["codecs"], json!(["bytes", "zstd"]));
    assert_eq!(levels[0]["scale"], json!([0.5, 0.25, 0.25]));
    assert_eq!(levels[1]["scale"], json!([1.0, 0.5, 0.5]));
    assert_eq!(levels[1]["translation"], json!([0.25, 0.125, 0.125]));
    assert!(levels[0].get("shard_shape").is_none());

    let labels = &layers[1];
    assert_eq!(labels["name"], "nuclei");
    assert_eq!(labels["kind"], "labels");
    assert_eq!(labels["path"], "labels/nuclei");
    let label_levels = labels["levels"].as_array().expect("label levels");
    assert_eq!(label_levels.len(), 1);
    let l0 = &label_levels[0];
    // For a sharded array the chunk is the inner chunk a reader fetches; the shard is the object.
    assert_level(
        l0,
        "labels/nuclei/0",
        level(&[64, 128, 128], &[32, 64, 64]),
        "uint32",
    );
    assert_eq!(l0["shard_shape"], json!([64, 128, 128]));
    assert_eq!(l0["codecs"], json!(["sharding_indexed", "bytes", "zstd"]));
    assert_eq!(l0["scale"], json!([0.5, 0.25, 0.25]));
}

#[tokio::test]
async fn registers_a_plain_v3_array_at_the_root() {
    let app = spawn_app();
    let dir = fixture(&app, "plane.zarr", plain_v3_array);
    let reply = app
        .register("plane", &dir.to_string_lossy(), "private")
        .await;
    let d = reply.ok(StatusCode::CREATED);
    assert_created_headers(&reply, &d);
    assert_eq!(d["zarr_format"], "3");
    assert!(d.get("ome_version").is_none(), "no OME metadata: {d}");
    assert_eq!(
        d["display_name"], "plane",
        "the name is the default display name"
    );
    assert!(d.get("data_url").is_none());
    let layers = d["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0]["kind"], "array");
    assert_eq!(layers[0]["path"], "");
    assert_eq!(layers[0]["axes"], json!(["y", "x"]));
    let levels = layers[0]["levels"].as_array().expect("levels");
    assert_eq!(levels.len(), 1);
    assert_level(&levels[0], "", level(&[100, 200], &[50, 100]), "int16");
    assert_eq!(levels[0]["codecs"], json!(["bytes", "gzip"]));
    assert!(levels[0].get("scale").is_none());
    assert!(levels[0].get("shard_shape").is_none());
}

#[tokio::test]
async fn registers_a_plain_v2_array_at_the_root() {
    let app = spawn_app();
    let dir = fixture(&app, "plane-v2.zarr", |d| {
        write_json(
            d,
            ".zarray",
            &v2_array(
                &[30, 40, 50],
                &[10, 20, 25],
                "<i4",
                &json!({"id": "zstd", "level": 1}),
            ),
        );
    });
    let reply = app
        .register("plane-v2", &dir.to_string_lossy(), "public")
        .await;
    let d = reply.ok(StatusCode::CREATED);
    assert_created_headers(&reply, &d);
    assert_eq!(d["zarr_format"], "2");
    assert!(d.get("ome_version").is_none(), "no OME metadata: {d}");
    assert_eq!(d["display_name"], "plane-v2");
    assert_eq!(d["data_url"], format!("{BASE_URL}/data/{}/", id_of(&d)));
    let layers = d["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0]["kind"], "array");
    assert_eq!(layers[0]["path"], "");
    let levels = layers[0]["levels"].as_array().expect("levels");
    assert_eq!(levels.len(), 1);
    assert_level(&levels[0], "", level(&[30, 40, 50], &[10, 20, 25]), "int32");
    assert_eq!(levels[0]["codecs"], json!(["zstd"]));
}

#[tokio::test]
async fn registers_a_plain_v2_group_of_arrays() {
    let app = spawn_app();
    let dir = fixture(&app, "group.zarr", plain_v2_group);
    let reply = app
        .register("group", &dir.to_string_lossy(), "public")
        .await;
    let d = reply.ok(StatusCode::CREATED);
    assert_created_headers(&reply, &d);
    assert_eq!(d["zarr_format"], "2");
    assert!(d.get("ome_version").is_none());
    assert_eq!(d["data_url"], format!("{BASE_URL}/data/{}/", id_of(&d)));
    let mut layers = d["layers"].as_array().expect("layers").clone();
    layers.sort_by_key(|l| l["name"].as_str().unwrap_or_default().to_owned());
    assert_eq!(layers.len(), 2, "{d}");
    let (mask, raw) = (&layers[0], &layers[1]);
    assert_eq!(mask["name"], "mask");
    assert_eq!(mask["kind"], "array");
    assert_eq!(mask["path"], "mask");
    assert_level(
        &mask["levels"][0],
        "mask",
        level(&[10, 20], &[10, 20]),
        "uint8",
    );
    assert_eq!(mask["levels"][0]["codecs"], json!(["zstd"]));
    assert_eq!(raw["name"], "raw");
    assert_level(
        &raw["levels"][0],
        "raw",
        level(&[10, 20], &[5, 10]),
        "float32",
    );
    assert_eq!(
        raw["levels"][0]["codecs"],
        json!([]),
        "no compressor: no codecs"
    );
    for l in [mask, raw] {
        assert_eq!(l["levels"].as_array().map(Vec::len), Some(1));
    }
}

#[tokio::test]
async fn rejects_hierarchies_without_valid_metadata() {
    let app = spawn_app();
    let keep = app
        .registered("keep", &fixture(&app, "keep", plain_v2_group), "private")
        .await;
    let before = app.stored().await;
    assert_eq!(before.len(), 1);

    let image_3d = v3_array(
        &[8, 8, 8],
        &[8, 8, 8],
        "uint8",
        &bytes_zstd(),
        &["z", "y", "x"],
    );
    let image_2d = v3_array(&[8, 8], &[8, 8], "uint8", &bytes_zstd(), &["y", "x"]);
    let cases: Vec<(&str, PathBuf, &str)> = vec![
        // (e) an empty directory
        ("empty", fixture(&app, "empty", |_| {}), "no zarr metadata"),
        // a path below the root that does not exist at all
        (
            "missing",
            app.root.join("does-not-exist"),
            "no zarr metadata",
        ),
        // (f) zarr.json that is not JSON
        (
            "badjson",
            fixture(&app, "badjson", |d| {
                write_text(d, "zarr.json", "{\"zarr_format\": 3, \"node_type\": ")
            }),
            "zarr.json",
        ),
        // valid JSON that is not Zarr metadata
        (
            "notzarr",
            fixture(&app, "notzarr", |d| {
                write_json(d, "zarr.json", &json!({"hello": "world"}))
            }),
            "invalid metadata",
        ),
        // (g) the multiscales name an array that is not there
        (
            "missingarray",
            fixture(&app, "missingarray", |d| {
                ome_05_image(d, &["0", "1"], &axes_zyx(), &[("0", image_3d.clone())])
            }),
            "array '1' has no metadata",
        ),
        // (h) three axes, two-dimensional array
        (
            "axesmismatch",
            fixture(&app, "axesmismatch", |d| {
                ome_05_image(d, &["0"], &axes_zyx(), &[("0", image_2d.clone())])
            }),
            "has 2 dimensions but the multiscales name 3 axes",
        ),
        // multiscales with no datasets
        (
            "nolevels",
            fixture(&app, "nolevels", |d| ome_05_image(d, &[], &axes_zyx(), &[])),
            "list no datasets",
        ),
        // a dataset path that climbs out of the hierarchy
        (
            "escape",
            fixture(&app, "escape", |d| {
                ome_05_image(d, &["../keep"], &json!([{"name": "y"}, {"name": "x"}]), &[])
            }),
            "not a plain relative path",
        ),
        // a group without any array
        (
            "emptygroup",
            fixture(&app, "emptygroup", |d| {
                write_json(d, "zarr.json", &v3_group(&json!({})))
            }),
            "no arrays",
        ),
    ];
    for (name, path, needle) in cases {
        let reply = app.register(name, &path.to_string_lossy(), "public").await;
        let detail = reply.problem_about(StatusCode::UNPROCESSABLE_ENTITY, needle);
        assert!(!detail.contains("internal"), "{name}: {detail}");
        app.assert_unchanged(&before, name).await;
        app.assert_name_free(name).await;
    }
    // The rejected names can be used once there is a valid hierarchy behind them.
    let later = app
        .registered(
            "empty",
            &fixture(&app, "empty-fixed", plain_v2_group),
            "private",
        )
        .await;
    assert_ne!(id_of(&later), id_of(&keep));
}

#[tokio::test]
async fn rejects_storage_urls_that_are_malformed_or_outside_the_roots() {
    let app = spawn_app();
    app.registered("keep", &fixture(&app, "keep", plain_v2_group), "private")
        .await;
    let before = app.stored().await;

    // A valid hierarchy, but outside every data root.
    let outside = app.outside.join("elsewhere.zarr");
    std::fs::create_dir_all(&outside).expect("outside fixture");
    plain_v2_group(&outside);
    let reply = app
        .register("outside", &outside.to_string_lossy(), "private")
        .await;
    reply.problem_about(StatusCode::UNPROCESSABLE_ENTITY, "outside");
    app.assert_unchanged(&before, "outside the roots").await;

    // A symlink inside the root that leads outside it.
    #[cfg(unix)]
    {
        let link = app.root.join("sneaky");
        std::os::unix::fs::symlink(&outside, &link).expect("symlink");
        let reply = app
            .register("sneaky", &link.to_string_lossy(), "private")
            .await;
        reply.problem_about(StatusCode::UNPROCESSABLE_ENTITY, "outside");
        app.assert_unchanged(&before, "symlink out of the roots")
            .await;
    }

    let bad_requests = [
        ("s3://Bad_Bucket", "bucket"),
        ("s3://Bad_Bucket/data.zarr", "bucket"),
        ("relative/path.zarr", "storage url"),
        ("", "storage url"),
        ("http://example.org/data.zarr", "storage url"),
        ("s3://lab-data/a//b", "prefix"),
    ];
    for (url, needle) in bad_requests {
        let reply = app.register("bad", url, "private").await;
        reply.problem_about(StatusCode::BAD_REQUEST, needle);
        app.assert_unchanged(&before, url).await;
    }
    // `..` is refused before anything is resolved, even when it would land inside the root.
    let traversal = format!("{}/keep/../keep", app.root.display());
    app.register("bad", &traversal, "private")
        .await
        .problem_about(StatusCode::BAD_REQUEST, "..");
    app.assert_unchanged(&before, "traversal").await;
    app.assert_name_free("bad").await;
}

// ---------------------------------------------------------------------------------------------
// 2. Authentication and visibility
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn management_routes_require_the_admin_key() {
    let app = spawn_app();
    let d = app
        .registered("cells", &fixture(&app, "cells", ome_04_v2), "public")
        .await;
    let id = id_of(&d);
    let before = app.stored().await;
    let body = json!({"name": "other", "url": app.root.join("cells").to_string_lossy()});

    for who in [Who::Anonymous, Who::WrongKey] {
        let register = app.post("/api/datasets", who, &body).await;
        register.problem(StatusCode::UNAUTHORIZED);
        assert_eq!(
            register.header(header::WWW_AUTHENTICATE),
            "Bearer",
            "{who:?}"
        );
        let list = app.get("/api/datasets", who).await;
        list.problem(StatusCode::UNAUTHORIZED);
        assert_eq!(list.header(header::WWW_AUTHENTICATE), "Bearer", "{who:?}");
        app.assert_unchanged(&before, &format!("{who:?} register/list"))
            .await;
        app.assert_name_free("other").await;
    }

    // Changing a public dataset or managing its links needs the key too.
    for who in [Who::Anonymous, Who::WrongKey] {
        let uri = format!("/api/datasets/{id}");
        let reply = app
            .patch_as(who, &uri, None, &json!({"visibility": "private"}))
            .await;
        reply.problem(StatusCode::UNAUTHORIZED);
        assert_eq!(reply.header(header::WWW_AUTHENTICATE), "Bearer", "{who:?}");
        app.post(&format!("/api/datasets/{id}/links"), who, &json!({}))
            .await
            .problem(StatusCode::UNAUTHORIZED);
        app.get(&format!("/api/datasets/{id}/links"), who)
            .await
            .problem(StatusCode::UNAUTHORIZED);
        app.assert_unchanged(&before, &format!("{who:?}")).await;
    }

    // A wrong key is refused even where anonymous access would be allowed.
    app.get(&format!("/api/datasets/{id}"), Who::WrongKey)
        .await
        .problem(StatusCode::UNAUTHORIZED);
    // Other authorization schemes are refused, not treated as anonymous.
    for auth in ["Basic YWRtaW46YWRtaW4=", "Bearer ", ADMIN_KEY, "Bearer  "] {
        let reply = app
            .send(
                Request::get("/api/datasets")
                    .header(header::AUTHORIZATION, auth)
                    .body(Body::empty())
                    .expect("request"),
            )
            .await;
        reply.problem(StatusCode::UNAUTHORIZED);
        assert_eq!(reply.header(header::WWW_AUTHENTICATE), "Bearer");
    }
    // And the right key works, with either spelling of the scheme.
    let reply = app
        .send(
            Request::get("/api/datasets")
                .header(header::AUTHORIZATION, format!("bearer {ADMIN_KEY}"))
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(names_of(&reply.ok(StatusCode::OK)), ["cells"]);
    app.assert_unchanged(&before, "auth checks").await;
}

#[tokio::test]
async fn anonymous_callers_see_public_datasets_only() {
    let app = spawn_app();
    let public = app
        .registered("open", &fixture(&app, "open", ome_04_v2), "public")
        .await;
    let private = app
        .registered("closed", &fixture(&app, "closed", ome_05_v3), "private")
        .await;

    let reply = app
        .get(&format!("/api/datasets/{}", id_of(&public)), Who::Anonymous)
        .await;
    let seen = reply.ok(StatusCode::OK);
    assert_eq!(without_access(&seen), without_access(&public));
    assert_eq!(seen["access"]["relation"], "public");
    assert_eq!(seen["access"]["can"]["update"], false);
    assert_eq!(reply.header(header::ETAG), "\"v1\"");
    assert_eq!(
        seen["data_url"],
        format!("{BASE_URL}/data/{}/", id_of(&public))
    );

    // A private dataset does not exist for an anonymous caller: same answer as an unknown id.
    let hidden = app
        .get(
            &format!("/api/datasets/{}", id_of(&private)),
            Who::Anonymous,
        )
        .await;
    let hidden_detail = hidden.problem(StatusCode::NOT_FOUND);
    let unknown = app
        .get("/api/datasets/aaaaaaaaaaaaaaaa", Who::Anonymous)
        .await;
    assert_eq!(
        unknown.problem(StatusCode::NOT_FOUND),
        hidden_detail,
        "hidden and unknown must look alike"
    );

    // The admin sees both.
    app.get(&format!("/api/datasets/{}", id_of(&private)), Who::Admin)
        .await
        .ok(StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// 3. Bad input
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn bad_request_bodies_are_problems_and_change_nothing() {
    let app = spawn_app();
    let d = app
        .registered("cells", &fixture(&app, "cells", ome_04_v2), "private")
        .await;
    let id = id_of(&d);
    let url = app.root.join("cells").to_string_lossy().into_owned();
    let before = app.stored().await;
    let dataset_uri = format!("/api/datasets/{id}");
    let links_uri = format!("/api/datasets/{id}/links");

    // Malformed JSON → 400, on every route with a body.
    for (method, uri) in [
        (Method::POST, "/api/datasets"),
        (Method::PATCH, dataset_uri.as_str()),
        (Method::POST, links_uri.as_str()),
    ] {
        for text in ["{", "not json", "[", ""] {
            let reply = app
                .raw(
                    method.clone(),
                    uri,
                    Who::Admin,
                    Some("application/json"),
                    text,
                )
                .await;
            reply.problem(StatusCode::BAD_REQUEST);
            app.assert_unchanged(&before, &format!("{method} {uri} {text:?}"))
                .await;
        }
    }
    let malformed = app
        .raw(
            Method::POST,
            "/api/datasets",
            Who::Admin,
            Some("application/json"),
            "{\"name\": ",
        )
        .await;
    malformed.problem_about(StatusCode::BAD_REQUEST, "malformed JSON");

    // Well-formed JSON of the wrong shape → 422.
    let wrong: Vec<(&str, Value, &str)> = vec![
        ("/api/datasets", json!({"name": 5, "url": url}), "name"),
        ("/api/datasets", json!({"name": "x", "url": ["a"]}), "url"),
        (
            "/api/datasets",
            json!({"name": "x", "url": url, "visibility": "secret"}),
            "visibility",
        ),
        (
            "/api/datasets",
            json!({"name": "x", "url": url, "featured": "yes"}),
            "featured",
        ),
        ("/api/datasets", json!({"url": url}), "name"),
        (
            "/api/datasets",
            json!({"name": "x", "url": url, "owner": "me"}),
            "owner",
        ),
        ("/api/datasets", json!([1, 2, 3]), "invalid request body"),
        (
            "/api/datasets",
            json!("just a string"),
            "invalid request body",
        ),
        (links_uri.as_str(), json!({"label": 7}), "label"),
        (
            links_uri.as_str(),
            json!({"expires_in_seconds": -5}),
            "expires_in_seconds",
        ),
        (
            links_uri.as_str(),
            json!({"expires_at": "next tuesday"}),
            "expires_at",
        ),
        (
            links_uri.as_str(),
            json!({"token": "choose-my-own"}),
            "token",
        ),
    ];
    for (uri, body, needle) in wrong {
        let reply = app.post(uri, Who::Admin, &body).await;
        reply.problem_about(StatusCode::UNPROCESSABLE_ENTITY, needle);
        app.assert_unchanged(&before, &format!("POST {uri} {body}"))
            .await;
    }
    for body in [
        json!({"visibility": "secret"}),
        json!({"featured": null, "name": "renamed"}),
        json!({"description": ["x"]}),
        json!({"featured": "yes"}),
    ] {
        app.patch(&dataset_uri, None, &body)
            .await
            .problem(StatusCode::UNPROCESSABLE_ENTITY);
        app.assert_unchanged(&before, &format!("PATCH {body}"))
            .await;
    }
    // Values the types allow but the rules do not.
    let invalid: Vec<(&str, Value, StatusCode, &str)> = vec![
        (
            "/api/datasets",
            json!({"name": "has space", "url": url}),
            StatusCode::BAD_REQUEST,
            "dataset name",
        ),
        (
            "/api/datasets",
            json!({"name": ".hidden", "url": url}),
            StatusCode::BAD_REQUEST,
            "dataset name",
        ),
        (
            "/api/datasets",
            json!({"name": "x".repeat(101), "url": url}),
            StatusCode::BAD_REQUEST,
            "dataset name",
        ),
        (
            "/api/datasets",
            json!({"name": "ok", "url": url, "display_name": "d".repeat(201)}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "display_name",
        ),
        (
            "/api/datasets",
            json!({"name": "ok", "url": url, "description": "bell\u{7}"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "control",
        ),
    ];
    for (uri, body, status, needle) in invalid {
        app.post(uri, Who::Admin, &body)
            .await
            .problem_about(status, needle);
        app.assert_unchanged(&before, &format!("POST {uri} {body}"))
            .await;
    }
    app.patch(
        &dataset_uri,
        None,
        &json!({"description": "x".repeat(10_001)}),
    )
    .await
    .problem_about(StatusCode::UNPROCESSABLE_ENTITY, "description");
    app.assert_unchanged(&before, "overlong description").await;

    // No or a non-JSON content type → 415.
    let body = json!({"name": "ct", "url": url}).to_string();
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let reply = app
            .raw(Method::POST, "/api/datasets", Who::Admin, ct, body.clone())
            .await;
        reply.problem_about(StatusCode::UNSUPPORTED_MEDIA_TYPE, "application/json");
        app.raw(
            Method::PATCH,
            &dataset_uri,
            Who::Admin,
            ct,
            r#"{"description":"x"}"#,
        )
        .await
        .problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);
        app.raw(Method::POST, &links_uri, Who::Admin, ct, "{}")
            .await
            .problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);
        app.assert_unchanged(&before, &format!("content type {ct:?}"))
            .await;
    }
    // A charset parameter is still JSON.
    let reply = app
        .raw(
            Method::POST,
            "/api/datasets",
            Who::Admin,
            Some("application/json; charset=utf-8"),
            body,
        )
        .await;
    reply.ok(StatusCode::CREATED);
    let before = app.stored().await;

    // Bodies over 64 KiB → 413, even when their JSON would be acceptable.
    let huge =
        json!({"name": "huge", "url": url, "description": "x".repeat(64 * 1024)}).to_string();
    assert!(huge.len() > 64 * 1024);
    app.raw(
        Method::POST,
        "/api/datasets",
        Who::Admin,
        Some("application/json"),
        huge,
    )
    .await
    .problem(StatusCode::PAYLOAD_TOO_LARGE);
    let huge_patch = json!({"description": "x".repeat(64 * 1024)}).to_string();
    app.raw(
        Method::PATCH,
        &dataset_uri,
        Who::Admin,
        Some("application/json"),
        huge_patch,
    )
    .await
    .problem(StatusCode::PAYLOAD_TOO_LARGE);
    let huge_link = json!({"label": "x".repeat(64 * 1024)}).to_string();
    app.raw(
        Method::POST,
        &links_uri,
        Who::Admin,
        Some("application/json"),
        huge_link,
    )
    .await
    .problem(StatusCode::PAYLOAD_TOO_LARGE);
    app.assert_unchanged(&before, "oversized bodies").await;
    app.assert_name_free("huge").await;
}

/// Well-formed JSON with a number where an enum's string belongs is a type error (422) like any
/// other, not "malformed JSON".
#[tokio::test]
async fn a_number_for_an_enum_field_is_a_type_error() {
    let app = spawn_app();
    let d = app
        .registered("cells", &fixture(&app, "cells", ome_04_v2), "private")
        .await;
    let url = app.root.join("cells").to_string_lossy().into_owned();
    let before = app.stored().await;
    app.post(
        "/api/datasets",
        Who::Admin,
        &json!({"name": "x", "url": url, "visibility": 1}),
    )
    .await
    .problem_about(StatusCode::UNPROCESSABLE_ENTITY, "visibility");
    app.patch(
        &format!("/api/datasets/{}", id_of(&d)),
        None,
        &json!({"visibility": true}),
    )
    .await
    .problem_about(StatusCode::UNPROCESSABLE_ENTITY, "visibility");
    app.assert_unchanged(&before, "enum given as a number")
        .await;
}

#[tokio::test]
async fn bad_paths_and_queries_are_problems() {
    let app = spawn_app();
    let d = app
        .registered("cells", &fixture(&app, "cells", ome_04_v2), "public")
        .await;
    let id = id_of(&d);
    let before = app.stored().await;

    // Ids that cannot be dataset ids, and a well-formed one that names nothing: 404 everywhere.
    for bad in [
        "not-an-id",
        "AAAAAAAAAAAAAAAA",
        "aaaaaaaaaaaaaaa1",
        "aaaaaaaaaaaaaaaaa",
        "%2e%2e",
        "aaaaaaaaaaaaaaaa",
    ] {
        let uri = format!("/api/datasets/{bad}");
        app.get(&uri, Who::Admin)
            .await
            .problem_about(StatusCode::NOT_FOUND, "no such dataset");
        app.get(&uri, Who::Anonymous)
            .await
            .problem(StatusCode::NOT_FOUND);
        app.patch(&uri, None, &json!({"description": "x"}))
            .await
            .problem(StatusCode::NOT_FOUND);
        app.get(&format!("{uri}/links"), Who::Admin)
            .await
            .problem(StatusCode::NOT_FOUND);
        app.post(&format!("{uri}/links"), Who::Admin, &json!({}))
            .await
            .problem(StatusCode::NOT_FOUND);
        app.delete(&format!("{uri}/links/aaaaaaaaaaaaaaaa"), Who::Admin)
            .await
            .problem(StatusCode::NOT_FOUND);
        app.assert_unchanged(&before, &uri).await;
    }

    // `limit` must be 1–100 and a number.
    for limit in ["0", "101", "-1", "abc", "1.5", "99999999999999999999999"] {
        let reply = app
            .get(&format!("/api/datasets?limit={limit}"), Who::Admin)
            .await;
        reply.problem(StatusCode::BAD_REQUEST);
    }
    app.get("/api/datasets?limit=0", Who::Admin)
        .await
        .problem_about(StatusCode::BAD_REQUEST, "limit");
    // Unknown query parameters are refused rather than ignored.
    app.get("/api/datasets?page=2", Who::Admin)
        .await
        .problem(StatusCode::BAD_REQUEST);

    // Cursors that this service did not hand out.
    let crafted = [
        "garbage!!".to_owned(),
        "e30".to_owned(),                                             // `{}`
        base64url(br#"["only-one-part"]"#),                           // wrong arity
        base64url(b"[1,2,3]"),                                        // wrong types
        base64url("[\"\u{10FFFF}\u{10FFFF}\",\"\",\"\"]".as_bytes()), // past the end of the index
    ];
    for cursor in &crafted {
        let reply = app
            .get(
                &format!("/api/datasets?limit=1&cursor={cursor}"),
                Who::Admin,
            )
            .await;
        if reply.status == StatusCode::OK {
            // A well-formed cursor beyond the last item may mean "nothing more" — but never a 500.
            assert_eq!(
                reply.json()["items"],
                json!([]),
                "cursor {cursor}: {}",
                reply.text()
            );
        } else {
            reply.problem_about(StatusCode::BAD_REQUEST, "cursor");
        }
    }
    app.get("/api/datasets?cursor=garbage!!", Who::Admin)
        .await
        .problem_about(StatusCode::BAD_REQUEST, "invalid cursor");

    // Unknown routes, and known paths with methods they do not have.
    for (method, uri) in [
        (Method::GET, "/api/nothing-here"),
        (Method::GET, "/"),
        (Method::POST, "/api/datasets/extra/segments/here"),
        (
            Method::GET,
            &*format!("/api/datasets/{id}/links/aaaaaaaaaaaaaaaa/extra"),
        ),
    ] {
        let reply = app.call(method.clone(), uri, Who::Admin, None).await;
        reply.problem_about(StatusCode::NOT_FOUND, "no such route");
    }
    for (method, uri) in [
        (Method::PUT, "/api/datasets".to_owned()),
        (Method::DELETE, format!("/api/datasets/{id}")),
        (
            Method::GET,
            format!("/api/datasets/{id}/links/aaaaaaaaaaaaaaaa"),
        ),
    ] {
        let reply = app.call(method.clone(), &uri, Who::Admin, None).await;
        assert_eq!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {uri}"
        );
        reply.problem(StatusCode::METHOD_NOT_ALLOWED);
        assert!(
            !reply.header(header::ALLOW).is_empty(),
            "405 names the allowed methods"
        );
    }
    app.assert_unchanged(&before, "bad paths and queries").await;
}

/// URL-safe base64 without padding (for crafting cursors).
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// 4. Names are unique
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn duplicate_names_conflict_regardless_of_case() {
    let app = spawn_app();
    let first = app
        .registered("Cells", &fixture(&app, "cells", ome_04_v2), "private")
        .await;
    let other_dir = fixture(&app, "other", plain_v2_group);
    let before = app.stored().await;
    for name in ["Cells", "cells", "CELLS", "cElLs"] {
        let reply = app
            .register(name, &other_dir.to_string_lossy(), "public")
            .await;
        reply.problem_about(StatusCode::CONFLICT, "already exists");
        app.assert_unchanged(&before, name).await;
    }
    // The original keeps its spelling, and a different name over the same storage is fine.
    assert_eq!(app.stored().await[0].0.name.as_str(), "Cells");
    assert_eq!(first["name"], "Cells");
    app.registered("cells-2", &other_dir, "private").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_registrations_of_one_name_create_one_dataset() {
    let app = Arc::new(spawn_app());
    let dirs: Vec<PathBuf> = (0..8)
        .map(|i| fixture(&app, &format!("race-{i}"), ome_05_v3))
        .collect();
    for round in 0..3 {
        let name = format!("race-{round}");
        let tasks: Vec<_> = dirs
            .iter()
            .enumerate()
            .map(|(i, dir)| {
                let app = app.clone();
                // Alternate the case: uniqueness is case-insensitive.
                let spelled = if i % 2 == 0 {
                    name.clone()
                } else {
                    name.to_uppercase()
                };
                let url = dir.to_string_lossy().into_owned();
                tokio::spawn(async move { app.register(&spelled, &url, "private").await })
            })
            .collect();
        let mut created = 0;
        for task in tasks {
            let reply = task.await.expect("task");
            if reply.status == StatusCode::CREATED {
                created += 1;
            } else {
                reply.problem(StatusCode::CONFLICT);
            }
        }
        assert_eq!(
            created, 1,
            "round {round}: exactly one registration may win"
        );
    }
    let stored = app.stored().await;
    assert_eq!(stored.len(), 3, "{stored:?}");
    let mut names: Vec<String> = stored
        .iter()
        .map(|(d, _)| d.name.as_str().to_lowercase())
        .collect();
    names.sort();
    assert_eq!(names, ["race-0", "race-1", "race-2"]);
}

// ---------------------------------------------------------------------------------------------
// 5. Updates
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn patch_updates_fields_and_honours_if_match() {
    let app = spawn_app();
    let d = app
        .registered("cells", &fixture(&app, "cells", ome_04_v2), "private")
        .await;
    let id = id_of(&d);
    let uri = format!("/api/datasets/{id}");

    // No If-Match: the change applies.
    let reply = app
        .patch(
            &uri,
            None,
            &json!({"description": "HeLa cells", "display_name": "HeLa"}),
        )
        .await;
    let v2 = reply.ok(StatusCode::OK);
    assert_eq!(reply.header(header::ETAG), "\"v2\"");
    assert_eq!(v2["description"], "HeLa cells");
    assert_eq!(v2["display_name"], "HeLa");
    assert_eq!(v2["visibility"], "private");
    assert_eq!(v2["version"], 2);
    assert_eq!(
        v2["layers"], d["layers"],
        "layers are not touched by an update"
    );
    assert_eq!(v2["created_at"], d["created_at"]);
    assert!(v2.get("data_url").is_none());

    // With the current ETag: applies; visibility change makes it public at once, also for
    // this instance's access cache (which the chunk function reads).
    let dataset_id = shared::domain::DatasetId::parse(&id).expect("dataset id");
    let cached = app
        .services
        .resolve_dataset(&dataset_id)
        .await
        .expect("resolve");
    assert_eq!(
        cached.map(|r| r.dataset.visibility),
        Some(shared::domain::Visibility::Private)
    );
    let reply = app
        .patch(
            &uri,
            Some("\"v2\""),
            &json!({"visibility": "public", "featured": true}),
        )
        .await;
    let v3 = reply.ok(StatusCode::OK);
    assert_eq!(reply.header(header::ETAG), "\"v3\"");
    assert_eq!(v3["visibility"], "public");
    assert_eq!(v3["featured"], true);
    assert_eq!(v3["description"], "HeLa cells", "fields not named are kept");
    let cached = app
        .services
        .resolve_dataset(&dataset_id)
        .await
        .expect("resolve");
    assert_eq!(
        cached.map(|r| r.dataset.visibility),
        Some(shared::domain::Visibility::Public)
    );
    assert_eq!(v3["data_url"], format!("{BASE_URL}/data/{id}/"));
    let anon = app.get(&uri, Who::Anonymous).await;
    let anon_view = anon.ok(StatusCode::OK);
    assert_eq!(without_access(&anon_view), without_access(&v3));
    assert_eq!(anon_view["access"]["relation"], "public");
    assert_eq!(anon.header(header::ETAG), "\"v3\"");
    // Anonymous callers may read it now, but not change it.
    let before = app.stored().await;
    app.patch_as(
        Who::Anonymous,
        &uri,
        Some("\"v3\""),
        &json!({"description": "vandalized"}),
    )
    .await
    .problem(StatusCode::UNAUTHORIZED);
    app.assert_unchanged(&before, "anonymous patch of a public dataset")
        .await;

    // A stale ETag: 409, nothing changes.
    let before = app.stored().await;
    for stale in ["\"v2\"", "\"v1\"", "\"v4\""] {
        let reply = app
            .patch(
                &uri,
                Some(stale),
                &json!({"visibility": "private", "description": "lost"}),
            )
            .await;
        reply.problem(StatusCode::CONFLICT);
        app.assert_unchanged(&before, stale).await;
    }
    // An If-Match that is no ETag of ours: 400, nothing changes.
    for bad in [
        "garbage", "\"\"", "W/\"v3\"", "\"vx\"", "\"v-1\"", "3", "\"vvv3\"",
    ] {
        let reply = app
            .patch(&uri, Some(bad), &json!({"visibility": "private"}))
            .await;
        reply.problem_about(StatusCode::BAD_REQUEST, "If-Match");
        app.assert_unchanged(&before, bad).await;
    }

    // `If-Match: *` matches whatever version is current (RFC 9110).
    let reply = app
        .patch(&uri, Some("*"), &json!({"description": "HeLa cells"}))
        .await;
    let any = reply.ok(StatusCode::OK);
    assert_eq!(any["description"], "HeLa cells");

    // An empty patch changes nothing but the version bookkeeping is consistent.
    let current = format!("\"v{}\"", any["version"]);
    let reply = app.patch(&uri, Some(&current), &json!({})).await;
    let v4 = reply.ok(StatusCode::OK);
    assert_eq!(v4["description"], "HeLa cells");
    assert_eq!(
        reply.header(header::ETAG),
        format!("\"v{}\"", v4["version"])
    );

    // Back to private: anonymous callers lose it immediately.
    let etag = reply.header(header::ETAG).to_owned();
    let reply = app
        .patch(&uri, Some(&etag), &json!({"visibility": "private"}))
        .await;
    let last = reply.ok(StatusCode::OK);
    assert!(last.get("data_url").is_none());
    app.get(&uri, Who::Anonymous)
        .await
        .problem(StatusCode::NOT_FOUND);
    let before = app.stored().await;
    app.patch_as(Who::Anonymous, &uri, None, &json!({"visibility": "public"}))
        .await
        .problem(StatusCode::NOT_FOUND);
    // The ETag of the last change is stale now.
    app.patch(&uri, Some(&etag), &json!({"visibility": "public"}))
        .await
        .problem(StatusCode::CONFLICT);
    app.assert_unchanged(&before, "patches of a private dataset")
        .await;
}

// ---------------------------------------------------------------------------------------------
// 6. Listing
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn listing_pages_through_every_dataset_in_name_order() {
    let app = spawn_app();
    let dir = fixture(&app, "shared-storage", plain_v2_group);
    let names = ["delta", "Alpha", "charlie", "Echo", "bravo"];
    for (i, name) in names.iter().enumerate() {
        let visibility = if i % 2 == 0 { "public" } else { "private" };
        app.registered(name, &dir, visibility).await;
    }
    let expected = ["Alpha", "bravo", "charlie", "delta", "Echo"];

    // One page with everything.
    let all = app
        .get("/api/datasets", Who::Admin)
        .await
        .ok(StatusCode::OK);
    assert_eq!(names_of(&all), expected);
    assert!(all["next_cursor"].is_null(), "{all}");
    for item in all["items"].as_array().expect("items") {
        let public = item["visibility"] == "public";
        assert_eq!(item.get("data_url").is_some(), public, "{item}");
    }

    for limit in [1, 2, 3, 5, 100] {
        let mut seen = Vec::new();
        let mut uri = format!("/api/datasets?limit={limit}");
        let mut pages = 0;
        loop {
            let page = app.get(&uri, Who::Admin).await.ok(StatusCode::OK);
            let items = names_of(&page);
            assert!(
                items.len() <= limit,
                "limit {limit}: page of {}",
                items.len()
            );
            seen.extend(items);
            pages += 1;
            assert!(pages <= names.len() + 1, "pagination does not end");
            match page["next_cursor"].as_str() {
                Some(c) => uri = format!("/api/datasets?limit={limit}&cursor={c}"),
                None => break,
            }
        }
        assert_eq!(seen, expected, "limit {limit}");
    }
}

// ---------------------------------------------------------------------------------------------
// 7. Share links
// ---------------------------------------------------------------------------------------------

fn assert_token(token: &str) {
    assert!(token.len() >= 43, "token of {} characters", token.len());
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "token {token:?} is not URL-safe"
    );
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

#[tokio::test]
async fn share_links_are_created_listed_and_revoked() {
    let app = spawn_app();
    let d = app
        .registered("cells", &fixture(&app, "cells", ome_05_v3), "private")
        .await;
    let id = id_of(&d);
    let links_uri = format!("/api/datasets/{id}/links");

    // No expiry.
    let reply = app
        .post(&links_uri, Who::Admin, &json!({"label": "Reviewer 2"}))
        .await;
    let forever = reply.ok(StatusCode::CREATED);
    assert_eq!(forever["label"], "Reviewer 2");
    assert_eq!(forever["state"], "active");
    assert!(forever["expires_at"].is_null(), "{forever}");
    assert!(forever["revoked_at"].is_null(), "{forever}");
    assert!(
        forever["created_by"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{forever}"
    );
    let t1 = forever["token"].as_str().expect("token").to_owned();
    assert_token(&t1);
    assert_eq!(forever["url"], format!("{BASE_URL}/s/{t1}/"));

    // A lifetime in seconds.
    let start = now();
    let reply = app
        .post(
            &links_uri,
            Who::Admin,
            &json!({"label": "poster", "expires_in_seconds": 3600}),
        )
        .await;
    let hour = reply.ok(StatusCode::CREATED);
    let expires = parse_time(&hour["expires_at"]);
    let delta = (expires - start).whole_seconds();
    assert!(
        (3599..=3602).contains(&delta),
        "expires {delta} s after creation"
    );
    assert_eq!(hour["state"], "active");

    // An absolute expiry (without a label: empty label).
    let at = now() + time::Duration::days(7);
    let reply = app
        .post(&links_uri, Who::Admin, &json!({"expires_at": rfc3339(at)}))
        .await;
    let week = reply.ok(StatusCode::CREATED);
    assert_eq!(week["label"], "");
    assert_eq!(
        parse_time(&week["expires_at"]).unix_timestamp(),
        at.unix_timestamp()
    );

    let tokens: Vec<String> = [&forever, &hour, &week]
        .iter()
        .map(|l| l["token"].as_str().expect("token").to_owned())
        .collect();
    let mut unique = tokens.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 3, "tokens must differ");
    for t in &tokens {
        assert_token(t);
    }

    // A link that has expired (written straight to the catalog: the API refuses past expiries).
    let expired = ShareLink {
        label: "last year".into(),
        created_at: now() - time::Duration::days(2),
        expires_at: Some(now() - time::Duration::days(1)),
        ..ShareLink::new(
            shared::domain::DatasetId::parse(&id).expect("id"),
            shared::domain::OrgId::parse("default").expect("org"),
            LinkToken::generate().hash(),
            "test".into(),
        )
    };
    app.services
        .catalog
        .create_link(&expired)
        .await
        .expect("expired link");

    // Tokens are stored only as hashes, and each resolves to its own link.
    for link in [&forever, &hour, &week] {
        let token = LinkToken::parse(link["token"].as_str().expect("token")).expect("token format");
        let found = app
            .services
            .resolve_link(&token.hash())
            .await
            .expect("resolve");
        let found = found.unwrap_or_else(|| panic!("token of {} does not resolve", link["id"]));
        assert_eq!(found.id.as_str(), link["id"].as_str().expect("id"));
    }

    // Revoke the one-hour link; the others stay as they were, and the revocation reaches this
    // instance's access cache at once.
    let hour_id = hour["id"].as_str().expect("link id").to_owned();
    let reply = app
        .delete(&format!("{links_uri}/{hour_id}"), Who::Admin)
        .await;
    let revoked = reply.ok(StatusCode::OK);
    assert_eq!(revoked["state"], "revoked");
    assert_eq!(revoked["id"], hour_id);
    assert!(revoked.get("token").is_none(), "{revoked}");
    let revoked_at = revoked["revoked_at"].clone();
    assert!(!revoked_at.is_null());
    for (link, revoked) in [(&forever, false), (&hour, true), (&week, false)] {
        let token = LinkToken::parse(link["token"].as_str().expect("token")).expect("token format");
        let found = app
            .services
            .resolve_link(&token.hash())
            .await
            .expect("resolve");
        assert_eq!(
            found.map(|l| l.revoked_at.is_some()),
            Some(revoked),
            "{}",
            link["label"]
        );
    }

    // The listing: every link with its state, never a token or its hash.
    let reply = app.get(&links_uri, Who::Admin).await;
    let list = reply.ok(StatusCode::OK);
    let text = reply.text();
    for t in &tokens {
        assert!(!text.contains(t.as_str()), "the listing leaks a token");
    }
    assert!(
        !text.contains(&expired.token_hash.to_hex()),
        "the listing leaks a token hash"
    );
    let items = list.as_array().expect("a list of links");
    assert_eq!(items.len(), 4, "{list}");
    let state_of = |link_id: &str| -> Value {
        let l = items
            .iter()
            .find(|l| l["id"] == link_id)
            .unwrap_or_else(|| panic!("{link_id} not listed"));
        assert!(
            l.get("token").is_none() && l.get("url").is_none() && l.get("token_hash").is_none(),
            "{l}"
        );
        l["state"].clone()
    };
    assert_eq!(state_of(forever["id"].as_str().expect("id")), "active");
    assert_eq!(state_of(&hour_id), "revoked");
    assert_eq!(state_of(week["id"].as_str().expect("id")), "active");
    assert_eq!(state_of(expired.id.as_str()), "expired");

    // Revoking again is a no-op that answers the same.
    let before = app.stored().await;
    let again = app
        .delete(&format!("{links_uri}/{hour_id}"), Who::Admin)
        .await
        .ok(StatusCode::OK);
    assert_eq!(again["state"], "revoked");
    assert_eq!(
        again["revoked_at"], revoked_at,
        "the first revocation time is kept"
    );
    app.assert_unchanged(&before, "second revocation").await;

    // Unknown or malformed link ids, and a link id of another dataset: 404.
    let other = app
        .registered("other", &fixture(&app, "other", plain_v2_group), "private")
        .await;
    let other_links = format!("/api/datasets/{}/links", id_of(&other));
    let before = app.stored().await;
    for link_id in ["aaaaaaaaaaaaaaaa", "not-a-link", "AAAAAAAAAAAAAAAA"] {
        app.delete(&format!("{links_uri}/{link_id}"), Who::Admin)
            .await
            .problem_about(StatusCode::NOT_FOUND, "no such");
    }
    app.delete(
        &format!("{other_links}/{}", forever["id"].as_str().expect("id")),
        Who::Admin,
    )
    .await
    .problem(StatusCode::NOT_FOUND);
    app.assert_unchanged(&before, "unknown link ids").await;
    assert_eq!(
        app.get(&other_links, Who::Admin).await.ok(StatusCode::OK),
        json!([])
    );
}

#[tokio::test]
async fn link_creation_rejects_bad_expiries_and_labels() {
    let app = spawn_app();
    let d = app
        .registered("cells", &fixture(&app, "cells", ome_04_v2), "private")
        .await;
    let links_uri = format!("/api/datasets/{}/links", id_of(&d));
    app.post(&links_uri, Who::Admin, &json!({"label": "existing"}))
        .await
        .ok(StatusCode::CREATED);
    let before = app.stored().await;

    let future = rfc3339(now() + time::Duration::hours(1));
    let past = rfc3339(now() - time::Duration::hours(1));
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"expires_at": future, "expires_in_seconds": 60}),
            "not both",
        ),
        (json!({"expires_at": past}), "past"),
        (json!({"expires_in_seconds": 0}), "past"),
        (json!({"expires_in_seconds": u64::MAX}), "too large"),
        (json!({"label": "x".repeat(201)}), "label"),
        (json!({"label": "line\u{0}break"}), "control"),
    ];
    for (body, needle) in cases {
        app.post(&links_uri, Who::Admin, &body)
            .await
            .problem_about(StatusCode::UNPROCESSABLE_ENTITY, needle);
        app.assert_unchanged(&before, &body.to_string()).await;
    }
    // The longest label allowed is fine.
    app.post(&links_uri, Who::Admin, &json!({"label": "é".repeat(200)}))
        .await
        .ok(StatusCode::CREATED);
}

#[tokio::test]
async fn links_of_private_datasets_are_hidden_from_anonymous_callers() {
    let app = spawn_app();
    let private = app
        .registered("closed", &fixture(&app, "closed", ome_05_v3), "private")
        .await;
    let public = app
        .registered("open", &fixture(&app, "open", ome_04_v2), "public")
        .await;
    let private_links = format!("/api/datasets/{}/links", id_of(&private));
    let public_links = format!("/api/datasets/{}/links", id_of(&public));
    let link = app
        .post(&private_links, Who::Admin, &json!({"label": "secret"}))
        .await
        .ok(StatusCode::CREATED);
    let link_id = link["id"].as_str().expect("link id");
    let before = app.stored().await;

    // Private: as if it did not exist.
    app.get(&private_links, Who::Anonymous)
        .await
        .problem_about(StatusCode::NOT_FOUND, "no such dataset");
    app.post(&private_links, Who::Anonymous, &json!({"label": "mine"}))
        .await
        .problem(StatusCode::NOT_FOUND);
    app.delete(&format!("{private_links}/{link_id}"), Who::Anonymous)
        .await
        .problem(StatusCode::NOT_FOUND);
    // Public: known to exist, but managing links needs credentials.
    for reply in [
        app.get(&public_links, Who::Anonymous).await,
        app.post(&public_links, Who::Anonymous, &json!({})).await,
    ] {
        reply.problem(StatusCode::UNAUTHORIZED);
        assert_eq!(reply.header(header::WWW_AUTHENTICATE), "Bearer");
    }
    app.assert_unchanged(&before, "anonymous link management")
        .await;
    let listed = app.get(&private_links, Who::Admin).await.ok(StatusCode::OK);
    assert_eq!(listed[0]["state"], "active");
}

// ---------------------------------------------------------------------------------------------
// 8. OpenAPI
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let app = spawn_app();
    let reply = app.get("/api/openapi.json", Who::Anonymous).await;
    let doc = reply.ok(StatusCode::OK);
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "not an OpenAPI 3 document"
    );
    let paths = doc["paths"].as_object().expect("paths");
    let routes = [
        ("/api/datasets", &["get", "post"][..]),
        ("/api/datasets/{id}", &["get", "patch"][..]),
        ("/api/datasets/{id}/links", &["get", "post"][..]),
        ("/api/datasets/{id}/links/{link_id}", &["delete"][..]),
    ];
    for (path, methods) in routes {
        let item = paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not documented"));
        for m in methods {
            let op = item
                .get(*m)
                .unwrap_or_else(|| panic!("{m} {path} is not documented"));
            assert!(
                op.get("responses")
                    .is_some_and(|r| r.as_object().is_some_and(|r| !r.is_empty())),
                "{m} {path}"
            );
        }
    }
    // The served document is current: it has every operation this function generates.
    let generated = serde_json::to_value(datasets::openapi()).expect("generated OpenAPI");
    for (path, item) in generated["paths"].as_object().expect("generated paths") {
        for method in item.as_object().expect("path item").keys() {
            assert!(
                paths.get(path).and_then(|p| p.get(method)).is_some(),
                "{method} {path} is missing from the served document"
            );
        }
    }
    // Problem documents are described.
    assert!(
        doc.pointer("/components/schemas/Problem").is_some(),
        "no Problem schema"
    );
}
