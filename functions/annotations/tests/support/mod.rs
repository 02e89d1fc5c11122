//! The harness the annotations tests share: the annotations, chunk and datasets functions
//! mounted together (as the local server mounts them) over the embedded store in a temporary
//! directory, with large version bodies and volume buckets in a local directory inside the data
//! root. Signed-in people are created straight in the directory and given access tokens by the
//! services' own issuer; datasets are written straight into the catalog (and, for
//! [`TestApp::imaged_dataset`], as OME-Zarr files on disk).

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use serde_json::{Value, json};
use shared::Services;
use shared::config::Config;
use shared::domain::skeleton::{Skeleton, UpdateAction};
use shared::domain::{
    AuditAction, AuditEntry, Dataset, DatasetId, DatasetName, DatasetPatch, Email, Grant, Layer,
    LayerKind, Level, OrgId, OrgRole, Organization, StorageUrl, Team, TeamId, TeamRole, User,
    Visibility, ZarrFormat, now,
};
use shared::store::embedded::EmbeddedStore;
use tempfile::TempDir;
use tower::ServiceExt;

pub const ADMIN_KEY: &str = "annotations-test-admin-key-0123456789";
pub const PROBLEM: &str = "application/problem+json";
/// The installation's organization (the configuration's default).
pub const ORG: &str = "default";
/// Another organization.
pub const RIVAL: &str = "rival-lab";

/// Where the service says it is reached (`ZARRSHARE_PUBLIC_BASE_URL`): URLs it hands out
/// start with it, and [`path_of`] takes it off again to send them through the router.
pub const PUBLIC_BASE: &str = "https://zarr.test";
/// The image of [`TestApp::imaged_dataset`]: z, y, x voxels of its finest level …
pub const IMAGE_SHAPE: [u64; 3] = [64, 64, 96];
/// … in chunks of 32³ (a 2 × 2 × 3 grid), of which only these are written.
pub const IMAGE_CHUNKS: [[u64; 3]; 2] = [[0, 0, 0], [1, 1, 2]];

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

pub struct TestApp {
    pub app: Router,
    pub services: Arc<Services>,
    /// Where large version bodies are written (`ZARRSHARE_ANNOTATIONS_URL`).
    pub annotations_dir: PathBuf,
    /// The local storage root: datasets written by the fixtures live below it.
    pub data_root: PathBuf,
    config: Config,
    store: shared::store::DynStore,
    _dirs: Vec<TempDir>,
}

/// The functions a viewer meets, mounted together as in the local server.
fn mounted(services: &Arc<Services>) -> Router {
    shared::http::served(
        annotations::routes(services.clone())
            .merge(chunks::routes(services.clone()))
            .merge(datasets::routes(services.clone())),
    )
}

impl TestApp {
    /// Another instance over the same store and storage, with nothing cached (as a Lambda
    /// instance that has just started). Lives no longer than `self`.
    pub fn cold(&self) -> TestApp {
        let services =
            Arc::new(Services::new(self.config.clone(), self.store.clone()).expect("services"));
        TestApp {
            app: mounted(&services),
            services,
            annotations_dir: self.annotations_dir.clone(),
            data_root: self.data_root.clone(),
            config: self.config.clone(),
            store: self.store.clone(),
            _dirs: Vec::new(),
        }
    }
}

/// A signed-in person: their stored account and an access token for it.
pub struct Person {
    pub user: User,
    pub token: String,
}

impl Person {
    pub fn id(&self) -> &str {
        self.user.id.as_str()
    }

    pub fn author(&self) -> String {
        format!("user:{}", self.user.id)
    }
}

#[derive(Clone, Copy)]
pub enum Who<'a> {
    Admin,
    Anonymous,
    As(&'a Person),
    /// The holder of a share link: `Authorization: Link {segment}` (`{token}` or
    /// `{token}.{unlock}`).
    Link(&'a str),
}

impl Who<'_> {
    pub fn authorization(self) -> Option<String> {
        match self {
            Who::Admin => Some(format!("Bearer {ADMIN_KEY}")),
            Who::Anonymous => None,
            Who::As(p) => Some(format!("Bearer {}", p.token)),
            Who::Link(segment) => Some(format!("Link {segment}")),
        }
    }
}

pub fn tempdir() -> TempDir {
    tempfile::tempdir().expect("temporary directory")
}

