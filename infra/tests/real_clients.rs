//! A real client reads the demo dataset: zarr-python 3 opens it by URL alone over HTTP —
//! the public URL and the share-link URL, with proxied and with redirected delivery — and
//! compares every level (including the sharded label levels, read with range requests).

#![allow(clippy::unwrap_used)]

mod support;

use infra::server::{ServeOptions, start};
use shared::config::Delivery;

async fn read_with_zarr_python(delivery: Delivery) {
    let Some(python) = support::client_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let running = start(ServeOptions {
        port: 0,
        data_dir: dir.path().to_path_buf(),
        ready_file: None,
        aws: false,
        delivery,
        local_roots: vec![],
        seed_demo: true,
    })
    .await
    .unwrap();
    let demo = running.demo.clone().unwrap();
    let source = dir
        .path()
        .canonicalize()
        .unwrap()
        .join("objects/demo/cells.ome.zarr");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/read_demo.py");
    let output = tokio::process::Command::new(python)
        .arg(script)
        .arg(&source)
        .arg(&demo.public_url)
        .arg(&demo.link_url)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "zarr-python failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reports: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reports.len(), 2, "one report per URL");
    for report in &reports {
        let arrays = report["arrays"].as_array().unwrap();
        let paths: Vec<&str> = arrays.iter().map(|a| a["path"].as_str().unwrap()).collect();
        assert_eq!(
            paths,
            ["0", "1", "2", "labels/cells/0", "labels/cells/1"],
            "{report}"
        );
        assert!(arrays.iter().all(|a| a["equal"] == true), "{report}");
        assert_eq!(arrays[0]["shape"], serde_json::json!([128, 256, 256]));
        assert_eq!(
            arrays[3]["shards"],
            serde_json::json!([128, 128, 128]),
            "label level 0 is sharded"
        );
    }
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zarr_python_reads_the_demo_through_proxied_public_and_link_urls() {
    read_with_zarr_python(Delivery::Proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zarr_python_follows_redirects_to_presigned_urls() {
    read_with_zarr_python(Delivery::Redirect).await;
}
