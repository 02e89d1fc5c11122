//! Sharing through the chunk function: sub-path scopes, password-protected links, usage
//! counting off the hot path, Neuroglancer view states and the revocation bound — all through
//! `chunks::router` with `oneshot`, over an embedded store that counts its calls.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration as StdDuration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use shared::Services;
use shared::config::Config;
use shared::domain::{
    Dataset, DatasetId, DatasetName, LayerKind, LinkScope, LinkToken, LinkUsage, OrgId, Password,
    ShareLink, StorageUrl, Visibility, ZarrFormat, now,
};
use shared::neuroglancer::{Layout, ViewParams};
use shared::store::embedded::EmbeddedStore;
use shared::store::metered::{CallCounts, Metered};
use time::Duration;
use tower::ServiceExt;

/// The `Host` the view-state requests carry: sources are absolute URLs on it.
const HOST: &str = "zarr.test";
const ORIGIN: &str = "https://neuroglancer-demo.appspot.com";
const PASSWORD: &str = "violet otter harbour 41";

/// Every fixture array: `(z, y, x)` shape and chunk shape (a 2×2×2 chunk grid).
const SHAPE: [u64; 3] = [4, 8, 8];
const CHUNK: [u64; 3] = [2, 4, 4];
const CHUNK_VOXELS: usize = 32;
const GRID: [[u8; 3]; 8] = [
    [0, 0, 0],
    [0, 0, 1],
    [0, 1, 0],
    [0, 1, 1],
    [1, 0, 0],
    [1, 0, 1],
    [1, 1, 0],
    [1, 1, 1],
];

// ---------------------------------------------------------------------------------------------
// Fixtures: small OME-Zarr hierarchies written as plain files.

fn image_chunk(c: [u8; 3]) -> Vec<u8> {
    let seed = c[0] * 64 + c[1] * 16 + c[2] * 4 + 1;
    (0..CHUNK_VOXELS).map(|i| (i as u8) ^ seed).collect()
}