pub fn spawn_app() -> TestApp {
    let db_dir = tempdir();
    let root_dir = tempdir();
    let db = db_dir.path().join("meta.redb");
    let root = std::fs::canonicalize(root_dir.path()).expect("canonical root");
    let annotations_dir = root.join("annotations");
    std::fs::create_dir_all(&annotations_dir).expect("annotations directory");
    let vars = [
        ("ZARRSHARE_EMBEDDED_DB", db.to_string_lossy().into_owned()),
        ("ZARRSHARE_ADMIN_KEY", ADMIN_KEY.to_owned()),
        ("ZARRSHARE_LOCAL_ROOTS", root.to_string_lossy().into_owned()),
        (
            "ZARRSHARE_ANNOTATIONS_URL",
            annotations_dir.to_string_lossy().into_owned(),
        ),
        ("ZARRSHARE_PUBLIC_BASE_URL", PUBLIC_BASE.to_owned()),
    ];
    let config = Config::from_lookup(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .expect("test configuration");
    let store: shared::store::DynStore =
        Arc::new(EmbeddedStore::open(&db).expect("embedded store"));
    let services = Arc::new(Services::new(config.clone(), store.clone()).expect("services"));
    TestApp {
        app: mounted(&services),
        services,
        annotations_dir,
        data_root: root,
        config,
        store,
        _dirs: vec![db_dir, root_dir],
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(&name)
            .unwrap_or_else(|| panic!("no {name} header in {self:?}"))
            .to_str()
            .expect("visible ASCII header")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// Asserts a successful JSON answer with `status` and returns its body.
    pub fn ok(&self, status: StatusCode) -> Value {
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
    pub fn problem(&self, status: StatusCode) -> String {
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
        p["detail"]
            .as_str()
            .unwrap_or_else(|| panic!("no detail in {p}"))
            .to_owned()
    }

    /// A problem whose detail mentions `needle` (case-insensitive).
    pub fn problem_about(&self, status: StatusCode, needle: &str) -> String {
        let detail = self.problem(status);
        assert!(
            detail.to_lowercase().contains(&needle.to_lowercase()),
            "detail {detail:?} does not mention {needle:?}"
        );
        detail
    }
}

impl TestApp {
    pub async fn send(&self, request: Request<Body>) -> Reply {
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

    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        who: Who<'_>,
        body: Option<&Value>,
    ) -> Reply {
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(auth) = who.authorization() {
            b = b.header(header::AUTHORIZATION, auth);
        }
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

    pub async fn get(&self, uri: &str, who: Who<'_>) -> Reply {
        self.call(Method::GET, uri, who, None).await
    }

    pub async fn post(&self, uri: &str, who: Who<'_>, body: &Value) -> Reply {
        self.call(Method::POST, uri, who, Some(body)).await
    }

    pub async fn post_empty(&self, uri: &str, who: Who<'_>) -> Reply {
        self.call(Method::POST, uri, who, None).await
    }

    pub async fn patch(&self, uri: &str, who: Who<'_>, body: &Value) -> Reply {
        self.call(Method::PATCH, uri, who, Some(body)).await
    }

    pub async fn delete(&self, uri: &str, who: Who<'_>) -> Reply {
        self.call(Method::DELETE, uri, who, None).await
    }

    /// A person with an account in `org` (the organization is created with them if new).
    pub async fn person(
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

    /// A plain user of the installation's organization in `teams` (all as members).
    pub async fn member(&self, email: &str, teams: &[&TeamId]) -> Person {
        let teams: Vec<(TeamId, TeamRole)> = teams
            .iter()
            .map(|t| ((*t).clone(), TeamRole::Member))
            .collect();
        self.person(ORG, email, OrgRole::User, &teams).await
    }

    /// A new team of `org` (which must exist).
    pub async fn team(&self, org: &str, name: &str) -> TeamId {
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

    /// The organization's administrator account (creates the organization's record).
    pub async fn org_admin(&self) -> Person {
        self.person(ORG, "head@lab.example", OrgRole::Admin, &[])
            .await
    }

    /// A dataset of the installation's organization, registered by the admin key, whose
    /// `teams` may read and annotate it. Its one image layer has voxels of
    /// 2 µm (z) × 0.5 µm (y) × 0.25 µm (x). Only its metadata exists: nothing reads its data.
    pub async fn dataset(&self, name: &str, visibility: Visibility, teams: &[&TeamId]) -> Dataset {
        let storage =
            StorageUrl::parse(&format!("s3://lab-data/{name}.zarr")).expect("storage URL");
        let layers = vec![Layer {
            name: "raw".into(),
            kind: LayerKind::Image,
            path: String::new(),
            axes: vec!["z".into(), "y".into(), "x".into()],
            units: vec!["micrometer".into(); 3],
            levels: vec![Level {
                path: "s0".into(),
                shape: vec![100, 1000, 1000],
                chunk_shape: vec![32, 256, 256],
                shard_shape: None,
                data_type: "uint8".into(),
                codecs: vec!["bytes".into()],
                scale: Some(vec![2.0, 0.5, 0.25]),
                translation: None,
            }],
        }];
        self.dataset_with(name, visibility, teams, storage, layers)
            .await
    }

    /// A dataset with the given storage and layers (as the datasets function would have
    /// read them from the data), registered like [`TestApp::dataset`].
    pub async fn dataset_with(
        &self,
        name: &str,
        visibility: Visibility,
        teams: &[&TeamId],
        storage: StorageUrl,
        layers: Vec<Layer>,
    ) -> Dataset {
        let t = now();
        let dataset = Dataset {
            id: DatasetId::generate(),
            org: OrgId::parse(ORG).expect("organization id"),
            name: DatasetName::parse(name).expect("dataset name"),
            display_name: name.to_owned(),
            description: String::new(),
            storage,
            visibility,
            featured: false,
            owner: None,
            allowed_teams: teams.iter().map(|t| (*t).clone()).collect(),
            zarr_format: ZarrFormat::V3,
            ome_version: Some("0.5".into()),
            layers,
            created_at: t,
            updated_at: t,
            version: 1,
        };
        self.services
            .catalog
            .create_dataset(&dataset, "test")
            .await
            .expect("new dataset");
        dataset
    }

    /// A dataset whose OME-Zarr 0.5 data exists on disk below the data root (see
    /// [`write_image`]): an image at the root (level `0`, [`IMAGE_SHAPE`], voxels of 2 µm (z) ×
    /// 0.5 µm (y) × 0.25 µm (x)) and a label image `labels/cells` (level `labels/cells/0`).
    /// Its layers are what `shared::zarr::inspect` reads from the files.
    pub async fn imaged_dataset(
        &self,
        name: &str,
        visibility: Visibility,
        teams: &[&TeamId],
    ) -> Dataset {
        let dir = self.data_root.join("data").join(format!("{name}.zarr"));
        write_image(&dir);
        let storage = StorageUrl::Local { path: dir };
        let location = self
            .services
            .objects
            .locate(&storage)
            .expect("a storage location below the local root");
        let inspection = shared::zarr::inspect(&location)
            .await
            .expect("the fixture is OME-Zarr");
        let found: Vec<(&str, LayerKind, &str, &[u64])> = inspection
            .layers
            .iter()
            .map(|l| {
                let level = l.levels.first().expect("a level");
                (
                    l.path.as_str(),
                    l.kind,
                    level.path.as_str(),
                    level.shape.as_slice(),
                )
            })
            .collect();
        assert_eq!(
            found,
            [
                ("", LayerKind::Image, "0", IMAGE_SHAPE.as_slice()),
                (
                    "labels/cells",
                    LayerKind::Labels,
                    "labels/cells/0",
                    IMAGE_SHAPE.as_slice()
                ),
            ],
            "the fixture's layers"
        );
        self.dataset_with(name, visibility, teams, storage, inspection.layers)
            .await
    }

    /// Makes a dataset public (as its managers would through the datasets function).
    pub async fn make_public(&self, dataset: &Dataset) {
        let patch = DatasetPatch {
            visibility: Some(Visibility::Public),
            ..DatasetPatch::default()
        };
        self.services
            .catalog
            .update_dataset(&dataset.id, &patch, None, "test")
            .await
            .expect("dataset made public");
        self.services.forget_dataset(&dataset.id);
    }

    /// Shares a dataset with one person (bound to their account).
    pub async fn grant(&self, dataset: &Dataset, person: &Person, can_modify: bool) {
        let t = now();
        let grant = Grant {
            dataset_id: dataset.id.clone(),
            email: person.user.email.clone(),
            user: Some(person.user.id.clone()),
            invite: None,
            can_modify,
            can_share: false,
            granted_by: "test".into(),
            granted_by_user: None,
            created_at: t,
            updated_at: t,
            version: 1,
        };
        let audit = AuditEntry::new(&dataset.id, "test", AuditAction::GrantCreated);
        self.services
            .catalog
            .save_grant(&grant, None, &audit)
            .await
            .expect("grant");
        self.services.forget_grant(&grant.dataset_id, &grant.email);
    }

    /// Creates an annotation (with `extra` fields) and returns the 201 body.
    pub async fn create(&self, who: Who<'_>, dataset: &Dataset, name: &str, extra: Value) -> Value {
        let mut body = json!({"dataset_id": dataset.id, "name": name, "kind": "skeleton"});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        self.post("/api/annotations", who, &body)
            .await
            .ok(StatusCode::CREATED)
    }

    pub async fn save(&self, who: Who<'_>, id: &str, base: u64, actions: &[Value]) -> Reply {
        self.post(
            &format!("/api/annotations/{id}/saves"),
            who,
            &json!({"base_version": base, "actions": actions}),
        )
        .await
    }

    /// A save that must be accepted; returns the 201 body.
    pub async fn saved(&self, who: Who<'_>, id: &str, base: u64, actions: &[Value]) -> Value {
        let reply = self
            .save(who, id, base, actions)
            .await
            .ok(StatusCode::CREATED);
        assert_eq!(reply["version"], json!(base + 1), "{reply}");
        reply
    }

    pub async fn record(&self, who: Who<'_>, id: &str) -> Value {
        self.get(&format!("/api/annotations/{id}"), who)
            .await
            .ok(StatusCode::OK)
    }

    pub async fn content(&self, who: Who<'_>, id: &str, version: u64) -> Value {
        self.get(&format!("/api/annotations/{id}/versions/{version}"), who)
            .await
            .ok(StatusCode::OK)
    }

    /// The ids a listing answers with, in order.
    pub async fn listed(&self, query: &str, who: Who<'_>) -> Vec<String> {
        let list = self
            .get(&format!("/api/annotations?{query}"), who)
            .await
            .ok(StatusCode::OK);
        list.as_array()
            .unwrap_or_else(|| panic!("not a list: {list}"))
            .iter()
            .map(id_of)
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Update actions and expected contents
// ---------------------------------------------------------------------------------------------

pub fn create_tree(id: u32, name: &str) -> Value {
    json!({"name": "createTree", "value": {"id": id, "name": name}})
}

pub fn create_node(tree: u32, id: u32, position: [i64; 3]) -> Value {
    json!({"name": "createNode", "value": {"treeId": tree, "node": {
        "id": id, "position": position, "radius": 1.5, "created": 1_700_000_000_000_i64 + i64::from(id)
    }}})
}

pub fn create_edge(tree: u32, source: u32, target: u32) -> Value {
    json!({"name": "createEdge", "value": {"treeId": tree, "source": source, "target": target}})
}

pub fn set_comment(tree: u32, node: u32, content: &str) -> Value {
    json!({"name": "setComment", "value": {"treeId": tree, "nodeId": node, "content": content}})
}

pub fn add_branch_point(tree: u32, node: u32, timestamp: i64) -> Value {
    json!({"name": "addBranchPoint", "value": {"treeId": tree, "nodeId": node, "timestamp": timestamp}})
}

/// The first batch: tree 1 "axon" with three nodes in a chain, a comment and a branch point.
pub fn first_batch() -> Vec<Value> {
    vec![
        create_tree(1, "axon"),
        create_node(1, 1, [10, 20, 30]),
        create_node(1, 2, [11, 20, 30]),
        create_node(1, 3, [12, 21, 30]),
        create_edge(1, 1, 2),
        create_edge(1, 2, 3),
        set_comment(1, 2, "synapse here"),
        add_branch_point(1, 2, 1_700_000_000_500),
    ]
}

/// The second batch: tree 2 "dendrite" with two connected nodes.
pub fn second_batch() -> Vec<Value> {
    vec![
        create_tree(2, "dendrite"),
        create_node(2, 4, [40, 50, 60]),
        create_node(2, 5, [41, 50, 60]),
        create_edge(2, 4, 5),
    ]
}

/// The skeleton (as JSON) that applying `batches` in order to an empty one gives.
pub fn expected(batches: &[&[Value]]) -> Value {
    let mut skeleton = Skeleton::default();
    for batch in batches {
        let actions: Vec<UpdateAction> =
            serde_json::from_value(Value::Array(batch.to_vec())).expect("valid actions");
        skeleton.apply(&actions).expect("applicable actions");
    }
    serde_json::to_value(&skeleton).expect("skeleton JSON")
}

pub fn id_of(body: &Value) -> String {
    body["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {body}"))
        .to_owned()
}

pub fn tree_names(skeleton: &Value) -> BTreeSet<String> {
    skeleton["trees"]
        .as_array()
        .unwrap_or_else(|| panic!("no trees in {skeleton}"))
        .iter()
        .map(|t| t["name"].as_str().expect("tree name").to_owned())
        .collect()
}

/// The path (and query) of a URL the service handed out, to send it through the router.
pub fn path_of(url: &str) -> &str {
    url.strip_prefix(PUBLIC_BASE)
        .unwrap_or_else(|| panic!("{url} does not start with the public base {PUBLIC_BASE}"))
}

impl TestApp {
    /// GET of a URL the service handed out (absolute, on the public base).
    pub async fn fetch(&self, url: &str, who: Who<'_>) -> Reply {
        self.get(path_of(url), who).await
    }

    /// `POST /api/datasets/{id}/links` with `options` (the datasets function's `LinkOptions`).
    pub async fn make_link(&self, who: Who<'_>, dataset: &Dataset, options: &Value) -> Reply {
        self.post(&format!("/api/datasets/{}/links", dataset.id), who, options)
            .await
    }

    /// A link that must be made; returns the 201 body (with `token`, `url`, `state_url`).
    pub async fn link(&self, who: Who<'_>, dataset: &Dataset, options: &Value) -> Value {
        self.make_link(who, dataset, options)
            .await
            .ok(StatusCode::CREATED)
    }
}

// ---------------------------------------------------------------------------------------------
// OME-Zarr files on disk
// ---------------------------------------------------------------------------------------------

/// The bytes of image chunk `c` (z, y, x) of [`TestApp::imaged_dataset`]: 32³ `uint8` voxels.
pub fn image_chunk(c: [u64; 3]) -> Vec<u8> {
    let seed = u8::try_from(c[0] * 64 + c[1] * 16 + c[2] * 4 + 1).expect("a small seed");
    (0..32 * 32 * 32usize)
        .map(|i| (i % 251) as u8 ^ seed)
        .collect()
}

fn write_file(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("a parent directory")).expect("directories");
    std::fs::write(path, bytes).expect("fixture file");
}

fn write_json(path: &Path, value: &Value) {
    write_file(path, value.to_string().as_bytes());
}

fn multiscales(name: &str) -> Value {
    json!([{
        "name": name,
        "axes": [
            {"name": "z", "type": "space", "unit": "micrometer"},
            {"name": "y", "type": "space", "unit": "micrometer"},
            {"name": "x", "type": "space", "unit": "micrometer"}
        ],
        "datasets": [{
            "path": "0",
            "coordinateTransformations": [{"type": "scale", "scale": [2.0, 0.5, 0.25]}]
        }]
    }])
}

fn v3_array(data_type: &str) -> Value {
    json!({
        "zarr_format": 3,
        "node_type": "array",
        "shape": IMAGE_SHAPE,
        "data_type": data_type,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [32, 32, 32]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0,
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
        "dimension_names": ["z", "y", "x"],
        "attributes": {}
    })
}

/// OME-Zarr 0.5 (Zarr v3) in `dir`: an image at the root (level `0`, `uint8`) and a label
/// image `labels/cells` (level `labels/cells/0`, `uint32`), with the chunks [`IMAGE_CHUNKS`].
pub fn write_image(dir: &Path) {
    let group = |attributes: Value| json!({"zarr_format": 3, "node_type": "group", "attributes": attributes});
    write_json(
        &dir.join("zarr.json"),
        &group(json!({"ome": {"version": "0.5", "multiscales": multiscales("raw")}})),
    );
    write_json(&dir.join("0/zarr.json"), &v3_array("uint8"));
    write_json(
        &dir.join("labels/zarr.json"),
        &group(json!({"ome": {"version": "0.5", "labels": ["cells"]}})),
    );
    write_json(
        &dir.join("labels/cells/zarr.json"),
        &group(json!({"ome": {
            "version": "0.5",
            "multiscales": multiscales("cells"),
            "image-label": {"version": "0.5"}
        }})),
    );
    write_json(&dir.join("labels/cells/0/zarr.json"), &v3_array("uint32"));
    for c in IMAGE_CHUNKS {
        let key = format!("c/{}/{}/{}", c[0], c[1], c[2]);
        write_file(&dir.join("0").join(&key), &image_chunk(c));
        let label: Vec<u8> = std::iter::repeat_n(7u32.to_le_bytes(), 32 * 32 * 32)
            .flatten()
            .collect();
        write_file(&dir.join("labels/cells/0").join(&key), &label);
    }
}
