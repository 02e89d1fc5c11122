//! The item-store conformance suite against the DynamoDB adapter, on a table created by the
//! product's own provisioning code; and that provisioning really made the index, the TTL and
//! the bucket's CORS rule the adapter and the viewers rely on.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use aws_sdk_dynamodb::types::{BillingMode, KeyType, ProjectionType, TimeToLiveStatus};
use localstack_tests::{LocalStack, error_chain, localstack, unique};
use shared::store::DynStore;
use shared::store::dynamo::{DynamoStore, GSI1_NAME};

/// `(attribute, key type)` pairs of a key schema.
fn schema(elements: &[aws_sdk_dynamodb::types::KeySchemaElement]) -> Vec<(String, KeyType)> {
    elements
        .iter()
        .map(|e| (e.attribute_name().to_owned(), e.key_type().clone()))
        .collect()
}

async fn delete_table(ls: &LocalStack, table: &str) {
    if let Err(e) = ls.dynamodb().delete_table().table_name(table).send().await {
        eprintln!("could not delete test table {table}: {}", error_chain(&e));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_adapter_passes_the_conformance_suite() {
    let Some(ls) = localstack().await else { return };
    // A table of its own, so that provisioning's create path runs every time.
    let table = unique("zs-conformance");
    ls.provision(&table, localstack_tests::TEST_BUCKET).await;
    let store: DynStore = Arc::new(DynamoStore::new(ls.dynamodb(), &table));
    shared::store::conformance::run_all(store).await;
    delete_table(&ls, &table).await;
}

#[tokio::test]
async fn provisioning_creates_the_table_with_gsi1_and_ttl_idempotently() {
    let Some(ls) = localstack().await else { return };
    let table = unique("zs-provision");
    let bucket = unique("zs-provision");
    ls.provision(&table, &bucket).await;
    // Provisioning is idempotent: a second run over existing resources succeeds.
    ls.provision(&table, &bucket).await;

    let ddb = ls.dynamodb();
    let described = ddb
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    let t = described.table().expect("DescribeTable returns the table");
    assert_eq!(
        schema(t.key_schema()),
        [
            ("PK".to_owned(), KeyType::Hash),
            ("SK".to_owned(), KeyType::Range)
        ],
        "primary key"
    );
    assert_eq!(
        t.billing_mode_summary().and_then(|b| b.billing_mode()),
        Some(&BillingMode::PayPerRequest),
        "on-demand billing"
    );
    let gsis = t.global_secondary_indexes();
    let gsi1 = gsis
        .iter()
        .find(|g| g.index_name() == Some(GSI1_NAME))
        .unwrap_or_else(|| panic!("no index {GSI1_NAME} on {table}: {gsis:?}"));
    assert_eq!(
        schema(gsi1.key_schema()),
        [
            ("GSI1PK".to_owned(), KeyType::Hash),
            ("GSI1SK".to_owned(), KeyType::Range)
        ],
        "GSI1 key"
    );
    assert_eq!(
        gsi1.projection().and_then(|p| p.projection_type()),
        Some(&ProjectionType::All),
        "GSI1 projects whole items (the adapter reads records from the index)"
    );

    let ttl = ddb
        .describe_time_to_live()
        .table_name(&table)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    let ttl = ttl
        .time_to_live_description()
        .expect("DescribeTimeToLive returns a description");
    assert_eq!(
        ttl.time_to_live_status(),
        Some(&TimeToLiveStatus::Enabled),
        "TTL status"
    );
    assert_eq!(
        ttl.attribute_name(),
        Some("ttl"),
        "TTL attribute (the adapter writes `ttl`)"
    );

    // The bucket exists and answers cross-origin viewers.
    let s3 = ls.s3();
    s3.head_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    let cors = s3
        .get_bucket_cors()
        .bucket(&bucket)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    let rule = cors.cors_rules().first().expect("a CORS rule");
    let methods: Vec<&str> = rule.allowed_methods().iter().map(String::as_str).collect();
    assert!(
        methods.contains(&"GET") && methods.contains(&"HEAD"),
        "CORS methods: {methods:?}"
    );
    assert_eq!(rule.allowed_origins(), ["*"], "CORS origins");
    for exposed in ["Content-Range", "Content-Length", "ETag"] {
        assert!(
            rule.expose_headers()
                .iter()
                .any(|h| h.eq_ignore_ascii_case(exposed)),
            "CORS exposes {exposed}: {rule:?}"
        );
    }

    delete_table(&ls, &table).await;
    let _ = s3.delete_bucket().bucket(&bucket).send().await;
}
