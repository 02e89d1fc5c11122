//! Shared set-up for the integration tests in `tests/`, which drive the real AWS SDK (and the
//! functions' routers over it) against LocalStack.
//!
//! Every test starts with [`localstack`]: it returns `None` — and the test returns early,
//! having printed `skipped: LocalStack not running (run infra/localstack/start.sh)` — when
//! `AWS_ENDPOINT_URL` is unset or LocalStack does not answer its health check, unless the
//! environment variable `CI` is set, in which case it panics: CI never skips silently.
//!
//! Run them with
//!
//! ```text
//! bash infra/localstack/setup.sh && bash infra/localstack/start.sh
//! AWS_ENDPOINT_URL=http://127.0.0.1:4566 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
//!   AWS_REGION=us-east-1 cargo test -p localstack-tests
//! ```

#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use shared::Services;
use shared::config::Config;
use shared::store::DynStore;
use shared::store::dynamo::DynamoStore;
use shared::store::metered::{CallCounts, Metered};
use tower::ServiceExt;

/// A table shared by the tests that do not need one of their own (every test works in
/// partitions, organizations and key prefixes of its own, so reuse across runs is fine).
pub const TEST_TABLE: &str = "zarrshare-test";
/// The bucket the tests upload data to (each under a prefix of its own).
pub const TEST_BUCKET: &str = "zarrshare-test";
macro_rules! admin_key {
    () => {
        "localstack-tests-admin-key-not-a-secret"
    };
}

/// The admin bearer key of the services the tests build (≥ 24 characters).
pub const ADMIN_KEY: &str = admin_key!();
/// `Authorization: Bearer <ADMIN_KEY>`, as a header pair for [`send`].
pub const ADMIN: (&str, &str) = ("authorization", concat!("Bearer ", admin_key!()));

/// A LocalStack that answered its health check, and an SDK configuration pointing at it.
#[derive(Clone, Debug)]
pub struct LocalStack {
    /// `AWS_ENDPOINT_URL` without a trailing `/`.
    pub endpoint: String,
    pub region: String,
    pub sdk: aws_config::SdkConfig,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The gate every test passes first: `Some` when LocalStack is reachable at
/// `AWS_ENDPOINT_URL`; otherwise `None` after printing why the test is skipped — or, when `CI`
/// is set, a panic.
pub async fn localstack() -> Option<LocalStack> {
    let Some(endpoint) = env("AWS_ENDPOINT_URL") else {
        return not_running("AWS_ENDPOINT_URL is not set");
    };
    let endpoint = endpoint.trim_end_matches('/').to_owned();
    if let Err(why) = health(&endpoint).await {
        return not_running(&format!("{endpoint}/_localstack/health: {why}"));
    }
    // LocalStack is up, so the caller means to run these tests: missing credentials are a
    // configuration error to report, not a reason to skip.
    for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        if env(name).is_none() {
            panic!(
                "LocalStack answers at {endpoint}, but {name} is not set (LocalStack accepts AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test)"
            );
        }
    }
    let region = env("AWS_REGION")
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".into());
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.clone()))
        .endpoint_url(&endpoint)
        .load()
        .await;
    Some(LocalStack {
        endpoint,
        region,
        sdk,
    })
}

/// Whether S3 and DynamoDB report themselves usable.
async fn health(endpoint: &str) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let response = client
        .get(format!("{endpoint}/_localstack/health"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("status {}", response.status()));
    }
    let body: serde_json::Value = response
        .json()
        .await
        .map_err(|e| format!("not JSON: {e}"))?;
    for service in ["s3", "dynamodb"] {
        let state = body["services"][service].as_str().unwrap_or("absent");
        if !matches!(state, "running" | "available") {
            return Err(format!("{service} is {state}"));
        }
    }
    Ok(())
}

fn not_running<T>(why: &str) -> Option<T> {
    let test = std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .map(|n| format!("{n}: "))
        .unwrap_or_default();
    if std::env::var_os("CI").is_some() {
        panic!(
            "{test}LocalStack is required when CI is set, but {why}; run infra/localstack/start.sh and export AWS_ENDPOINT_URL=http://127.0.0.1:4566"
        );
    }
    // Written to the process's stderr directly: libtest captures `eprintln!` of passing tests,
    // and a skip must be visible.
    let _ = writeln!(
        std::io::stderr(),
        "{test}skipped: LocalStack not running (run infra/localstack/start.sh): {why}"
    );
    None
}

/// A name no other test or run uses: lowercase letters, digits and `-` (valid for buckets,
/// tables, organizations and dataset names), at most `prefix.len() + 27` characters.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{prefix}-{:x}-{:x}-{n}",
        std::process::id(),
        (nanos as u64) & 0xffff_ffff_ffff
    )
}

