//! The storage conformance suite against the embedded (redb) adapter.

use std::sync::Arc;

use shared::store::embedded::EmbeddedStore;
use shared::store::{DynStore, conformance};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: DynStore =
        Arc::new(EmbeddedStore::open(&dir.path().join("meta.redb")).expect("open"));
    conformance::run_all(store).await;
}

#[tokio::test]
async fn embedded_store_survives_a_restart() {
    use serde_json::json;
    use shared::store::{Cond, Item, ItemStore, Key, Write};
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("meta.redb");
    let item = Item {
        key: Key::new("P", "S"),
        gsi1: None,
        ttl: None,
        version: 1,
        body: json!({"kept": true}),
    };
    {
        let store = EmbeddedStore::open(&path).expect("open");
        store
            .write(vec![Write::Put {
                item: item.clone(),
                cond: Cond::NotExists,
            }])
            .await
            .expect("write");
    }
    let reopened = EmbeddedStore::open(&path).expect("reopen");
    assert_eq!(reopened.get(&item.key).await.expect("read"), Some(item));
}
