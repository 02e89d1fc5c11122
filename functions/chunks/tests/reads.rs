//! The chunk function's URL contract, through `chunks::router` with `oneshot`.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use axum::response::Response;
use shared::Services;
use shared::config::Config;
use shared::domain::{
    Dataset, DatasetId, DatasetName, LinkId, LinkToken, OrgId, ShareLink, StorageUrl, Visibility,
    ZarrFormat, now,
};
use shared::store::embedded::EmbeddedStore;
use shared::store::metered::{CallCounts, Metered};
use tower::ServiceExt;

const CHUNK_LEN: usize = 1000;

struct App {
    services: Arc<Services>,
    counts: Arc<CallCounts>,
    public: DatasetId,
    private: DatasetId,
    token: LinkToken,
    link: LinkId,
    _dir: tempfile::TempDir,
}

fn chunk_bytes() -> Vec<u8> {
    (0..CHUNK_LEN).map(|i| (i % 251) as u8).collect()
}

fn dataset(root: &std::path::Path, name: &str, visibility: Visibility) -> Dataset {
    let t = now();
    Dataset {
        id: DatasetId::generate(),
        org: OrgId::parse("lab").unwrap(),
        name: DatasetName::parse(name).unwrap(),
        display_name: name.into(),
        description: String::new(),
        storage: StorageUrl::Local {
            path: root.join("ds.zarr"),
        },
        visibility,
        featured: false,
        owner: None,
        allowed_teams: Default::default(),
        zarr_format: ZarrFormat::V3,
        ome_version: None,
        layers: vec![],
        created_at: t,
        updated_at: t,
        version: 1,
    }
}

fn link(
    dataset: &DatasetId,
    token: &LinkToken,
    expires: Option<time::OffsetDateTime>,
) -> ShareLink {
    ShareLink {
        expires_at: expires,
        ..ShareLink::new(
            dataset.clone(),
            OrgId::parse("lab").unwrap(),
            token.hash(),
            "test".into(),
        )
    }
}

async fn spawn(delivery: &str, cache_secs: u64) -> App {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let ds = root.join("ds.zarr");
    std::fs::create_dir_all(ds.join("0/c/0/0")).unwrap();
    std::fs::write(
        ds.join("zarr.json"),
        br#"{"zarr_format":3,"node_type":"group","attributes":{}}"#,
    )
    .unwrap();
    std::fs::write(ds.join("0/c/0/0/0"), chunk_bytes()).unwrap();
    std::fs::write(ds.join("a b"), b"spaced").unwrap();
    std::fs::write(root.join("secret.txt"), b"outside the dataset").unwrap();

    let db = root.join("meta.redb");
    let roots = root.to_string_lossy().into_owned();
    let delivery = delivery.to_owned();
    let config = Config::from_lookup(|name| match name {
        "ZARRSHARE_EMBEDDED_DB" => Some(db.to_string_lossy().into_owned()),
        "ZARRSHARE_LOCAL_ROOTS" => Some(roots.clone()),
        "ZARRSHARE_DELIVERY" => Some(delivery.clone()),
        "ZARRSHARE_ACCESS_CACHE_TTL_SECS" => Some(cache_secs.to_string()),
        "ZARRSHARE_ORG" => Some("lab".into()),
        _ => None,
    })
    .unwrap();
    let (store, counts) = Metered::wrap(Arc::new(
        EmbeddedStore::open(&config_path(&config)).unwrap(),
    ));
    let services = Arc::new(Services::new(config, store).unwrap());

    let public = dataset(&root, "open", Visibility::Public);
    let private = dataset(&root, "closed", Visibility::Private);
    services
        .catalog
        .create_dataset(&public, "test")
        .await
        .unwrap();
    services
        .catalog
        .create_dataset(&private, "test")
        .await
        .unwrap();
    let token = LinkToken::generate();
    let l = link(&private.id, &token, None);
    services.catalog.create_link(&l).await.unwrap();
    App {
        services,
        counts,
        public: public.id,
        private: private.id,
        token,
        link: l.id,
        _dir: dir,
    }
}

fn config_path(c: &Config) -> PathBuf {
    match &c.metadata {
        shared::config::MetadataBackend::Embedded { path } => path.clone(),
        other => panic!("unexpected backend {other:?}"),
    }
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

    fn public_url(&self, key: &str) -> String {
        format!("/data/{}/{key}", self.public)
    }

    fn link_url(&self, key: &str) -> String {
        format!("/s/{}/{key}", self.token.expose())
    }
}

async fn body(r: Response) -> Vec<u8> {
    axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec()
}