impl LocalStack {
    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk)
    }

    /// Path-style addressing: virtual-host style would need DNS for `bucket.127.0.0.1`.
    pub fn s3(&self) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&self.sdk)
                .force_path_style(true)
                .build(),
        )
    }

    /// Creates (idempotently) a table and a bucket the way the product provisions them.
    pub async fn provision(&self, table: &str, bucket: &str) {
        infra::provision::provision(&self.sdk, &infra::provision::Resources::new(table, bucket))
            .await
            .unwrap_or_else(|e| panic!("provisioning {table} / {bucket}: {}", error_chain(&e)));
    }

    /// The functions' configuration over `table` and this LocalStack: `delivery` is `proxy` or
    /// `redirect`; `org` is the organization the admin key manages. Nothing else is read from
    /// the environment, so stray `ZARRSHARE_*` variables cannot change a test.
    pub fn config(&self, table: &str, delivery: &str, org: &str) -> Config {
        self.config_with(table, delivery, org, &[])
    }

    /// [`config`](Self::config) plus `extra` settings (`(name, value)` pairs, e.g.
    /// `ZARRSHARE_SENDER_EMAIL`), which win over the fixed ones.
    pub fn config_with(
        &self,
        table: &str,
        delivery: &str,
        org: &str,
        extra: &[(&str, &str)],
    ) -> Config {
        Config::from_lookup(|name| {
            if let Some((_, v)) = extra.iter().find(|(n, _)| *n == name) {
                return Some((*v).to_owned());
            }
            let v = match name {
                "ZARRSHARE_TABLE" => table,
                "ZARRSHARE_DELIVERY" => delivery,
                "ZARRSHARE_ADMIN_KEY" => ADMIN_KEY,
                "ZARRSHARE_ORG" => org,
                "ZARRSHARE_DATA_BUCKET" => TEST_BUCKET,
                // Long enough that a slow test still sees only cached resolutions.
                "ZARRSHARE_ACCESS_CACHE_TTL_SECS" => "60",
                "AWS_ENDPOINT_URL" => &self.endpoint,
                "AWS_REGION" => &self.region,
                _ => return None,
            };
            Some(v.to_owned())
        })
        .unwrap_or_else(|e| panic!("test configuration: {e}"))
    }

    /// Services over DynamoDB `table` and S3, with every metadata-store call counted.
    pub fn services(
        &self,
        table: &str,
        delivery: &str,
        org: &str,
    ) -> (Arc<Services>, Arc<CallCounts>) {
        let store: DynStore = Arc::new(DynamoStore::new(self.dynamodb(), table));
        let (store, counts) = Metered::wrap(store);
        let services = Services::new(self.config(table, delivery, org), store)
            .unwrap_or_else(|e| panic!("services: {e}"));
        (Arc::new(services), counts)
    }

    /// The mail LocalStack's SES accepted for `to` (a recipient in `Destination.ToAddresses`),
    /// oldest first, as `GET /_aws/ses` lists it: objects with `Id`, `Timestamp`, `Region`,
    /// `Source`, `Destination`, `Subject` and `Body` (`text_part`, `html_part`). Other tests'
    /// mail to other addresses is left out.
    pub async fn sent_mail(&self, to: &str) -> Vec<serde_json::Value> {
        let url = format!("{}/_aws/ses", self.endpoint);
        let response = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {}", error_chain(&e)));
        let status = response.status();
        assert!(status.is_success(), "GET {url}: {status}");
        let body: serde_json::Value = response
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: not JSON: {}", error_chain(&e)));
        let Some(messages) = body["messages"].as_array() else {
            panic!("GET {url}: no \"messages\" array in {body}");
        };
        let mut mine: Vec<serde_json::Value> = messages
            .iter()
            .filter(|m| {
                m["Destination"]["ToAddresses"]
                    .as_array()
                    .is_some_and(|to_addresses| {
                        to_addresses
                            .iter()
                            .any(|a| a.as_str().is_some_and(|a| a.eq_ignore_ascii_case(to)))
                    })
            })
            .cloned()
            .collect();
        mine.sort_by(|a, b| {
            a["Timestamp"]
                .as_str()
                .unwrap_or_default()
                .cmp(b["Timestamp"].as_str().unwrap_or_default())
        });
        mine
    }

    /// Uploads every file below `dir` to `s3://bucket/prefix/...` with the SDK; returns each
    /// object's key relative to `prefix` and its bytes.
    pub async fn upload_dir(
        &self,
        dir: &Path,
        bucket: &str,
        prefix: &str,
    ) -> BTreeMap<String, Vec<u8>> {
        let s3 = self.s3();
        let mut uploads = tokio::task::JoinSet::new();
        let mut files = BTreeMap::new();
        for path in walk(dir) {
            let rel = path
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let (s3, bucket, key, body) = (
                s3.clone(),
                bucket.to_owned(),
                format!("{prefix}/{rel}"),
                bytes.clone(),
            );
            uploads.spawn(async move {
                s3.put_object()
                    .bucket(&bucket)
                    .key(&key)
                    .body(body.into())
                    .send()
                    .await
                    .unwrap_or_else(|e| {
                        panic!("PutObject s3://{bucket}/{key}: {}", error_chain(&e))
                    })
            });
            files.insert(rel, bytes);
        }
        while let Some(done) = uploads.join_next().await {
            done.unwrap();
        }
        files
    }
}

