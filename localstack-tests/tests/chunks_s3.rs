//! The chunk path over S3 and DynamoDB in LocalStack: the demo OME-Zarr pyramid uploaded with
//! the SDK, registered through the datasets function by its `s3://` URL, and read through the
//! chunk function — proxied, and redirected to presigned URLs that LocalStack itself serves
//! (and refuses when tampered with).

#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::http::{Method, StatusCode};
use localstack_tests::{
    ADMIN, LocalStack, Reply, TEST_BUCKET, TEST_TABLE, localstack, send, unique,
};
use serde_json::{Value, json};
use shared::Services;
use shared::store::metered::CallCounts;

/// A level-0 chunk of the image and the first shard of the label image.
const CHUNK: &str = "0/c/0/0/0";
const SHARD: &str = "labels/cells/0/c/0/0/0";
const ORIGIN: (&str, &str) = ("origin", "https://viewer.example.org");

/// The pyramid in S3 (shared by this binary's tests), registered twice (public and private) in an
/// organization of its own, with the functions built over DynamoDB with one delivery mode.
struct Fixture {
    ls: LocalStack,
    /// Key below the dataset root → the bytes uploaded there.
    files: &'static BTreeMap<String, Vec<u8>>,
    /// The dataset root's prefix in the bucket.
    prefix: &'static str,
    services: Arc<Services>,
    counts: Arc<CallCounts>,
    api: Router,
    chunks: Router,
    public_id: String,
    private_id: String,
    /// The registration response of the public dataset.
    registered: Value,
}

