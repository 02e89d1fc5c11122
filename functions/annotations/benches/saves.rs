//! Save throughput and latency of the annotations function, in process over the embedded store
//! (the local default): one writer saving batches back to back, then several writers racing on
//! one annotation (each retrying after a 409 on the version it is told).
//!
//!   cargo bench -p annotations --bench saves      (BENCH_SAVES=400 BENCH_WRITERS=8 by default)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use serde_json::{Value, json};
use shared::Services;
use shared::config::Config;
use shared::domain::{
    Dataset, DatasetId, DatasetName, Email, Layer, LayerKind, Level, OrgId, OrgRole, Organization,
    SNAPSHOT_EVERY, StorageUrl, TeamId, TeamRole, User, Visibility, ZarrFormat, now,
};
use shared::store::embedded::EmbeddedStore;
use tower::ServiceExt;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One batch: a tree with ten connected nodes (what a tracer sends every few seconds).
fn batch(tree: u32, first_node: u32) -> Value {
    let mut actions =
        vec![json!({"name": "createTree", "value": {"id": tree, "name": format!("tree {tree}")}})];
    for i in 0..10u32 {
        let id = first_node + i;
        actions.push(
            json!({"name": "createNode", "value": {"treeId": tree, "node": {
            "id": id, "position": [i64::from(id), 100, 50], "radius": 1.5, "created": 1_700_000_000_000_i64}}}),
        );
        if i > 0 {
            actions.push(json!({"name": "createEdge", "value": {"treeId": tree, "source": id - 1, "target": id}}));
        }
    }
    Value::Array(actions)
}