fn header(r: &Response, name: header::HeaderName) -> &str {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

async fn assert_problem(r: Response, status: StatusCode) {
    assert_eq!(r.status(), status);
    assert_eq!(header(&r, header::CONTENT_TYPE), "application/problem+json");
    assert_eq!(
        header(&r, header::ACCESS_CONTROL_ALLOW_ORIGIN),
        "*",
        "CORS on errors too"
    );
    let v: serde_json::Value = serde_json::from_slice(&body(r).await).unwrap();
    assert_eq!(v["status"], status.as_u16());
}

#[tokio::test]
async fn public_reads_serve_metadata_and_chunks() {
    let app = spawn("proxy", 30).await;
    let r = app.get(&app.public_url("zarr.json")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, header::CONTENT_TYPE), "application/json");
    assert_eq!(header(&r, header::CACHE_CONTROL), "public, max-age=3600");
    assert_eq!(header(&r, header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
    let exposed = header(&r, header::ACCESS_CONTROL_EXPOSE_HEADERS).to_owned();
    for h in ["content-range", "content-length", "etag"] {
        assert!(exposed.contains(h), "{h} not exposed: {exposed}");
    }
    assert!(body(r).await.starts_with(b"{\"zarr_format\":3"));

    let r = app.get(&app.public_url("0/c/0/0/0")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, header::CONTENT_TYPE), "application/octet-stream");
    assert_eq!(header(&r, header::CONTENT_LENGTH), CHUNK_LEN.to_string());
    assert!(header(&r, header::ETAG).starts_with('"'));
    assert_eq!(body(r).await, chunk_bytes());

    let r = app.get(&app.public_url("a%20b")).await;
    assert_eq!(body(r).await, b"spaced");
}

#[tokio::test]
async fn head_returns_length_without_body() {
    let app = spawn("proxy", 30).await;
    let r = app
        .send(Method::HEAD, &app.public_url("0/c/0/0/0"), &[])
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, header::CONTENT_LENGTH), CHUNK_LEN.to_string());
    assert!(body(r).await.is_empty());
}

