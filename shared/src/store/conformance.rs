//! The conformance suite every [`ItemStore`] adapter passes: the embedded store in
//! `cargo test`, DynamoDB in `localstack-tests`. Each case works in partitions of its own, so
//! the suite can run again and again against one shared table.
//!
//! The suite panics with a message naming the case on the first broken promise.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use serde_json::json;

use super::annotations::SaveError;
use super::catalog::CatalogError;
use super::directory::CreateError;
use super::{
    Annotations, Catalog, Cond, Directory, DynStore, Index, Item, Key, Query, StoreError, Write,
};
use crate::domain::{
    Annotation, AnnotationId, AnnotationKind, AnnotationVisibility, AuditAction, AuditEntry,
    Dataset, DatasetId, DatasetName, DatasetPatch, Email, Grant, Invite, InviteId, LinkId,
    LinkToken, OrgId, OrgRole, Organization, Session, ShareLink, StorageUrl, Team, TeamId,
    TeamRole, UsageDelta, User, UserId, VersionBody, Visibility, ZarrFormat, now,
};

fn unique(tag: &str) -> String {
    format!("TEST#{tag}#{}", DatasetId::generate())
}

fn item(pk: &str, sk: &str, version: u64, body: serde_json::Value) -> Item {
    Item {
        key: Key::new(pk, sk),
        gsi1: None,
        ttl: None,
        version,
        body,
    }
}

fn put(item: Item, cond: Cond) -> Vec<Write> {
    vec![Write::Put { item, cond }]
}

/// Runs every case against `store`.
pub async fn run_all(store: DynStore) {
    missing_items_read_as_none(&store).await;
    bodies_round_trip(&store).await;
    conditional_puts(&store).await;
    conditional_deletes(&store).await;
    transactions_are_atomic(&store).await;
    malformed_batches_are_rejected(&store).await;
    primary_queries_order_filter_and_page(&store).await;
    index_queries_follow_puts_and_deletes(&store).await;
    racing_creates_have_one_winner(&store).await;
    racing_versioned_updates_lose_nothing(&store).await;
    catalog_datasets(&store).await;
    catalog_links(&store).await;
    catalog_link_batches_and_usage(&store).await;
    catalog_grants(&store).await;
    catalog_gallery(&store).await;
    catalog_audit(&store).await;
    annotations_racing_saves_lose_nothing(&store).await;
    annotations_records_and_team_lists(&store).await;
    directory_orgs_and_users(&store).await;
    directory_teams(&store).await;
    directory_sessions_rotate_once(&store).await;
    directory_invites_accept_once(&store).await;
}

async fn missing_items_read_as_none(store: &DynStore) {
    let got = store.get(&Key::new(unique("missing"), "X")).await.unwrap();
    assert!(got.is_none(), "missing item read as {got:?}");
}

async fn bodies_round_trip(store: &DynStore) {
    let pk = unique("body");
    let body = json!({
        "text": "héllo", "empty": "", "int": -42, "big": 9_007_199_254_740_991u64, "float": 0.25,
        "yes": true, "none": null, "list": [1, "two", [3.5], {"four": 4}], "map": {"nested": {"deep": [true]}},
    });
    let mut it = item(&pk, "A", 7, body.clone());
    it.ttl = Some(1_900_000_000);
    it.gsi1 = Some(Key::new(format!("{pk}#G"), "s"));
    store.write(put(it.clone(), Cond::Always)).await.unwrap();
    let back = store
        .get(&it.key)
        .await
        .unwrap()
        .expect("stored item is readable");
    assert_eq!(back, it, "item did not round-trip");
}

async fn conditional_puts(store: &DynStore) {
    let pk = unique("cond");
    let first = item(&pk, "A", 1, json!({"n": 1}));
    store
        .write(put(first.clone(), Cond::NotExists))
        .await
        .unwrap();
    let again = store
        .write(put(item(&pk, "A", 1, json!({"n": 2})), Cond::NotExists))
        .await;
    assert!(
        matches!(again, Err(StoreError::Conflict)),
        "second create: {again:?}"
    );
    assert_eq!(
        store.get(&first.key).await.unwrap(),
        Some(first.clone()),
        "failed put changed data"
    );

    store
        .write(put(item(&pk, "A", 2, json!({"n": 3})), Cond::Version(1)))
        .await
        .unwrap();
    let stale = store
        .write(put(item(&pk, "A", 2, json!({"n": 4})), Cond::Version(1)))
        .await;
    assert!(
        matches!(stale, Err(StoreError::Conflict)),
        "stale version: {stale:?}"
    );
    let now = store.get(&first.key).await.unwrap().unwrap();
    assert_eq!((now.version, now.body), (2, json!({"n": 3})));

    let absent = store
        .write(put(item(&pk, "B", 1, json!({})), Cond::Exists))
        .await;
    assert!(
        matches!(absent, Err(StoreError::Conflict)),
        "exists on missing: {absent:?}"
    );
    let absent = store
        .write(put(item(&pk, "B", 2, json!({})), Cond::Version(1)))
        .await;
    assert!(
        matches!(absent, Err(StoreError::Conflict)),
        "version on missing: {absent:?}"
    );
    assert!(store.get(&Key::new(&pk, "B")).await.unwrap().is_none());
}

async fn conditional_deletes(store: &DynStore) {
    let pk = unique("del");
    store
        .write(put(item(&pk, "A", 3, json!({})), Cond::Always))
        .await
        .unwrap();
    let wrong = store
        .write(vec![Write::Delete {
            key: Key::new(&pk, "A"),
            cond: Cond::Version(2),
        }])
        .await;
    assert!(
        matches!(wrong, Err(StoreError::Conflict)),
        "delete with wrong version: {wrong:?}"
    );
    store
        .write(vec![Write::Delete {
            key: Key::new(&pk, "A"),
            cond: Cond::Version(3),
        }])
        .await
        .unwrap();
    assert!(
        store.get(&Key::new(&pk, "A")).await.unwrap().is_none(),
        "deleted item still there"
    );
    // Deleting what is not there is fine unless a condition says otherwise.
    store
        .write(vec![Write::Delete {
            key: Key::new(&pk, "A"),
            cond: Cond::Always,
        }])
        .await
        .unwrap();
    let gone = store
        .write(vec![Write::Delete {
            key: Key::new(&pk, "A"),
            cond: Cond::Exists,
        }])
        .await;
    assert!(matches!(gone, Err(StoreError::Conflict)));
}

