//! A volume annotation painted through the annotations API is read back by zarr-python over
//! HTTP from the chunk function, by URL alone: its latest version and an earlier one, as an
//! OME-Zarr 0.5 group with the image's voxel size; and the same access rules hold there — a
//! private annotation of a public dataset is not readable anonymously.

#![allow(clippy::unwrap_used)]

use crate::support::{self, call};

use base64::Engine as _;
use serde_json::{Value, json};
use shared::config::Delivery;

/// A bucket painted with `seed`: voxel i (x fastest) holds seed * 100000 + (i % 1000 where
/// i % 3 == 0, else 7): most 2×2×2 blocks have a clear mode that is not their smallest value.
fn bucket(position: [u64; 3], seed: u32) -> Value {
    let data: Vec<u8> = (0..32u32 * 32 * 32)
        .flat_map(|i| (seed * 100_000 + if i % 3 == 0 { i % 1000 } else { 7 }).to_le_bytes())
        .collect();
    json!({"name": "updateBucket", "value": {
        "position": position, "mag": [1, 1, 1], "cubeSize": 32,
        "base64Data": base64::engine::general_purpose::STANDARD.encode(data)}})
}

fn erased(position: [u64; 3]) -> Value {
    json!({"name": "updateBucket", "value": {
        "position": position, "mag": [1, 1, 1], "cubeSize": 32,
        "base64Data": base64::engine::general_purpose::STANDARD.encode(vec![0u8; 32 * 32 * 32 * 4])}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zarr_python_reads_a_painted_volume_and_its_versions() {
    painted_volume(Delivery::Proxy).await;
}

/// The same with chunk reads answered by redirects to signed storage URLs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zarr_python_follows_redirects_into_a_volume() {
    painted_volume(Delivery::Redirect).await;
}

async fn painted_volume(delivery: Delivery) {
    let Some(python) = support::client_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let running = support::serve_demo(dir.path(), delivery).await;
    let demo = running.demo.clone().unwrap();
    let services = &running.services;

    // A dataset manager of the installation's organization (may annotate the demo).
    let token = support::dataset_manager(&running, "painter@lab.example").await;
    let client = reqwest::Client::new();
    let api = |path: &str| format!("{}{path}", running.base_url);

    let (status, created) = call(
        &client,
        reqwest::Method::POST,
        &api("/api/annotations"),
        &token,
        Some(json!({"dataset_id": demo.dataset_id, "name": "nuclei", "kind": "volume", "visibility": "public"})),
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let volume = created["volume"].clone();
    let shape = volume["shape"].clone();
    let saves = api(&format!("/api/annotations/{id}/saves"));

    // Version 1: three buckets, one of them at the far corner of the volume.
    let far: Vec<u64> = ["x", "y", "z"]
        .iter()
        .enumerate()
        .map(|(i, _)| (shape[2 - i].as_u64().unwrap() - 1) / 32 * 32)
        .collect();
    let far = [far[0], far[1], far[2]];
    let (status, saved) = call(
        &client,
        reqwest::Method::POST,
        &saves,
        &token,
        Some(json!({"base_version": 0, "actions": [
            bucket([0, 0, 0], 1), bucket([64, 32, 32], 2), bucket(far, 3)]})),
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{saved}");
    assert_eq!(saved["version"], 1);
    assert_eq!(saved["buckets"], 3);
    assert_eq!(saved["largest_segment_id"], 300_999);
    // Version 2: one bucket repainted, one erased.
    let (status, saved) = call(
        &client,
        reqwest::Method::POST,
        &saves,
        &token,
        Some(json!({"base_version": 1, "actions": [bucket([64, 32, 32], 4), erased([0, 0, 0])]})),
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{saved}");
    assert_eq!(saved["buckets"], 2);

    let root = format!(
        "{}/data/{}/__annotations/{id}",
        running.base_url, demo.dataset_id
    );
    let spec = json!({
        "shape": shape,
        "voxel_size": volume["voxel_size"],
        "versions": [
            {"url": format!("{root}/volume/"), "buckets": [
                {"position": [64, 32, 32], "seed": 4}, {"position": far, "seed": 3}]},
            {"url": format!("{root}/versions/1/volume/"), "buckets": [
                {"position": [0, 0, 0], "seed": 1}, {"position": [64, 32, 32], "seed": 2},
                {"position": far, "seed": 3}]},
            {"url": format!("{root}/versions/0/volume/"), "buckets": []},
        ],
    });
    let spec = spec.to_string();
    let stdout = support::run_client(&python, "read_volume.py", &[spec.as_ref()]).await;
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    let reports = report.as_array().unwrap();
    assert_eq!(reports.len(), 3);
    assert!(reports.iter().all(|r| r["equal"] == true), "{report}");
    assert!(
        reports.iter().all(|r| r["levels_equal"] == true),
        "every coarser level is the mode of the one below: {report}"
    );
    assert_eq!(
        reports[0]["levels"], 4,
        "256 → 128 → 64 → 32 voxels: {report}"
    );
    assert_eq!(reports[0]["chunks"], json!([32, 32, 32]));
    assert_eq!(reports[0]["axes"], json!(["z", "y", "x"]));
    assert_eq!(reports[0]["dtype"], "uint32");
    assert_eq!(reports[1]["nonzero_voxels"], json!(3 * 32 * 32 * 32));
    // The volume has the demo image's finest level's spatial shape.
    let dataset = services
        .catalog
        .dataset(&shared::domain::DatasetId::parse(&demo.dataset_id).unwrap())
        .await
        .unwrap();
    let level = &dataset.layers[0].levels[0];
    assert_eq!(shape, json!(level.shape[level.shape.len() - 3..]));

    // Private annotations of a public dataset are not readable anonymously, even as Zarr.
    let (status, _) = call(
        &client,
        reqwest::Method::PATCH,
        &api(&format!("/api/annotations/{id}")),
        &token,
        Some(json!({"visibility": "private"})),
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let anonymous = reqwest::get(format!("{root}/volume/zarr.json"))
        .await
        .unwrap();
    assert_eq!(anonymous.status(), reqwest::StatusCode::UNAUTHORIZED);
    // … but its owner's viewer URL reads it.
    let (status, viewer) = call(
        &client,
        reqwest::Method::GET,
        &api(&format!(
            "/api/annotations/{id}/viewer?position=64,128,128&rotation=0,0,45&zoom=2"
        )),
        &token,
        None,
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{viewer}");
    let zarr_url = viewer["zarr_url"].as_str().unwrap();
    let metadata = reqwest::get(format!("{zarr_url}0/zarr.json"))
        .await
        .unwrap();
    assert_eq!(metadata.status(), reqwest::StatusCode::OK);
    let state: Value = reqwest::get(viewer["state_url"].as_str().unwrap())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let layers = state["layers"].as_array().unwrap();
    let painted = layers.iter().find(|l| l["name"] == "nuclei").unwrap();
    assert_eq!(painted["type"], "segmentation");
    assert_eq!(painted["source"], format!("zarr3://{zarr_url}"));
    assert!(state["crossSectionOrientation"].is_array(), "{state}");

    // A private skeleton, shared by a link made for it alone: the link holder downloads its
    // NML and JSON and sees it in the link's view state; anonymous readers do not.
    let (status, created) = call(
        &client,
        reqwest::Method::POST,
        &api("/api/annotations"),
        &token,
        Some(json!({"dataset_id": demo.dataset_id, "name": "axon", "kind": "skeleton", "visibility": "private"})),
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{created}");
    let skeleton = created["id"].as_str().unwrap().to_owned();
    let (status, saved) = call(
        &client,
        reqwest::Method::POST,
        &api(&format!("/api/annotations/{skeleton}/saves")),
        &token,
        Some(json!({"base_version": 0, "actions": [
            {"name": "createTree", "value": {"id": 1, "name": "axon"}},
            {"name": "createNode", "value": {"treeId": 1, "node": {"id": 1, "position": [10, 20, 30], "radius": 2.0, "created": 1}}},
            {"name": "createNode", "value": {"treeId": 1, "node": {"id": 2, "position": [12, 22, 31], "radius": 2.0, "created": 2}}},
            {"name": "createEdge", "value": {"treeId": 1, "source": 1, "target": 2}},
        ]})),
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{saved}");
    let (status, link) = call(
        &client,
        reqwest::Method::POST,
        &api(&format!("/api/datasets/{}/links", demo.dataset_id)),
        &running.admin_key,
        Some(json!({"label": "axon for reviewers",
                    "scope": {"kind": "annotation", "annotation": skeleton},
                    "view": {"position": [30, 20, 10], "rotation": [0, 0, 45], "zoom": 4}})),
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{link}");
    let link_root = link["url"]
        .as_str()
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    let nml = reqwest::get(format!("{link_root}/__annotations/{skeleton}/skeleton.nml"))
        .await
        .unwrap();
    assert_eq!(nml.status(), reqwest::StatusCode::OK);
    let nml = nml.text().await.unwrap();
    assert!(nml.contains("<node id=\"2\""), "{nml}");
    assert!(nml.contains("<edge source=\"1\" target=\"2\""), "{nml}");
    let json: Value = reqwest::get(format!(
        "{link_root}/__annotations/{skeleton}/versions/1/skeleton.json"
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        json["trees"][0]["nodes"].as_array().unwrap().len(),
        2,
        "{json}"
    );
    let state: Value = reqwest::get(link["state_url"].as_str().unwrap())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let overlay = state["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["type"] == "annotation")
        .unwrap_or_else(|| panic!("no skeleton layer in {state}"));
    assert_eq!(
        overlay["annotations"].as_array().unwrap().len(),
        3,
        "2 nodes, 1 edge"
    );
    assert!(state["crossSectionOrientation"].is_array(), "{state}");
    let anonymous = reqwest::get(format!(
        "{}/data/{}/__annotations/{skeleton}/skeleton.nml",
        running.base_url, demo.dataset_id
    ))
    .await
    .unwrap();
    assert_eq!(anonymous.status(), reqwest::StatusCode::UNAUTHORIZED);
    running.stop().await.unwrap();
}
