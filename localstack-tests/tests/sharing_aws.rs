//! Sharing over DynamoDB, S3 and SES in LocalStack, through the real local server
//! (`infra::server::start` with `aws: true`, the demo seeded into S3) over HTTP: share links
//! (expiring, path-scoped, password-protected) read, refused, revoked and counted; batches of
//! links in one transaction; per-person shares whose invitation arrives by SES; the public
//! gallery and its thumbnails rendered from S3; the audit trail; Neuroglancer states whose
//! sources are link URLs.
//!
//! Every server shares LocalStack's table `zarrshare` (and organization) with every other run:
//! the tests identify what they made by id, unique label or unique name, never by counts of
//! an organization's or the gallery's contents.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use infra::server::{DemoInfo, Running, ServeOptions, start};
use localstack_tests::{ADMIN_KEY, LocalStack, error_chain, localstack, unique};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use shared::Services;
use shared::config::{Delivery, MetadataBackend};
use shared::domain::{AuditAction, AuditEntry, DatasetId, LinkId, LinkUsage, StorageUrl};
use shared::store::dynamo::DynamoStore;
use shared::store::metered::Metered;
use shared::store::{Catalog, DynStore};

/// A level-0 chunk of the image.
const CHUNK: &str = "0/c/0/0/0";
/// The label image, and the first shard of its finest level (relative to it).
const LABELS: &str = "labels/cells";
const LABEL_SHARD: &str = "0/c/0/0/0";
const LINK_PASSWORD: &str = "Reviewer two sees cells";
const ACCOUNT_PASSWORD: &str = "correct horse battery staple 42";
/// The verified SES identity the share invitations come from.
const SENDER: &str = "noreply@zarrshare.test";
const JWT_SECRET: &str = "sharing-aws-tests-jwt-secret-0123456789abcdef";

// ---------------------------------------------------------------------------------------------
// HTTP

/// One HTTP answer, read whole.
struct Resp {
    what: String,
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{}: {} body is not JSON ({e}): {}",
                self.what,
                self.status,
                self.text()
            )
        })
    }

    /// Asserts the status; the JSON body (`Null` when empty).
    fn expect(&self, status: StatusCode) -> Value {
        assert_eq!(self.status, status, "{}: {}", self.what, self.text());
        if self.body.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }

    /// Asserts a problem document with this status.
    fn problem(&self, status: StatusCode) {
        assert_eq!(self.status, status, "{}: {}", self.what, self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{}: content type",
            self.what
        );
        assert_eq!(self.json()["status"], status.as_u16(), "{}", self.what);
    }

    /// Asserts `200` and that the body is exactly `expected` (an object as stored in S3).
    fn bytes_are(&self, expected: &[u8]) {
        assert_eq!(
            self.status,
            StatusCode::OK,
            "{}: {}",
            self.what,
            self.text()
        );
        assert!(
            self.body == expected,
            "{}: {} bytes served, the object in S3 has {}",
            self.what,
            self.body.len(),
            expected.len()
        );
    }
}

/// One request to an absolute URL, with an optional bearer token and JSON body. A fresh client
/// per request: no kept-alive connection outlives a stopped server.
async fn http(method: Method, url: &str, bearer: Option<&str>, body: Option<&Value>) -> Resp {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut request = client.request(method.clone(), url);
    if let Some(token) = bearer {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let what = format!("{method} {url}");
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: {}", error_chain(&e)));
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap().to_vec();
    Resp {
        what,
        status,
        headers,
        body,
    }
}

async fn get(url: &str) -> Resp {
    http(Method::GET, url, None, None).await
}

// ---------------------------------------------------------------------------------------------
// The local server over DynamoDB and S3

/// `start` seeds the demo by name when it is missing: two first starts at once would both
/// register it, and one of them fail. The tests of this binary start one at a time.
static STARTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A local server in `--aws` mode with the demo seeded, and what the tests need of it.
struct Server {
    running: Running,
    demo: DemoInfo,
    /// `http://127.0.0.1:{port}`.
    base: String,
    admin_key: String,
    table: String,
    org: String,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn boot() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let running = {
            let _one_at_a_time = STARTING.lock().await;
            start(ServeOptions {
                port: 0,
                data_dir: dir.path().to_path_buf(),
                ready_file: None,
                aws: true,
                delivery: Delivery::Proxy,
                local_roots: vec![],
                seed_demo: true,
            })
            .await
            .unwrap_or_else(|e| panic!("serve --aws: {}", error_chain(&e)))
        };
        let MetadataBackend::DynamoDb { table } = running.services.config.metadata.clone() else {
            panic!(
                "--aws must keep its metadata in DynamoDB: {:?}",
                running.services.config.metadata
            );
        };
        assert!(
            !dir.path().join("meta.redb").exists(),
            "--aws must not open the embedded store"
        );
        let demo = running.demo.clone().expect("the demo was seeded");
        let base = running.base_url.clone();
        assert!(demo.link_url.starts_with(&format!("{base}/s/")), "{demo:?}");
        Self {
            admin_key: running.admin_key.clone(),
            org: running.services.config.org.to_string(),
            demo,
            base,
            table,
            running,
            _dir: dir,
        }
    }

    fn services(&self) -> &Services {
        &self.running.services
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with the admin key.
    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        http(
            method,
            &self.url(path),
            Some(&self.admin_key),
            body.as_ref(),
        )
        .await
    }

    /// The admin key's principal, as audit trails and `created_by` name it.
    fn admin_actor(&self) -> String {
        format!("admin-key@{}", self.org)
    }

    async fn dataset_record(&self, id: &str) -> shared::domain::Dataset {
        self.services()
            .catalog
            .dataset(&DatasetId::parse(id).unwrap())
            .await
            .unwrap_or_else(|e| panic!("dataset {id} in DynamoDB: {e:?}"))
    }

    /// Where the demo pyramid is in S3 (both demo datasets point there).
    async fn demo_storage(&self) -> StorageUrl {
        let storage = self
            .dataset_record(&self.demo.private_dataset_id)
            .await
            .storage;
        assert!(
            matches!(storage, StorageUrl::S3 { .. }),
            "--aws seeds the demo into S3: {storage:?}"
        );
        storage
    }

    /// Registers the demo pyramid once more under a name of its own.
    async fn register(&self, name: &str, extra: Value) -> Value {
        let mut body = json!({ "name": name, "url": self.demo_storage().await.to_string() });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let created = self
            .admin(Method::POST, "/api/datasets", Some(body))
            .await
            .expect(StatusCode::CREATED);
        assert_eq!(created["name"], name, "{created:#}");
        created
    }

    async fn create_link(&self, dataset: &str, options: Value) -> Value {
        let link = self
            .admin(
                Method::POST,
                &format!("/api/datasets/{dataset}/links"),
                Some(options),
            )
            .await
            .expect(StatusCode::CREATED);
        assert_eq!(link["dataset_id"], dataset, "{link:#}");
        assert_eq!(link["state"], "active", "{link:#}");
        let token = link["token"].as_str().unwrap();
        assert!(token.len() >= 32, "{link:#}");
        assert_eq!(
            link["state_url"],
            self.url(&format!("/ng/s/{token}.json")),
            "{link:#}"
        );
        link
    }

    async fn revoke_link(&self, dataset: &str, link: &str) -> Value {
        let revoked = self
            .admin(
                Method::DELETE,
                &format!("/api/datasets/{dataset}/links/{link}"),
                None,
            )
            .await
            .expect(StatusCode::OK);
        assert_eq!(revoked["id"], link, "{revoked:#}");
        assert_eq!(revoked["state"], "revoked", "{revoked:#}");
        assert!(revoked["revoked_at"].is_string(), "{revoked:#}");
        revoked
    }

    /// The link's stored usage once it reads `(views, chunk_reads, bytes, redirects)`: flushes
    /// this server's counts (a background flush may be under way) and reads the record from
    /// DynamoDB until it does.
    async fn flushed_usage(
        &self,
        dataset: &str,
        link: &str,
        expected: (u64, u64, u64, u64),
    ) -> LinkUsage {
        let (d, l) = (
            DatasetId::parse(dataset).unwrap(),
            LinkId::parse(link).unwrap(),
        );
        let mut last = None;
        for _ in 0..100 {
            self.services().flush_usage().await;
            let usage = self.services().catalog.link(&d, &l).await.unwrap().usage;
            if (usage.views, usage.chunk_reads, usage.bytes, usage.redirects) == expected {
                return usage;
            }
            last = Some(usage);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "link {link}: usage (views, chunk_reads, bytes, redirects) should be {expected:?}, is {last:?}"
        );
    }

    async fn stop(self) {
        let base = self.base.clone();
        self.running
            .stop()
            .await
            .unwrap_or_else(|e| panic!("stopping {base}: {e}"));
        assert!(
            reqwest::Client::new()
                .get(format!("{base}/"))
                .send()
                .await
                .is_err(),
            "{base} still answers after stop"
        );
    }
}