/// Every file below `dir`, sorted.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p)
            } else {
                out.push(p)
            }
        }
    }
    out.sort();
    out
}

/// The demo pyramid uploaded to [`TEST_BUCKET`], shared by the tests of one process (which
/// only read it).
#[derive(Debug)]
pub struct DemoInS3 {
    /// The dataset root's prefix in the bucket (unique per process).
    pub prefix: String,
    /// Key below the dataset root → the bytes uploaded there.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl DemoInS3 {
    /// `s3://bucket/prefix`, the URL to register.
    pub fn url(&self) -> String {
        format!("s3://{TEST_BUCKET}/{}", self.prefix)
    }
}

impl LocalStack {
    /// Provisions [`TEST_TABLE`] and [`TEST_BUCKET`], writes the demo pyramid and uploads it,
    /// once per test process: writing it takes seconds in a debug build, and every test of a
    /// binary can read the same objects.
    pub async fn demo_in_s3(&self) -> &'static DemoInS3 {
        static DEMO: tokio::sync::OnceCell<DemoInS3> = tokio::sync::OnceCell::const_new();
        DEMO.get_or_init(|| async {
            self.provision(TEST_TABLE, TEST_BUCKET).await;
            let dir = demo_pyramid().await;
            let prefix = format!("{}/cells.ome.zarr", unique("demo"));
            let files = self.upload_dir(dir.path(), TEST_BUCKET, &prefix).await;
            DemoInS3 { prefix, files }
        })
        .await
    }
}

/// The demo OME-Zarr 0.5 pyramid (`infra::demo::write_pyramid`) in a fresh temporary directory.
pub async fn demo_pyramid() -> tempfile::TempDir {
    tokio::task::spawn_blocking(|| {
        let dir = tempfile::tempdir().unwrap();
        infra::demo::write_pyramid(dir.path())
            .unwrap_or_else(|e| panic!("writing the demo pyramid: {}", error_chain(&e)));
        dir
    })
    .await
    .unwrap()
}

/// An error and all its sources on one line (SDK errors say little at the top level).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Sends one request through a router in-process (`oneshot`), as API Gateway would hand it to
/// the Lambda. `headers` are `(name, value)` pairs; a JSON `body` sets `Content-Type`.
pub async fn send(
    router: &Router,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<serde_json::Value>,
) -> Reply {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = match body {
        Some(json) => {
            request = request.header("content-type", "application/json");
            Body::from(json.to_string())
        }
        None => Body::empty(),
    };
    let response = router
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 64 << 20)
        .await
        .unwrap()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

/// `infra::server::start` seeds the demo by name when it is missing: two first starts at once
/// would both register it. The servers of one test binary start one at a time.
static STARTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A local server in `--aws` mode (DynamoDB and S3 in LocalStack) with the demo seeded, and
/// the directory it keeps its files in (drop it after the server).
pub async fn serve_aws(
    delivery: shared::config::Delivery,
) -> (infra::server::Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let _one_at_a_time = STARTING.lock().await;
    let running = infra::server::start(infra::server::ServeOptions {
        port: 0,
        data_dir: dir.path().to_path_buf(),
        ready_file: None,
        aws: true,
        delivery,
        local_roots: vec![],
        seed_demo: true,
    })
    .await
    .unwrap_or_else(|e| panic!("serve --aws: {}", error_chain(&e)));
    (running, dir)
}

/// A new dataset manager of the installation's organization (stored in DynamoDB, its record
/// created on first use) and an access token for them.
pub async fn signed_in_manager(services: &Services, name: &str) -> (shared::domain::User, String) {
    use shared::domain::{Email, OrgRole, Organization, User, now};
    let user = User::new(
        services.config.org.clone(),
        Email::parse(&format!("{}@lab.example", unique(name))).unwrap(),
        name.into(),
        OrgRole::DatasetManager,
        String::new(),
    );
    let record = Organization {
        id: user.org.clone(),
        name: "Lab".into(),
        auto_activate: false,
        created_at: now(),
        version: 1,
    };
    // The installation's organization has no record until someone creates it (or another
    // test just did).
    let created = services.directory.org(&user.org).await.is_err()
        && services.directory.create_org(&record, &user).await.is_ok();
    if !created {
        services.directory.create_user(&user).await.unwrap();
    }
    let token = services
        .tokens
        .issue(&user.id, &user.org, user.token_generation)
        .unwrap();
    (user, token)
}
