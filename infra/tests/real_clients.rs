//! A real client reads the demo dataset: zarr-python 3 opens it by URL alone over HTTP —
//! the public URL and the share-link URL, with proxied and with redirected delivery — and
//! compares every level (including the sharded label levels, read with range requests).

#![allow(clippy::unwrap_used)]

use crate::support;

use shared::config::Delivery;

async fn read_with_zarr_python(delivery: Delivery) {
    let Some(python) = support::client_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let running = support::serve_demo(dir.path(), delivery).await;
    let demo = running.demo.clone().unwrap();
    let source = dir
        .path()
        .canonicalize()
        .unwrap()
        .join("objects/demo/cells.ome.zarr");
    let stdout = support::run_client(
        &python,
        "read_demo.py",
        &[
            source.as_os_str(),
            demo.public_url.as_ref(),
            demo.link_url.as_ref(),
        ],
    )
    .await;
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

async fn api(
    running: &infra::server::Running,
    method: reqwest::Method,
    path: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let response = reqwest::Client::new()
        .request(method, format!("{}{path}", running.base_url))
        .bearer_auth(&running.admin_key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).unwrap()
}

async fn zarr_python(python: &std::path::Path, source: &std::path::Path, url: &str) -> Vec<String> {
    let stdout =
        support::run_client(python, "read_demo.py", &[source.as_os_str(), url.as_ref()]).await;
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let arrays = report["arrays"].as_array().unwrap();
    assert!(arrays.iter().all(|a| a["equal"] == true), "{report}");
    arrays
        .iter()
        .map(|a| a["path"].as_str().unwrap().to_owned())
        .collect()
}

/// zarr-python opens a sub-path link (the label image alone) and a password-protected link
/// once unlocked, each by URL alone, and reads what the source holds; outside the sub-path
/// and before the unlock it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zarr_python_reads_scoped_and_password_protected_links() {
    let Some(python) = support::client_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let running = support::serve_demo(dir.path(), Delivery::Proxy).await;
    let demo = running.demo.clone().unwrap();
    let source = dir
        .path()
        .canonicalize()
        .unwrap()
        .join("objects/demo/cells.ome.zarr");
    let links = format!("/api/datasets/{}/links", demo.private_dataset_id);

    // The label image alone: its URL is the scope's directory.
    let scoped = api(
        &running,
        reqwest::Method::POST,
        &links,
        serde_json::json!({"label": "labels only", "scope": {"kind": "path", "prefix": "labels/cells"}}),
    )
    .await;
    let url = scoped["url"].as_str().unwrap();
    assert!(url.ends_with("/labels/cells/"), "{url}");
    assert_eq!(
        zarr_python(&python, &source.join("labels/cells"), url).await,
        ["0", "1"]
    );
    let root = url.trim_end_matches("labels/cells/");
    let refused = reqwest::get(format!("{root}zarr.json")).await.unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::FORBIDDEN);

    // A password-protected link: refused until unlocked, then the whole pyramid reads.
    let protected = api(
        &running,
        reqwest::Method::POST,
        &links,
        serde_json::json!({"label": "with password", "password": "a reviewer's passphrase"}),
    )
    .await;
    let locked = reqwest::get(format!("{}zarr.json", protected["url"].as_str().unwrap()))
        .await
        .unwrap();
    assert_eq!(locked.status(), reqwest::StatusCode::UNAUTHORIZED);
    let unlocked = reqwest::Client::new()
        .post(format!("{}/api/links/unlock", running.base_url))
        .json(&serde_json::json!({
            "token": protected["token"],
            "password": "a reviewer's passphrase",
        }))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(
        zarr_python(&python, &source, unlocked["url"].as_str().unwrap()).await,
        ["0", "1", "2", "labels/cells/0", "labels/cells/1"]
    );
    running.stop().await.unwrap();
}
