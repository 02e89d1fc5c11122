//! Skeleton annotations over DynamoDB and S3 in LocalStack, through the real local server
//! (`serve --aws`): a save too large for a DynamoDB item goes to S3 under the annotations
//! prefix; versions past a snapshot are stored as batches; an instance with nothing cached
//! rebuilds every version from DynamoDB and S3 exactly; writers racing on one annotation over
//! HTTP never lose or duplicate a version.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use localstack_tests::{error_chain, localstack, serve_aws, signed_in_manager, unique};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::Services;
use shared::config::Delivery;
use shared::domain::{AnnotationId, SNAPSHOT_EVERY, StorageUrl, VersionBody};
use tower::ServiceExt;

fn tree(id: u32, first_node: u32, nodes: u32) -> Vec<Value> {
    let mut actions =
        vec![json!({"name": "createTree", "value": {"id": id, "name": format!("t{id}")}})];
    for n in first_node..first_node + nodes {
        actions.push(
            json!({"name": "createNode", "value": {"treeId": id, "node": {
            "id": n, "position": [n, 2 * n, 7], "radius": 1.5, "created": 1_700_000_000_000_i64}}}),
        );
        if n > first_node {
            actions.push(json!({"name": "createEdge", "value": {"treeId": id, "source": n - 1, "target": n}}));
        }
    }
    actions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skeleton_versions_live_in_dynamodb_and_s3_and_survive_racing_writers() {
    let Some(ls) = localstack().await else {
        return;
    };
    let (running, _dir) = serve_aws(Delivery::Proxy).await;
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
    let (_, token) = signed_in_manager(&services, "tracer").await;
    let client = reqwest::Client::new();
    let base = running.base_url.clone();
    let post = |path: String, body: Value| {
        let request = client
            .post(format!("{base}{path}"))
            .bearer_auth(&token)
            .json(&body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let create = |name: String| {
        post(
            "/api/annotations".into(),
            json!({"dataset_id": demo.dataset_id, "name": name, "kind": "skeleton"}),
        )
    };

    // A first save of 2400 nodes: its batch is far over the inline limit, so it is in S3.
    let (status, created) = create(unique("long axon")).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let saves = format!("/api/annotations/{id}/saves");
    let (status, saved) = post(
        saves.clone(),
        json!({"base_version": 0, "actions": tree(1, 1, 2400)}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{saved}");
    // Then small saves up to one past the first snapshot.
    let last = SNAPSHOT_EVERY + 1;
    for v in 1..last {
        let first = 10_000 + u32::try_from(v).unwrap() * 10;
        let (status, saved) = post(
            saves.clone(),
            json!({"base_version": v, "actions": tree(1 + u32::try_from(v).unwrap(), first, 3)}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{saved}");
    }

    let annotation = AnnotationId::parse(&id).unwrap();
    let store = services.annotations();
    let first = store.version(&annotation, 1).await.unwrap();
    let VersionBody::Object { key, bytes, .. } = &first.body else {
        panic!("a 2400-node batch must live in S3: {:?}", first.body);
    };
    assert_eq!(first.delta_of, Some(0));
    let s3 = aws_sdk_s3::Client::new(&ls.sdk);
    let object = s3
        .head_object()
        .bucket(&data)
        .key(format!("{prefix}/{key}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{prefix}/{key}: {}", error_chain(&e)));
    assert_eq!(
        object.content_length(),
        Some(i64::try_from(*bytes).unwrap())
    );
    let snapshot = store.version(&annotation, SNAPSHOT_EVERY).await.unwrap();
    assert_eq!(
        snapshot.delta_of, None,
        "version {SNAPSHOT_EVERY} is a whole skeleton"
    );
    assert!(
        matches!(snapshot.body, VersionBody::Object { .. }),
        "a 2400-node skeleton is in S3 too"
    );
    assert_eq!(
        store.version(&annotation, last).await.unwrap().delta_of,
        Some(SNAPSHOT_EVERY)
    );

    // An instance with nothing cached (a fresh Lambda) rebuilds every version identically.
    let cold = annotations::router(Arc::new(
        Services::build(
            services.config.clone(),
            shared::services::open_store(&services.config)
                .await
                .unwrap(),
        )
        .await
        .unwrap(),
    ));
    for v in [1, 2, SNAPSHOT_EVERY - 1, SNAPSHOT_EVERY, last] {
        let path = format!("/api/annotations/{id}/versions/{v}");
        let warm: Value = client
            .get(format!("{base}{path}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let response = cold
            .clone()
            .oneshot(
                Request::get(&path)
                    .header("authorization", format!("Bearer {token}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let rebuilt: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(rebuilt, warm, "version {v}");
        let trees = rebuilt["trees"].as_array().unwrap();
        assert_eq!(trees.len() as u64, v, "version {v} has one tree per save");
    }

    // Writers racing on one annotation: every accepted save gets the next version, none lost.
    let (_, created) = create(unique("raced")).await;
    let raced = created["id"].as_str().unwrap().to_owned();
    const WRITERS: u32 = 6;
    const EACH: u32 = 4;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (client, base, token, raced) =
                (client.clone(), base.clone(), token.clone(), raced.clone());
            tokio::spawn(async move {
                let (mut version, mut refused) = (0u64, 0u32);
                for n in 0..EACH {
                    let tree_id = 1 + w * EACH + n;
                    loop {
                        let response = client
                            .post(format!("{base}/api/annotations/{raced}/saves"))
                            .bearer_auth(&token)
                            .json(&json!({"base_version": version, "actions": tree(tree_id, tree_id * 100, 2)}))
                            .send()
                            .await
                            .unwrap();
                        let status = response.status();
                        let body: Value = response.json().await.unwrap();
                        if status == StatusCode::CREATED {
                            version = body["version"].as_u64().unwrap();
                            break;
                        }
                        assert_eq!(status, StatusCode::CONFLICT, "{body}");
                        refused += 1;
                        let latest: Value = client
                            .get(format!("{base}/api/annotations/{raced}"))
                            .bearer_auth(&token)
                            .send()
                            .await
                            .unwrap()
                            .json()
                            .await
                            .unwrap();
                        version = latest["version"].as_u64().unwrap();
                    }
                }
                refused
            })
        })
        .collect();
    let mut refused = 0;
    for w in writers {
        refused += w.await.unwrap();
    }
    let raced_id = AnnotationId::parse(&raced).unwrap();
    let listing = store.versions(&raced_id, 100, None).await.unwrap();
    let numbers: BTreeSet<u64> = listing.items.iter().map(|v| v.version).collect();
    assert_eq!(listing.items.len() as u32, WRITERS * EACH);
    assert_eq!(numbers, (1..=u64::from(WRITERS * EACH)).collect());
    let finale: Value = client
        .get(format!(
            "{base}/api/annotations/{raced}/versions/{}",
            WRITERS * EACH
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: BTreeSet<u64> = finale["trees"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap())
        .collect();
    assert_eq!(
        ids,
        (1..=u64::from(WRITERS * EACH)).collect(),
        "every writer's trees"
    );
    assert!(refused > 0, "the writers never raced");
    running.stop().await.unwrap();
}