async fn transactions_are_atomic(store: &DynStore) {
    let pk = unique("txn");
    store
        .write(put(
            item(&pk, "TAKEN", 1, json!({"keep": true})),
            Cond::Always,
        ))
        .await
        .unwrap();
    let result = store
        .write(vec![
            Write::Put {
                item: item(&pk, "NEW", 1, json!({})),
                cond: Cond::NotExists,
            },
            Write::Put {
                item: item(&pk, "TAKEN", 1, json!({"keep": false})),
                cond: Cond::NotExists,
            },
        ])
        .await;
    assert!(
        matches!(result, Err(StoreError::Conflict)),
        "colliding transaction: {result:?}"
    );
    assert!(
        store.get(&Key::new(&pk, "NEW")).await.unwrap().is_none(),
        "half a transaction was applied"
    );
    assert_eq!(
        store
            .get(&Key::new(&pk, "TAKEN"))
            .await
            .unwrap()
            .unwrap()
            .body,
        json!({"keep": true})
    );

    let checked = store
        .write(vec![
            Write::Check {
                key: Key::new(&pk, "NOPE"),
                cond: Cond::Exists,
            },
            Write::Put {
                item: item(&pk, "NEW", 1, json!({})),
                cond: Cond::Always,
            },
        ])
        .await;
    assert!(
        matches!(checked, Err(StoreError::Conflict)),
        "failed check: {checked:?}"
    );
    assert!(store.get(&Key::new(&pk, "NEW")).await.unwrap().is_none());

    store
        .write(put(item(&pk, "OLD", 1, json!({})), Cond::Always))
        .await
        .unwrap();
    store
        .write(vec![
            Write::Check {
                key: Key::new(&pk, "TAKEN"),
                cond: Cond::Version(1),
            },
            Write::Put {
                item: item(&pk, "NEW", 1, json!({})),
                cond: Cond::NotExists,
            },
            Write::Delete {
                key: Key::new(&pk, "OLD"),
                cond: Cond::Exists,
            },
        ])
        .await
        .unwrap();
    assert!(store.get(&Key::new(&pk, "NEW")).await.unwrap().is_some());
    assert!(store.get(&Key::new(&pk, "OLD")).await.unwrap().is_none());
    assert!(
        store.get(&Key::new(&pk, "TAKEN")).await.unwrap().is_some(),
        "a check wrote something"
    );
}

async fn malformed_batches_are_rejected(store: &DynStore) {
    let pk = unique("bad");
    let twice = store
        .write(vec![
            Write::Put {
                item: item(&pk, "A", 1, json!({})),
                cond: Cond::Always,
            },
            Write::Delete {
                key: Key::new(&pk, "A"),
                cond: Cond::Always,
            },
        ])
        .await;
    assert!(
        matches!(twice, Err(StoreError::Invalid { .. })),
        "one key twice: {twice:?}"
    );
    let empty = store.write(vec![]).await;
    assert!(
        matches!(empty, Err(StoreError::Invalid { .. })),
        "empty batch: {empty:?}"
    );
    let scalar = store
        .write(put(item(&pk, "A", 1, json!(3)), Cond::Always))
        .await;
    assert!(
        matches!(scalar, Err(StoreError::Invalid { .. })),
        "scalar body: {scalar:?}"
    );
    assert!(store.get(&Key::new(&pk, "A")).await.unwrap().is_none());
}

async fn collect(store: &DynStore, mut q: Query) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..50 {
        let page = store.query(&q).await.unwrap();
        assert!(page.items.len() <= q.limit, "page larger than its limit");
        out.extend(page.items.into_iter().map(|i| i.key.sk));
        match page.next {
            Some(c) => q.cursor = Some(c),
            None => return out,
        }
    }
    panic!("pagination did not end");
}

async fn primary_queries_order_filter_and_page(store: &DynStore) {
    let pk = unique("query");
    for sk in ["L#3", "L#1", "M#0", "L#2", "L#5", "L#4", "K#9"] {
        store
            .write(put(item(&pk, sk, 1, json!({"sk": sk})), Cond::Always))
            .await
            .unwrap();
    }
    let mut q = Query::new(Index::Primary, &pk, "L#");
    q.limit = 2;
    assert_eq!(
        collect(store, q.clone()).await,
        ["L#1", "L#2", "L#3", "L#4", "L#5"]
    );
    q.descending = true;
    assert_eq!(
        collect(store, q.clone()).await,
        ["L#5", "L#4", "L#3", "L#2", "L#1"]
    );
    let all = collect(store, Query::new(Index::Primary, &pk, "")).await;
    assert_eq!(all.len(), 7);
    let none = collect(store, Query::new(Index::Primary, &pk, "Z")).await;
    assert!(none.is_empty());
}

