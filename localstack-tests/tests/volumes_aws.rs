//! Volume annotations over DynamoDB and S3 in LocalStack, through the real local server
//! (`serve --aws`, redirect delivery): the Zarr metadata and each save's buckets land in S3
//! under the annotations prefix; chunk reads are answered with presigned S3 URLs that LocalStack
//! verifies and that return exactly the stored objects; a save that loses its race deletes what
//! it wrote; every version stays readable.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use localstack_tests::{error_chain, localstack, serve_aws, signed_in_manager, unique};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::config::Delivery;
use shared::domain::StorageUrl;

fn bucket(position: [u64; 3], value: u32) -> Value {
    let voxels: Vec<u8> = (0..32u32 * 32 * 32)
        .flat_map(|i| if i % 3 == 0 { value } else { value + i % 7 }.to_le_bytes())
        .collect();
    json!({"name": "updateBucket", "value": {"position": position, "mag": [1, 1, 1], "cubeSize": 32,
        "base64Data": base64::engine::general_purpose::STANDARD.encode(voxels)}})
}

/// Every key below `prefix` in `bucket`, with its bytes.
async fn objects(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let listed = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
        .unwrap_or_else(|e| panic!("list {prefix}: {}", error_chain(&e)));
    for object in listed.contents() {
        let key = object.key().unwrap().to_owned();
        let body = s3
            .get_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .unwrap();
        let bytes = body.body.collect().await.unwrap().into_bytes().to_vec();
        out.insert(key.strip_prefix(prefix).unwrap().to_owned(), bytes);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_buckets_live_in_s3_and_read_through_presigned_urls() {
    let Some(ls) = localstack().await else {
        return;
    };
    let (running, _dir) = serve_aws(Delivery::Redirect).await;
    let demo = running.demo.clone().unwrap();
    let services = running.services.clone();
    let Some(StorageUrl::S3 {
        bucket: data,
        prefix,
    }) = services.config.annotations.clone()
    else {
        panic!(
            "--aws keeps annotations in S3: {:?}",
            services.config.annotations
        );
    };

    // A dataset manager of the installation's organization (stored in DynamoDB).
    let (_, token) = signed_in_manager(&services, "painter").await;
    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let mut request = client
            .request(method, format!("{}{path}", running.base_url))
            .bearer_auth(&token);
        if let Some(b) = body {
            request = request.json(&b);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            let text = response.text().await.unwrap();
            (
                status,
                serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text)),
            )
        }
    };

    let (status, created) = call(
        reqwest::Method::POST,
        "/api/annotations".into(),
        Some(json!({"dataset_id": demo.dataset_id, "name": unique("nuclei"), "kind": "volume", "visibility": "public"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let s3 = aws_sdk_s3::Client::new(&ls.sdk);
    let volume_prefix = format!("{prefix}/{id}/volume/");
    let stored = objects(&s3, &data, &volume_prefix).await;
    let levels = created["volume"]["levels"].as_u64().unwrap();
    let mut metadata: Vec<String> = (0..levels).map(|k| format!("{k}/zarr.json")).collect();
    metadata.push("zarr.json".into());
    metadata.sort();
    assert!(levels > 1, "the demo is large enough for coarser levels");
    assert_eq!(
        stored.keys().cloned().collect::<Vec<_>>(),
        metadata,
        "the metadata of every level is written at creation"
    );

    let saves = format!("/api/annotations/{id}/saves");
    let (status, saved) = call(
        reqwest::Method::POST,
        saves.clone(),
        Some(
            json!({"base_version": 0, "actions": [bucket([0, 0, 0], 5), bucket([32, 64, 96], 6)]}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{saved}");
    let (status, saved) = call(
        reqwest::Method::POST,
        saves.clone(),
        Some(json!({"base_version": 1, "actions": [bucket([0, 0, 0], 9)]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{saved}");
    assert_eq!(saved["largest_segment_id"], 15);

    // Two saves of their own: two directories with the buckets each carried.
    let stored = objects(&s3, &data, &volume_prefix).await;
    let chunks: Vec<&String> = stored.keys().filter(|k| k.contains("/0/c/")).collect();
    assert_eq!(chunks.len(), 3, "{chunks:?}");
    let v1_first = chunks
        .iter()
        .find(|k| k.starts_with("s1-") && k.ends_with("0/c/0/0/0"))
        .unwrap();
    let v2_first = chunks
        .iter()
        .find(|k| k.starts_with("s2-") && k.ends_with("0/c/0/0/0"))
        .unwrap();

    // Chunk reads are 307s to presigned S3 URLs (LocalStack checks the signature) that return
    // exactly the stored objects: the latest for the moving name, version 1's for versions/1.
    let root = format!(
        "{}/data/{}/__annotations/{id}",
        running.base_url, demo.dataset_id
    );
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let first = no_redirects
        .get(format!("{root}/volume/0/c/0/0/0"))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::TEMPORARY_REDIRECT);
    let location = first.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&ls.endpoint), "{location}");
    for (url, want) in [
        (format!("{root}/volume/0/c/0/0/0"), &stored[*v2_first]),
        (
            format!("{root}/versions/1/volume/0/c/0/0/0"),
            &stored[*v1_first],
        ),
        (format!("{root}/volume/0/zarr.json"), &stored["0/zarr.json"]),
    ] {
        let r = client.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{url}");
        assert_eq!(&r.bytes().await.unwrap().to_vec(), want, "{url}");
    }
    let never = client
        .get(format!("{root}/volume/0/c/3/3/3"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        never.status(),
        StatusCode::NOT_FOUND,
        "unpainted buckets read as fill value"
    );

    // Racing saves on one version: one wins; every loser that got as far as writing its
    // chunks deletes them, so S3 ends with the winner's only.
    let before: BTreeSet<String> = objects(&s3, &data, &volume_prefix)
        .await
        .into_keys()
        .collect();
    let racers: Vec<_> = (0..6u32)
        .map(|n| {
            call(
                reqwest::Method::POST,
                saves.clone(),
                Some(json!({"base_version": 2, "actions": [bucket([64, 64, 64], 20 + n)]})),
            )
        })
        .collect();
    let outcomes = futures::future::join_all(racers).await;
    let won = outcomes
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    let lost = outcomes
        .iter()
        .filter(|(s, _)| *s == StatusCode::CONFLICT)
        .count();
    assert_eq!((won, lost), (1, 5), "{outcomes:?}");
    let after = objects(&s3, &data, &volume_prefix).await;
    let new_saves: BTreeSet<&str> = after
        .keys()
        .filter(|k| !before.contains(*k))
        .filter_map(|k| k.split('/').next())
        .collect();
    assert_eq!(
        new_saves.len(),
        1,
        "only the winner's directory: {new_saves:?}"
    );
    let winner = new_saves.iter().next().unwrap();
    assert!(
        after.contains_key(&format!("{winner}/0/c/2/2/2")),
        "the winner's bucket"
    );
    running.stop().await.unwrap();
}