async fn fixture(ls: LocalStack, delivery: &str) -> Fixture {
    let demo = ls.demo_in_s3().await;
    let files = &demo.files;
    assert!(
        files.contains_key("zarr.json") && files.contains_key(CHUNK) && files.contains_key(SHARD),
        "{:?}",
        files.keys()
    );

    // An organization of its own: the dataset names are then free in every test and run.
    let (services, counts) = ls.services(TEST_TABLE, delivery, &unique("org"));
    let api = datasets::router(services.clone());
    let chunks = chunks::router(services.clone());
    let url = demo.url();
    let mut ids = Vec::new();
    let mut registered = Value::Null;
    for (name, visibility) in [("cells-public", "public"), ("cells-private", "private")] {
        let r = send(
            &api,
            Method::POST,
            "/api/datasets",
            &[ADMIN],
            Some(json!({"name": name, "url": url, "visibility": visibility})),
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "registering {url}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let body = r.json();
        ids.push(body["id"].as_str().unwrap().to_owned());
        if registered.is_null() {
            registered = body;
        }
    }
    let private_id = ids.pop().unwrap();
    let public_id = ids.pop().unwrap();
    Fixture {
        ls,
        files,
        prefix: &demo.prefix,
        services,
        counts,
        api,
        chunks,
        public_id,
        private_id,
        registered,
    }
}

impl Fixture {
    fn bytes(&self, key: &str) -> &[u8] {
        self.files
            .get(key)
            .unwrap_or_else(|| panic!("no uploaded file {key}"))
    }

    async fn get(&self, uri: &str, headers: &[(&str, &str)]) -> Reply {
        send(&self.chunks, Method::GET, uri, headers, None).await
    }

    /// Creates a share link to the private dataset: `(link id, "/s/{token}/")`.
    async fn link(&self) -> (String, String) {
        let r = send(
            &self.api,
            Method::POST,
            &format!("/api/datasets/{}/links", self.private_id),
            &[ADMIN],
            Some(json!({"label": "reviewer"})),
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        let body = r.json();
        let url = body["url"].as_str().unwrap().to_owned();
        assert!(
            url.starts_with("/s/") && url.ends_with('/'),
            "link url {url}"
        );
        (body["id"].as_str().unwrap().to_owned(), url)
    }
}

fn assert_problem(r: &Reply, status: StatusCode, what: &str) {
    assert_eq!(
        r.status,
        status,
        "{what}: {}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{what}: content type"
    );
    assert_eq!(
        r.json()["status"],
        status.as_u16(),
        "{what}: problem status"
    );
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_delivery_serves_the_s3_pyramid_publicly_and_through_links() {
    let Some(ls) = localstack().await else { return };
    let f = fixture(ls, "proxy").await;

    // Registration read the layers and levels from the metadata in S3.
    let d = &f.registered;
    assert_eq!(d["storage"], format!("s3://{TEST_BUCKET}/{}", f.prefix));
    assert_eq!(
        (d["zarr_format"].as_str(), d["ome_version"].as_str()),
        (Some("3"), Some("0.5"))
    );
    assert_eq!(d["visibility"], "public");
    assert_eq!(d["data_url"], format!("/data/{}/", f.public_id));
    let layers = d["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "image + label image: {layers:?}");
    let (image, labels) = (&layers[0], &layers[1]);
    assert_eq!(
        (
            image["name"].as_str(),
            image["kind"].as_str(),
            image["path"].as_str()
        ),
        (Some("demo-cells"), Some("image"), Some(""))
    );
    assert_eq!(strings(&image["axes"]), ["z", "y", "x"]);
    let levels = image["levels"].as_array().unwrap();
    assert_eq!(levels.len(), infra::demo::LEVELS);
    let mut shape = infra::demo::SHAPE;
    for (i, level) in levels.iter().enumerate() {
        assert_eq!(level["path"], i.to_string());
        assert_eq!(level["shape"], json!(shape), "level {i} shape");
        assert_eq!(
            level["chunk_shape"],
            json!(infra::demo::CHUNK),
            "level {i} chunks"
        );
        assert_eq!(level["data_type"], "uint16");
        assert!(
            strings(&level["codecs"]).contains(&"zstd"),
            "level {i} codecs: {}",
            level["codecs"]
        );
        shape = shape.map(|s| s / 2);
    }
    assert_eq!(
        (
            labels["name"].as_str(),
            labels["kind"].as_str(),
            labels["path"].as_str()
        ),
        (Some("cells"), Some("labels"), Some("labels/cells"))
    );
    let label_levels = labels["levels"].as_array().unwrap();
    assert_eq!(label_levels.len(), infra::demo::LABEL_LEVELS);
    assert_eq!(label_levels[0]["path"], "labels/cells/0");
    assert_eq!(label_levels[0]["data_type"], "uint32");
    assert_eq!(label_levels[0]["shard_shape"], json!(infra::demo::SHARD));
    assert_eq!(
        label_levels[0]["chunk_shape"],
        json!(infra::demo::CHUNK),
        "inner chunks"
    );
    assert!(
        strings(&label_levels[0]["codecs"]).contains(&"sharding_indexed"),
        "{}",
        label_levels[0]["codecs"]
    );
    let fetched = send(
        &f.api,
        Method::GET,
        &format!("/api/datasets/{}", f.public_id),
        &[ADMIN],
        None,
    )
    .await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert_eq!(
        fetched.json()["layers"],
        d["layers"],
        "the stored record has the same layers"
    );

    let data = format!("/data/{}", f.public_id);

    // Metadata document.
    let r = f.get(&format!("{data}/zarr.json"), &[ORIGIN]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, f.bytes("zarr.json"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(
        r.header("cache-control").unwrap().starts_with("public"),
        "{:?}",
        r.header("cache-control")
    );
    assert_eq!(r.json()["attributes"]["ome"]["version"], "0.5");

    // A chunk: the bytes that were uploaded.
    let chunk = f.bytes(CHUNK);
    let size = chunk.len();
    assert!(size > 100, "chunk of {size} bytes");
    let r = f.get(&format!("{data}/{CHUNK}"), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, chunk, "chunk bytes");
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.header("content-length"), Some(size.to_string().as_str()));
    let etag = r.header("etag").expect("an ETag").to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "quoted ETag {etag}"
    );
    let r = f
        .get(&format!("{data}/{CHUNK}"), &[("if-none-match", &etag)])
        .await;
    assert_eq!(
        r.status,
        StatusCode::NOT_MODIFIED,
        "If-None-Match with the current ETag"
    );

    // HEAD: the length, no body.
    let r = send(
        &f.chunks,
        Method::HEAD,
        &format!("{data}/{CHUNK}"),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header("content-length"),
        Some(size.to_string().as_str()),
        "HEAD Content-Length"
    );
    assert!(r.body.is_empty());

    // Byte ranges.
    let r = f
        .get(
            &format!("{data}/{CHUNK}"),
            &[("range", "bytes=0-9"), ORIGIN],
        )
        .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 0-9/{size}").as_str())
    );
    assert_eq!(r.body, chunk[..10]);
    let exposed = r
        .header("access-control-expose-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        exposed.contains("content-range"),
        "exposed headers: {exposed}"
    );
    let r = f
        .get(&format!("{data}/{CHUNK}"), &[("range", "bytes=100-")])
        .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 100-{}/{size}", size - 1).as_str())
    );
    assert_eq!(r.body, chunk[100..]);
    let r = f
        .get(&format!("{data}/{CHUNK}"), &[("range", "bytes=-16")])
        .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "suffix range");
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes {}-{}/{size}", size - 16, size - 1).as_str())
    );
    assert_eq!(r.body, chunk[size - 16..]);
    for past in [
        format!("bytes={}-{}", size + 10, size + 20),
        format!("bytes={size}-"),
    ] {
        let r = f.get(&format!("{data}/{CHUNK}"), &[("range", &past)]).await;
        assert_problem(&r, StatusCode::RANGE_NOT_SATISFIABLE, &past);
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes */{size}").as_str()),
            "{past}"
        );
    }

    // A missing chunk is 404 (readers use the fill value); traversal is refused.
    assert_problem(
        &f.get(&format!("{data}/0/c/9/9/9"), &[]).await,
        StatusCode::NOT_FOUND,
        "missing chunk",
    );
    assert_problem(
        &f.get(&format!("{data}/nothing/zarr.json"), &[]).await,
        StatusCode::NOT_FOUND,
        "missing document",
    );
    for bad in [
        "0/../zarr.json",
        "%2e%2e/zarr.json",
        "0/%2E%2E/%2e%2e/x",
        "0//c/0/0/0",
        "0%2Fc%2F0",
        "0%5c..%5czarr.json",
        "0\\c",
    ] {
        let r = f.get(&format!("{data}/{bad}"), &[]).await;
        assert_problem(&r, StatusCode::BAD_REQUEST, bad);
    }

    // Private: invisible under /data, readable through a share link until it is revoked.
    let private = format!("/data/{}", f.private_id);
    assert_problem(
        &f.get(&format!("{private}/zarr.json"), &[]).await,
        StatusCode::NOT_FOUND,
        "private via /data",
    );
    assert_problem(
        &f.get(&format!("{private}/{CHUNK}"), &[]).await,
        StatusCode::NOT_FOUND,
        "private chunk via /data",
    );
    let (link_id, link) = f.link().await;
    let r = f.get(&format!("{link}zarr.json"), &[ORIGIN]).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "link read: {}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.body, f.bytes("zarr.json"));
    assert!(
        r.header("cache-control").unwrap().starts_with("private"),
        "{:?}",
        r.header("cache-control")
    );
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let r = f.get(&format!("{link}{CHUNK}"), &[]).await;
    assert_eq!(
        (r.status, r.body.as_slice()),
        (StatusCode::OK, chunk),
        "chunk through the link"
    );
    // A shard read the way a sharding reader does: its index at the end, by a suffix range.
    let shard = f.bytes(SHARD);
    let r = f
        .get(&format!("{link}{SHARD}"), &[("range", "bytes=-132")])
        .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.body, shard[shard.len() - 132..]);
    assert_problem(
        &f.get(&format!("{link}0/c/9/9/9"), &[]).await,
        StatusCode::NOT_FOUND,
        "missing chunk via link",
    );
    assert_problem(
        &f.get(&format!("{link}0/../zarr.json"), &[]).await,
        StatusCode::BAD_REQUEST,
        "traversal via link",
    );
    let wrong = format!("/s/{}/zarr.json", "a".repeat(43));
    assert_problem(
        &f.get(&wrong, &[]).await,
        StatusCode::NOT_FOUND,
        "unknown token",
    );

    let r = send(
        &f.api,
        Method::DELETE,
        &format!("/api/datasets/{}/links/{link_id}", f.private_id),
        &[ADMIN],
        None,
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "revoke: {}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.json()["state"], "revoked");
    assert_problem(
        &f.get(&format!("{link}zarr.json"), &[]).await,
        StatusCode::GONE,
        "revoked link",
    );
    assert_problem(
        &f.get(&format!("{link}{CHUNK}"), &[]).await,
        StatusCode::GONE,
        "revoked link, chunk",
    );
    // The revocation is in DynamoDB, not only in this instance's cache: a fresh instance agrees.
    let (fresh, _) =
        f.ls.services(TEST_TABLE, "proxy", f.services.auth.org().as_str());
    let r = send(
        &chunks::router(fresh),
        Method::GET,
        &format!("{link}zarr.json"),
        &[],
        None,
    )
    .await;
    assert_problem(&r, StatusCode::GONE, "revoked link on another instance");
}