/// An object of the dataset stored at `storage` (`s3://bucket/prefix`), read with the SDK.
async fn s3_object(ls: &LocalStack, storage: &StorageUrl, key: &str) -> Vec<u8> {
    let StorageUrl::S3 { bucket, prefix } = storage else {
        panic!("not in S3: {storage:?}");
    };
    let key = format!("{prefix}/{key}");
    let object = ls
        .s3()
        .get_object()
        .bucket(bucket)
        .key(&key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("s3://{bucket}/{key}: {}", error_chain(&e)));
    let bytes = object.body.collect().await.unwrap().into_bytes().to_vec();
    assert!(!bytes.is_empty(), "s3://{bucket}/{key} is empty");
    bytes
}

/// The demo's objects the tests read, as stored in S3.
struct DemoObjects {
    root_doc: Vec<u8>,
    chunk: Vec<u8>,
    labels_doc: Vec<u8>,
    label_shard: Vec<u8>,
}

impl DemoObjects {
    async fn read(ls: &LocalStack, storage: &StorageUrl) -> Self {
        Self {
            root_doc: s3_object(ls, storage, "zarr.json").await,
            chunk: s3_object(ls, storage, CHUNK).await,
            labels_doc: s3_object(ls, storage, &format!("{LABELS}/zarr.json")).await,
            label_shard: s3_object(ls, storage, &format!("{LABELS}/{LABEL_SHARD}")).await,
        }
    }
}

fn len(bytes: &[u8]) -> u64 {
    bytes.len() as u64
}

