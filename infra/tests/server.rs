//! The local server as a user meets it: ready file, demo, restart, OpenAPI document.

#![allow(clippy::unwrap_used)]

use infra::server::{Ready, ServeOptions, start};
use shared::config::Delivery;

fn options(dir: &std::path::Path, ready: Option<std::path::PathBuf>) -> ServeOptions {
    ServeOptions {
        port: 0,
        data_dir: dir.to_path_buf(),
        ready_file: ready,
        aws: false,
        delivery: Delivery::Proxy,
        local_roots: vec![],
        seed_demo: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_file_demo_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ready_path = dir.path().join("ready.json");
    let first = start(options(dir.path(), Some(ready_path.clone())))
        .await
        .unwrap();
    let ready: Ready = serde_json::from_slice(&std::fs::read(&ready_path).unwrap()).unwrap();
    assert_eq!(ready.base_url, first.base_url);
    let demo = ready.demo.clone().unwrap();
    assert_eq!(
        demo.public_url,
        format!("{}/data/{}/", first.base_url, demo.dataset_id)
    );
    assert!(demo.link_url.starts_with(&format!("{}/s/", first.base_url)));

    let client = reqwest::Client::new();
    let get = |url: String| {
        let client = client.clone();
        async move { client.get(url).send().await.unwrap() }
    };
    let root = get(format!("{}zarr.json", demo.public_url)).await;
    assert_eq!(root.status(), 200);
    let doc: serde_json::Value = root.json().await.unwrap();
    assert_eq!(doc["attributes"]["ome"]["version"], "0.5");
    assert_eq!(
        get(format!("{}zarr.json", demo.link_url)).await.status(),
        200
    );
    // The private dataset is not public, and the public listing needs the key.
    assert_eq!(
        get(format!(
            "{}/data/{}/zarr.json",
            first.base_url, demo.private_dataset_id
        ))
        .await
        .status(),
        404
    );
    assert_eq!(
        get(format!("{}/api/datasets", first.base_url))
            .await
            .status(),
        401
    );
    let listed = client
        .get(format!("{}/api/datasets", first.base_url))
        .bearer_auth(&first.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    let listed: serde_json::Value = listed.json().await.unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
    let stats: serde_json::Value = get(format!("{}/_local/stats", first.base_url))
        .await
        .json()
        .await
        .unwrap();
    assert!(stats["metadata_calls"]["get"].as_u64().unwrap() > 0);

    // Stop, start again on the same data directory: same datasets, same link, no re-seeding.
    let admin_key = first.admin_key.clone();
    drop(client);
    first.stop().await.unwrap();
    let second = start(options(dir.path(), Some(ready_path.clone())))
        .await
        .unwrap();
    let again = second.demo.clone().unwrap();
    assert_eq!(
        (again.dataset_id.as_str(), again.private_dataset_id.as_str()),
        (demo.dataset_id.as_str(), demo.private_dataset_id.as_str())
    );
    assert_eq!(
        again.link_url.rsplit("/s/").next(),
        demo.link_url.rsplit("/s/").next(),
        "link token kept"
    );
    let client = reqwest::Client::new();
    assert_eq!(
        client
            .get(format!("{}zarr.json", again.link_url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(second.admin_key, admin_key, "admin key kept");
    second.stop().await.unwrap();
}

#[test]
fn the_checked_in_openapi_document_is_current() {
    let live = serde_json::to_value(infra::openapi()).unwrap();
    let file: serde_json::Value = serde_json::from_str(datasets::OPENAPI_JSON).unwrap();
    assert!(
        live == file,
        "openapi.json is stale: run `cargo run -p infra -- openapi > openapi.json`"
    );
    let paths = live["paths"].as_object().unwrap();
    for p in [
        "/api/datasets",
        "/api/datasets/{id}",
        "/api/datasets/{id}/links",
        "/api/datasets/{id}/links/{link_id}",
        "/data/{dataset_id}/{key}",
        "/s/{token}/{key}",
    ] {
        assert!(paths.contains_key(p), "{p} undocumented");
    }
}