/// Follows nothing: sends one plain-HTTP request to LocalStack.
async fn fetch(
    url: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let headers = response.headers().clone();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

/// The `Location` of a 307 from the chunk function.
fn presigned(r: &Reply, what: &str) -> String {
    assert_eq!(
        r.status,
        StatusCode::TEMPORARY_REDIRECT,
        "{what}: {}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(
        r.header("cache-control"),
        Some("private, no-store"),
        "{what}: a presigned URL is not cached"
    );
    r.header("location")
        .unwrap_or_else(|| panic!("{what}: no Location"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_delivery_hands_out_presigned_urls_that_localstack_checks() {
    let Some(ls) = localstack().await else { return };
    let f = fixture(ls, "redirect").await;
    let data = format!("/data/{}", f.public_id);
    let chunk = f.bytes(CHUNK);

    let url = presigned(
        &f.get(&format!("{data}/{CHUNK}"), &[]).await,
        "public chunk",
    );
    let object_path = format!("/{TEST_BUCKET}/{}/{CHUNK}", f.prefix);
    assert!(
        url.starts_with(&format!("{}{object_path}?", f.ls.endpoint)),
        "path-style presigned URL at LocalStack: {url}"
    );
    assert!(url.contains("X-Amz-Signature="), "{url}");
    assert!(url.contains("X-Amz-Expires="), "{url}");

    // LocalStack serves it: whole, by range, and with CORS for browser viewers.
    let (status, _, body) = fetch(&url, &[]).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "presigned GET: {}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(body, chunk, "bytes behind the presigned URL");
    let (status, headers, body) = fetch(&url, &[("range", "bytes=0-9"), ORIGIN]).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT, "presigned range GET");
    assert_eq!(body, chunk[..10]);
    let content_range = headers.get("content-range").and_then(|v| v.to_str().ok());
    assert_eq!(
        content_range,
        Some(format!("bytes 0-9/{}", chunk.len()).as_str())
    );
    let allow_origin = headers
        .get("access-control-allow-origin")
        .and_then(|v| v.to_str().ok());
    assert!(
        allow_origin.is_some(),
        "bucket CORS applies to presigned reads: {headers:?}"
    );

    // Tampering: one character of the signature, or another key under the same signature.
    let (before, after) = url.split_once("X-Amz-Signature=").unwrap();
    let mut signature: Vec<char> = after.chars().collect();
    signature[0] = if signature[0] == '0' { '1' } else { '0' };
    let tampered = format!(
        "{before}X-Amz-Signature={}",
        signature.into_iter().collect::<String>()
    );
    let (status, _, body) = fetch(&tampered, &[]).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "tampered signature: {}",
        String::from_utf8_lossy(&body)
    );
    let other_key = url.replacen(
        &object_path,
        &format!("/{TEST_BUCKET}/{}/0/c/0/1/0", f.prefix),
        1,
    );
    assert_ne!(other_key, url);
    let (status, _, body) = fetch(&other_key, &[]).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "signature moved to another key: {}",
        String::from_utf8_lossy(&body)
    );

    // A missing chunk: still a redirect (no lookup on the hot path), and S3 answers 404.
    let missing = presigned(
        &f.get(&format!("{data}/0/c/9/9/9"), &[]).await,
        "missing chunk",
    );
    let (status, _, _) = fetch(&missing, &[]).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "presigned URL of a missing key"
    );

    // HEAD is answered directly, with the length.
    let r = send(
        &f.chunks,
        Method::HEAD,
        &format!("{data}/{CHUNK}"),
        &[],
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.header("content-length")),
        (StatusCode::OK, Some(chunk.len().to_string().as_str()))
    );

    // Through a share link to the private dataset; /data still refuses it.
    let (_, link) = f.link().await;
    let url = presigned(
        &f.get(&format!("{link}zarr.json"), &[]).await,
        "link document",
    );
    let (status, _, body) = fetch(&url, &[]).await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::OK, f.bytes("zarr.json")),
        "document through a link"
    );
    assert_eq!(
        f.get(&format!("/data/{}/zarr.json", f.private_id), &[])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Traversal is refused before any URL is signed.
    assert_eq!(
        f.get(&format!("{data}/0/../../other/zarr.json"), &[])
            .await
            .status,
        StatusCode::BAD_REQUEST
    );

    // Warm: handing out presigned URLs makes no metadata call either.
    let before = f.counts.total();
    for i in 0..20 {
        let key = format!("0/c/{}/{}/{}", i % 2, (i / 2) % 4, i % 4);
        let url = presigned(&f.get(&format!("{data}/{key}"), &[]).await, &key);
        assert!(url.contains(&format!("/{key}?")), "{url}");
        presigned(&f.get(&format!("{link}{key}"), &[]).await, &key);
    }
    assert_eq!(f.counts.total(), before, "metadata calls while redirecting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_chunk_reads_make_no_metadata_calls() {
    let Some(ls) = localstack().await else { return };
    let f = fixture(ls, "proxy").await;
    let (_, link) = f.link().await;
    let data = format!("/data/{}", f.public_id);

    // Warm-up: one public read and one link read resolve the dataset and the link.
    let at_start = f.counts.total();
    assert_eq!(
        f.get(&format!("{data}/zarr.json"), &[]).await.status,
        StatusCode::OK
    );
    assert_eq!(
        f.get(&format!("{link}zarr.json"), &[]).await.status,
        StatusCode::OK
    );
    let warm = f.counts.total();
    assert!(
        warm > at_start,
        "the warm-up read the metadata store (the meter works)"
    );

    let keys: Vec<String> = (0..2u64)
        .flat_map(|z| {
            (0..4u64).flat_map(move |y| (0..4u64).map(move |x| format!("0/c/{z}/{y}/{x}")))
        })
        .collect();
    for i in 0..50 {
        let key = &keys[i % keys.len()];
        let r = f.get(&format!("{data}/{key}"), &[]).await;
        assert_eq!(
            (r.status, r.body.as_slice()),
            (StatusCode::OK, f.bytes(key)),
            "public read {i} of {key}"
        );
    }
    for i in 0..50 {
        let key = &keys[(i * 7) % keys.len()];
        let r = f.get(&format!("{link}{key}"), &[]).await;
        assert_eq!(
            (r.status, r.body.as_slice()),
            (StatusCode::OK, f.bytes(key)),
            "link read {i} of {key}"
        );
    }
    let counts = &f.counts;
    assert_eq!(
        counts.total(),
        warm,
        "100 warm chunk reads called the metadata store (gets {:?}, queries {:?}, writes {:?})",
        counts.gets,
        counts.queries,
        counts.writes
    );
}
