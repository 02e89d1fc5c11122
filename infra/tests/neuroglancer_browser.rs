//! A real Neuroglancer, in headless Chromium, opens the viewer links the API hands out and reads
//! every data source in them straight from the chunk function: the demo image and its labels,
//! a private volume annotation through its owner's personal capability URL, and a private
//! skeleton through its owner's view link and through a share link made for it alone. Nothing
//! may fail to load; the skeleton's nodes and edges must arrive as Neuroglancer point and line
//! annotations; and the painted block must be drawn where it was painted — on the z planes it
//! covers, on the side of the camera it lies, and nowhere on a plane outside it.

#![allow(clippy::unwrap_used)]

use crate::support::{self, call};

use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use shared::config::Delivery;

/// The painted segment and its block (x, y, z; 32³ voxels, one webKnossos bucket).
const SEGMENT: u32 = 7;
const BLOCK: [u64; 3] = [128, 96, 64];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neuroglancer_loads_and_draws_what_the_viewer_links_point_at() {
    let Some(python) = support::client_python() else {
        return;
    };
    if !support::browser() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let running = support::serve_demo(dir.path(), Delivery::Proxy).await;
    let demo = running.demo.clone().unwrap();
    let token = support::dataset_manager(&running, "tracer@lab.example").await;
    let client = reqwest::Client::new();
    let api = |path: &str| format!("{}{path}", running.base_url);

    // A private volume annotation with one block of one segment …
    let (status, volume) = call(
        &client,
        Method::POST,
        &api("/api/annotations"),
        &token,
        Some(
            json!({"dataset_id": demo.dataset_id, "name": "nuclei", "kind": "volume",
                    "visibility": "private"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{volume}");
    let volume = volume["id"].as_str().unwrap().to_owned();
    let voxels: Vec<u8> = (0..32 * 32 * 32)
        .flat_map(|_| SEGMENT.to_le_bytes())
        .collect();
    let (status, saved) = call(
        &client,
        Method::POST,
        &api(&format!("/api/annotations/{volume}/saves")),
        &token,
        Some(
            json!({"base_version": 0, "actions": [{"name": "updateBucket", "value": {
            "position": BLOCK, "mag": [1, 1, 1], "cubeSize": 32,
            "base64Data": base64::engine::general_purpose::STANDARD.encode(voxels)}}]}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{saved}");

    // … and a private skeleton: three nodes, two edges, a comment.
    let (status, skeleton) = call(
        &client,
        Method::POST,
        &api("/api/annotations"),
        &token,
        Some(
            json!({"dataset_id": demo.dataset_id, "name": "axon", "kind": "skeleton",
                    "visibility": "private"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{skeleton}");
    let skeleton = skeleton["id"].as_str().unwrap().to_owned();
    let node = |id: u32, position: [u32; 3]| {
        json!({"name": "createNode", "value": {"treeId": 1, "node": {
            "id": id, "position": position, "radius": 3.0, "created": id}}})
    };
    let (status, saved) = call(
        &client,
        Method::POST,
        &api(&format!("/api/annotations/{skeleton}/saves")),
        &token,
        Some(json!({"base_version": 0, "actions": [
            {"name": "createTree", "value": {"id": 1, "name": "axon"}},
            node(1, [100, 100, 60]), node(2, [120, 110, 62]), node(3, [140, 130, 64]),
            {"name": "createEdge", "value": {"treeId": 1, "source": 1, "target": 2}},
            {"name": "createEdge", "value": {"treeId": 1, "source": 2, "target": 3}},
            {"name": "setComment", "value": {"treeId": 1, "nodeId": 3, "content": "soma?"}},
        ]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{saved}");

    // The links a person would click: the owner's view links, and a reviewer's share link.
    let viewer_link = |id: String| {
        let (client, api, token) = (&client, &api, &token);
        async move {
            let (status, viewer) = call(
                client,
                Method::GET,
                &api(&format!(
                    "/api/annotations/{id}/viewer?position=144,112,80&zoom=1"
                )),
                token,
                None,
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{viewer}");
            viewer["neuroglancer_url"].as_str().unwrap().to_owned()
        }
    };
    let volume_view = viewer_link(volume.clone()).await;
    let skeleton_view = viewer_link(skeleton.clone()).await;
    let (status, link) = call(
        &client,
        Method::POST,
        &api(&format!("/api/datasets/{}/links", demo.dataset_id)),
        &running.admin_key,
        Some(json!({"label": "axon for reviewers",
                    "scope": {"kind": "annotation", "annotation": skeleton},
                    "view": {"position": [120, 110, 62], "rotation": [0, 0, 30], "zoom": 2}})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{link}");
    let link_view = link["neuroglancer_url"].as_str().unwrap().to_owned();

    let end = BLOCK.map(|c| c + 32);
    let spec = json!({"views": [
        {"viewer_url": volume_view,
         "paint": {"layer": "nuclei", "segment": SEGMENT, "box": [BLOCK, end]}},
        {"viewer_url": skeleton_view},
        {"viewer_url": link_view},
    ]});
    let spec = spec.to_string();
    let stdout = support::run_client(&python, "neuroglancer_view.py", &[spec.as_ref()]).await;
    eprintln!("Neuroglancer's report: {stdout}");
    let reports: Vec<Value> = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(reports.len(), 3, "{stdout}");

    // Every data source of every view loaded: the chunk function answered Neuroglancer.
    for report in &reports {
        for layer in report["layers"].as_array().unwrap() {
            assert!(
                layer["sources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|s| s == "loaded"),
                "{layer}"
            );
        }
        let shot = &report["screenshot"];
        assert_eq!(shot["width"], 640, "{shot}");
        assert!(shot["nonblack_fraction"].as_f64().unwrap() > 0.05, "{shot}");
        assert!(shot["distinct_colors"].as_u64().unwrap() > 16, "{shot}");
    }
    let names = |report: &Value| -> Vec<String> {
        report["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let volume_layers = names(&reports[0]);
    assert!(
        volume_layers.iter().any(|n| n == "nuclei") && volume_layers.len() >= 3,
        "the demo's image and labels, and the annotation: {volume_layers:?}"
    );
    let nuclei = reports[0]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "nuclei")
        .unwrap();
    assert_eq!(nuclei["type"], "segmentation", "{nuclei}");

    // The skeleton, through the owner's view link and the reviewer's share link alike.
    for report in &reports[1..] {
        let skeleton_layer = report["layers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["type"] == "annotation")
            .unwrap_or_else(|| panic!("no annotation layer: {report}"));
        assert_eq!(skeleton_layer["points"], 3, "{skeleton_layer}");
        assert_eq!(skeleton_layer["lines"], 2, "{skeleton_layer}");
    }

    // The painted block, drawn alone in green at one screen pixel per voxel, the camera on its
    // right edge: a 32-pixel-wide block left of the panel's centre, level with it …
    let paint = &reports[0]["paint"];
    let inside = &paint["inside"];
    let centre = paint["panel_centre"].as_array().unwrap();
    let (cx, cy) = (centre[0].as_f64().unwrap(), centre[1].as_f64().unwrap());
    let pixels = inside["pixels"].as_u64().unwrap();
    assert!(
        (32 * 30..=32 * 34).contains(&pixels),
        "32 × 32 pixels: {paint}"
    );
    let bbox: Vec<f64> = inside["bbox"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let near = |a: f64, b: f64| (a - b).abs() <= 1.5;
    assert!(
        near(bbox[0], cx - 32.0) && near(bbox[2], cx - 1.0),
        "from 32 pixels left of the centre up to it: {paint}"
    );
    assert!(
        near(bbox[1], cy - 16.0) && near(bbox[3], cy + 15.0),
        "level with the centre: {paint}"
    );
    // … and nothing on a plane outside it.
    assert_eq!(paint["outside"]["pixels"], 0, "{paint}");

    running.stop().await.unwrap();
}