async fn post(app: &axum::Router, uri: &str, token: &str, body: Value) -> (StatusCode, Value) {
    let r = app
        .clone()
        .oneshot(
            Request::post(uri)
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = r.status();
    let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let saves = env_num("BENCH_SAVES", 400);
    let writers = env_num("BENCH_WRITERS", 8);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::create_dir_all(root.join("annotations")).unwrap();
    let db = root.join("meta.redb");
    let vars = [
        ("ZARRSHARE_EMBEDDED_DB", db.to_string_lossy().into_owned()),
        ("ZARRSHARE_LOCAL_ROOTS", root.to_string_lossy().into_owned()),
        (
            "ZARRSHARE_ANNOTATIONS_URL",
            root.join("annotations").to_string_lossy().into_owned(),
        ),
        ("ZARRSHARE_ORG", "lab".to_owned()),
    ];
    let config =
        Config::from_lookup(|n| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone()))
            .unwrap();
    let store: shared::store::DynStore = Arc::new(EmbeddedStore::open(&db).unwrap());
    let services = Arc::new(Services::new(config.clone(), store.clone()).unwrap());
    let t = now();
    let org = OrgId::parse("lab").unwrap();
    let team = TeamId::generate();
    let user = User {
        teams: [(team.clone(), TeamRole::Member)].into(),
        created_at: t,
        ..User::new(
            org.clone(),
            Email::parse("tracer@lab.org").unwrap(),
            "Tracer".into(),
            OrgRole::User,
            String::new(),
        )
    };
    let organization = Organization {
        id: org.clone(),
        name: "Lab".into(),
        auto_activate: false,
        created_at: t,
        version: 1,
    };
    services
        .directory
        .create_org(&organization, &user)
        .await
        .unwrap();
    let dataset = Dataset {
        id: DatasetId::generate(),
        org: org.clone(),
        name: DatasetName::parse("em").unwrap(),
        display_name: "EM".into(),
        description: String::new(),
        storage: StorageUrl::parse("s3://lab-data/em.zarr").unwrap(),
        visibility: Visibility::Private,
        featured: false,
        owner: None,
        allowed_teams: [team].into(),
        zarr_format: ZarrFormat::V3,
        ome_version: None,
        layers: vec![Layer {
            name: "em".into(),
            kind: LayerKind::Image,
            path: String::new(),
            axes: vec!["z".into(), "y".into(), "x".into()],
            units: vec!["nanometer".into(); 3],
            levels: vec![Level {
                path: "0".into(),
                shape: vec![1024, 1024, 1024],
                chunk_shape: vec![64, 64, 64],
                shard_shape: None,
                data_type: "uint8".into(),
                codecs: vec!["bytes".into(), "zstd".into()],
                scale: Some(vec![8.0, 8.0, 8.0]),
                translation: None,
            }],
        }],
        created_at: t,
        updated_at: t,
        version: 1,
    };
    services
        .catalog
        .create_dataset(&dataset, "bench")
        .await
        .unwrap();
    let token = services.tokens.issue(&user.id, &org, 0).unwrap();
    let app = annotations::router(services.clone());
    let new = |name: &str| json!({"dataset_id": dataset.id, "name": name, "kind": "skeleton"});

    // One writer, back to back.
    let (_, created) = post(&app, "/api/annotations", &token, new("sequential")).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let mut latencies = Vec::new();
    let start = Instant::now();
    for n in 0..saves {
        let body = json!({"base_version": n, "actions": batch(n as u32 + 1, n as u32 * 10 + 1)});
        let began = Instant::now();
        let (status, reply) =
            post(&app, &format!("/api/annotations/{id}/saves"), &token, body).await;
        latencies.push(began.elapsed());
        assert_eq!(status, StatusCode::CREATED, "{reply}");
    }
    let elapsed = start.elapsed();
    latencies.sort();
    println!(
        "one writer:   {saves} saves of 20 actions  {:>7.0} saves/s  p50 {:>6} µs  p99 {:>6} µs  (final skeleton {} nodes)",
        saves as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5).as_micros(),
        percentile(&latencies, 0.99).as_micros(),
        saves * 10,
    );

    // A cold instance (nothing cached) reads versions back: the latest, and one just before a
    // snapshot (the longest chain of batches to apply).
    let cold = annotations::router(Arc::new(
        Services::new(config.clone(), store.clone()).unwrap(),
    ));
    let deepest = (saves / SNAPSHOT_EVERY) * SNAPSHOT_EVERY - 1;
    for version in [saves, deepest] {
        let began = Instant::now();
        let r = cold
            .clone()
            .oneshot(
                Request::get(format!("/api/annotations/{id}/versions/{version}"))
                    .header("authorization", format!("Bearer {token}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        println!(
            "cold read:    version {version:>4} ({} batches after its snapshot)  {:>6} µs  ({} KB of JSON)",
            version % SNAPSHOT_EVERY,
            began.elapsed().as_micros(),
            bytes.len() / 1024,
        );
    }

    // Several writers racing on one annotation.
    let (_, created) = post(&app, "/api/annotations", &token, new("raced")).await;
    let id = Arc::new(created["id"].as_str().unwrap().to_owned());
    let per_writer = (saves / writers).max(1);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (app, token, id) = (app.clone(), token.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            let (mut base, mut conflicts, mut latencies) = (0u64, 0u64, Vec::new());
            for n in 0..per_writer {
                let tree = (w * per_writer + n) as u32 + 1;
                let began = Instant::now();
                loop {
                    let body = json!({"base_version": base, "actions": batch(tree, tree * 10)});
                    let (status, reply) =
                        post(&app, &format!("/api/annotations/{id}/saves"), &token, body).await;
                    match status {
                        StatusCode::CREATED => {
                            base = reply["version"].as_u64().unwrap();
                            break;
                        }
                        StatusCode::CONFLICT => {
                            conflicts += 1;
                            let detail = reply["detail"].as_str().unwrap_or_default();
                            base = detail
                                .split("latest is version ")
                                .nth(1)
                                .and_then(|r| r.split(':').next())
                                .and_then(|v| v.trim().parse().ok())
                                .unwrap();
                        }
                        other => panic!("save: {other} {reply}"),
                    }
                }
                latencies.push(began.elapsed());
            }
            (conflicts, latencies)
        }));
    }
    let (mut conflicts, mut latencies) = (0, Vec::new());
    for t in tasks {
        let (c, l) = t.await.unwrap();
        conflicts += c;
        latencies.extend(l);
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let accepted = per_writer * writers;
    println!(
        "{writers} writers:    {accepted} saves accepted       {:>7.0} saves/s  p50 {:>6} µs  p99 {:>6} µs  (409s answered and retried: {conflicts})",
        accepted as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5).as_micros(),
        percentile(&latencies, 0.99).as_micros(),
    );

    // Painting a volume: saves of 8 uint32 buckets (32³ voxels each: a few segments with
    // ragged borders, as a brush leaves them), each written as a zstd Zarr chunk.
    let (status, created) = post(
        &app,
        "/api/annotations",
        &token,
        json!({"dataset_id": dataset.id, "name": "painted", "kind": "volume"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let paints = (saves / 8).max(1);
    let mut latencies = Vec::new();
    let start = Instant::now();
    for n in 0..paints {
        let actions: Vec<Value> = (0..8u64)
            .map(|b| {
                let cell = n * 8 + b;
                let position = [(cell % 32) * 32, (cell / 32 % 32) * 32, (cell / 1024) * 32];
                let voxels: Vec<u8> = (0..32u64 * 32 * 32)
                    .flat_map(|i| {
                        let (x, y, z) = (i % 32, i / 32 % 32, i / 1024);
                        let wobble = (x * 7 + y * 13 + z * 3) % 5;
                        let id = if x + wobble < 16 { cell as u32 + 1 } else if y + wobble < 20 { 0 } else { 900_000 + cell as u32 };
                        id.to_le_bytes()
                    })
                    .collect();
                json!({"name": "updateBucket", "value": {"position": position, "mag": [1, 1, 1], "cubeSize": 32,
                    "base64Data": base64::engine::general_purpose::STANDARD.encode(voxels)}})
            })
            .collect();
        let body = json!({"base_version": n, "actions": actions});
        let began = Instant::now();
        let (status, reply) =
            post(&app, &format!("/api/annotations/{id}/saves"), &token, body).await;
        latencies.push(began.elapsed());
        assert_eq!(status, StatusCode::CREATED, "{reply}");
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let buckets = paints * 8;
    println!(
        "volume:       {paints} saves of 8 buckets    {:>7.0} saves/s  p50 {:>6} µs  p99 {:>6} µs  ({:.0} buckets/s, {:.1} MB/s of voxels)",
        paints as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5).as_micros(),
        percentile(&latencies, 0.99).as_micros(),
        buckets as f64 / elapsed.as_secs_f64(),
        (buckets * 32 * 32 * 32 * 4) as f64 / elapsed.as_secs_f64() / 1e6,
    );
}
