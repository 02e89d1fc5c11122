//! The local server in `--aws` mode: it provisions its table and bucket in LocalStack, seeds the
//! demo pyramid into S3 and its records into DynamoDB, serves the demo over real HTTP, and
//! keeps the same dataset ids and link across a restart.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use infra::server::{DemoInfo, Ready, Running, ServeOptions, start};
use localstack_tests::{error_chain, localstack};
use reqwest::StatusCode;
use shared::config::Delivery;
use shared::domain::{DatasetId, StorageUrl, Visibility};
use shared::store::Catalog;
use shared::store::dynamo::DynamoStore;

/// What `serve --aws` uses when the environment names nothing else (see `infra::server`).
fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

async fn get(
    url: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    // A fresh client per request: no kept-alive connection outlives a stopped server.
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {}", error_chain(&e)));
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

/// The demo's documents and chunks are served over HTTP at its public and link URLs.
async fn serves_the_demo(running: &Running, demo: &DemoInfo, chunk: &[u8]) {
    assert!(
        demo.public_url.starts_with(&running.base_url)
            && demo.link_url.starts_with(&running.base_url),
        "{demo:?}"
    );
    for root in [&demo.public_url, &demo.link_url] {
        let (status, headers, body) = get(
            &format!("{root}zarr.json"),
            &[("origin", "https://viewer.example.org")],
        )
        .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{root}zarr.json: {}",
            String::from_utf8_lossy(&body)
        );
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            doc["attributes"]["ome"]["version"], "0.5",
            "{root}zarr.json"
        );
        assert_eq!(
            headers
                .get("access-control-allow-origin")
                .and_then(|v| v.to_str().ok()),
            Some("*")
        );
        let (status, _, body) = get(&format!("{root}0/c/0/0/0"), &[]).await;
        assert_eq!(status, StatusCode::OK, "{root}0/c/0/0/0");
        assert_eq!(body, chunk, "{root}0/c/0/0/0 is the object in S3");
        let (status, headers, body) =
            get(&format!("{root}0/c/0/0/0"), &[("range", "bytes=-8")]).await;
        assert_eq!(status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(body, chunk[chunk.len() - 8..]);
        assert!(headers.contains_key("content-range"));
    }
    let (status, _, _) = get(
        &format!(
            "{}/data/{}/zarr.json",
            running.base_url, demo.private_dataset_id
        ),
        &[],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the private demo is not public"
    );
}

/// Stops a server the way the brief says: abort its task; then its port refuses connections.
async fn stop(running: Running) {
    running.server.abort();
    let ended = running.server.await;
    assert!(
        ended.as_ref().is_err_and(|e| e.is_cancelled()),
        "server task ended otherwise: {ended:?}"
    );
    let client = reqwest::Client::new();
    assert!(
        client
            .get(format!("{}/", running.base_url))
            .send()
            .await
            .is_err(),
        "{} still answers",
        running.base_url
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_server_seeds_the_demo_into_localstack_and_keeps_its_ids_across_restarts() {
    let Some(ls) = localstack().await else { return };
    let table = env_or("ZARRSHARE_TABLE", "zarrshare");
    let bucket = env_or("ZARRSHARE_DATA_BUCKET", "zarrshare-data");
    let dir = tempfile::tempdir().unwrap();
    let ready_file = dir.path().join("ready.json");
    let opts = ServeOptions {
        port: 0,
        data_dir: dir.path().to_path_buf(),
        ready_file: Some(ready_file.clone()),
        aws: true,
        delivery: Delivery::Proxy,
        local_roots: vec![],
        seed_demo: true,
    };

    let first = start(opts.clone())
        .await
        .unwrap_or_else(|e| panic!("serve --aws: {}", error_chain(&e)));
    let demo = first.demo.clone().expect("the demo was seeded");
    let ready: Ready = serde_json::from_slice(&std::fs::read(&ready_file).unwrap()).unwrap();
    assert_eq!(
        (ready.base_url.as_str(), ready.demo.as_ref()),
        (first.base_url.as_str(), Some(&demo)),
        "ready file"
    );

    // The pyramid is in S3 and the records are in DynamoDB — not in the embedded store.
    let s3 = ls.s3();
    let prefix = "demo/cells.ome.zarr";
    let object = s3
        .get_object()
        .bucket(&bucket)
        .key(format!("{prefix}/0/c/0/0/0"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("the demo chunk in s3://{bucket}: {}", error_chain(&e)));
    let chunk = object.body.collect().await.unwrap().into_bytes().to_vec();
    let catalog = Catalog::new(Arc::new(DynamoStore::new(ls.dynamodb(), &table)));
    let expected_storage = StorageUrl::S3 {
        bucket: bucket.clone(),
        prefix: prefix.to_owned(),
    };
    for (id, visibility) in [
        (&demo.dataset_id, Visibility::Public),
        (&demo.private_dataset_id, Visibility::Private),
    ] {
        let record = catalog
            .dataset(&DatasetId::parse(id).unwrap())
            .await
            .unwrap_or_else(|e| panic!("dataset {id} in DynamoDB table {table}: {e:?}"));
        assert_eq!(
            (&record.storage, record.visibility),
            (&expected_storage, visibility),
            "dataset {id}"
        );
        assert_eq!(record.layers.len(), 2, "image and labels of {id}");
    }
    assert!(
        !dir.path().join("meta.redb").exists(),
        "--aws must not open the embedded store"
    );

    serves_the_demo(&first, &demo, &chunk).await;
    stop(first).await;

    // Same data directory: the same datasets and the same link, on whatever port is free now.
    let second = start(opts)
        .await
        .unwrap_or_else(|e| panic!("restart: {}", error_chain(&e)));
    let again = second.demo.clone().expect("the demo after a restart");
    assert_eq!(
        again.dataset_id, demo.dataset_id,
        "public dataset id after a restart"
    );
    assert_eq!(
        again.private_dataset_id, demo.private_dataset_id,
        "private dataset id after a restart"
    );
    let token = |d: &DemoInfo, base: &str| d.link_url.strip_prefix(base).unwrap().to_owned();
    assert_eq!(
        token(&again, &second.base_url),
        token(&demo, &ready.base_url),
        "the link survives a restart"
    );
    serves_the_demo(&second, &again, &chunk).await;
    stop(second).await;
}