#[tokio::test]
async fn byte_ranges() {
    let app = spawn("proxy", 30).await;
    let url = app.public_url("0/c/0/0/0");
    let all = chunk_bytes();
    for (range, from, to) in [
        ("bytes=10-19", 10, 20),
        ("bytes=990-", 990, 1000),
        ("bytes=-16", 984, 1000),
        ("bytes=995-5000", 995, 1000),
    ] {
        let r = app.send(Method::GET, &url, &[("range", range)]).await;
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            header(&r, header::CONTENT_RANGE),
            format!("bytes {from}-{}/1000", to - 1),
            "{range}"
        );
        assert_eq!(header(&r, header::CONTENT_LENGTH), (to - from).to_string());
        assert_eq!(body(r).await, all[from..to], "{range}");
    }
    let r = app
        .send(Method::GET, &url, &[("range", "bytes=1000-1010")])
        .await;
    assert_eq!(header(&r, header::CONTENT_RANGE), "bytes */1000");
    assert_problem(r, StatusCode::RANGE_NOT_SATISFIABLE).await;
    // Several ranges are not supported: the whole object, as RFC 9110 allows.
    let r = app
        .send(Method::GET, &url, &[("range", "bytes=0-1,5-6")])
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn conditional_reads_answer_304() {
    let app = spawn("proxy", 30).await;
    let url = app.public_url("0/c/0/0/0");
    let etag = header(&app.get(&url).await, header::ETAG).to_owned();
    let r = app
        .send(Method::GET, &url, &[("if-none-match", &etag)])
        .await;
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    let r = app
        .send(
            Method::GET,
            &url,
            &[("if-none-match", "\"something-else\"")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn missing_keys_are_404_never_400_or_500() {
    let app = spawn("proxy", 30).await;
    for key in [
        "0/c/9/9/9",
        ".zattrs",
        ".zgroup",
        ".zmetadata",
        "nope/zarr.json",
    ] {
        assert_problem(app.get(&app.public_url(key)).await, StatusCode::NOT_FOUND).await;
        assert_problem(app.get(&app.link_url(key)).await, StatusCode::NOT_FOUND).await;
    }
}

#[tokio::test]
async fn traversal_is_rejected() {
    let app = spawn("proxy", 30).await;
    for key in [
        "../secret.txt",
        "0/../../secret.txt",
        "0//c",
        "%2e%2e/secret.txt",
        "..%2fsecret.txt",
        "0%5c..%5csecret.txt",
        "0\\..\\x",
    ] {
        let uri = format!("/data/{}/{key}", app.public);
        let Ok(req) = Request::builder().uri(&uri).body(Body::empty()) else {
            continue;
        };
        let r = app.router().oneshot(req).await.unwrap();
        assert_problem(r, StatusCode::BAD_REQUEST).await;
        let uri = app.link_url(key);
        let r = app
            .router()
            .oneshot(Request::builder().uri(&uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_problem(r, StatusCode::BAD_REQUEST).await;
    }
}

#[tokio::test]
async fn private_data_is_hidden_from_the_public_url() {
    let app = spawn("proxy", 30).await;
    assert_problem(
        app.get(&format!("/data/{}/zarr.json", app.private)).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_problem(
        app.get(&format!("/data/{}/zarr.json", DatasetId::generate()))
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_problem(
        app.get("/data/not-an-id/zarr.json").await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn links_read_private_data_until_revoked() {
    let app = spawn("proxy", 30).await;
    let r = app.get(&app.link_url("0/c/0/0/0")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, header::CACHE_CONTROL), "private, max-age=60");
    assert_eq!(body(r).await, chunk_bytes());
    assert_problem(
        app.get(&format!("/s/{}/zarr.json", LinkToken::generate().expose()))
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_problem(app.get("/s/short/zarr.json").await, StatusCode::NOT_FOUND).await;

    // Revocation through the API path: the catalog change plus this instance's cache entry.
    let revoked = app
        .services
        .catalog
        .revoke_link(&app.private, &app.link, "test")
        .await
        .unwrap();
    app.services.forget_link(&revoked.token_hash);
    assert_problem(app.get(&app.link_url("0/c/0/0/0")).await, StatusCode::GONE).await;
}

#[tokio::test]
async fn expired_links_stop_working() {
    let app = spawn("proxy", 30).await;
    let token = LinkToken::generate();
    let soon = now() + time::Duration::milliseconds(300);
    app.services
        .catalog
        .create_link(&link(&app.private, &token, Some(soon)))
        .await
        .unwrap();
    let url = format!("/s/{}/zarr.json", token.expose());
    assert_eq!(app.get(&url).await.status(), StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    // Expiry needs no cache refresh: it is checked on every request.
    assert_problem(app.get(&url).await, StatusCode::GONE).await;
}

/// Another instance (here: a revocation written behind this instance's back) sees the change
/// once its cache entry expires — the documented bound.
#[tokio::test]
async fn revocation_reaches_other_instances_within_the_cache_bound() {
    let app = spawn("proxy", 1).await;
    let url = app.link_url("zarr.json");
    assert_eq!(app.get(&url).await.status(), StatusCode::OK);
    app.services
        .catalog
        .revoke_link(&app.private, &app.link, "test")
        .await
        .unwrap();
    assert_eq!(
        app.get(&url).await.status(),
        StatusCode::OK,
        "served from the cache within the bound"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_problem(app.get(&url).await, StatusCode::GONE).await;
}

#[tokio::test]
async fn steady_state_reads_make_no_metadata_calls() {
    let app = spawn("proxy", 30).await;
    app.get(&app.public_url("zarr.json")).await;
    app.get(&app.link_url("zarr.json")).await;
    let before = app.counts.total();
    for _ in 0..50 {
        assert_eq!(
            app.get(&app.public_url("0/c/0/0/0")).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            app.get(&app.link_url("0/c/0/0/0")).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            app.get(&app.public_url("0/c/1/1/1")).await.status(),
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(
        app.counts.total() - before,
        0,
        "metadata calls on the hot path"
    );
    assert_eq!(
        app.counts.gets.load(Ordering::Relaxed),
        4,
        "one read per dataset, two for the link"
    );
}

#[tokio::test]
async fn cors_preflight_and_plain_options() {
    let app = spawn("proxy", 30).await;
    let url = app.public_url("0/c/0/0/0");
    let r = app
        .send(
            Method::OPTIONS,
            &url,
            &[
                ("origin", "https://neuroglancer-demo.appspot.com"),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "range"),
            ],
        )
        .await;
    assert!(r.status().is_success());
    assert_eq!(header(&r, header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
    assert!(header(&r, header::ACCESS_CONTROL_ALLOW_HEADERS).contains("range"));
    assert!(header(&r, header::ACCESS_CONTROL_ALLOW_METHODS).contains("GET"));
    // A bare OPTIONS (no preflight headers) is answered the same way, never 405.
    let r = app.send(Method::OPTIONS, &url, &[]).await;
    assert!(r.status().is_success());
    assert_eq!(header(&r, header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
}

#[tokio::test]
async fn redirect_delivery_hands_out_signed_urls_that_expire_and_cannot_be_moved() {
    let app = spawn("redirect", 30).await;
    let r = app.get(&app.link_url("0/c/0/0/0")).await;
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(header(&r, header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
    let location = header(&r, header::LOCATION).to_owned();
    assert!(location.starts_with("/_blob/"), "{location}");
    let r = app.get(&location).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(body(r).await, chunk_bytes());
    let r = app
        .send(Method::GET, &location, &[("range", "bytes=0-9")])
        .await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);

    // HEAD is answered directly (a presigned GET URL does not allow HEAD).
    let r = app
        .send(Method::HEAD, &app.public_url("0/c/0/0/0"), &[])
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    let (path, sig) = location.split_once("?sig=").unwrap();
    let moved = format!(
        "{}?sig={sig}",
        path.replace("ds.zarr/0/c/0/0/0", "secret.txt")
    );
    assert_problem(app.get(&moved).await, StatusCode::FORBIDDEN).await;
    let mut tampered = sig.to_owned();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert_problem(
        app.get(&format!("{path}?sig={tampered}")).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert_problem(app.get(path).await, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn unknown_routes_are_problem_documents() {
    let app = spawn("proxy", 30).await;
    assert_problem(app.get("/nothing/here").await, StatusCode::NOT_FOUND).await;
    assert_problem(
        app.get(&format!("/data/{}/", app.public)).await,
        StatusCode::NOT_FOUND,
    )
    .await;
}