/// The links page (`GET /api/links?dataset=…`), paged through until every id in `ids` was
/// seen (newest first, so they are near the top): their rows, in the order of `ids`.
async fn links_page_rows(s: &Server, dataset: &str, ids: &[&str]) -> Vec<Value> {
    let mut found: Vec<Option<Value>> = vec![None; ids.len()];
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let mut params = vec![("dataset", dataset.to_owned()), ("limit", "100".into())];
        if let Some(c) = &cursor {
            params.push(("cursor", c.clone()));
        }
        let url = reqwest::Url::parse_with_params(&s.url("/api/links"), &params).unwrap();
        let page = http(Method::GET, url.as_str(), Some(&s.admin_key), None)
            .await
            .expect(StatusCode::OK);
        for row in page["items"].as_array().unwrap() {
            assert_eq!(row["dataset_id"], dataset, "the dataset filter: {row:#}");
            assert!(row.get("token").is_none(), "tokens are never listed: {row}");
            if let Some(i) = ids.iter().position(|id| row["id"] == *id) {
                assert!(found[i].is_none(), "link {} listed twice", ids[i]);
                found[i] = Some(row.clone());
            }
        }
        if found.iter().all(Option::is_some) {
            return found.into_iter().map(Option::unwrap).collect();
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    panic!("links {ids:?} not all on the links page: found {found:?}");
}

fn usage_of(row: &Value) -> LinkUsage {
    serde_json::from_value(row["usage"].clone()).unwrap_or_else(|e| panic!("usage of {row}: {e}"))
}

fn usage_tuple(u: &LinkUsage) -> (u64, u64, u64, u64) {
    (u.views, u.chunk_reads, u.bytes, u.redirects)
}

// ---------------------------------------------------------------------------------------------
// 1. Links

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn links_over_dynamodb_and_s3_are_scoped_protected_revoked_and_counted() {
    let Some(ls) = localstack().await else { return };
    let s = Server::boot().await;
    let id = s.demo.private_dataset_id.clone();
    let objects = DemoObjects::read(&ls, &s.demo_storage().await).await;

    // Nothing private is readable without a link.
    get(&s.url(&format!("/data/{id}/zarr.json")))
        .await
        .problem(StatusCode::NOT_FOUND);

    // A whole-dataset link that expires in an hour.
    let expiring = s
        .create_link(
            &id,
            json!({ "label": unique("expiring"), "expires_in_seconds": 3600 }),
        )
        .await;
    let e_token = expiring["token"].as_str().unwrap();
    let e_id = expiring["id"].as_str().unwrap();
    assert_eq!(expiring["url"], s.url(&format!("/s/{e_token}/")));
    assert_eq!(expiring["scope"], json!({ "kind": "dataset" }));
    assert_eq!(expiring["permission"], "view");
    assert_eq!(expiring["password_protected"], false);
    assert!(expiring["expires_at"].is_string(), "{expiring:#}");
    let record = s
        .services()
        .catalog
        .link(
            &DatasetId::parse(&id).unwrap(),
            &LinkId::parse(e_id).unwrap(),
        )
        .await
        .unwrap();
    let lifetime = record
        .expires_at
        .expect("an expiry is stored")
        .unix_timestamp()
        - record.created_at.unix_timestamp();
    assert!(
        (3598..=3600).contains(&lifetime),
        "expires_in_seconds 3600, stored lifetime {lifetime} s"
    );
    assert!(record.password_hash.is_none());

    // A link to the label image only.
    let scoped = s
        .create_link(
            &id,
            json!({ "label": unique("labels"), "scope": { "kind": "path", "prefix": LABELS } }),
        )
        .await;
    let p_token = scoped["token"].as_str().unwrap();
    let p_id = scoped["id"].as_str().unwrap();
    assert_eq!(scoped["url"], s.url(&format!("/s/{p_token}/{LABELS}/")));
    assert_eq!(scoped["scope"], json!({ "kind": "path", "prefix": LABELS }));
    assert!(scoped["expires_at"].is_null(), "{scoped:#}");

    // A password-protected link.
    let protected = s
        .create_link(
            &id,
            json!({ "label": unique("protected"), "password": LINK_PASSWORD }),
        )
        .await;
    let w_token = protected["token"].as_str().unwrap();
    let w_id = protected["id"].as_str().unwrap();
    assert_eq!(protected["url"], s.url(&format!("/s/{w_token}/")));
    assert_eq!(protected["password_protected"], true);
    assert!(
        !protected.to_string().contains(LINK_PASSWORD),
        "the password is never shown"
    );

    // Each reads what it opens, byte for byte as in S3.
    let e_url = expiring["url"].as_str().unwrap();
    get(&format!("{e_url}zarr.json"))
        .await
        .bytes_are(&objects.root_doc);
    let chunk = get(&format!("{e_url}{CHUNK}")).await;
    chunk.bytes_are(&objects.chunk);
    assert_eq!(
        chunk.header("cache-control"),
        Some("private, max-age=60"),
        "link data is not for shared caches"
    );

    let p_url = scoped["url"].as_str().unwrap();
    get(&format!("{p_url}zarr.json"))
        .await
        .bytes_are(&objects.labels_doc);
    get(&format!("{p_url}{LABEL_SHARD}"))
        .await
        .bytes_are(&objects.label_shard);
    // Outside its directory it is refused, though the keys exist.
    for outside in ["zarr.json", CHUNK, "labels/zarr.json"] {
        get(&s.url(&format!("/s/{p_token}/{outside}")))
            .await
            .problem(StatusCode::FORBIDDEN);
    }

    // The protected link needs its password first.
    let w_root = protected["url"].as_str().unwrap();
    get(&format!("{w_root}zarr.json"))
        .await
        .problem(StatusCode::UNAUTHORIZED);
    get(&s.url(&format!("/ng/s/{w_token}.json")))
        .await
        .problem(StatusCode::UNAUTHORIZED);
    http(
        Method::POST,
        &s.url("/api/links/unlock"),
        None,
        Some(&json!({ "token": w_token, "password": "not the password at all" })),
    )
    .await
    .problem(StatusCode::UNAUTHORIZED);
    let unlocked = http(
        Method::POST,
        &s.url("/api/links/unlock"),
        None,
        Some(&json!({ "token": w_token, "password": LINK_PASSWORD })),
    )
    .await
    .expect(StatusCode::OK);
    let w_url = unlocked["url"].as_str().unwrap();
    let unlocked_prefix = s.url(&format!("/s/{w_token}."));
    assert!(
        w_url.starts_with(&unlocked_prefix)
            && w_url.ends_with('/')
            && w_url.len() > unlocked_prefix.len() + 1,
        "the unlocked URL carries the unlock after the token: {unlocked:#}"
    );
    assert!(unlocked["expires_at"].is_string(), "{unlocked:#}");
    get(&format!("{w_url}zarr.json"))
        .await
        .bytes_are(&objects.root_doc);
    get(&format!("{w_url}{CHUNK}"))
        .await
        .bytes_are(&objects.chunk);
    // Without the unlock it is still closed; a made-up unlock does not open it.
    get(&format!("{w_root}zarr.json"))
        .await
        .problem(StatusCode::UNAUTHORIZED);
    get(&s.url(&format!("/s/{w_token}.bm90LWEtc2lnbmF0dXJl/zarr.json")))
        .await
        .problem(StatusCode::UNAUTHORIZED);

    // Revoking one link closes it at once (the API and the chunk routes share one cache)…
    s.revoke_link(&id, e_id).await;
    get(&format!("{e_url}zarr.json"))
        .await
        .problem(StatusCode::GONE);
    get(&format!("{e_url}{CHUNK}"))
        .await
        .problem(StatusCode::GONE);
    // … and leaves the others open.
    get(&format!("{p_url}zarr.json"))
        .await
        .bytes_are(&objects.labels_doc);
    get(&format!("{w_url}{CHUNK}"))
        .await
        .bytes_are(&objects.chunk);

    // What was counted: opening a link's root document is a view, anything else a read; the
    // refused reads (403, 401, 410) count nothing.
    let expected_expiring = (1, 1, len(&objects.root_doc) + len(&objects.chunk), 0);
    let expected_scoped = (
        2,
        1,
        2 * len(&objects.labels_doc) + len(&objects.label_shard),
        0,
    );
    let expected_protected = (1, 2, len(&objects.root_doc) + 2 * len(&objects.chunk), 0);
    for (link, expected) in [
        (e_id, expected_expiring),
        (p_id, expected_scoped),
        (w_id, expected_protected),
    ] {
        let usage = s.flushed_usage(&id, link, expected).await;
        assert!(usage.last_access.is_some(), "link {link}: {usage:?}");
    }

    // The links page lists them with their state and that usage.
    let rows = links_page_rows(&s, &id, &[e_id, p_id, w_id]).await;
    let display_name = s.dataset_record(&id).await.display_name;
    for (row, state, expected) in [
        (&rows[0], "revoked", expected_expiring),
        (&rows[1], "active", expected_scoped),
        (&rows[2], "active", expected_protected),
    ] {
        assert_eq!(row["state"], state, "{row:#}");
        assert_eq!(row["dataset_name"], display_name.as_str(), "{row:#}");
        assert_eq!(row["created_by"], s.admin_actor(), "{row:#}");
        let usage = usage_of(row);
        assert_eq!(usage_tuple(&usage), expected, "{row:#}");
        assert!(usage.last_access.is_some(), "{row:#}");
    }
    assert_eq!(
        rows[1]["scope"],
        json!({ "kind": "path", "prefix": LABELS })
    );
    assert_eq!(rows[2]["password_protected"], true);
    // The state filter: the revoked link is among the revoked ones, not among the active ones.
    let revoked_page = http(
        Method::GET,
        &s.url(&format!("/api/links?dataset={id}&state=revoked&limit=100")),
        Some(&s.admin_key),
        None,
    )
    .await
    .expect(StatusCode::OK);
    let revoked_ids: Vec<&Value> = revoked_page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["id"])
        .collect();
    assert!(
        revoked_ids.contains(&&json!(e_id)),
        "{e_id} in {revoked_page:#}"
    );
    assert!(
        !revoked_ids.contains(&&json!(p_id)) && !revoked_ids.contains(&&json!(w_id)),
        "{revoked_page:#}"
    );

    // Counts not flushed yet are written when the server stops.
    get(&format!("{p_url}{LABEL_SHARD}"))
        .await
        .bytes_are(&objects.label_shard);
    let table = s.table.clone();
    s.stop().await;
    let catalog = Catalog::new(Arc::new(DynamoStore::new(ls.dynamodb(), &table)));
    let (d, l) = (DatasetId::parse(&id).unwrap(), LinkId::parse(p_id).unwrap());
    let want = (
        expected_scoped.0,
        expected_scoped.1 + 1,
        expected_scoped.2 + len(&objects.label_shard),
        0,
    );
    let mut usage = LinkUsage::default();
    for _ in 0..50 {
        usage = catalog.link(&d, &l).await.unwrap().usage;
        if usage_tuple(&usage) == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        usage_tuple(&usage),
        want,
        "the read before the stop is in DynamoDB after it"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Batches

/// The links of a dataset with this label (`GET /api/datasets/{id}/links`).
async fn links_labelled(s: &Server, dataset: &str, label: &str) -> Vec<Value> {
    let links = s
        .admin(Method::GET, &format!("/api/datasets/{dataset}/links"), None)
        .await
        .expect(StatusCode::OK);
    links
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["label"] == label)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_makes_links_for_both_demo_datasets_or_none() {
    let Some(ls) = localstack().await else { return };
    let s = Server::boot().await;
    let objects = DemoObjects::read(&ls, &s.demo_storage().await).await;
    let (public, private) = (s.demo.dataset_id.clone(), s.demo.private_dataset_id.clone());

    let label = unique("batch");
    let made = s
        .admin(
            Method::POST,
            "/api/links",
            Some(json!({
                "dataset_ids": [public, private],
                "label": label,
                "expires_in_seconds": 86400,
            })),
        )
        .await
        .expect(StatusCode::CREATED);
    let made = made.as_array().unwrap().clone();
    assert_eq!(made.len(), 2, "{made:#?}");
    assert_eq!(
        (&made[0]["dataset_id"], &made[1]["dataset_id"]),
        (&json!(public), &json!(private)),
        "one link per dataset, in the order asked"
    );
    assert_ne!(made[0]["token"], made[1]["token"]);
    assert_ne!(made[0]["id"], made[1]["id"]);
    for link in &made {
        assert_eq!(link["label"], label.as_str(), "{link:#}");
        assert!(link["expires_at"].is_string(), "{link:#}");
        let token = link["token"].as_str().unwrap();
        assert_eq!(link["url"], s.url(&format!("/s/{token}/")), "{link:#}");
        get(&format!("{}zarr.json", link["url"].as_str().unwrap()))
            .await
            .bytes_are(&objects.root_doc);
    }
    // They are stored: each dataset lists exactly its one.
    for (dataset, link) in [(&public, &made[0]), (&private, &made[1])] {
        let listed = links_labelled(&s, dataset, &label).await;
        assert_eq!(listed.len(), 1, "{dataset}: {listed:#?}");
        assert_eq!(listed[0]["id"], link["id"]);
        assert_eq!(listed[0]["state"], "active");
    }

    // With a dataset that does not exist among them, nothing is made — neither the links
    // named before it nor after it.
    let nothing = unique("batch-none");
    let made_up = DatasetId::generate().to_string();
    s.admin(
        Method::POST,
        "/api/links",
        Some(json!({ "dataset_ids": [public, made_up, private], "label": nothing })),
    )
    .await
    .problem(StatusCode::NOT_FOUND);
    s.admin(
        Method::POST,
        "/api/links",
        Some(json!({ "dataset_ids": [public, private, "not-a-dataset-id"], "label": nothing })),
    )
    .await
    .problem(StatusCode::NOT_FOUND);
    for dataset in [&public, &private] {
        let listed = links_labelled(&s, dataset, &nothing).await;
        assert!(listed.is_empty(), "{dataset}: {listed:#?}");
        assert_eq!(
            links_labelled(&s, dataset, &label).await.len(),
            1,
            "{dataset}: the first batch is untouched"
        );
    }
    // Nor does an anonymous caller make any.
    http(
        Method::POST,
        &s.url("/api/links"),
        None,
        Some(&json!({ "dataset_ids": [public], "label": nothing })),
    )
    .await
    .problem(StatusCode::UNAUTHORIZED);
    assert!(links_labelled(&s, &public, &nothing).await.is_empty());
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 3. Per-person shares, invitations by SES

/// The local server's routes (`infra::server::app`) over the same table and organization as
/// `s`, built the way a deployment builds them with a sender configured — so that its mail
/// goes to SES — and served over HTTP on a port of its own. (`start` reads the sender from the
/// process environment only, which a test cannot set safely.)
struct MailingServer {
    base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl MailingServer {
    async fn start(ls: &LocalStack, s: &Server) -> Self {
        let bucket = s.services().config.data_bucket.clone().unwrap();
        infra::provision::provision(
            &ls.sdk,
            &infra::provision::Resources {
                table: s.table.clone(),
                bucket: bucket.clone(),
                sender: Some(SENDER.into()),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("verifying {SENDER}: {}", error_chain(&e)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let config = ls.config_with(
            &s.table,
            "proxy",
            &s.org,
            &[
                ("ZARRSHARE_SENDER_EMAIL", SENDER),
                ("ZARRSHARE_PUBLIC_BASE_URL", &base),
                ("ZARRSHARE_JWT_SECRET", JWT_SECRET),
                ("ZARRSHARE_DATA_BUCKET", &bucket),
            ],
        );
        assert!(config.outbox.is_none());
        let store: DynStore = Arc::new(DynamoStore::new(ls.dynamodb(), &s.table));
        let (store, counts) = Metered::wrap(store);
        let services = Services::build(config, store)
            .await
            .unwrap_or_else(|e| panic!("services: {e}"));
        assert!(
            format!("{:?}", services.mailer).starts_with("SesMailer"),
            "{:?}",
            services.mailer
        );
        let app = infra::server::app(Arc::new(services), counts);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self { base, stop, task }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn shutdown(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }
}

/// The one mail LocalStack's SES holds for `to` (polled briefly).
async fn the_mail_to(ls: &LocalStack, to: &str) -> Value {
    let mut mail = Vec::new();
    for _ in 0..50 {
        mail = ls.sent_mail(to).await;
        if !mail.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(mail.len(), 1, "exactly one mail to {to}: {mail:#?}");
    mail.pop().unwrap()
}

/// The first whitespace-delimited URL in `text` that starts with `prefix`.
fn link_in(text: &str, prefix: &str) -> String {
    let start = text
        .find(prefix)
        .unwrap_or_else(|| panic!("no link {prefix}… in: {text}"));
    text[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_share_with_a_new_address_invites_by_ses_and_revoking_it_closes_the_dataset() {
    let Some(ls) = localstack().await else { return };
    let s = Server::boot().await;
    let m = MailingServer::start(&ls, &s).await;
    let id = s.demo.private_dataset_id.clone();
    let display_name = s.dataset_record(&id).await.display_name;
    let email = format!("{}@example.test", unique("invitee"));
    let note = format!("Have a look at the cells ({})", unique("note"));

    let shared = http(
        Method::POST,
        &m.url(&format!("/api/datasets/{id}/shares")),
        Some(ADMIN_KEY),
        Some(&json!({ "emails": [email], "message": note })),
    )
    .await
    .expect(StatusCode::CREATED);
    let results = shared.as_array().unwrap();
    assert_eq!(results.len(), 1, "{shared:#}");
    assert_eq!(results[0]["email"], email.as_str(), "{shared:#}");
    assert_eq!(
        results[0]["outcome"], "invited",
        "no account yet: {shared:#}"
    );
    assert_eq!(results[0]["grant"]["state"], "pending", "{shared:#}");
    assert!(results[0]["grant"]["user"].is_null(), "{shared:#}");
    assert_eq!(results[0]["grant"]["can_modify"], false, "{shared:#}");

    // The invitation, as LocalStack's SES received it.
    let mail = the_mail_to(&ls, &email).await;
    assert_eq!(mail["Source"], SENDER, "{mail:#}");
    assert_eq!(
        mail["Destination"]["ToAddresses"],
        json!([email]),
        "{mail:#}"
    );
    let subject = mail["Subject"]
        .as_str()
        .unwrap_or_else(|| panic!("{mail:#}"));
    assert!(subject.contains(&display_name), "{subject}");
    let text = mail["Body"]["text_part"]
        .as_str()
        .unwrap_or_else(|| panic!("no text part: {mail:#}"));
    let html = mail["Body"]["html_part"]
        .as_str()
        .unwrap_or_else(|| panic!("no HTML part: {mail:#}"));
    assert!(text.contains(&note), "the sharer's note: {text}");
    let link = link_in(text, &m.url("/api/invites/accept?token="));
    assert!(
        html.contains(&format!("href=\"{link}\"")),
        "the HTML part links to {link}: {html}"
    );
    let token = link.split_once("?token=").unwrap().1.to_owned();
    assert!(token.len() >= 32, "{link}");

    // Nobody is signed in as that address yet; following the link signs them up.
    let accepted = http(
        Method::POST,
        &m.url("/api/invites/accept"),
        None,
        Some(&json!({ "token": token, "password": ACCOUNT_PASSWORD, "name": "Rosalind Franklin" })),
    )
    .await
    .expect(StatusCode::CREATED);
    assert_eq!(accepted["user"]["email"], email.as_str(), "{accepted:#}");
    assert_eq!(accepted["user"]["active"], true, "{accepted:#}");
    let user_id = accepted["user"]["id"].as_str().unwrap().to_owned();
    let access = accepted["tokens"]["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{accepted:#}"))
        .to_owned();

    // The dataset is theirs to read now, as shared with them.
    let seen = http(
        Method::GET,
        &m.url(&format!("/api/datasets/{id}")),
        Some(&access),
        None,
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(seen["id"], id.as_str());
    assert_eq!(seen["access"]["relation"], "shared_with_me", "{seen:#}");
    assert_eq!(seen["access"]["can"]["view"], true, "{seen:#}");
    assert_eq!(seen["access"]["can"]["annotate"], false, "{seen:#}");
    assert_eq!(seen["access"]["can"]["manage_shares"], false, "{seen:#}");
    assert_eq!(seen["access"]["sharing"], "privately_shared", "{seen:#}");
    let mine = http(
        Method::GET,
        &m.url("/api/datasets?scope=shared_with_me"),
        Some(&access),
        None,
    )
    .await
    .expect(StatusCode::OK);
    let ids: Vec<&Value> = mine["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["id"])
        .collect();
    assert_eq!(ids, [&json!(id)], "{mine:#}");
    assert_eq!(
        mine["items"][0]["access"]["relation"], "shared_with_me",
        "{mine:#}"
    );

    // The owner's view: the share is active and bound to the new account.
    let list = http(
        Method::GET,
        &m.url(&format!("/api/datasets/{id}/shares")),
        Some(ADMIN_KEY),
        None,
    )
    .await
    .expect(StatusCode::OK);
    let person: Vec<&Value> = list["people"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["email"] == email.as_str())
        .collect();
    assert_eq!(person.len(), 1, "{list:#}");
    assert_eq!(person[0]["state"], "active", "{list:#}");
    assert_eq!(person[0]["user"], user_id.as_str(), "{list:#}");

    // Revoked: gone from their list, and the dataset is closed to them again.
    http(
        Method::DELETE,
        &m.url(&format!("/api/datasets/{id}/shares/{email}")),
        Some(ADMIN_KEY),
        None,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let mine = http(
        Method::GET,
        &m.url("/api/datasets?scope=shared_with_me"),
        Some(&access),
        None,
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(mine["items"], json!([]), "{mine:#}");
    let closed = http(
        Method::GET,
        &m.url(&format!("/api/datasets/{id}")),
        Some(&access),
        None,
    )
    .await;
    // The invitation made them a plain user of the dataset's organization, and to a member
    // of its own organization a private dataset is forbidden rather than hidden (see the
    // access table in `shared::access`): 403, where an outsider would get 404.
    closed.problem(StatusCode::FORBIDDEN);
    let list = http(
        Method::GET,
        &m.url(&format!("/api/datasets/{id}/shares")),
        Some(ADMIN_KEY),
        None,
    )
    .await
    .expect(StatusCode::OK);
    assert!(
        !list["people"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["email"] == email.as_str()),
        "{list:#}"
    );
    m.shutdown().await;
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 4. The gallery

/// Pages through the gallery without login, `limit` cards a page, until the card of `id`
/// turns up or the pages end: that card, if any, and how many pages were read.
async fn gallery_card(s: &Server, limit: usize, id: &str) -> (Option<Value>, usize) {
    let mut cursor: Option<String> = None;
    for pages in 1..=10_000 {
        let mut params = vec![("limit", limit.to_string())];
        if let Some(c) = &cursor {
            params.push(("cursor", c.clone()));
        }
        let url = reqwest::Url::parse_with_params(&s.url("/api/gallery"), &params).unwrap();
        let page = get(url.as_str()).await;
        let body = page.expect(StatusCode::OK);
        let items = body["items"].as_array().unwrap();
        assert!(items.len() <= limit, "{limit} a page: {body:#}");
        if let Some(card) = items.iter().find(|c| c["id"] == id) {
            return (Some(card.clone()), pages);
        }
        match body["next_cursor"].as_str() {
            Some(c) => {
                assert!(!items.is_empty(), "an empty page with a cursor: {body:#}");
                cursor = Some(c.to_owned());
            }
            None => return (None, pages),
        }
    }
    panic!("the gallery did not end within 10000 pages");
}

/// Width and height from a PNG's signature and IHDR chunk, checked by hand.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(
        png.len() > 8 + 25 + 12,
        "too short for a PNG: {} bytes",
        png.len()
    );
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "the PNG signature");
    assert_eq!(&png[8..12], &13u32.to_be_bytes(), "IHDR is 13 bytes");
    assert_eq!(&png[12..16], b"IHDR", "the first chunk is IHDR");
    assert_eq!(
        &png[png.len() - 8..png.len() - 4],
        b"IEND",
        "the last chunk is IEND"
    );
    let word = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    (word(16), word(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_featured_public_dataset_is_in_the_gallery_with_a_thumbnail_from_s3_until_unfeatured() {
    let Some(_ls) = localstack().await else {
        return;
    };
    let s = Server::boot().await;
    let name = unique("gallery");
    // Digits sort before letters: the card is near the start of the gallery.
    let display_name = format!("0 sharing-aws {name}");
    let registered = s
        .register(
            &name,
            json!({
                "visibility": "public",
                "featured": true,
                "display_name": display_name,
                "description": "A gallery card of the sharing tests",
            }),
        )
        .await;
    let id = registered["id"].as_str().unwrap().to_owned();
    assert_eq!(registered["featured"], true);

    let (card, pages) = gallery_card(&s, 1, &id).await;
    let card = card.unwrap_or_else(|| panic!("{id} not in the gallery after {pages} pages"));
    assert_eq!(card["display_name"], display_name.as_str(), "{card:#}");
    assert_eq!(card["org"], s.org.as_str(), "{card:#}");
    assert_eq!(card["data_url"], s.url(&format!("/data/{id}/")), "{card:#}");
    let thumbnail_url = s.url(&format!("/api/datasets/{id}/thumbnail.png"));
    assert_eq!(card["thumbnail_url"], thumbnail_url.as_str(), "{card:#}");
    assert!(
        card["neuroglancer_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("#!{}", s.url(&format!("/ng/data/{id}.json")))),
        "{card:#}"
    );

    // The thumbnail: a PNG of at most 256 px, drawn from the pyramid in S3.
    let thumbnail = get(&thumbnail_url).await;
    assert_eq!(thumbnail.status, StatusCode::OK, "{}", thumbnail.text());
    assert_eq!(thumbnail.header("content-type"), Some("image/png"));
    assert_eq!(
        thumbnail.header("cache-control"),
        Some("public, max-age=3600")
    );
    let (width, height) = png_size(&thumbnail.body);
    assert!(
        (1..=256).contains(&width) && (1..=256).contains(&height),
        "{width}×{height}"
    );
    let resolved = s
        .services()
        .resolve_dataset(&DatasetId::parse(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    let rendered = shared::thumbnail::render(&resolved.location, &resolved.dataset, 256)
        .await
        .unwrap_or_else(|e| panic!("rendering from S3: {e}"));
    assert!(
        rendered == thumbnail.body,
        "the thumbnail is the one rendered from the S3 location"
    );

    // Unfeatured: out of the gallery, still public by its URL.
    let patched = s
        .admin(
            Method::PATCH,
            &format!("/api/datasets/{id}"),
            Some(json!({ "featured": false })),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(patched["featured"], false, "{patched:#}");
    let (card, pages) = gallery_card(&s, 100, &id).await;
    assert!(
        card.is_none(),
        "unfeatured, yet in the gallery (page {pages}): {card:#?}"
    );
    let anonymous = get(&s.url(&format!("/api/datasets/{id}")))
        .await
        .expect(StatusCode::OK);
    assert_eq!(anonymous["visibility"], "public", "{anonymous:#}");
    assert_eq!(anonymous["featured"], false, "{anonymous:#}");
    assert_eq!(anonymous["access"]["relation"], "public", "{anonymous:#}");
    assert_eq!(anonymous["access"]["can"]["update"], false, "{anonymous:#}");
    get(&s.url(&format!("/data/{id}/zarr.json")))
        .await
        .expect(StatusCode::OK);
    let thumbnail = get(&thumbnail_url).await;
    assert_eq!(thumbnail.status, StatusCode::OK, "{}", thumbnail.text());
    png_size(&thumbnail.body);
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 5. The audit trail

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_audit_trail_in_dynamodb_shows_links_shares_and_use_newest_first() {
    let Some(ls) = localstack().await else { return };
    let s = Server::boot().await;
    let objects = DemoObjects::read(&ls, &s.demo_storage().await).await;
    // A dataset of its own, so that its trail holds only this test's actions.
    let name = unique("audited");
    let id = s.register(&name, json!({ "visibility": "private" })).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let link = s
        .create_link(&id, json!({ "label": unique("audited-link") }))
        .await;
    let link_id = link["id"].as_str().unwrap().to_owned();
    let url = link["url"].as_str().unwrap();
    get(&format!("{url}zarr.json"))
        .await
        .bytes_are(&objects.root_doc);
    get(&format!("{url}{CHUNK}"))
        .await
        .bytes_are(&objects.chunk);
    let bytes = len(&objects.root_doc) + len(&objects.chunk);
    s.flushed_usage(&id, &link_id, (1, 1, bytes, 0)).await;

    let email = format!("{}@example.test", unique("audited-person"));
    let shared = s
        .admin(
            Method::POST,
            &format!("/api/datasets/{id}/shares"),
            Some(json!({ "emails": [email], "can_modify": true })),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(shared[0]["outcome"], "invited", "{shared:#}");
    s.admin(
        Method::DELETE,
        &format!("/api/datasets/{id}/shares/{email}"),
        None,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    s.revoke_link(&id, &link_id).await;

    let trail = s
        .admin(Method::GET, &format!("/api/datasets/{id}/audit"), None)
        .await
        .expect(StatusCode::OK);
    assert!(trail["next_cursor"].is_null(), "one page: {trail:#}");
    let items = trail["items"].as_array().unwrap();
    let entries: Vec<AuditEntry> = items
        .iter()
        .map(|e| serde_json::from_value(e.clone()).unwrap_or_else(|err| panic!("{err}: {e}")))
        .collect();
    let actions: Vec<AuditAction> = entries.iter().map(|e| e.action).collect();
    assert_eq!(
        actions,
        [
            AuditAction::LinkRevoked,
            AuditAction::GrantRevoked,
            AuditAction::GrantCreated,
            AuditAction::LinkUsed,
            AuditAction::LinkCreated,
            AuditAction::DatasetRegistered,
        ],
        "newest first: {trail:#}"
    );
    for pair in entries.windows(2) {
        assert!(pair[0].at >= pair[1].at, "newest first: {trail:#}");
    }
    for (i, entry) in items.iter().enumerate() {
        assert_eq!(entry["dataset_id"], id.as_str(), "{entry}");
        let target = match i {
            0 | 3 | 4 => Some(link_id.as_str()),
            1 | 2 => Some(email.as_str()),
            _ => None,
        };
        assert_eq!(entry["target"].as_str(), target, "{entry}");
        let actor = if i == 3 {
            format!("link:{link_id}")
        } else {
            s.admin_actor()
        };
        assert_eq!(entry["actor"], actor, "{entry}");
    }
    let used = &items[3]["detail"];
    assert_eq!(
        (
            &used["views"],
            &used["chunk_reads"],
            &used["bytes"],
            &used["redirects"]
        ),
        (&json!(1), &json!(1), &json!(bytes), &json!(0)),
        "{used:#}"
    );
    assert_eq!(
        items[2]["detail"],
        json!({ "can_modify": true, "can_share": false, "invited": true })
    );
    assert_eq!(items[4]["detail"]["scope"], json!({ "kind": "dataset" }));
    assert_eq!(items[5]["detail"]["name"], name.as_str());

    // Paged two at a time, the same trail in the same order.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let mut params = vec![("limit", "2".to_owned())];
        if let Some(c) = &cursor {
            params.push(("cursor", c.clone()));
        }
        let url =
            reqwest::Url::parse_with_params(&s.url(&format!("/api/datasets/{id}/audit")), &params)
                .unwrap();
        let page = http(Method::GET, url.as_str(), Some(&s.admin_key), None)
            .await
            .expect(StatusCode::OK);
        let page_items = page["items"].as_array().unwrap();
        assert!(page_items.len() <= 2, "{page:#}");
        paged.extend(page_items.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(&paged, items, "paged through two at a time");

    // Nobody else reads it.
    get(&s.url(&format!("/api/datasets/{id}/audit")))
        .await
        .problem(StatusCode::NOT_FOUND);
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 6. Neuroglancer

/// The layers' `(type, source)` of a view state.
fn sources(state: &Value) -> Vec<(String, String)> {
    state["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("no layers: {state:#}"))
        .iter()
        .map(|l| {
            (
                l["type"].as_str().unwrap().to_owned(),
                l["source"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_links_neuroglancer_state_points_at_its_own_urls_which_serve_from_s3() {
    let Some(ls) = localstack().await else { return };
    let s = Server::boot().await;
    let objects = DemoObjects::read(&ls, &s.demo_storage().await).await;
    let id = s.demo.private_dataset_id.clone();

    let link = s
        .create_link(&id, json!({ "label": unique("neuroglancer") }))
        .await;
    let token = link["token"].as_str().unwrap();
    let state_url = link["state_url"].as_str().unwrap();
    assert!(
        link["neuroglancer_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("#!{state_url}")),
        "the viewer opens the state URL: {link:#}"
    );
    let state = get(state_url).await;
    let body = state.expect(StatusCode::OK);
    assert_eq!(state.header("content-type"), Some("application/json"));
    let root = s.url(&format!("/s/{token}/"));
    assert_eq!(
        sources(&body),
        [
            ("image".to_owned(), format!("zarr3://{root}")),
            (
                "segmentation".to_owned(),
                format!("zarr3://{root}{LABELS}/")
            ),
        ],
        "{body:#}"
    );
    for ((_, source), doc) in sources(&body)
        .iter()
        .zip([&objects.root_doc, &objects.labels_doc])
    {
        let http_root = source.strip_prefix("zarr3://").unwrap();
        get(&format!("{http_root}zarr.json")).await.bytes_are(doc);
    }
    // The state fetch counts as a view; so does each root document read through the link
    // (the label image's document is below the link's root: a read).
    let bytes = len(&objects.root_doc) + len(&objects.labels_doc);
    s.flushed_usage(&id, link["id"].as_str().unwrap(), (2, 1, bytes, 0))
        .await;

    // A path-scoped link's state shows only its directory.
    let scoped = s
        .create_link(
            &id,
            json!({ "label": unique("neuroglancer-labels"), "scope": { "kind": "path", "prefix": LABELS } }),
        )
        .await;
    let scoped_token = scoped["token"].as_str().unwrap();
    let scoped_state = get(scoped["state_url"].as_str().unwrap())
        .await
        .expect(StatusCode::OK);
    let scoped_root = s.url(&format!("/s/{scoped_token}/"));
    assert_eq!(
        sources(&scoped_state),
        [(
            "segmentation".to_owned(),
            format!("zarr3://{scoped_root}{LABELS}/")
        )],
        "{scoped_state:#}"
    );
    get(&format!("{scoped_root}{LABELS}/zarr.json"))
        .await
        .bytes_are(&objects.labels_doc);

    // The public demo's state points at its public URLs.
    let public = s.demo.dataset_id.clone();
    let public_state = get(&s.url(&format!("/ng/data/{public}.json")))
        .await
        .expect(StatusCode::OK);
    let public_root = s.url(&format!("/data/{public}/"));
    assert_eq!(
        sources(&public_state),
        [
            ("image".to_owned(), format!("zarr3://{public_root}")),
            (
                "segmentation".to_owned(),
                format!("zarr3://{public_root}{LABELS}/")
            ),
        ]
    );
    get(&format!("{public_root}zarr.json"))
        .await
        .bytes_are(&objects.root_doc);
    // The private dataset has no public state.
    get(&s.url(&format!("/ng/data/{id}.json")))
        .await
        .problem(StatusCode::NOT_FOUND);

    // Revoked, the state is gone with the data.
    s.revoke_link(&id, link["id"].as_str().unwrap()).await;
    get(state_url).await.problem(StatusCode::GONE);
    get(&format!("{root}zarr.json"))
        .await
        .problem(StatusCode::GONE);
    s.stop().await;
}

/// Where the invitation mail's link leads a browser (`GET`): what the invitation offers. The
/// local server's organization is the admin key's (`ZARRSHARE_ORG`), which has no organization
/// record unless someone created it with `POST /api/organizations`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_share_invitations_link_opens_in_a_browser() {
    let Some(ls) = localstack().await else { return };
    let s = Server::boot().await;
    let m = MailingServer::start(&ls, &s).await;
    let id = s.demo.private_dataset_id.clone();
    let email = format!("{}@example.test", unique("browser"));
    let shared = http(
        Method::POST,
        &m.url(&format!("/api/datasets/{id}/shares")),
        Some(ADMIN_KEY),
        Some(&json!({ "emails": [email] })),
    )
    .await
    .expect(StatusCode::CREATED);
    assert_eq!(shared[0]["outcome"], "invited", "{shared:#}");
    let mail = the_mail_to(&ls, &email).await;
    let text = mail["Body"]["text_part"].as_str().unwrap();
    let link = link_in(text, &m.url("/api/invites/accept?token="));

    let shown = get(&link).await;
    let info = shown.expect(StatusCode::OK);
    assert_eq!(info["email"], email.as_str(), "{info:#}");
    assert_eq!(info["role"], "user", "{info:#}");
    assert_eq!(info["existing_account"], false, "{info:#}");
    assert_eq!(info["accept_url"], m.url("/api/invites/accept"), "{info:#}");

    // Tidy up: the pending share and its invitation are revoked together.
    http(
        Method::DELETE,
        &m.url(&format!("/api/datasets/{id}/shares/{email}")),
        Some(ADMIN_KEY),
        None,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    get(&link).await.problem(StatusCode::GONE);
    m.shutdown().await;
    s.stop().await;
}