fn label_chunk(c: [u8; 3]) -> Vec<u8> {
    let label = u32::from(c[0]) * 4 + u32::from(c[1]) * 2 + u32::from(c[2]) + 1;
    (0..CHUNK_VOXELS)
        .flat_map(|_| label.to_le_bytes())
        .collect()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn write_json(path: &Path, v: &Value) {
    write(path, v.to_string().as_bytes());
}

fn axes() -> Value {
    json!([
        {"name": "z", "type": "space", "unit": "micrometer"},
        {"name": "y", "type": "space", "unit": "micrometer"},
        {"name": "x", "type": "space", "unit": "micrometer"}
    ])
}

fn multiscales(name: &str, version: Option<&str>) -> Value {
    let mut ms = json!({
        "name": name,
        "axes": axes(),
        "datasets": [{
            "path": "0",
            "coordinateTransformations": [{"type": "scale", "scale": [1.0, 0.5, 0.5]}]
        }]
    });
    if let Some(v) = version {
        ms["version"] = json!(v);
    }
    json!([ms])
}

fn v3_group(attributes: Value) -> Value {
    json!({"zarr_format": 3, "node_type": "group", "attributes": attributes})
}

fn v3_array(data_type: &str) -> Value {
    json!({
        "zarr_format": 3,
        "node_type": "array",
        "shape": SHAPE,
        "data_type": data_type,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": CHUNK}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0,
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
        "dimension_names": ["z", "y", "x"],
        "attributes": {}
    })
}

fn v3_chunk_key(array: &str, c: [u8; 3]) -> String {
    format!("{array}/c/{}/{}/{}", c[0], c[1], c[2])
}

/// OME-Zarr 0.5 (Zarr v3): an image at the root (level `0`), a label image `labels/cells`
/// (level `labels/cells/0`), and a sibling directory `labels/cellsX` that only shares the
/// prefix's spelling.
fn write_v3(dir: &Path) {
    write_json(
        &dir.join("zarr.json"),
        &v3_group(json!({"ome": {"version": "0.5", "multiscales": multiscales("raw", None)}})),
    );
    write_json(&dir.join("0/zarr.json"), &v3_array("uint8"));
    write_json(
        &dir.join("labels/zarr.json"),
        &v3_group(json!({"ome": {"version": "0.5", "labels": ["cells"]}})),
    );
    write_json(
        &dir.join("labels/cells/zarr.json"),
        &v3_group(json!({"ome": {
            "version": "0.5",
            "multiscales": multiscales("cells", None),
            "image-label": {"version": "0.5"}
        }})),
    );
    write_json(&dir.join("labels/cells/0/zarr.json"), &v3_array("uint32"));
    for c in GRID {
        write(&dir.join(v3_chunk_key("0", c)), &image_chunk(c));
        write(
            &dir.join(v3_chunk_key("labels/cells/0", c)),
            &label_chunk(c),
        );
    }
    write_json(&dir.join("labels/cellsX/zarr.json"), &v3_group(json!({})));
    write(
        &dir.join("labels/cellsX/0/c/0/0/0"),
        b"next door, not shared",
    );
}

/// OME-Zarr 0.4 (Zarr v2): one image at the root with one level `0`.
fn write_v2(dir: &Path) {
    write_json(&dir.join(".zgroup"), &json!({"zarr_format": 2}));
    write_json(
        &dir.join(".zattrs"),
        &json!({"multiscales": multiscales("raw-v2", Some("0.4"))}),
    );
    write_json(
        &dir.join("0/.zarray"),
        &json!({
            "zarr_format": 2,
            "shape": SHAPE,
            "chunks": CHUNK,
            "dtype": "|u1",
            "compressor": null,
            "fill_value": 0,
            "order": "C",
            "filters": null,
            "dimension_separator": "/"
        }),
    );
    for c in GRID {
        write(
            &dir.join(format!("0/{}/{}/{}", c[0], c[1], c[2])),
            &image_chunk(c),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The application under test.

struct App {
    services: Arc<Services>,
    counts: Arc<CallCounts>,
    /// Private, Zarr v3, image plus label image.
    v3: Dataset,
    /// Private, Zarr v2, one image.
    v2: Dataset,
    /// Public, the same storage as `v3`.
    public: Dataset,
    _dir: tempfile::TempDir,
}

fn config_path(c: &Config) -> PathBuf {
    match &c.metadata {
        shared::config::MetadataBackend::Embedded { path } => path.clone(),
        other => panic!("unexpected backend {other:?}"),
    }
}

/// A dataset over `storage`, with the layers `shared::zarr::inspect` reads from the fixture.
async fn register(
    services: &Services,
    storage: PathBuf,
    name: &str,
    visibility: Visibility,
) -> Dataset {
    let url = StorageUrl::Local { path: storage };
    let location = services.objects.locate(&url).unwrap();
    let inspection = shared::zarr::inspect(&location).await.unwrap();
    let t = now();
    let d = Dataset {
        id: DatasetId::generate(),
        org: OrgId::parse("lab").unwrap(),
        name: DatasetName::parse(name).unwrap(),
        display_name: name.into(),
        description: String::new(),
        storage: url,
        visibility,
        featured: false,
        owner: None,
        allowed_teams: Default::default(),
        zarr_format: inspection.zarr_format,
        ome_version: inspection.ome_version,
        layers: inspection.layers,
        created_at: t,
        updated_at: t,
        version: 1,
    };
    services.catalog.create_dataset(&d, "test").await.unwrap();
    d
}

async fn spawn(delivery: &str, cache_secs: u64) -> App {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    write_v3(&root.join("v3.zarr"));
    write_v2(&root.join("v2.zarr"));

    let db = root.join("meta.redb");
    let roots = root.to_string_lossy().into_owned();
    let delivery = delivery.to_owned();
    let config = Config::from_lookup(|name| match name {
        "ZARRSHARE_EMBEDDED_DB" => Some(db.to_string_lossy().into_owned()),
        "ZARRSHARE_LOCAL_ROOTS" => Some(roots.clone()),
        "ZARRSHARE_DELIVERY" => Some(delivery.clone()),
        "ZARRSHARE_ACCESS_CACHE_TTL_SECS" => Some(cache_secs.to_string()),
        // No background flush during a test: counts are written by `flush_usage` only.
        "ZARRSHARE_USAGE_FLUSH_SECS" => Some("3600".into()),
        "ZARRSHARE_ORG" => Some("lab".into()),
        _ => None,
    })
    .unwrap();
    let (store, counts) = Metered::wrap(Arc::new(
        EmbeddedStore::open(&config_path(&config)).unwrap(),
    ));
    let services = Arc::new(Services::new(config, store).unwrap());

    let v3 = register(
        &services,
        root.join("v3.zarr"),
        "cells",
        Visibility::Private,
    )
    .await;
    let v2 = register(
        &services,
        root.join("v2.zarr"),
        "older",
        Visibility::Private,
    )
    .await;
    let public = register(&services, root.join("v3.zarr"), "open", Visibility::Public).await;

    // The fixtures are what the tests below assume.
    let shape = |d: &Dataset| -> Vec<(String, LayerKind, String)> {
        d.layers
            .iter()
            .map(|l| {
                let level = l.levels.first().map(|v| v.path.clone()).unwrap_or_default();
                (l.path.clone(), l.kind, level)
            })
            .collect()
    };
    assert_eq!(v3.zarr_format, ZarrFormat::V3);
    assert_eq!(
        shape(&v3),
        [
            ("".into(), LayerKind::Image, "0".into()),
            (
                "labels/cells".into(),
                LayerKind::Labels,
                "labels/cells/0".into()
            ),
        ]
    );
    assert_eq!(v2.zarr_format, ZarrFormat::V2);
    assert_eq!(shape(&v2), [("".into(), LayerKind::Image, "0".into())]);

    App {
        services,
        counts,
        v3,
        v2,
        public,
        _dir: dir,
    }
}

/// A link to `dataset` with the defaults: whole dataset, view only, no password, no expiry.
fn link(dataset: &DatasetId, token: &LinkToken) -> ShareLink {
    ShareLink::new(
        dataset.clone(),
        OrgId::parse("lab").unwrap(),
        token.hash(),
        "test".into(),
    )
}

fn password_hash() -> String {
    shared::passwords::hash(&Password::parse_shared(PASSWORD).unwrap()).unwrap()
}

impl App {
    fn router(&self) -> Router {
        chunks::router(self.services.clone())
    }

    async fn send(&self, method: Method, uri: &str, headers: &[(&str, &str)]) -> Response {
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.router()
            .oneshot(b.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    async fn get(&self, uri: &str) -> Response {
        self.send(Method::GET, uri, &[]).await
    }

    /// A view state, asked for as a viewer on another origin does.
    async fn state(&self, uri: &str) -> Response {
        self.send(Method::GET, uri, &[("host", HOST), ("origin", ORIGIN)])
            .await
    }

    /// Creates a link (a fresh token) after `edit` has adjusted the defaults.
    async fn share(&self, dataset: &DatasetId, edit: impl FnOnce(&mut ShareLink)) -> Shared {
        let token = LinkToken::generate();
        let mut l = link(dataset, &token);
        edit(&mut l);
        self.services.catalog.create_link(&l).await.unwrap();
        Shared { token, link: l }
    }

    async fn revoke(&self, s: &Shared) {
        self.services
            .catalog
            .revoke_link(&s.link.dataset_id, &s.link.id, "test")
            .await
            .unwrap();
    }

    /// The link's usage as stored (after a flush).
    async fn usage(&self, s: &Shared) -> LinkUsage {
        self.services
            .catalog
            .link(&s.link.dataset_id, &s.link.id)
            .await
            .unwrap()
            .usage
    }

    fn calls(&self) -> [u64; 3] {
        [
            self.counts.gets.load(Ordering::Relaxed),
            self.counts.queries.load(Ordering::Relaxed),
            self.counts.writes.load(Ordering::Relaxed),
        ]
    }
}

/// A link and its (secret) token.
struct Shared {
    token: LinkToken,
    link: ShareLink,
}

impl Shared {
    fn tok(&self) -> &str {
        self.token.expose()
    }

    /// `/s/{token}/{key}`.
    fn url(&self, key: &str) -> String {
        format!("/s/{}/{key}", self.tok())
    }

    /// `/s/{token}.{unlock}/{key}`.
    fn unlocked_url(&self, unlock: &str, key: &str) -> String {
        format!("/s/{}.{unlock}/{key}", self.tok())
    }

    /// A valid unlock of this link for the next hour.
    fn unlock(&self, app: &App) -> String {
        app.services
            .signer
            .unlock(&self.token.hash(), now() + Duration::hours(1))
    }
}

async fn body(r: Response) -> Vec<u8> {
    axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec()
}

async fn json_body(r: Response) -> Value {
    let bytes = body(r).await;
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}

fn header(r: &Response, name: header::HeaderName) -> &str {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

async fn assert_problem(r: Response, status: StatusCode, what: &str) {
    assert_eq!(r.status(), status, "{what}");
    assert_eq!(
        header(&r, header::CONTENT_TYPE),
        "application/problem+json",
        "{what}"
    );
    let v = json_body(r).await;
    assert_eq!(v["status"], status.as_u16(), "{what}");
}

/// A 200 with the body: its bytes.
async fn ok_body(r: Response, what: &str) -> Vec<u8> {
    assert_eq!(r.status(), StatusCode::OK, "{what}");
    body(r).await
}

/// The path (on this server) a layer source of a view state names: the scheme prefix and the
/// host stripped.
fn source_path(source: &str, scheme: &str) -> String {
    let url = source
        .strip_prefix(scheme)
        .unwrap_or_else(|| panic!("{source} does not start with {scheme}"));
    let path = url
        .strip_prefix(&format!("http://{HOST}"))
        .unwrap_or_else(|| panic!("{url} is not on http://{HOST}"));
    assert!(path.starts_with('/') && path.ends_with('/'), "{path}");
    path.to_owned()
}

fn layers(state: &Value) -> &Vec<Value> {
    state["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("no layers in {state}"))
}

// ---------------------------------------------------------------------------------------------
// 1. Sub-path scopes.

#[tokio::test]
async fn path_scoped_link_reads_its_subtree_and_nothing_else() {
    let app = spawn("proxy", 30).await;
    let s = app
        .share(&app.v3.id, |l| {
            l.scope = LinkScope::path("labels/cells").unwrap();
        })
        .await;

    // Inside the scope: the label image's metadata and chunks.
    let mut bytes = 0;
    let meta = ok_body(
        app.get(&s.url("labels/cells/zarr.json")).await,
        "scope root",
    )
    .await;
    assert!(String::from_utf8_lossy(&meta).contains("image-label"));
    bytes += meta.len();
    let meta = ok_body(app.get(&s.url("labels/cells/0/zarr.json")).await, "level").await;
    bytes += meta.len();
    for c in [[0, 0, 0], [1, 1, 1]] {
        let got = ok_body(
            app.get(&s.url(&v3_chunk_key("labels/cells/0", c))).await,
            "label chunk",
        )
        .await;
        assert_eq!(got, label_chunk(c));
        bytes += got.len();
    }
    let r = app
        .send(
            Method::HEAD,
            &s.url(&v3_chunk_key("labels/cells/0", [0, 1, 0])),
            &[],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK, "HEAD inside the scope");

    // Outside it: 403, whether or not the key exists, and for the look-alike sibling too.
    for key in [
        "zarr.json",
        "0/zarr.json",
        "0/c/0/0/0",
        "labels/zarr.json",
        "labels/cellsX/zarr.json",
        "labels/cellsX/0/c/0/0/0",
        "labels/cellsX",
        "labels/cel",
        "nothing/here/zarr.json",
    ] {
        assert_problem(app.get(&s.url(key)).await, StatusCode::FORBIDDEN, key).await;
        let r = app.send(Method::HEAD, &s.url(key), &[]).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "HEAD {key}");
    }
    // Climbing out of the scope is not a key at all.
    for key in [
        "labels/cells/../../zarr.json",
        "labels/cells/%2e%2e/%2e%2e/zarr.json",
        "labels/cells%2f..%2f..%2fzarr.json",
    ] {
        assert_problem(app.get(&s.url(key)).await, StatusCode::BAD_REQUEST, key).await;
    }

    // Only the reads inside the scope were counted.
    assert_eq!(app.services.flush_usage().await, 1);
    let usage = app.usage(&s).await;
    assert_eq!(
        (usage.views, usage.chunk_reads, usage.bytes),
        (1, 4, bytes as u64),
        "{usage:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Password-protected links.

#[tokio::test]
async fn protected_links_need_a_valid_unlock_of_their_own() {
    let app = spawn("proxy", 30).await;
    let hash = password_hash();
    let s = app
        .share(&app.v3.id, |l| l.password_hash = Some(hash.clone()))
        .await;
    let other = app
        .share(&app.v3.id, |l| l.password_hash = Some(hash.clone()))
        .await;
    let chunk = v3_chunk_key("0", [1, 0, 1]);

    // Without an unlock: 401 with a challenge.
    for key in ["zarr.json", chunk.as_str()] {
        let r = app.get(&s.url(key)).await;
        let challenge = header(&r, header::WWW_AUTHENTICATE).to_owned();
        assert!(challenge.contains("Link-Password"), "{key}: {challenge:?}");
        assert_problem(r, StatusCode::UNAUTHORIZED, key).await;
    }

    // With a valid unlock: the data.
    let unlock = s.unlock(&app);
    let got = ok_body(app.get(&s.unlocked_url(&unlock, &chunk)).await, "unlocked").await;
    assert_eq!(got, image_chunk([1, 0, 1]));
    let meta = ok_body(
        app.get(&s.unlocked_url(&unlock, "zarr.json")).await,
        "unlocked root",
    )
    .await;

    // Expired, tampered, moved in time, another link's, or junk: 401.
    let signer = &app.services.signer;
    let expired = signer.unlock(&s.token.hash(), now() - Duration::seconds(1));
    let (exp, sig) = unlock.split_once('.').unwrap();
    let mut tampered_sig: Vec<char> = sig.chars().collect();
    tampered_sig[0] = if tampered_sig[0] == 'A' { 'B' } else { 'A' };
    let tampered = format!("{exp}.{}", tampered_sig.into_iter().collect::<String>());
    let later = format!("{}.{sig}", exp.parse::<i64>().unwrap() + 3600);
    let others = other.unlock(&app);
    for (what, bad) in [
        ("expired", expired.as_str()),
        ("tampered signature", tampered.as_str()),
        ("moved expiry", later.as_str()),
        ("another link's unlock", others.as_str()),
        ("no signature", exp),
        ("empty", ""),
        ("junk", "x.y"),
    ] {
        let r = app.get(&s.unlocked_url(bad, &chunk)).await;
        assert!(
            !header(&r, header::WWW_AUTHENTICATE).is_empty(),
            "{what}: challenge"
        );
        assert_problem(r, StatusCode::UNAUTHORIZED, what).await;
    }
    // ... and the right unlock does not open the other link either.
    assert_problem(
        app.get(&other.unlocked_url(&unlock, &chunk)).await,
        StatusCode::UNAUTHORIZED,
        "this link's unlock on the other link",
    )
    .await;
    assert_eq!(
        app.get(&other.unlocked_url(&others, &chunk)).await.status(),
        StatusCode::OK,
        "the other link with its own unlock"
    );

    // Refusals are not counted; the two reads with the unlock are.
    app.services.flush_usage().await;
    let usage = app.usage(&s).await;
    assert_eq!(
        (usage.views, usage.chunk_reads, usage.bytes),
        (1, 1, (meta.len() + got.len()) as u64),
        "{usage:?}"
    );

    // Revoked: 410 even with a valid unlock (and without one).
    app.revoke(&s).await;
    app.services.forget_link(&s.token.hash());
    assert_problem(
        app.get(&s.unlocked_url(&unlock, &chunk)).await,
        StatusCode::GONE,
        "revoked, unlocked",
    )
    .await;
    assert_problem(
        app.get(&s.url(&chunk)).await,
        StatusCode::GONE,
        "revoked, locked",
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// 3. Usage counting.

#[tokio::test]
async fn link_usage_is_counted_without_metadata_calls_and_flushed() {
    const N: usize = 6;
    let app = spawn("proxy", 30).await;
    let s = app.share(&app.v3.id, |_| {}).await;

    // Warm this instance's cache: the link and its dataset resolved once.
    assert!(
        app.services
            .resolve_link(&s.token.hash())
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        app.services
            .resolve_dataset(&app.v3.id)
            .await
            .unwrap()
            .is_some()
    );
    let before = app.calls();
    let started = now();

    let mut bytes = 0usize;
    let mut etag = String::new();
    for (i, c) in GRID.iter().take(N - 1).enumerate() {
        let r = app.get(&s.url(&v3_chunk_key("0", *c))).await;
        if i == 0 {
            etag = header(&r, header::ETAG).to_owned();
        }
        let got = ok_body(r, "chunk").await;
        assert_eq!(got, image_chunk(*c));
        bytes += got.len();
    }
    // A range read counts the bytes it served.
    let r = app
        .send(
            Method::GET,
            &s.url(&v3_chunk_key("labels/cells/0", [1, 1, 1])),
            &[("range", "bytes=4-13")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    let got = body(r).await;
    assert_eq!(got.len(), 10);
    bytes += got.len();
    // One viewer opening the link.
    let root = ok_body(app.get(&s.url("zarr.json")).await, "root").await;
    bytes += root.len();

    assert_eq!(app.calls(), before, "metadata calls on the hot path");
    assert_eq!(app.services.flush_usage().await, 1, "one link written");
    let finished = now();
    let usage = app.usage(&s).await;
    assert_eq!(usage.chunk_reads, N as u64, "{usage:?}");
    assert_eq!(usage.views, 1, "{usage:?}");
    assert_eq!(usage.bytes, bytes as u64, "{usage:?}");
    assert_eq!(usage.redirects, 0, "{usage:?}");
    let last = usage.last_access.expect("last_access set");
    assert!(started <= last && last <= finished, "{last} not in the run");
    assert_eq!(app.services.flush_usage().await, 0, "nothing new to write");

    // Not found and not modified are not counted; HEAD is a read of 0 bytes.
    assert_problem(
        app.get(&s.url("0/c/9/9/9")).await,
        StatusCode::NOT_FOUND,
        "missing chunk",
    )
    .await;
    assert!(!etag.is_empty());
    let r = app
        .send(
            Method::GET,
            &s.url(&v3_chunk_key("0", GRID[0])),
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    let r = app
        .send(
            Method::GET,
            &s.url("zarr.json"),
            &[("if-none-match", "\"no-such-etag\"")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK, "a changed root is a view again");
    let root_again = body(r).await.len();
    let r = app
        .send(Method::HEAD, &s.url(&v3_chunk_key("0", GRID[7])), &[])
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, header::CONTENT_LENGTH), CHUNK_VOXELS.to_string());

    assert_eq!(app.services.flush_usage().await, 1);
    let usage = app.usage(&s).await;
    assert_eq!(usage.chunk_reads, N as u64 + 1, "{usage:?}");
    assert_eq!(usage.views, 2, "{usage:?}");
    assert_eq!(usage.bytes, (bytes + root_again) as u64, "{usage:?}");
}

#[tokio::test]
async fn public_reads_record_no_usage() {
    let app = spawn("proxy", 30).await;
    // A link to the same dataset exists, but public reads do not go through it.
    let s = app.share(&app.public.id, |_| {}).await;
    for key in ["zarr.json", "0/c/0/0/0", "labels/cells/0/c/1/1/1"] {
        let url = format!("/data/{}/{key}", app.public.id);
        ok_body(app.get(&url).await, key).await;
    }
    assert!(app.services.usage.take().is_empty(), "public reads counted");
    assert_eq!(app.services.flush_usage().await, 0);
    assert_eq!(app.usage(&s).await, LinkUsage::default());
}

// ---------------------------------------------------------------------------------------------
// 4. Neuroglancer view states.

/// The metadata document at a layer's root, and its finest level's first chunk, by format.
fn layer_keys(format: ZarrFormat) -> (&'static str, &'static str) {
    match format {
        ZarrFormat::V3 => ("zarr.json", "c/0/0/0"),
        ZarrFormat::V2 => (".zattrs", "0/0/0"),
    }
}

fn scheme(format: ZarrFormat) -> &'static str {
    match format {
        ZarrFormat::V3 => "zarr3://",
        ZarrFormat::V2 => "zarr2://",
    }
}

/// Fetches what a viewer fetches first from every layer source of `state`: the layer's
/// metadata and the first chunk of its finest level. Returns the sources' paths.
async fn open_sources(app: &App, state: &Value, dataset: &Dataset, root: &str) -> Vec<String> {
    let (meta, chunk) = layer_keys(dataset.zarr_format);
    let mut paths = Vec::new();
    for spec in layers(state) {
        let source = spec["source"].as_str().unwrap();
        let path = source_path(source, scheme(dataset.zarr_format));
        assert!(path.starts_with(root), "{path} is not below {root}");
        let layer_key = path[root.len()..].trim_end_matches('/');
        let layer = dataset
            .layers
            .iter()
            .find(|l| l.path == layer_key)
            .unwrap_or_else(|| panic!("no layer at {layer_key:?}"));
        let level = layer.levels[0].path.as_str();
        let level = level[layer.path.len()..].trim_start_matches('/');
        let doc = ok_body(app.get(&format!("{path}{meta}")).await, &path).await;
        serde_json::from_slice::<Value>(&doc).unwrap();
        ok_body(
            app.get(&format!("{path}{level}/{chunk}")).await,
            &format!("{path}{level}/{chunk}"),
        )
        .await;
        paths.push(path);
    }
    paths
}

#[tokio::test]
async fn link_states_carry_the_link_and_their_sources_resolve() {
    let app = spawn("proxy", 30).await;
    for (dataset, kinds) in [
        (&app.v3, vec!["image", "segmentation"]),
        (&app.v2, vec!["image"]),
    ] {
        let s = app.share(&dataset.id, |_| {}).await;
        let r = app.state(&format!("/ng/s/{}.json", s.tok())).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, header::CONTENT_TYPE), "application/json");
        assert_eq!(header(&r, header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
        assert_eq!(header(&r, header::CACHE_CONTROL), "private, max-age=60");
        let state = json_body(r).await;
        let specs = layers(&state);
        let got: Vec<&str> = specs.iter().map(|l| l["type"].as_str().unwrap()).collect();
        assert_eq!(got, kinds, "{state}");
        let capability = format!("/s/{}/", s.tok());
        for spec in specs {
            let source = spec["source"].as_str().unwrap();
            assert!(source.starts_with(scheme(dataset.zarr_format)), "{source}");
            assert!(source.contains(&capability), "{source}");
        }
        let paths = open_sources(&app, &state, dataset, &capability).await;
        assert_eq!(paths.len(), kinds.len());
        assert_eq!(paths[0], capability, "the image is the dataset root");
    }
}

#[tokio::test]
async fn state_fetches_count_as_views() {
    let app = spawn("proxy", 30).await;
    let s = app.share(&app.v3.id, |_| {}).await;
    let url = format!("/ng/s/{}.json", s.tok());
    for query in ["", "?layout=xy", "?zoom=3"] {
        let r = app.state(&format!("{url}{query}")).await;
        assert_eq!(r.status(), StatusCode::OK, "{query}");
    }
    // Refused states are not views.
    assert_eq!(
        app.state(&format!("{url}?position=1,2")).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.state(&format!("{url}?position=x")).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(app.services.flush_usage().await, 1);
    let usage = app.usage(&s).await;
    assert_eq!(
        (usage.views, usage.chunk_reads, usage.bytes),
        (3, 0, 0),
        "{usage:?}"
    );
    assert!(usage.last_access.is_some());
}

#[tokio::test]
async fn path_scoped_link_state_shows_only_the_layers_under_its_prefix() {
    let app = spawn("proxy", 30).await;
    for prefix in ["labels/cells", "labels"] {
        let s = app
            .share(&app.v3.id, |l| l.scope = LinkScope::path(prefix).unwrap())
            .await;
        let r = app.state(&format!("/ng/s/{}.json", s.tok())).await;
        assert_eq!(r.status(), StatusCode::OK, "{prefix}");
        let state = json_body(r).await;
        assert_eq!(
            state["layers"],
            json!([{
                "type": "segmentation",
                "source": format!("zarr3://http://{HOST}/s/{}/labels/cells/", s.tok()),
                "name": "cells",
            }]),
            "{prefix}"
        );
        let root = format!("/s/{}/", s.tok());
        open_sources(&app, &state, &app.v3, &root).await;
        // The image the state leaves out stays out of reach.
        assert_problem(
            app.get(&s.url("zarr.json")).await,
            StatusCode::FORBIDDEN,
            "root of a scoped link",
        )
        .await;
    }
}

#[tokio::test]
async fn view_queries_are_honoured_and_checked() {
    let app = spawn("proxy", 30).await;
    let s = app.share(&app.v3.id, |_| {}).await;
    let url = format!("/ng/s/{}.json", s.tok());

    let state = json_body(app.state(&url).await).await;
    assert_eq!(state["layout"], "4panel", "the default for 3-D data");
    // Axes z, y, x; dimensions in x, y, z order; the centre of 4×8×8 voxels.
    assert_eq!(state["position"], json!([3.5, 3.5, 1.5]));
    assert_eq!(
        state["dimensions"],
        json!({"x": [5e-7, "m"], "y": [5e-7, "m"], "z": [1e-6, "m"]})
    );

    let r = app
        .state(&format!("{url}?position=1,2,3&zoom=2&layout=xy"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let state = json_body(r).await;
    assert_eq!(state["position"], json!([3.0, 2.0, 1.0]), "z,y,x given");
    assert_eq!(state["crossSectionScale"], json!(0.5));
    assert_eq!(state["projectionScale"], json!(500.0));
    assert_eq!(state["layout"], "xy");

    for (query, status) in [
        ("position=a,b,c", StatusCode::BAD_REQUEST),
        ("position=1,2", StatusCode::UNPROCESSABLE_ENTITY),
        ("position=1,2,3,4", StatusCode::UNPROCESSABLE_ENTITY),
        ("position=1,NaN,3", StatusCode::UNPROCESSABLE_ENTITY),
        ("position=1,2,1e300", StatusCode::UNPROCESSABLE_ENTITY),
        ("zoom=0", StatusCode::UNPROCESSABLE_ENTITY),
        ("zoom=much", StatusCode::BAD_REQUEST),
        ("layout=5panel", StatusCode::BAD_REQUEST),
        ("colour=red", StatusCode::BAD_REQUEST),
    ] {
        assert_problem(app.state(&format!("{url}?{query}")).await, status, query).await;
    }

    // A view stored with the link is the default; the query overrides parts of it.
    let stored = app
        .share(&app.v3.id, |l| {
            l.view = Some(ViewParams {
                position: Some(vec![0.0, 1.0, 2.0]),
                zoom: Some(4.0),
                layout: Some(Layout::ThreeD),
                rotation: Some([0.0, 0.0, 90.0]),
            });
        })
        .await;
    let url = format!("/ng/s/{}.json", stored.tok());
    let state = json_body(app.state(&url).await).await;
    assert_eq!(state["position"], json!([2.0, 1.0, 0.0]));
    assert_eq!(state["crossSectionScale"], json!(0.25));
    assert_eq!(state["layout"], "3d");
    let h = std::f64::consts::FRAC_1_SQRT_2;
    let turned = |state: &serde_json::Value, key: &str, want: [f64; 4]| {
        let q: Vec<f64> = serde_json::from_value(state[key].clone()).expect("a quaternion");
        assert_eq!(q.len(), 4, "{key}: {q:?}");
        assert!(
            q.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12),
            "{key}: {q:?} is not {want:?}"
        );
    };
    turned(&state, "crossSectionOrientation", [0.0, 0.0, h, h]);
    let state = json_body(app.state(&format!("{url}?layout=xy")).await).await;
    assert_eq!(state["layout"], "xy");
    assert_eq!(state["position"], json!([2.0, 1.0, 0.0]));
    assert_eq!(state["crossSectionScale"], json!(0.25));
    turned(&state, "crossSectionOrientation", [0.0, 0.0, h, h]);
    // The query's rotation overrides the stored one; a malformed one is refused.
    let state = json_body(app.state(&format!("{url}?rotation=90,0,0")).await).await;
    turned(&state, "crossSectionOrientation", [h, 0.0, 0.0, h]);
    turned(&state, "projectionOrientation", [h, 0.0, 0.0, h]);
    for (query, status) in [
        ("rotation=90,0", StatusCode::BAD_REQUEST),
        ("rotation=a,b,c", StatusCode::BAD_REQUEST),
        ("rotation=0,720,0", StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let r = app.state(&format!("{url}?{query}")).await;
        assert_eq!(r.status(), status, "{query}");
    }
}

#[tokio::test]
async fn revoked_and_unknown_links_have_no_state() {
    let app = spawn("proxy", 30).await;
    let s = app.share(&app.v3.id, |_| {}).await;
    let url = format!("/ng/s/{}.json", s.tok());
    assert_eq!(app.state(&url).await.status(), StatusCode::OK);
    app.revoke(&s).await;
    app.services.forget_link(&s.token.hash());
    let r = app.state(&url).await;
    assert_eq!(header(&r, header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
    assert_problem(r, StatusCode::GONE, "revoked").await;

    let expired = app
        .share(&app.v3.id, |l| {
            l.expires_at = Some(now() - Duration::seconds(1));
        })
        .await;
    assert_problem(
        app.state(&format!("/ng/s/{}.json", expired.tok())).await,
        StatusCode::GONE,
        "expired",
    )
    .await;
    for uri in [
        format!("/ng/s/{}.json", LinkToken::generate().expose()),
        "/ng/s/short.json".to_owned(),
        format!("/ng/s/{}", expired.tok()),
    ] {
        assert_problem(app.state(&uri).await, StatusCode::NOT_FOUND, &uri).await;
    }
}

#[tokio::test]
async fn protected_link_state_needs_the_unlock_and_passes_it_on() {
    let app = spawn("proxy", 30).await;
    let hash = password_hash();
    let s = app
        .share(&app.v3.id, |l| l.password_hash = Some(hash.clone()))
        .await;
    let other = app
        .share(&app.v3.id, |l| l.password_hash = Some(hash.clone()))
        .await;

    let r = app.state(&format!("/ng/s/{}.json", s.tok())).await;
    assert!(header(&r, header::WWW_AUTHENTICATE).contains("Link-Password"));
    assert_problem(r, StatusCode::UNAUTHORIZED, "no unlock").await;
    let expired = app
        .services
        .signer
        .unlock(&s.token.hash(), now() - Duration::seconds(1));
    for (what, bad) in [("expired", expired), ("another link's", other.unlock(&app))] {
        assert_problem(
            app.state(&format!("/ng/s/{}.{bad}.json", s.tok())).await,
            StatusCode::UNAUTHORIZED,
            what,
        )
        .await;
    }

    let unlock = s.unlock(&app);
    let url = format!("/ng/s/{}.{unlock}.json", s.tok());
    let r = app.state(&url).await;
    assert_eq!(r.status(), StatusCode::OK);
    let state = json_body(r).await;
    let capability = format!("/s/{}.{unlock}/", s.tok());
    for spec in layers(&state) {
        let source = spec["source"].as_str().unwrap();
        assert!(source.starts_with("zarr3://"), "{source}");
        assert!(source.contains(&capability), "{source}");
    }
    let paths = open_sources(&app, &state, &app.v3, &capability).await;
    assert_eq!(paths.len(), 2);
    assert_eq!(
        app.state(&format!("{url}?layout=3d")).await.status(),
        StatusCode::OK
    );

    // Two state fetches and one root metadata read are views; the label image's metadata and
    // the two chunks are reads. The refused fetches count nothing.
    app.services.flush_usage().await;
    let usage = app.usage(&s).await;
    assert_eq!((usage.views, usage.chunk_reads), (3, 3), "{usage:?}");
    assert_eq!(app.usage(&other).await, LinkUsage::default());

    // Revoked: 410 even unlocked.
    app.revoke(&s).await;
    app.services.forget_link(&s.token.hash());
    assert_problem(app.state(&url).await, StatusCode::GONE, "revoked").await;
}

#[tokio::test]
async fn public_dataset_state() {
    let app = spawn("proxy", 30).await;
    let r = app.state(&format!("/ng/data/{}.json", app.public.id)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
    assert_eq!(header(&r, header::CACHE_CONTROL), "public, max-age=3600");
    let state = json_body(r).await;
    let root = format!("/data/{}/", app.public.id);
    for spec in layers(&state) {
        let source = spec["source"].as_str().unwrap();
        assert!(
            source.starts_with(&format!("zarr3://http://{HOST}{root}")),
            "{source}"
        );
    }
    let paths = open_sources(&app, &state, &app.public, &root).await;
    assert_eq!(paths, [root.clone(), format!("{root}labels/cells/")]);
    let r = app
        .state(&format!(
            "/ng/data/{}.json?position=0,0,0&layout=yz",
            app.public.id
        ))
        .await;
    let state = json_body(r).await;
    assert_eq!(state["layout"], "yz");
    assert_eq!(state["position"], json!([0.0, 0.0, 0.0]));

    for uri in [
        format!("/ng/data/{}.json", app.v3.id),
        format!("/ng/data/{}.json", app.v2.id),
        format!("/ng/data/{}.json", DatasetId::generate()),
        format!("/ng/data/{}", app.public.id),
        "/ng/data/not-an-id.json".to_owned(),
    ] {
        assert_problem(app.state(&uri).await, StatusCode::NOT_FOUND, &uri).await;
    }
    assert!(app.services.usage.take().is_empty(), "no link, no usage");
}

// ---------------------------------------------------------------------------------------------
// 5. The revocation bound.

/// A revocation written behind this instance's back (another instance, the API function) is
/// seen here once the cache entry expires.
#[tokio::test]
async fn revocation_elsewhere_takes_effect_after_the_cache_ttl() {
    let app = spawn("proxy", 1).await;
    let s = app.share(&app.v3.id, |_| {}).await;
    let url = s.url(&v3_chunk_key("0", [0, 0, 0]));
    let state = format!("/ng/s/{}.json", s.tok());

    let warmed = Instant::now();
    assert_eq!(app.get(&url).await.status(), StatusCode::OK);
    app.revoke(&s).await;
    let cached = app.get(&url).await.status();
    let cached_state = app.state(&state).await.status();
    // Only meaningful while the entry (cached after `warmed`) cannot have expired yet.
    if warmed.elapsed() < StdDuration::from_millis(900) {
        assert_eq!(cached, StatusCode::OK, "served from the cache");
        assert_eq!(cached_state, StatusCode::OK, "state from the cache");
    }

    let deadline = Instant::now() + StdDuration::from_secs(3);
    loop {
        let r = app.get(&url).await;
        match r.status() {
            StatusCode::GONE => {
                assert_problem(r, StatusCode::GONE, "revoked").await;
                break;
            }
            StatusCode::OK => {}
            other => panic!("unexpected {other}"),
        }
        assert!(
            Instant::now() < deadline,
            "still served 3 s after the revocation"
        );
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    assert_problem(app.state(&state).await, StatusCode::GONE, "state").await;
}

// ---------------------------------------------------------------------------------------------
// Counting in redirect delivery and for Zarr v2.

#[tokio::test]
async fn redirect_delivery_counts_redirects_without_bytes() {
    let app = spawn("redirect", 30).await;
    let s = app.share(&app.v3.id, |_| {}).await;
    let key = v3_chunk_key("0", [0, 1, 1]);
    let r = app.get(&s.url(&key)).await;
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    let location = header(&r, header::LOCATION).to_owned();
    assert_eq!(
        ok_body(app.get(&location).await, "presigned").await,
        image_chunk([0, 1, 1])
    );
    // Refused reads are not redirected, nor counted.
    assert_problem(
        app.get(&s.url("labels/../zarr.json")).await,
        StatusCode::BAD_REQUEST,
        "traversal",
    )
    .await;
    assert_eq!(app.services.flush_usage().await, 1);
    let usage = app.usage(&s).await;
    assert_eq!(
        (usage.redirects, usage.chunk_reads, usage.bytes),
        (1, 1, 0),
        "{usage:?}"
    );
}

/// `LinkUsage::views` is documented as "root metadata reads and view-state fetches: one per
/// viewer opening the link"; with redirect delivery a root metadata read is answered with a
/// `307` and counted only as a redirect, so a viewer opening `/s/{token}/` is never a view.
#[tokio::test]
async fn redirect_delivery_still_counts_a_viewer_opening_the_link() {
    let app = spawn("redirect", 30).await;
    let s = app.share(&app.v3.id, |_| {}).await;
    let r = app.get(&s.url("zarr.json")).await;
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    app.services.flush_usage().await;
    let usage = app.usage(&s).await;
    assert_eq!((usage.views, usage.redirects), (1, 1), "{usage:?}");
}

/// A Zarr v2 reader opening a dataset reads both `.zgroup` and `.zattrs` at the root (the
/// OME-Zarr 0.4 multiscales are in `.zattrs`); every root metadata document counts as a view,
/// so one viewer opening a v2 link is two views, where a v3 one is one.
#[tokio::test]
async fn opening_a_zarr_v2_link_counts_one_view() {
    let app = spawn("proxy", 30).await;
    let s = app.share(&app.v2.id, |_| {}).await;
    for key in [".zgroup", ".zattrs", "0/.zarray", "0/0/0/0"] {
        ok_body(app.get(&s.url(key)).await, key).await;
    }
    app.services.flush_usage().await;
    let usage = app.usage(&s).await;
    // `.zgroup` opens it; `.zattrs`, the array document and the chunk are reads.
    assert_eq!((usage.views, usage.chunk_reads), (1, 3), "{usage:?}");
}