/// Index reads may lag on DynamoDB: poll briefly until the expected view appears.
async fn eventually(store: &DynStore, q: &Query, expected: &[&str]) {
    let mut seen = Vec::new();
    for _ in 0..40 {
        seen = collect(store, q.clone()).await;
        if seen == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("index query returned {seen:?}, expected {expected:?}");
}

async fn index_queries_follow_puts_and_deletes(store: &DynStore) {
    let pk = unique("gsi");
    let gpk = format!("{pk}#IDX");
    for (sk, gsk) in [("a", "c"), ("b", "a"), ("c", "b"), ("d", "d")] {
        let mut it = item(&pk, sk, 1, json!({}));
        it.gsi1 = Some(Key::new(&gpk, gsk));
        store.write(put(it, Cond::Always)).await.unwrap();
    }
    let mut q = Query::new(Index::Gsi1, &gpk, "");
    q.limit = 3;
    eventually(store, &q, &["b", "c", "a", "d"]).await;
    // Moving an item in the index, removing one from it, and deleting one.
    let mut moved = item(&pk, "d", 2, json!({}));
    moved.gsi1 = Some(Key::new(&gpk, "0"));
    store.write(put(moved, Cond::Version(1))).await.unwrap();
    store
        .write(put(item(&pk, "c", 2, json!({})), Cond::Version(1)))
        .await
        .unwrap();
    store
        .write(vec![Write::Delete {
            key: Key::new(&pk, "a"),
            cond: Cond::Always,
        }])
        .await
        .unwrap();
    eventually(store, &q, &["d", "b"]).await;
    q.descending = true;
    q.limit = 1;
    eventually(store, &q, &["b", "d"]).await;
}

async fn racing_creates_have_one_winner(store: &DynStore) {
    let pk = unique("race");
    let tasks: Vec<_> = (0..16)
        .map(|n| {
            let store = store.clone();
            let pk = pk.clone();
            tokio::spawn(async move {
                store
                    .write(put(item(&pk, "ONE", 1, json!({ "n": n })), Cond::NotExists))
                    .await
            })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => wins += 1,
            Err(StoreError::Conflict) => {}
            Err(e) => panic!("racing create failed oddly: {e:?}"),
        }
    }
    assert_eq!(wins, 1, "racing creates: {wins} winners");
}

async fn racing_versioned_updates_lose_nothing(store: &DynStore) {
    let pk = unique("counter");
    let key = Key::new(&pk, "C");
    store
        .write(put(item(&pk, "C", 1, json!({"seen": []})), Cond::NotExists))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let store = store.clone();
            let key = key.clone();
            tokio::spawn(async move {
                loop {
                    let current = store.get(&key).await.unwrap().unwrap();
                    let mut seen = current.body["seen"].as_array().cloned().unwrap_or_default();
                    seen.push(json!(n));
                    let next = Item {
                        body: json!({ "seen": seen }),
                        version: current.version + 1,
                        ..current.clone()
                    };
                    match store.write(put(next, Cond::Version(current.version))).await {
                        Ok(()) => return,
                        Err(StoreError::Conflict) => tokio::task::yield_now().await,
                        Err(e) => panic!("update failed: {e:?}"),
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let last = store.get(&key).await.unwrap().unwrap();
    let mut seen: Vec<u64> = last.body["seen"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_u64())
        .collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..8).collect::<Vec<u64>>(),
        "an accepted update was lost"
    );
    assert_eq!(last.version, 9);
}

fn dataset(org: &OrgId, name: &str) -> Dataset {
    let t = now();
    Dataset {
        id: DatasetId::generate(),
        org: org.clone(),
        name: DatasetName::parse(name).unwrap(),
        display_name: name.into(),
        description: String::new(),
        storage: StorageUrl::parse("s3://bucket/x.zarr").unwrap(),
        visibility: Visibility::Private,
        featured: false,
        owner: None,
        allowed_teams: Default::default(),
        zarr_format: ZarrFormat::V3,
        ome_version: None,
        layers: vec![],
        created_at: t,
        updated_at: t,
        version: 1,
    }
}

fn test_org() -> OrgId {
    OrgId::parse(&format!("t-{}", DatasetId::generate())).unwrap()
}

async fn catalog_datasets(store: &DynStore) {
    let catalog = Catalog::new(store.clone());
    let org = test_org();
    let a = dataset(&org, "Alpha");
    catalog.create_dataset(&a, "suite").await.unwrap();
    assert_eq!(catalog.dataset(&a.id).await.unwrap(), a);
    // Names are unique per organization, case-insensitively.
    let clash = catalog
        .create_dataset(&dataset(&org, "alpha"), "suite")
        .await;
    assert!(
        matches!(clash, Err(CatalogError::Conflict)),
        "duplicate name: {clash:?}"
    );
    let other_org = dataset(&test_org(), "alpha");
    catalog.create_dataset(&other_org, "suite").await.unwrap();
    catalog
        .create_dataset(&dataset(&org, "beta"), "suite")
        .await
        .unwrap();
    let by_name = catalog
        .dataset_by_name(&org, &DatasetName::parse("ALPHA").unwrap())
        .await
        .unwrap();
    assert_eq!(by_name.id, a.id, "lookup by name is case-insensitive");
    let unknown = catalog
        .dataset_by_name(&org, &DatasetName::parse("gamma").unwrap())
        .await;
    assert!(matches!(unknown, Err(CatalogError::NotFound)));
    assert!(matches!(
        catalog.dataset(&DatasetId::generate()).await,
        Err(CatalogError::NotFound)
    ));

    let mut names = Vec::new();
    for _ in 0..40 {
        names.clear();
        let mut cursor = None;
        loop {
            let page = catalog.datasets_of(&org, 1, cursor).await.unwrap();
            names.extend(page.items.iter().map(|d| d.name.as_str().to_owned()));
            match page.next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        if names == ["Alpha", "beta"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(names, ["Alpha", "beta"], "organization listing");

    // Concurrent patches of different fields both land; a stale If-Match is a conflict.
    let c1 = catalog.clone();
    let c2 = catalog.clone();
    let (id1, id2) = (a.id.clone(), a.id.clone());
    let (r1, r2) = tokio::join!(
        async move {
            c1.update_dataset(
                &id1,
                &DatasetPatch {
                    description: Some("d".into()),
                    ..Default::default()
                },
                None,
                "suite",
            )
            .await
        },
        async move {
            c2.update_dataset(
                &id2,
                &DatasetPatch {
                    visibility: Some(Visibility::Public),
                    ..Default::default()
                },
                None,
                "suite",
            )
            .await
        },
    );
    r1.unwrap();
    r2.unwrap();
    let now = catalog.dataset(&a.id).await.unwrap();
    assert_eq!(
        (now.description.as_str(), now.visibility, now.version),
        ("d", Visibility::Public, 3)
    );
    let stale = catalog
        .update_dataset(
            &a.id,
            &DatasetPatch {
                featured: Some(true),
                ..Default::default()
            },
            Some(2),
            "suite",
        )
        .await;
    assert!(
        matches!(stale, Err(CatalogError::Conflict)),
        "stale If-Match: {stale:?}"
    );
    assert!(!catalog.dataset(&a.id).await.unwrap().featured);
}

async fn catalog_links(store: &DynStore) {
    let catalog = Catalog::new(store.clone());
    let d = dataset(&test_org(), "linked");
    catalog.create_dataset(&d, "suite").await.unwrap();
    let token = LinkToken::generate();
    let link = ShareLink {
        label: "reviewer 2".into(),
        ..ShareLink::new(d.id.clone(), d.org.clone(), token.hash(), "suite".into())
    };
    catalog.create_link(&link).await.unwrap();
    assert_eq!(catalog.link_by_token(&token.hash()).await.unwrap(), link);
    assert!(matches!(
        catalog.link_by_token(&LinkToken::generate().hash()).await,
        Err(CatalogError::NotFound)
    ));
    let orphan = ShareLink {
        id: LinkId::generate(),
        dataset_id: DatasetId::generate(),
        token_hash: LinkToken::generate().hash(),
        ..link.clone()
    };
    let missing = catalog.create_link(&orphan).await;
    assert!(
        matches!(missing, Err(CatalogError::NotFound)),
        "link to a missing dataset: {missing:?}"
    );
    assert!(matches!(
        catalog.link_by_token(&orphan.token_hash).await,
        Err(CatalogError::NotFound)
    ));

    let second = ShareLink {
        id: LinkId::generate(),
        token_hash: LinkToken::generate().hash(),
        ..link.clone()
    };
    catalog.create_link(&second).await.unwrap();
    assert_eq!(catalog.links_of(&d.id).await.unwrap().len(), 2);

    let revoked = catalog.revoke_link(&d.id, &link.id, "suite").await.unwrap();
    assert!(revoked.revoked_at.is_some());
    let again = catalog.revoke_link(&d.id, &link.id, "suite").await.unwrap();
    assert_eq!(
        again.revoked_at, revoked.revoked_at,
        "second revoke moved the time"
    );
    assert!(
        catalog
            .link_by_token(&token.hash())
            .await
            .unwrap()
            .revoked_at
            .is_some()
    );
    assert!(
        catalog
            .link(&d.id, &second.id)
            .await
            .unwrap()
            .revoked_at
            .is_none(),
        "revoke touched another link"
    );
}

fn organization(id: &OrgId) -> Organization {
    Organization {
        id: id.clone(),
        name: "Test lab".into(),
        auto_activate: false,
        created_at: now(),
        version: 1,
    }
}

fn user(org: &OrgId, email: &str) -> User {
    User::new(
        org.clone(),
        Email::parse(email).unwrap(),
        "Test".into(),
        OrgRole::User,
        "$argon2id$not-a-real-hash".into(),
    )
}

fn unique_email(tag: &str) -> String {
    format!("{tag}.{}@example.org", DatasetId::generate())
}

async fn directory_orgs_and_users(store: &DynStore) {
    let dir = Directory::new(store.clone());
    let org = test_org();
    let admin_email = unique_email("admin");
    let admin = User {
        role: OrgRole::Admin,
        ..user(&org, &admin_email)
    };
    dir.create_org(&organization(&org), &admin).await.unwrap();
    assert_eq!(dir.org(&org).await.unwrap().name, "Test lab");
    assert_eq!(dir.user(&admin.id).await.unwrap(), admin);
    let by_mail = dir
        .user_by_email(&Email::parse(&admin_email.to_uppercase()).unwrap())
        .await
        .unwrap();
    assert_eq!(by_mail.id, admin.id, "e-mail lookup is case-insensitive");

    let again = dir
        .create_org(&organization(&org), &user(&org, &unique_email("other")))
        .await;
    assert!(
        matches!(again, Err(CreateError::OrgTaken)),
        "second org with one id: {again:?}"
    );
    let other_org = test_org();
    let same_mail = dir
        .create_org(
            &organization(&other_org),
            &user(&other_org, &admin_email.to_uppercase()),
        )
        .await;
    assert!(
        matches!(same_mail, Err(CreateError::EmailTaken)),
        "one address, two accounts: {same_mail:?}"
    );
    assert!(
        matches!(dir.org(&other_org).await, Err(CatalogError::NotFound)),
        "half an organization was created"
    );

    let orphan = dir
        .create_user(&user(&test_org(), &unique_email("orphan")))
        .await;
    assert!(
        matches!(orphan, Err(CreateError::NoOrg)),
        "user of a missing org: {orphan:?}"
    );
    let member = user(&org, &unique_email("member"));
    dir.create_user(&member).await.unwrap();
    let dup = dir.create_user(&user(&org, member.email.as_str())).await;
    assert!(matches!(dup, Err(CreateError::EmailTaken)), "{dup:?}");

    let mut listed = Vec::new();
    for _ in 0..40 {
        listed = dir
            .users_of(&org)
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.id)
            .collect();
        if listed.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(listed.len(), 2, "organization's users");

    // Concurrent changes of one user: none lost.
    let teams: Vec<TeamId> = (0..6).map(|_| TeamId::generate()).collect();
    let tasks: Vec<_> = teams
        .iter()
        .map(|t| {
            let (dir, id, t) = (dir.clone(), member.id.clone(), t.clone());
            tokio::spawn(async move {
                dir.update_user::<CatalogError>(&id, |u| {
                    u.teams.insert(t.clone(), TeamRole::Member);
                    Ok(())
                })
                .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let updated = dir.user(&member.id).await.unwrap();
    assert_eq!(updated.teams.len(), 6, "a concurrent team change was lost");
    assert_eq!(updated.version, 7);
}

async fn directory_teams(store: &DynStore) {
    let dir = Directory::new(store.clone());
    let org = test_org();
    dir.create_org(&organization(&org), &user(&org, &unique_email("admin")))
        .await
        .unwrap();
    let team = |name: &str| Team {
        id: TeamId::generate(),
        org: org.clone(),
        name: name.into(),
        created_at: now(),
        version: 1,
    };
    let microscopy = team("Microscopy");
    dir.create_team(&microscopy).await.unwrap();
    dir.create_team(&team("Annotators")).await.unwrap();
    let clash = dir.create_team(&team("microscopy")).await;
    assert!(
        matches!(clash, Err(CreateError::TeamNameTaken)),
        "{clash:?}"
    );
    let nowhere = Team {
        org: test_org(),
        ..team("x")
    };
    assert!(matches!(
        dir.create_team(&nowhere).await,
        Err(CreateError::NoOrg)
    ));
    assert_eq!(dir.team(&microscopy.id).await.unwrap(), microscopy);
    let mut names = Vec::new();
    for _ in 0..40 {
        names = dir
            .teams_of(&org)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        if names.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(names, ["Annotators", "Microscopy"]);
}

async fn directory_sessions_rotate_once(store: &DynStore) {
    let dir = Directory::new(store.clone());
    let session = Session {
        user: UserId::generate(),
        generation: 0,
        expires_at: now() + time::Duration::days(30),
    };
    let first = LinkToken::generate().hash();
    dir.create_session(&first, &session).await.unwrap();
    assert_eq!(dir.session(&first).await.unwrap(), session);
    let candidates: Vec<_> = (0..8).map(|_| LinkToken::generate().hash()).collect();
    let tasks: Vec<_> = candidates
        .iter()
        .map(|next| {
            let (dir, session, next) = (dir.clone(), session.clone(), *next);
            tokio::spawn(async move { dir.rotate_session(&first, &next, &session).await })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => wins += 1,
            Err(CatalogError::NotFound) => {}
            Err(e) => panic!("rotation failed oddly: {e:?}"),
        }
    }
    assert_eq!(wins, 1, "one refresh token was rotated {wins} times");
    assert!(
        matches!(dir.session(&first).await, Err(CatalogError::NotFound)),
        "the old token survived"
    );
    let mut alive = 0;
    for c in &candidates {
        if dir.session(c).await.is_ok() {
            alive += 1;
            dir.end_session(c).await.unwrap();
            assert!(matches!(dir.session(c).await, Err(CatalogError::NotFound)));
        }
    }
    assert_eq!(alive, 1);
}

async fn directory_invites_accept_once(store: &DynStore) {
    let dir = Directory::new(store.clone());
    let org = test_org();
    let admin = user(&org, &unique_email("admin"));
    dir.create_org(&organization(&org), &admin).await.unwrap();
    let email = unique_email("invitee");
    let token = LinkToken::generate();
    let invite = Invite {
        id: InviteId::generate(),
        org: org.clone(),
        email: Email::parse(&email).unwrap(),
        invited_by: Some(admin.id.clone()),
        role: OrgRole::User,
        teams: Default::default(),
        token_hash: token.hash(),
        created_at: now(),
        expires_at: now() + time::Duration::days(14),
        accepted_at: None,
        accepted_by: None,
        revoked_at: None,
        sent: 1,
        version: 1,
    };
    dir.create_invite(&invite).await.unwrap();
    assert_eq!(dir.invite_by_token(&token.hash()).await.unwrap(), invite);
    assert!(matches!(
        dir.invite_by_token(&LinkToken::generate().hash()).await,
        Err(CatalogError::NotFound)
    ));
    let second = Invite {
        id: InviteId::generate(),
        token_hash: LinkToken::generate().hash(),
        created_at: now() + time::Duration::seconds(1),
        ..invite.clone()
    };
    dir.create_invite(&second).await.unwrap();
    let mut order = Vec::new();
    for _ in 0..40 {
        order = dir
            .invites_of(&org)
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .collect();
        if order.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        order,
        [second.id.clone(), invite.id.clone()],
        "newest first"
    );

    // Two people follow one link at once: exactly one account comes of it.
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let (dir, invite) = (dir.clone(), invite.clone());
            let newcomer = user(&org, &email);
            tokio::spawn(async move {
                let accepted = Invite {
                    accepted_at: Some(now()),
                    accepted_by: Some(newcomer.id.clone()),
                    version: invite.version + 1,
                    ..invite.clone()
                };
                dir.accept_invite_as_new_user(&accepted, invite.version, &newcomer)
                    .await
            })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        if t.await.unwrap().is_ok() {
            wins += 1;
        }
    }
    assert_eq!(wins, 1, "one invitation accepted {wins} times");
    let stored = dir.invite(&invite.id).await.unwrap();
    assert!(stored.accepted_at.is_some());
    let account = dir
        .user_by_email(&Email::parse(&email).unwrap())
        .await
        .unwrap();
    assert_eq!(stored.accepted_by, Some(account.id));
}

fn new_link(d: &Dataset, label: &str) -> (ShareLink, LinkToken) {
    let token = LinkToken::generate();
    let link = ShareLink {
        label: label.into(),
        ..ShareLink::new(d.id.clone(), d.org.clone(), token.hash(), "suite".into())
    };
    (link, token)
}

/// Batches are all-or-nothing; usage from racing flushes adds up exactly; an organization's
/// links list newest first.
async fn catalog_link_batches_and_usage(store: &DynStore) {
    let catalog = Catalog::new(store.clone());
    let org = test_org();
    let (a, b) = (dataset(&org, "batch-a"), dataset(&org, "batch-b"));
    catalog.create_dataset(&a, "suite").await.unwrap();
    catalog.create_dataset(&b, "suite").await.unwrap();

    // One missing dataset: nothing of the batch is written.
    let ghost = dataset(&org, "ghost");
    let (la, ta) = new_link(&a, "a");
    let (lg, tg) = new_link(&ghost, "ghost");
    let failed = catalog.create_links(&[la.clone(), lg]).await;
    assert!(matches!(failed, Err(CatalogError::NotFound)), "{failed:?}");
    assert!(
        catalog.links_of(&a.id).await.unwrap().is_empty(),
        "half a batch was written"
    );
    assert!(matches!(
        catalog.link_by_token(&ta.hash()).await,
        Err(CatalogError::NotFound)
    ));
    assert!(matches!(
        catalog.link_by_token(&tg.hash()).await,
        Err(CatalogError::NotFound)
    ));

    let (lb, _) = new_link(&b, "b");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (la2, _) = new_link(&a, "a, later");
    catalog
        .create_links(&[la.clone(), lb.clone()])
        .await
        .unwrap();
    catalog.create_link(&la2).await.unwrap();
    assert_eq!(catalog.link_by_token(&ta.hash()).await.unwrap().id, la.id);

    // The organization's links, newest first (index: may lag briefly).
    let mut labels = Vec::new();
    for _ in 0..40 {
        let page = catalog.links_of_org(&org, 10, None).await.unwrap();
        labels = page
            .items
            .iter()
            .map(|l| l.label.clone())
            .collect::<Vec<_>>();
        if labels.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(labels[0], "a, later", "newest first: {labels:?}");
    let first = catalog.links_of_org(&org, 2, None).await.unwrap();
    assert_eq!(first.items.len(), 2);
    let rest = catalog
        .links_of_org(&org, 2, first.next.clone())
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1, "paging the organization's links");

    // Eight racing flushes of 10 reads each: every count lands, with one audit entry each.
    let delta = UsageDelta {
        views: 1,
        chunk_reads: 10,
        bytes: 1000,
        redirects: 0,
        first_access: Some(now()),
        last_access: Some(now()),
    };
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (c, d, id, delta) = (catalog.clone(), a.id.clone(), la.id.clone(), delta.clone());
        tasks.push(tokio::spawn(async move {
            c.record_usage(&d, &id, &delta).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let used = catalog.link(&a.id, &la.id).await.unwrap();
    assert_eq!(
        (used.usage.views, used.usage.chunk_reads, used.usage.bytes),
        (8, 80, 8000),
        "racing usage flushes lost counts"
    );
    assert!(used.usage.last_access.is_some());
    let trail = catalog.audit_of(&a.id, 100, None).await.unwrap();
    let used_entries = trail
        .items
        .iter()
        .filter(|e| e.action == AuditAction::LinkUsed)
        .count();
    assert_eq!(used_entries, 8);
    // Revoking keeps the usage.
    let revoked = catalog.revoke_link(&a.id, &la.id, "suite").await.unwrap();
    assert_eq!(revoked.usage.chunk_reads, 80);
    assert!(matches!(
        catalog
            .record_usage(&a.id, &LinkId::generate(), &delta)
            .await,
        Err(CatalogError::NotFound)
    ));
}

fn grant(d: &Dataset, email: &Email, user: Option<&UserId>) -> Grant {
    let t = now();
    Grant {
        dataset_id: d.id.clone(),
        email: email.clone(),
        user: user.cloned(),
        invite: None,
        can_modify: false,
        can_share: false,
        granted_by: "suite".into(),
        granted_by_user: None,
        created_at: t,
        updated_at: t,
        version: 1,
    }
}

/// Grants: one per address and dataset, versioned changes, lookups both ways, pending grants
/// bound exactly once.
async fn catalog_grants(store: &DynStore) {
    let catalog = Catalog::new(store.clone());
    let org = test_org();
    let (a, b) = (dataset(&org, "shared-a"), dataset(&org, "shared-b"));
    catalog.create_dataset(&a, "suite").await.unwrap();
    catalog.create_dataset(&b, "suite").await.unwrap();
    let email = Email::parse(&format!("{}@example.org", DatasetId::generate())).unwrap();
    let audit = |d: &Dataset| AuditEntry::new(&d.id, "suite", AuditAction::GrantCreated);

    let pending_a = grant(&a, &email, None);
    catalog
        .save_grant(&pending_a, None, &audit(&a))
        .await
        .unwrap();
    let twice = catalog.save_grant(&pending_a, None, &audit(&a)).await;
    assert!(matches!(twice, Err(CatalogError::Conflict)), "{twice:?}");
    let ghost = dataset(&org, "ghost");
    let orphan = catalog
        .save_grant(&grant(&ghost, &email, None), None, &audit(&ghost))
        .await;
    assert!(orphan.is_err(), "a grant on a missing dataset was stored");

    let bound_b = grant(&b, &email, Some(&UserId::generate()));
    catalog
        .save_grant(&bound_b, None, &audit(&b))
        .await
        .unwrap();
    assert_eq!(catalog.grant(&a.id, &email).await.unwrap(), pending_a);
    assert_eq!(
        catalog.grants_of(&a.id).await.unwrap(),
        vec![pending_a.clone()]
    );

    let mut found = Vec::new();
    for _ in 0..40 {
        found = catalog.grants_for(&email).await.unwrap();
        if found.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(found.len(), 2, "grants by address");

    // Binding takes the pending grant only, once.
    let me = UserId::generate();
    let bound = catalog.bind_pending_grants(&email, &me).await.unwrap();
    assert_eq!(bound.len(), 1);
    assert_eq!(bound[0].dataset_id, a.id);
    let now_a = catalog.grant(&a.id, &email).await.unwrap();
    assert_eq!((now_a.user.as_ref(), now_a.version), (Some(&me), 2));
    assert_ne!(
        catalog.grant(&b.id, &email).await.unwrap().user.as_ref(),
        Some(&me)
    );

    // A stale change conflicts; a current one lands; delete needs the current version.
    let mut change = now_a.clone();
    change.can_modify = true;
    change.version = 3;
    let stale = catalog.save_grant(&change, Some(1), &audit(&a)).await;
    assert!(matches!(stale, Err(CatalogError::Conflict)), "{stale:?}");
    catalog
        .save_grant(&change, Some(2), &audit(&a))
        .await
        .unwrap();
    assert!(catalog.grant(&a.id, &email).await.unwrap().can_modify);
    assert!(matches!(
        catalog.delete_grant(&now_a, &audit(&a)).await,
        Err(CatalogError::Conflict)
    ));
    catalog.delete_grant(&change, &audit(&a)).await.unwrap();
    assert!(matches!(
        catalog.grant(&a.id, &email).await,
        Err(CatalogError::NotFound)
    ));
}

async fn gallery_ids(catalog: &Catalog, ours: &[&DatasetId]) -> Vec<DatasetId> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = catalog.gallery(2, cursor).await.unwrap();
        out.extend(
            page.items
                .into_iter()
                .map(|e| e.id)
                .filter(|id| ours.contains(&id)),
        );
        match page.next {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

/// The gallery follows visibility, the featured flag and the display name, in the same
/// transaction as the dataset.
async fn catalog_gallery(store: &DynStore) {
    let catalog = Catalog::new(store.clone());
    let org = test_org();
    let tag = DatasetId::generate();
    let mut made = Vec::new();
    for (name, display, visibility, featured) in [
        ("g-b", format!("{tag} Beta"), Visibility::Public, true),
        ("g-a", format!("{tag} Alpha"), Visibility::Public, true),
        (
            "g-hidden",
            format!("{tag} Hidden"),
            Visibility::Public,
            false,
        ),
        (
            "g-private",
            format!("{tag} Private"),
            Visibility::Private,
            true,
        ),
    ] {
        let mut d = dataset(&org, name);
        d.display_name = display;
        d.visibility = visibility;
        d.featured = featured;
        catalog.create_dataset(&d, "suite").await.unwrap();
        made.push(d);
    }
    let ids: Vec<&DatasetId> = made.iter().map(|d| &d.id).collect();
    let (beta, alpha, hidden, private) = (&made[0].id, &made[1].id, &made[2].id, &made[3].id);
    assert_eq!(
        gallery_ids(&catalog, &ids).await,
        vec![alpha.clone(), beta.clone()],
        "featured public datasets by display name"
    );
    let patch = |p: DatasetPatch| p;
    catalog
        .update_dataset(
            beta,
            &patch(DatasetPatch {
                display_name: Some(format!("{tag} Aardvark")),
                ..Default::default()
            }),
            None,
            "suite",
        )
        .await
        .unwrap();
    catalog
        .update_dataset(
            hidden,
            &DatasetPatch {
                featured: Some(true),
                ..Default::default()
            },
            None,
            "suite",
        )
        .await
        .unwrap();
    catalog
        .update_dataset(
            alpha,
            &DatasetPatch {
                visibility: Some(Visibility::Private),
                ..Default::default()
            },
            None,
            "suite",
        )
        .await
        .unwrap();
    assert_eq!(
        gallery_ids(&catalog, &ids).await,
        vec![beta.clone(), hidden.clone()],
        "renamed, newly featured and no longer public"
    );
    assert!(!gallery_ids(&catalog, &ids).await.contains(private));
}

/// Every change leaves its entry, newest first, a page at a time.
async fn catalog_audit(store: &DynStore) {
    let catalog = Catalog::new(store.clone());
    let d = dataset(&test_org(), "audited");
    catalog.create_dataset(&d, "user:someone").await.unwrap();
    catalog
        .update_dataset(
            &d.id,
            &DatasetPatch {
                visibility: Some(Visibility::Public),
                ..Default::default()
            },
            None,
            "user:someone",
        )
        .await
        .unwrap();
    let (link, _) = new_link(&d, "r2");
    catalog.create_link(&link).await.unwrap();
    catalog
        .revoke_link(&d.id, &link.id, "user:other")
        .await
        .unwrap();
    // Revoking again changes nothing and writes nothing.
    catalog
        .revoke_link(&d.id, &link.id, "user:other")
        .await
        .unwrap();
    let trail = catalog.audit_of(&d.id, 100, None).await.unwrap();
    let actions: Vec<AuditAction> = trail.items.iter().map(|e| e.action).collect();
    assert_eq!(
        actions,
        [
            AuditAction::LinkRevoked,
            AuditAction::LinkCreated,
            AuditAction::DatasetUpdated,
            AuditAction::DatasetRegistered,
        ]
    );
    assert_eq!(trail.items[0].actor, "user:other");
    assert_eq!(trail.items[0].target.as_deref(), Some(link.id.as_str()));
    assert_eq!(
        trail.items[2].detail["visibility"],
        json!({ "from": "private", "to": "public" })
    );
    let first = catalog.audit_of(&d.id, 3, None).await.unwrap();
    assert_eq!(first.items.len(), 3);
    let rest = catalog.audit_of(&d.id, 3, first.next).await.unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.items[0].action, AuditAction::DatasetRegistered);
}

fn annotation(d: &Dataset, owner: &UserId) -> Annotation {
    let t = now();
    Annotation {
        id: AnnotationId::generate(),
        dataset_id: d.id.clone(),
        org: d.org.clone(),
        owner: owner.clone(),
        name: "axons".into(),
        description: String::new(),
        kind: AnnotationKind::Skeleton,
        visibility: AnnotationVisibility::Internal,
        teams: Default::default(),
        forked_from: None,
        volume: None,
        version: 0,
        revision: 1,
        created_at: t,
        updated_at: t,
        deleted_at: None,
    }
}

/// Eight writers append five saves each to one annotation, always on the version they last
/// saw, while a ninth keeps renaming it: every accepted save gets its own consecutive version,
/// none is lost, none is numbered twice, and the renames land too.
async fn annotations_racing_saves_lose_nothing(store: &DynStore) {
    let catalog = Catalog::new(store.clone());
    let annotations = Annotations::new(store.clone());
    let d = dataset(&test_org(), "annotated");
    catalog.create_dataset(&d, "suite").await.unwrap();
    let a = annotation(&d, &UserId::generate());
    annotations.create(&a, None).await.unwrap();
    let ghost = annotation(&dataset(&test_org(), "ghost"), &UserId::generate());
    assert!(matches!(
        annotations.create(&ghost, None).await,
        Err(CatalogError::NotFound)
    ));

    const WRITERS: u64 = 8;
    const SAVES: u64 = 5;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (annotations, id) = (annotations.clone(), a.id.clone());
        tasks.push(tokio::spawn(async move {
            let mut stale = 0u64;
            let mut base = 0;
            for n in 0..SAVES {
                loop {
                    let body = VersionBody::Inline {
                        content: json!({ "writer": w, "save": n }),
                    };
                    match annotations
                        .save(&id, base, &format!("w{w}"), 1, &body, Some(0))
                        .await
                    {
                        Ok(saved) => {
                            base = saved.version;
                            break;
                        }
                        Err(SaveError::Stale { current, .. }) => {
                            stale += 1;
                            base = current;
                        }
                        Err(e) => panic!("save: {e:?}"),
                    }
                }
            }
            stale
        }));
    }
    let renamer = {
        let (annotations, id) = (annotations.clone(), a.id.clone());
        tokio::spawn(async move {
            for i in 0..10 {
                annotations
                    .update(&id, None, |x| x.name = format!("axons, take {i}"))
                    .await
                    .unwrap();
            }
        })
    };
    let mut stale_total = 0;
    for t in tasks {
        stale_total += t.await.unwrap();
    }
    renamer.await.unwrap();
    let last = annotations.get(&a.id).await.unwrap();
    assert_eq!(last.version, WRITERS * SAVES, "accepted saves were lost");
    assert_eq!(last.name, "axons, take 9");
    assert_eq!(last.revision, 1 + WRITERS * SAVES + 10);
    // Every version 1..=40 exists once, and each writer's five saves are all there.
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor = None;
    let mut numbers = Vec::new();
    loop {
        let page = annotations.versions(&a.id, 7, cursor).await.unwrap();
        for v in &page.items {
            numbers.push(v.version);
            let VersionBody::Inline { content } = &v.body else {
                panic!("inline body expected");
            };
            assert!(seen.insert((content["writer"].as_u64(), content["save"].as_u64())));
            assert_eq!(v.author, format!("w{}", content["writer"]));
        }
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(numbers, (1..=WRITERS * SAVES).rev().collect::<Vec<_>>());
    assert_eq!(seen.len() as u64, WRITERS * SAVES);
    assert!(stale_total > 0, "the writers never raced");
    // A stale save is refused with the current version; a past version reads back.
    let stale = annotations
        .save(
            &a.id,
            3,
            "late",
            1,
            &VersionBody::Inline { content: json!({}) },
            None,
        )
        .await;
    assert!(
        matches!(stale, Err(SaveError::Stale { base: 3, current }) if current == WRITERS * SAVES),
        "{stale:?}"
    );
    let third = annotations.version(&a.id, 3).await.unwrap();
    assert_eq!((third.version, third.delta_of), (3, Some(0)));
    // Deleted annotations take no saves until restored.
    annotations
        .update(&a.id, None, |x| x.deleted_at = Some(now()))
        .await
        .unwrap();
    let refused = annotations
        .save(
            &a.id,
            WRITERS * SAVES,
            "x",
            1,
            &VersionBody::Inline { content: json!({}) },
            None,
        )
        .await;
    assert!(matches!(refused, Err(SaveError::Deleted)), "{refused:?}");
    annotations
        .update(&a.id, None, |x| x.deleted_at = None)
        .await
        .unwrap();
    annotations
        .save(
            &a.id,
            WRITERS * SAVES,
            "x",
            1,
            &VersionBody::Inline { content: json!({}) },
            None,
        )
        .await
        .unwrap();
}

/// Owner and team lists follow the record; a stale record change is a conflict; the fields
/// that belong to saves cannot be changed by a record update.
async fn annotations_records_and_team_lists(store: &DynStore) {
    let catalog = Catalog::new(store.clone());
    let annotations = Annotations::new(store.clone());
    let d = dataset(&test_org(), "annotated-lists");
    catalog.create_dataset(&d, "suite").await.unwrap();
    let owner = UserId::generate();
    let (team_a, team_b) = (TeamId::generate(), TeamId::generate());
    let mut first = annotation(&d, &owner);
    first.teams = [team_a.clone()].into();
    annotations.create(&first, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = annotation(&d, &owner);
    annotations.create(&second, None).await.unwrap();

    let mine: Vec<AnnotationId> = annotations
        .of_owner(&owner)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(mine, vec![first.id.clone(), second.id.clone()]);
    let ids = |v: Vec<Annotation>| v.into_iter().map(|a| a.id).collect::<Vec<_>>();
    assert_eq!(
        ids(annotations.shared_with(&team_a).await.unwrap()),
        vec![first.id.clone()]
    );

    let moved = annotations
        .update(&first.id, Some(1), |a| {
            a.teams = [team_b.clone()].into();
            a.version = 99;
            a.owner = UserId::generate();
        })
        .await
        .unwrap();
    assert_eq!(
        (moved.version, &moved.owner, moved.revision),
        (0, &owner, 2)
    );
    assert!(annotations.shared_with(&team_a).await.unwrap().is_empty());
    assert_eq!(
        ids(annotations.shared_with(&team_b).await.unwrap()),
        vec![first.id.clone()]
    );
    let stale = annotations
        .update(&first.id, Some(1), |a| a.name = "x".into())
        .await;
    assert!(matches!(stale, Err(CatalogError::Conflict)), "{stale:?}");

    let mut found = Vec::new();
    for _ in 0..40 {
        found = ids(annotations.of_dataset(&d.id, 10, None).await.unwrap().items);
        if found.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(found, vec![first.id.clone(), second.id.clone()]);
}
