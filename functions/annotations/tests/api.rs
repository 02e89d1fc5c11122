//! The annotations function (mounted beside the chunk and datasets functions, as the local
//! server mounts them): versioned saves (409 on a stale
//! base, 422 on an invalid batch that saves nothing), every version readable, racing writers,
//! visibility (private / internal / public) and who may read, edit and manage, team sharing
//! and the listings, soft deletion and restore, "copy to my account", NML and JSON downloads,
//! and large saves kept in object storage.
//!
//! Everything runs over the embedded store in a temporary directory; large version bodies go to
//! a local directory inside the data root. Signed-in people are created straight in the
//! directory and given access tokens by the services' own issuer; datasets are written straight
//! into the catalog.
//!
//! The harness (the app, people, teams, datasets, requests, update actions) is in `support`.

use std::path::PathBuf;
use std::sync::Arc;

use crate::support::*;
use axum::http::{StatusCode, header};
use serde_json::{Value, json};
use shared::domain::skeleton::UpdateAction;
use shared::domain::{
    DatasetId, MAX_INLINE_BODY_BYTES, OrgRole, SNAPSHOT_EVERY, TeamRole, Visibility,
};

// ---------------------------------------------------------------------------------------------
// 1. Saves and versions
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn saves_make_consecutive_versions_and_every_version_reads_back() {
    let app = spawn_app();
    app.org_admin().await;
    let tracers = app.team(ORG, "tracers").await;
    let owner = app.member("owner@lab.example", &[&tracers]).await;
    let ds = app.dataset("em", Visibility::Private, &[&tracers]).await;

    let created = app
        .create(Who::As(&owner), &ds, "  axon 3 ", json!({}))
        .await;
    let id = id_of(&created);
    assert_eq!(created["name"], "axon 3", "names are trimmed: {created}");
    assert_eq!(created["version"], 0);
    assert_eq!(created["revision"], 1);
    assert_eq!(created["visibility"], "internal");
    assert_eq!(created["kind"], "skeleton");
    assert_eq!(created["owner"], owner.id());
    assert_eq!(created["org"], ORG);
    assert_eq!(created["dataset_id"], ds.id.as_str());
    assert_eq!(created["teams"], json!([]));
    assert_eq!(created["deleted_at"], Value::Null);
    assert!(created.get("forked_from").is_none(), "{created}");
    assert_eq!(
        created["access"],
        json!({"read": true, "edit": true, "manage": true, "copy": true})
    );
    // Version 0 is the empty skeleton.
    assert_eq!(
        app.content(Who::As(&owner), &id, 0).await,
        json!({"trees": [], "treeGroups": []})
    );

    let first = app.saved(Who::As(&owner), &id, 0, &first_batch()).await;
    assert_eq!(
        first,
        json!({"version": 1, "trees": 1, "nodes": 3, "edges": 2})
    );
    let second = app.saved(Who::As(&owner), &id, 1, &second_batch()).await;
    assert_eq!(
        second,
        json!({"version": 2, "trees": 2, "nodes": 5, "edges": 3})
    );

    // A save on the old base is stale and names the latest version.
    app.save(Who::As(&owner), &id, 1, &[create_tree(9, "late")])
        .await
        .problem_about(StatusCode::CONFLICT, "latest is version 2");
    // A base from the future is stale too.
    app.save(Who::As(&owner), &id, 7, &[create_tree(9, "early")])
        .await
        .problem_about(StatusCode::CONFLICT, "latest is version 2");

    // An edge to a missing node: 422 naming the action, and nothing of the batch is kept.
    let detail = app
        .save(
            Who::As(&owner),
            &id,
            2,
            &[
                create_tree(3, "half"),
                create_node(3, 6, [1, 1, 1]),
                create_edge(3, 6, 99),
            ],
        )
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(detail.contains("createEdge"), "{detail}");
    assert!(detail.contains("node 99"), "{detail}");
    // An empty save is refused too.
    app.save(Who::As(&owner), &id, 2, &[])
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    let record = app.record(Who::As(&owner), &id).await;
    assert_eq!(record["version"], 2, "{record}");
    assert_eq!(record["revision"], 3, "{record}");
    assert!(
        !tree_names(&app.content(Who::As(&owner), &id, 2).await).contains("half"),
        "a refused batch must leave nothing behind"
    );

    // Every version reads back as it was saved.
    assert_eq!(
        app.content(Who::As(&owner), &id, 1).await,
        expected(&[&first_batch()])
    );
    assert_eq!(
        app.content(Who::As(&owner), &id, 2).await,
        expected(&[&first_batch(), &second_batch()])
    );
    app.get(
        &format!("/api/annotations/{id}/versions/3"),
        Who::As(&owner),
    )
    .await
    .problem(StatusCode::NOT_FOUND);

    // The version list: newest first, with authors and action counts.
    let versions = app
        .get(&format!("/api/annotations/{id}/versions"), Who::As(&owner))
        .await
        .ok(StatusCode::OK);
    let items = versions["items"].as_array().expect("items");
    let numbers: Vec<&Value> = items.iter().map(|v| &v["version"]).collect();
    assert_eq!(numbers, [&json!(2), &json!(1)], "{versions}");
    for item in items {
        assert_eq!(item["author"], owner.author(), "{item}");
        assert!(item["saved_at"].is_string(), "{item}");
    }
    assert_eq!(items[0]["actions"], 4);
    assert_eq!(items[1]["actions"], 8);
    assert_eq!(versions["next_cursor"], Value::Null);

    // Paging one at a time gives the same order.
    let page = app
        .get(
            &format!("/api/annotations/{id}/versions?limit=1"),
            Who::As(&owner),
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(page["items"][0]["version"], 2, "{page}");
    let cursor = page["next_cursor"].as_str().expect("a next page");
    let rest = app
        .get(
            &format!("/api/annotations/{id}/versions?limit=1&cursor={cursor}"),
            Who::As(&owner),
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(rest["items"][0]["version"], 1, "{rest}");
}

#[tokio::test]
async fn creating_needs_a_dataset_the_caller_may_annotate() {
    let app = spawn_app();
    app.org_admin().await;
    let tracers = app.team(ORG, "tracers").await;
    let owner = app.member("owner@lab.example", &[&tracers]).await;
    let bystander = app.member("bystander@lab.example", &[]).await;
    let ds = app.dataset("em", Visibility::Private, &[&tracers]).await;

    // Not in the allowed team: the dataset is refused.
    app.post(
        "/api/annotations",
        Who::As(&bystander),
        &json!({"dataset_id": ds.id, "name": "mine", "kind": "skeleton"}),
    )
    .await
    .problem(StatusCode::FORBIDDEN);
    // Anonymous callers cannot annotate a private dataset they cannot see.
    app.post(
        "/api/annotations",
        Who::Anonymous,
        &json!({"dataset_id": ds.id, "name": "mine", "kind": "skeleton"}),
    )
    .await
    .problem(StatusCode::NOT_FOUND);
    // No such dataset.
    app.post(
        "/api/annotations",
        Who::As(&owner),
        &json!({"dataset_id": DatasetId::generate(), "name": "mine", "kind": "skeleton"}),
    )
    .await
    .problem(StatusCode::NOT_FOUND);
    // Volume settings on a skeleton, or a volume over a layer the dataset lacks, are refused;
    // blank names are refused.
    app.post(
        "/api/annotations",
        Who::As(&owner),
        &json!({"dataset_id": ds.id, "name": "mine", "kind": "skeleton", "volume": {}}),
    )
    .await
    .problem_about(StatusCode::UNPROCESSABLE_ENTITY, "volume");
    app.post(
        "/api/annotations",
        Who::As(&owner),
        &json!({"dataset_id": ds.id, "name": "mine", "kind": "volume", "volume": {"layer": "nope"}}),
    )
    .await
    .problem_about(StatusCode::UNPROCESSABLE_ENTITY, "no layer");
    app.post(
        "/api/annotations",
        Who::As(&owner),
        &json!({"dataset_id": ds.id, "name": "   ", "kind": "skeleton"}),
    )
    .await
    .problem(StatusCode::BAD_REQUEST);
    // Nothing was created along the way.
    assert_eq!(app.listed("scope=mine", Who::As(&owner)).await.len(), 0);
    assert_eq!(app.listed("scope=mine", Who::As(&bystander)).await.len(), 0);
}

// ---------------------------------------------------------------------------------------------
// 2. Many writers
// ---------------------------------------------------------------------------------------------

const WRITERS: u32 = 8;
const SAVES_PER_WRITER: u32 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_lose_no_save_and_share_no_version() {
    let app = Arc::new(spawn_app());
    app.org_admin().await;
    let tracers = app.team(ORG, "tracers").await;
    let owner = Arc::new(app.member("owner@lab.example", &[&tracers]).await);
    let ds = app.dataset("em", Visibility::Private, &[&tracers]).await;
    let id = id_of(&app.create(Who::As(&owner), &ds, "raced", json!({})).await);

    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (app, owner, id) = (app.clone(), owner.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            let mut conflicts = 0u32;
            for n in 0..SAVES_PER_WRITER {
                let tree = w * SAVES_PER_WRITER + n + 1;
                let actions = [
                    create_tree(tree, &format!("writer {w} save {n}")),
                    create_node(tree, tree, [i64::from(tree), 0, 0]),
                ];
                let mut base = app.record(Who::As(&owner), &id).await["version"]
                    .as_u64()
                    .expect("version");
                loop {
                    let reply = app.save(Who::As(&owner), &id, base, &actions).await;
                    match reply.status {
                        StatusCode::CREATED => {
                            let version = reply.json()["version"].as_u64().expect("version");
                            assert_eq!(version, base + 1, "a save makes the next version");
                            accepted.push(version);
                            break;
                        }
                        StatusCode::CONFLICT => {
                            conflicts += 1;
                            assert!(conflicts < 10_000, "writer {w} never gets through");
                            base = app.record(Who::As(&owner), &id).await["version"]
                                .as_u64()
                                .expect("version");
                        }
                        other => panic!("writer {w}: unexpected {other}: {}", reply.text()),
                    }
                }
            }
            accepted
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        let accepted = task.await.expect("writer task");
        assert_eq!(accepted.len(), SAVES_PER_WRITER as usize);
        all.extend(accepted);
    }
    let total = u64::from(WRITERS * SAVES_PER_WRITER);
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=total).collect::<Vec<_>>(),
        "every accepted save has its own version"
    );

    let record = app.record(Who::As(&owner), &id).await;
    assert_eq!(record["version"], total, "{record}");
    assert_eq!(record["revision"], total + 1, "{record}");

    // Every version exists and holds exactly the saves before it: none was lost or overwritten.
    for v in 1..=total {
        let skeleton = app.content(Who::As(&owner), &id, v).await;
        assert_eq!(
            skeleton["trees"].as_array().map(Vec::len),
            Some(usize::try_from(v).expect("small")),
            "version {v}"
        );
    }
    let versions = app
        .get(
            &format!("/api/annotations/{id}/versions?limit=100"),
            Who::As(&owner),
        )
        .await
        .ok(StatusCode::OK);
    let listed: Vec<u64> = versions["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|v| v["version"].as_u64().expect("version"))
        .collect();
    assert_eq!(listed, (1..=total).rev().collect::<Vec<_>>());

    // Each writer's five saves are all in the final skeleton.
    let last = app.content(Who::As(&owner), &id, total).await;
    let names = tree_names(&last);
    assert_eq!(names.len(), usize::try_from(total).expect("small"));
    for w in 0..WRITERS {
        for n in 0..SAVES_PER_WRITER {
            assert!(
                names.contains(&format!("writer {w} save {n}")),
                "writer {w} save {n} is missing"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Visibility, and what others may do
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn visibility_decides_who_reads_and_only_the_owner_edits() {
    let app = spawn_app();
    let admin = app.org_admin().await;
    let tracers = app.team(ORG, "tracers").await;
    let owner = app.member("owner@lab.example", &[&tracers]).await;
    let peer = app.member("peer@lab.example", &[&tracers]).await;
    let lead = app
        .person(
            ORG,
            "lead@lab.example",
            OrgRole::User,
            &[(tracers.clone(), TeamRole::Manager)],
        )
        .await;
    let outsider = app
        .person(RIVAL, "spy@rival.example", OrgRole::Admin, &[])
        .await;
    let ds = app.dataset("em", Visibility::Private, &[&tracers]).await;

    let id = id_of(&app.create(Who::As(&owner), &ds, "axon", json!({})).await);
    app.saved(Who::As(&owner), &id, 0, &first_batch()).await;
    let uri = format!("/api/annotations/{id}");

    // Internal: another member of the organization who sees the dataset reads it, but only
    // the owner edits.
    let seen = app.record(Who::As(&peer), &id).await;
    assert_eq!(
        seen["access"],
        json!({"read": true, "edit": false, "manage": false, "copy": true})
    );
    assert_eq!(
        app.content(Who::As(&peer), &id, 1).await,
        expected(&[&first_batch()])
    );
    app.save(Who::As(&peer), &id, 1, &second_batch())
        .await
        .problem(StatusCode::FORBIDDEN);
    // Another organization's user sees nothing of a private dataset's annotation.
    app.get(&uri, Who::As(&outsider))
        .await
        .problem(StatusCode::NOT_FOUND);
    app.get(&format!("{uri}/download"), Who::As(&outsider))
        .await
        .problem(StatusCode::NOT_FOUND);
    app.get(&uri, Who::Anonymous)
        .await
        .problem(StatusCode::NOT_FOUND);

    // Renaming is the owner's (and admins'): not a peer's.
    app.patch(&uri, Who::As(&peer), &json!({"name": "mine now"}))
        .await
        .problem(StatusCode::FORBIDDEN);
    app.patch(&uri, Who::As(&lead), &json!({"name": "mine now"}))
        .await
        .problem(StatusCode::FORBIDDEN);
    let renamed = app
        .patch(&uri, Who::As(&owner), &json!({"name": "axon, renamed"}))
        .await
        .ok(StatusCode::OK);
    assert_eq!(renamed["name"], "axon, renamed");
    assert_eq!(renamed["version"], 1, "a rename is no save");
    assert_eq!(renamed["revision"], 3, "{renamed}");
    // A stale revision is a conflict.
    app.patch(&uri, Who::As(&owner), &json!({"name": "x", "revision": 2}))
        .await
        .problem(StatusCode::CONFLICT);
    assert_eq!(
        app.record(Who::As(&peer), &id).await["name"],
        "axon, renamed"
    );

    // Private: the peer no longer reads it; the manager of the owner's team and the
    // organization's admin still do.
    let private = app
        .patch(&uri, Who::As(&owner), &json!({"visibility": "private"}))
        .await
        .ok(StatusCode::OK);
    assert_eq!(private["visibility"], "private");
    app.get(&uri, Who::As(&peer))
        .await
        .problem(StatusCode::FORBIDDEN);
    app.get(&format!("{uri}/versions"), Who::As(&peer))
        .await
        .problem(StatusCode::FORBIDDEN);
    app.get(&format!("{uri}/versions/1"), Who::As(&peer))
        .await
        .problem(StatusCode::FORBIDDEN);
    app.get(&format!("{uri}/download"), Who::As(&peer))
        .await
        .problem(StatusCode::FORBIDDEN);
    let led = app.record(Who::As(&lead), &id).await;
    assert_eq!(
        led["access"],
        json!({"read": true, "edit": false, "manage": false, "copy": true})
    );
    let administered = app.record(Who::As(&admin), &id).await;
    assert_eq!(administered["access"]["manage"], true, "{administered}");
    assert_eq!(administered["access"]["edit"], false, "{administered}");
    assert_eq!(
        app.record(Who::Admin, &id).await["access"]["manage"],
        true,
        "the admin key manages too"
    );
    app.get(&uri, Who::As(&outsider))
        .await
        .problem(StatusCode::NOT_FOUND);
    // The owner still reads and edits their private annotation.
    assert_eq!(
        app.record(Who::As(&owner), &id).await["access"]["edit"],
        true
    );

    // Public, on a private dataset: still hidden from everyone who cannot see the dataset.
    let open = id_of(
        &app.create(
            Who::As(&owner),
            &ds,
            "open",
            json!({"visibility": "public"}),
        )
        .await,
    );
    assert_eq!(
        app.record(Who::As(&owner), &open).await["visibility"],
        "public"
    );
    app.get(&format!("/api/annotations/{open}"), Who::Anonymous)
        .await
        .problem(StatusCode::NOT_FOUND);
    app.get(&format!("/api/annotations/{open}"), Who::As(&outsider))
        .await
        .problem(StatusCode::NOT_FOUND);

    // Once the dataset is public, everyone reads the public annotation (and only that one).
    app.make_public(&ds).await;
    let anon = app.record(Who::Anonymous, &open).await;
    assert_eq!(
        anon["access"],
        json!({"read": true, "edit": false, "manage": false, "copy": false})
    );
    let download = app
        .get(
            &format!("/api/annotations/{open}/download?format=json"),
            Who::Anonymous,
        )
        .await;
    assert_eq!(download.status, StatusCode::OK, "{}", download.text());
    app.save(Who::Anonymous, &open, 0, &first_batch())
        .await
        .problem(StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.record(Who::As(&outsider), &open).await["access"]["read"],
        true
    );
    app.save(Who::As(&outsider), &open, 0, &first_batch())
        .await
        .problem(StatusCode::FORBIDDEN);
    // The private one stays closed to anonymous callers and the other organization.
    app.get(&uri, Who::Anonymous)
        .await
        .problem(StatusCode::UNAUTHORIZED);
    app.get(&uri, Who::As(&outsider))
        .await
        .problem(StatusCode::FORBIDDEN);
    assert_eq!(
        app.listed(&format!("dataset={}", ds.id), Who::Anonymous)
            .await,
        [open.as_str()]
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Team sharing and listings
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn sharing_with_a_team_lists_the_annotation_for_its_members() {
    let app = spawn_app();
    app.org_admin().await;
    let tracers = app.team(ORG, "tracers").await;
    let proofreaders = app.team(ORG, "proofreaders").await;
    let owner = app.member("owner@lab.example", &[&tracers]).await;
    let reader = app.member("reader@lab.example", &[&proofreaders]).await;
    let bystander = app.member("bystander@lab.example", &[&tracers]).await;
    let ds = app
        .dataset("em", Visibility::Private, &[&tracers, &proofreaders])
        .await;
    let other_ds = app.dataset("lm", Visibility::Private, &[&tracers]).await;

    let shared = id_of(&app.create(Who::As(&owner), &ds, "shared", json!({})).await);
    let elsewhere = id_of(
        &app.create(Who::As(&owner), &other_ds, "elsewhere", json!({}))
            .await,
    );
    // The reader's own annotation, shared with their own team, is theirs, not "shared".
    let own = id_of(
        &app.create(
            Who::As(&reader),
            &ds,
            "own",
            json!({"teams": [proofreaders.as_str()]}),
        )
        .await,
    );
    let secret = id_of(
        &app.create(
            Who::As(&reader),
            &ds,
            "secret",
            json!({"visibility": "private"}),
        )
        .await,
    );
    let shared_with = "scope=shared_with_my_teams";
    assert!(app.listed(shared_with, Who::As(&reader)).await.is_empty());

    let patched = app
        .patch(
            &format!("/api/annotations/{shared}"),
            Who::As(&owner),
            &json!({"teams": [proofreaders.as_str()]}),
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(patched["teams"], json!([proofreaders.as_str()]));
    assert_eq!(
        app.listed(shared_with, Who::As(&reader)).await,
        [shared.as_str()]
    );
    assert!(
        app.listed(shared_with, Who::As(&bystander))
            .await
            .is_empty(),
        "not shared with the bystander's team"
    );

    // Teams of another organization, or made up, are refused.
    app.person(RIVAL, "boss@rival.example", OrgRole::Admin, &[])
        .await;
    let foreign = app.team(RIVAL, "rivals").await;
    app.patch(
        &format!("/api/annotations/{shared}"),
        Who::As(&owner),
        &json!({"teams": [foreign.as_str()]}),
    )
    .await
    .problem(StatusCode::UNPROCESSABLE_ENTITY);
    app.patch(
        &format!("/api/annotations/{shared}"),
        Who::As(&owner),
        &json!({"teams": ["no-such-team"]}),
    )
    .await
    .problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        app.listed(shared_with, Who::As(&reader)).await,
        [shared.as_str()]
    );

    // Unsharing removes it again.
    let unshared = app
        .patch(
            &format!("/api/annotations/{shared}"),
            Who::As(&owner),
            &json!({"teams": []}),
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(unshared["teams"], json!([]));
    assert!(app.listed(shared_with, Who::As(&reader)).await.is_empty());

    // "Mine": one's own annotations, oldest first.
    assert_eq!(
        app.listed("scope=mine", Who::As(&owner)).await,
        [shared.clone(), elsewhere.clone()]
    );
    assert_eq!(
        app.listed("scope=mine", Who::As(&reader)).await,
        [own.clone(), secret.clone()]
    );

    // One dataset's annotations, as far as the caller may read them.
    let by_dataset = format!("dataset={}", ds.id);
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(
        sorted(app.listed(&by_dataset, Who::As(&bystander)).await),
        sorted(vec![shared.clone(), own.clone()])
    );
    assert_eq!(
        sorted(app.listed(&by_dataset, Who::As(&reader)).await),
        sorted(vec![shared.clone(), own.clone(), secret.clone()])
    );
    assert_eq!(
        app.listed(&format!("dataset={}", other_ds.id), Who::As(&owner))
            .await,
        [elsewhere.as_str()]
    );
    assert!(
        app.listed(&by_dataset, Who::Anonymous).await.is_empty(),
        "nothing of a private dataset for anonymous callers"
    );

    // Exactly one of the two parameters.
    app.get("/api/annotations", Who::As(&owner))
        .await
        .problem(StatusCode::BAD_REQUEST);
    app.get(
        &format!("/api/annotations?{by_dataset}&scope=mine"),
        Who::As(&owner),
    )
    .await
    .problem(StatusCode::BAD_REQUEST);
}

// ---------------------------------------------------------------------------------------------
// 5. Soft delete and restore
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn deleting_hides_an_annotation_until_its_owner_restores_it() {
    let app = spawn_app();
    app.org_admin().await;
    let tracers = app.team(ORG, "tracers").await;
    let owner = app.member("owner@lab.example", &[&tracers]).await;
    let peer = app.member("peer@lab.example", &[&tracers]).await;
    let outsider = app
        .person(RIVAL, "spy@rival.example", OrgRole::Admin, &[])
        .await;
    let ds = app.dataset("em", Visibility::Private, &[&tracers]).await;
    let id = id_of(
        &app.create(
            Who::As(&owner),
            &ds,
            "axon",
            json!({"teams": [tracers.as_str()]}),
        )
        .await,
    );
    app.saved(Who::As(&owner), &id, 0, &first_batch()).await;
    let uri = format!("/api/annotations/{id}");
    let by_dataset = format!("dataset={}", ds.id);
    let shared_with = "scope=shared_with_my_teams";
    assert_eq!(app.listed(&by_dataset, Who::As(&peer)).await, [id.as_str()]);
    assert_eq!(app.listed(shared_with, Who::As(&peer)).await, [id.as_str()]);

    // Only the owner (or an admin) deletes.
    app.delete(&uri, Who::As(&peer))
        .await
        .problem(StatusCode::FORBIDDEN);
    let deleted = app.delete(&uri, Who::As(&owner)).await.ok(StatusCode::OK);
    assert!(deleted["deleted_at"].is_string(), "{deleted}");

    // Others no longer see it, anywhere.
    app.get(&uri, Who::As(&peer))
        .await
        .problem(StatusCode::FORBIDDEN);
    app.get(&format!("{uri}/versions/1"), Who::As(&peer))
        .await
        .problem(StatusCode::FORBIDDEN);
    app.get(&uri, Who::As(&outsider))
        .await
        .problem(StatusCode::NOT_FOUND);
    app.post_empty(&format!("{uri}/copy"), Who::As(&peer))
        .await
        .problem(StatusCode::FORBIDDEN);
    assert!(app.listed(&by_dataset, Who::As(&peer)).await.is_empty());
    assert!(app.listed(shared_with, Who::As(&peer)).await.is_empty());
    assert!(app.listed(&by_dataset, Who::As(&owner)).await.is_empty());
    // Its owner still finds it among their own (marked deleted) and reads it.
    let mine = app
        .get("/api/annotations?scope=mine", Who::As(&owner))
        .await
        .ok(StatusCode::OK);
    assert_eq!(mine.as_array().map(Vec::len), Some(1), "{mine}");
    assert!(mine[0]["deleted_at"].is_string(), "{mine}");
    let seen = app.record(Who::As(&owner), &id).await;
    assert!(seen["deleted_at"].is_string(), "{seen}");
    assert_eq!(seen["access"]["edit"], false, "{seen}");
    assert_eq!(
        app.content(Who::As(&owner), &id, 1).await,
        expected(&[&first_batch()])
    );
    // Nobody saves onto a deleted annotation, and nothing changes.
    let refused = app.save(Who::As(&owner), &id, 1, &second_batch()).await;
    assert!(
        refused.status == StatusCode::CONFLICT || refused.status == StatusCode::FORBIDDEN,
        "{refused:?}"
    );
    assert_eq!(app.record(Who::As(&owner), &id).await["version"], 1);
    // Restoring is the owner's too.
    app.post_empty(&format!("{uri}/restore"), Who::As(&peer))
        .await
        .problem(StatusCode::FORBIDDEN);

    let restored = app
        .post_empty(&format!("{uri}/restore"), Who::As(&owner))
        .await
        .ok(StatusCode::OK);
    assert_eq!(restored["deleted_at"], Value::Null, "{restored}");
    assert_eq!(restored["access"]["edit"], true, "{restored}");
    assert_eq!(app.record(Who::As(&peer), &id).await["version"], 1);
    assert_eq!(app.listed(&by_dataset, Who::As(&peer)).await, [id.as_str()]);
    assert_eq!(app.listed(shared_with, Who::As(&peer)).await, [id.as_str()]);
    app.saved(Who::As(&owner), &id, 1, &second_batch()).await;
    assert_eq!(
        app.content(Who::As(&peer), &id, 2).await,
        expected(&[&first_batch(), &second_batch()])
    );
}

/// The save handler answers a deleted annotation with 409 "restore it first", but the access
/// decision refuses `EditAnnotation` on deleted annotations before that, so the owner gets 403
/// ("you may not do this") instead.
#[tokio::test]
async fn saving_onto_a_deleted_annotation_is_a_conflict() {
    let app = spawn_app();
    app.org_admin().await;
    let tracers = app.team(ORG, "tracers").await;
    let owner = app.member("owner@lab.example", &[&tracers]).await;
    let ds = app.dataset("em", Visibility::Private, &[&tracers]).await;
    let id = id_of(&app.create(Who::As(&owner), &ds, "axon", json!({})).await);
    app.saved(Who::As(&owner), &id, 0, &first_batch()).await;
    app.delete(&format!("/api/annotations/{id}"), Who::As(&owner))
        .await
        .ok(StatusCode::OK);
    app.save(Who::As(&owner), &id, 1, &second_batch())
        .await
        .problem_about(StatusCode::CONFLICT, "restore");
}

// ---------------------------------------------------------------------------------------------
// 6. Copy to my account
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn copies_belong_to_the_copier_and_never_sync() {
    let app = spawn_app();
    app.org_admin().await;
    let tracers = app.team(ORG, "tracers").await;
    let owner = app.member("owner@lab.example", &[&tracers]).await;
    let peer = app.member("peer@lab.example", &[&tracers]).await;
    let viewer = app.member("viewer@lab.example", &[]).await;
    let ds = app.dataset("em", Visibility::Private, &[&tracers]).await;
    app.grant(&ds, &viewer, false).await;

    let original = id_of(
        &app.create(
            Who::As(&owner),
            &ds,
            "axon",
            json!({"description": "first pass", "teams": [tracers.as_str()]}),
        )
        .await,
    );
    app.saved(Who::As(&owner), &original, 0, &first_batch())
        .await;
    app.saved(Who::As(&owner), &original, 1, &second_batch())
        .await;

    let copy = app
        .post_empty(&format!("/api/annotations/{original}/copy"), Who::As(&peer))
        .await
        .ok(StatusCode::CREATED);
    let copy_id = id_of(&copy);
    assert_ne!(copy_id, original);
    assert_eq!(copy["owner"], peer.id());
    assert_eq!(copy["name"], "axon (copy)");
    assert_eq!(copy["description"], "first pass");
    assert_eq!(copy["dataset_id"], ds.id.as_str());
    assert_eq!(copy["visibility"], "internal");
    assert_eq!(copy["teams"], json!([]), "sharing is not copied");
    assert_eq!(
        copy["forked_from"],
        json!({"annotation": original, "version": 2})
    );
    assert_eq!(copy["version"], 1);
    assert_eq!(copy["access"]["edit"], true, "{copy}");
    assert_eq!(copy["access"]["manage"], true, "{copy}");
    let both = expected(&[&first_batch(), &second_batch()]);
    assert_eq!(app.content(Who::As(&peer), &copy_id, 1).await, both);
    let versions = app
        .get(
            &format!("/api/annotations/{copy_id}/versions"),
            Who::As(&peer),
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(versions["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(versions["items"][0]["author"], peer.author());
    assert_eq!(
        app.listed("scope=mine", Who::As(&peer)).await,
        [copy_id.as_str()]
    );
    // The original's owner reads the copy (internal) but may not edit it.
    let theirs = app.record(Who::As(&owner), &copy_id).await;
    assert_eq!(theirs["access"]["edit"], false, "{theirs}");
    app.save(Who::As(&owner), &copy_id, 1, &[create_tree(7, "intruder")])
        .await
        .problem(StatusCode::FORBIDDEN);

    // Saves to the original leave the copy alone …
    let third = [create_tree(3, "original only")];
    app.saved(Who::As(&owner), &original, 2, &third).await;
    let copy_now = app.record(Who::As(&peer), &copy_id).await;
    assert_eq!(copy_now["version"], 1, "{copy_now}");
    assert_eq!(app.content(Who::As(&peer), &copy_id, 1).await, both);
    // … and the copier's saves leave the original alone.
    let fourth = [create_tree(4, "copy only")];
    app.saved(Who::As(&peer), &copy_id, 1, &fourth).await;
    assert_eq!(
        app.content(Who::As(&peer), &copy_id, 2).await,
        expected(&[&first_batch(), &second_batch(), &fourth])
    );
    assert_eq!(
        app.content(Who::As(&owner), &original, 3).await,
        expected(&[&first_batch(), &second_batch(), &third])
    );
    assert_eq!(app.record(Who::As(&owner), &original).await["version"], 3);

    // A copy of a copy remembers its own origin.
    let again = app
        .post_empty(&format!("/api/annotations/{copy_id}/copy"), Who::As(&owner))
        .await
        .ok(StatusCode::CREATED);
    assert_eq!(
        again["forked_from"],
        json!({"annotation": copy_id, "version": 2})
    );
    assert_eq!(again["owner"], owner.id());

    // Someone who reads the dataset but may not annotate it reads the annotation, not copies it.
    let seen = app.record(Who::As(&viewer), &original).await;
    assert_eq!(seen["access"]["copy"], false, "{seen}");
    app.post_empty(
        &format!("/api/annotations/{original}/copy"),
        Who::As(&viewer),
    )
    .await
    .problem(StatusCode::FORBIDDEN);
    assert!(app.listed("scope=mine", Who::As(&viewer)).await.is_empty());
    // Anonymous callers cannot copy.
    app.post_empty(&format!("/api/annotations/{original}/copy"), Who::Anonymous)
        .await
        .problem(StatusCode::NOT_FOUND);

    // Copying an annotation with nothing saved gives an empty copy at version 0.
    let empty = id_of(&app.create(Who::As(&owner), &ds, "empty", json!({})).await);
    let empty_copy = app
        .post_empty(&format!("/api/annotations/{empty}/copy"), Who::As(&peer))
        .await
        .ok(StatusCode::CREATED);
    assert_eq!(empty_copy["version"], 0);
    assert_eq!(
        empty_copy["forked_from"],
        json!({"annotation": empty, "version": 0})
    );
    app.saved(Who::As(&peer), &id_of(&empty_copy), 0, &first_batch())
        .await;
}

// ---------------------------------------------------------------------------------------------
// 7. Downloads
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn downloads_give_nml_or_json_of_any_version() {
    let app = spawn_app();
    app.org_admin().await;
    let tracers = app.team(ORG, "tracers").await;
    let owner = app.member("owner@lab.example", &[&tracers]).await;
    let ds = app.dataset("em", Visibility::Private, &[&tracers]).await;
    let id = id_of(
        &app.create(Who::As(&owner), &ds, "Axon tracing #1", json!({}))
            .await,
    );
    app.saved(Who::As(&owner), &id, 0, &first_batch()).await;
    app.saved(Who::As(&owner), &id, 1, &second_batch()).await;
    let uri = format!("/api/annotations/{id}/download");

    let json_file = app
        .get(&format!("{uri}?format=json"), Who::As(&owner))
        .await;
    assert_eq!(
        json_file.json(),
        expected(&[&first_batch(), &second_batch()])
    );
    assert!(
        json_file
            .header(header::CONTENT_TYPE)
            .starts_with("application/json")
    );
    assert_eq!(
        json_file.header(header::CONTENT_DISPOSITION),
        "attachment; filename=\"Axon_tracing__1-v2.json\""
    );

    // NML by default.
    let nml = app.get(&uri, Who::As(&owner)).await;
    assert_eq!(nml.status, StatusCode::OK, "{}", nml.text());
    assert_eq!(nml.header(header::CONTENT_TYPE), "application/xml");
    let disposition = nml.header(header::CONTENT_DISPOSITION);
    assert!(disposition.starts_with("attachment"), "{disposition}");
    assert!(disposition.contains(".nml"), "{disposition}");
    assert_eq!(
        disposition,
        "attachment; filename=\"Axon_tracing__1-v2.nml\""
    );
    let text = nml.text();
    for needle in [
        "<things>",
        "</things>",
        &format!("<meta name=\"annotationId\" content=\"{id}\"/>"),
        "<experiment name=\"em\"",
        // 0.25 µm × 0.5 µm × 2 µm, as x, y, z in nanometres.
        "<scale x=\"250\" y=\"500\" z=\"2000\" unit=\"nanometer\"/>",
        "<thing id=\"1\" name=\"axon\"",
        "<thing id=\"2\" name=\"dendrite\"",
        "<node id=\"1\" radius=\"1.5\" x=\"10\" y=\"20\" z=\"30\"",
        "<node id=\"2\" radius=\"1.5\" x=\"11\" y=\"20\" z=\"30\"",
        "<node id=\"3\" radius=\"1.5\" x=\"12\" y=\"21\" z=\"30\"",
        "<node id=\"5\" radius=\"1.5\" x=\"41\" y=\"50\" z=\"60\"",
        "<edge source=\"1\" target=\"2\"/>",
        "<edge source=\"4\" target=\"5\"/>",
        "<comment node=\"2\" content=\"synapse here\"/>",
        "<branchpoint id=\"2\" time=\"1700000000500\"/>",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }

    // An older version.
    let old = app.get(&format!("{uri}?version=1"), Who::As(&owner)).await;
    assert_eq!(old.status, StatusCode::OK, "{}", old.text());
    assert_eq!(
        old.header(header::CONTENT_DISPOSITION),
        "attachment; filename=\"Axon_tracing__1-v1.nml\""
    );
    let old_text = old.text();
    assert!(old_text.contains("name=\"axon\""), "{old_text}");
    assert!(!old_text.contains("dendrite"), "{old_text}");
    assert_eq!(
        app.get(&format!("{uri}?format=json&version=1"), Who::As(&owner))
            .await
            .json(),
        expected(&[&first_batch()])
    );
    assert_eq!(
        app.get(&format!("{uri}?format=json&version=0"), Who::As(&owner))
            .await
            .json(),
        json!({"trees": [], "treeGroups": []})
    );
    // Beyond the latest: nothing.
    app.get(&format!("{uri}?version=3"), Who::As(&owner))
        .await
        .problem(StatusCode::NOT_FOUND);
    // Unknown formats are refused.
    app.get(&format!("{uri}?format=xml"), Who::As(&owner))
        .await
        .problem(StatusCode::BAD_REQUEST);
}

/// `NmlMeta::time_ms` is documented as "when the annotation was created, ms since the epoch",
/// but the download passes `a.updated_at.unix_timestamp() * 1000`: the time of the last save or
/// rename, and cut to whole seconds.
#[tokio::test]
async fn nml_time_is_the_creation_time() {
    let app = spawn_app();
    app.org_admin().await;
    let tracers = app.team(ORG, "tracers").await;
    let owner = app.member("owner@lab.example", &[&tracers]).await;
    let ds = app.dataset("em", Visibility::Private, &[&tracers]).await;
    let created = app.create(Who::As(&owner), &ds, "axon", json!({})).await;
    let id = id_of(&created);
    let created_at = time::OffsetDateTime::parse(
        created["created_at"].as_str().expect("created_at"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339 timestamp");
    let created_ms = created_at.unix_timestamp_nanos() / 1_000_000;
    // Let the clock move on, so that the save's timestamp differs from the creation's.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    app.saved(Who::As(&owner), &id, 0, &first_batch()).await;
    let record = app.record(Who::As(&owner), &id).await;
    assert_ne!(record["updated_at"], record["created_at"], "{record}");
    let nml = app
        .get(&format!("/api/annotations/{id}/download"), Who::As(&owner))
        .await
        .text();
    let expected_time = format!("<time ms=\"{created_ms}\"/>");
    assert!(
        nml.contains(&expected_time),
        "{expected_time} missing from:\n{nml}"
    );
}

// ---------------------------------------------------------------------------------------------
// 8. Large saves
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn large_saves_are_kept_in_object_storage_and_read_back_identically() {
    let app = spawn_app();
    app.org_admin().await;
    let tracers = app.team(ORG, "tracers").await;
    let owner = app.member("owner@lab.example", &[&tracers]).await;
    let ds = app.dataset("em", Visibility::Private, &[&tracers]).await;
    let id = id_of(
        &app.create(Who::As(&owner), &ds, "long axon", json!({}))
            .await,
    );

    const NODES: u32 = 2000;
    let mut batch = vec![create_tree(1, "long axon")];
    for n in 1..=NODES {
        batch.push(create_node(1, n, [i64::from(n), 2 * i64::from(n), 7]));
        if n > 1 {
            batch.push(create_edge(1, n - 1, n));
        }
    }
    let want = expected(&[&batch]);
    let size = serde_json::to_vec(&want).expect("JSON").len();
    assert!(
        size > 4 * MAX_INLINE_BODY_BYTES,
        "the fixture must be well over the inline limit: {size} bytes"
    );

    let saved = app.saved(Who::As(&owner), &id, 0, &batch).await;
    assert_eq!(
        saved,
        json!({"version": 1, "trees": 1, "nodes": NODES, "edges": NODES - 1})
    );
    assert_eq!(app.content(Who::As(&owner), &id, 1).await, want);

    // The body is an object under the configured directory, named after the version.
    let dir = app.annotations_dir.join(&id);
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("no objects under {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let file_name = files[0]
        .file_name()
        .and_then(|n| n.to_str())
        .expect("file name")
        .to_owned();
    assert!(
        file_name.starts_with("v00000000000000000001-") && file_name.ends_with(".json"),
        "{file_name}"
    );
    // A save keeps its batch of actions (not the whole skeleton: that is kept every
    // SNAPSHOT_EVERY versions).
    let stored: Value =
        serde_json::from_slice(&std::fs::read(&files[0]).expect("object")).expect("JSON object");
    let sent: Vec<UpdateAction> = batch
        .iter()
        .map(|a| serde_json::from_value(a.clone()).expect("an update action"))
        .collect();
    assert_eq!(stored, serde_json::to_value(&sent).expect("JSON"));

    // The next save builds on it; a small batch stays in the version item itself.
    let more = [set_comment(1, NODES, "the end")];
    app.saved(Who::As(&owner), &id, 1, &more).await;
    let both = expected(&[&batch, &more]);
    assert_eq!(app.content(Who::As(&owner), &id, 2).await, both);
    assert_eq!(app.content(Who::As(&owner), &id, 1).await, want);
    assert_eq!(
        std::fs::read_dir(&dir).expect("objects").count(),
        1,
        "a small batch is inline"
    );
    // Read by an instance that has nothing cached, every version is rebuilt from storage.
    let cold = app.cold();
    assert_eq!(cold.content(Who::As(&owner), &id, 2).await, both);
    assert_eq!(cold.content(Who::As(&owner), &id, 1).await, want);
    assert_eq!(
        app.get(
            &format!("/api/annotations/{id}/download?format=json"),
            Who::As(&owner)
        )
        .await
        .json(),
        both
    );
    let nml = app
        .get(&format!("/api/annotations/{id}/download"), Who::As(&owner))
        .await;
    assert_eq!(nml.status, StatusCode::OK, "{}", nml.text());
    let text = nml.text();
    assert!(
        text.contains("<node id=\"2000\" radius=\"1.5\" x=\"2000\" y=\"4000\" z=\"7\""),
        "the last node is missing"
    );
    assert!(text.contains("<comment node=\"2000\" content=\"the end\"/>"));

    // A copy of a large annotation is stored the same way.
    let peer = app.member("peer@lab.example", &[&tracers]).await;
    let copy = app
        .post_empty(&format!("/api/annotations/{id}/copy"), Who::As(&peer))
        .await
        .ok(StatusCode::CREATED);
    let copy_id = id_of(&copy);
    assert_eq!(app.content(Who::As(&peer), &copy_id, 1).await, both);
    assert!(app.annotations_dir.join(&copy_id).is_dir());
}

/// Skeleton saves keep their batches, with a whole skeleton every `SNAPSHOT_EVERY` versions:
/// every version reads back the same from a warm instance and from one with nothing cached,
/// across snapshot boundaries, including versions that delete what earlier ones made.
#[tokio::test]
async fn versions_are_rebuilt_from_snapshots_and_batches() {
    let app = spawn_app();
    app.org_admin().await;
    let tracers = app.team(ORG, "tracers").await;
    let owner = app.member("owner@lab.example", &[&tracers]).await;
    let ds = app.dataset("em", Visibility::Private, &[&tracers]).await;
    let id = id_of(&app.create(Who::As(&owner), &ds, "long", json!({})).await);

    const SAVES: u32 = 2 * SNAPSHOT_EVERY as u32 + 6;
    let mut batches: Vec<Vec<Value>> = Vec::new();
    for n in 1..=SAVES {
        // Each save adds a tree of two nodes; every fifth also deletes the tree before it.
        let mut batch = vec![
            create_tree(n, &format!("t{n}")),
            create_node(n, 2 * n, [i64::from(n), 0, 0]),
            create_node(n, 2 * n + 1, [i64::from(n), 1, 0]),
            create_edge(n, 2 * n, 2 * n + 1),
        ];
        if n % 5 == 0 {
            batch.push(json!({"name": "deleteTree", "value": {"id": n - 1}}));
        }
        app.saved(Who::As(&owner), &id, u64::from(n) - 1, &batch)
            .await;
        batches.push(batch);
    }
    let want = |v: usize| {
        let parts: Vec<&[Value]> = batches[..v].iter().map(Vec::as_slice).collect();
        expected(&parts)
    };

    // Stored: snapshots at multiples of SNAPSHOT_EVERY, batches on top of them otherwise.
    let annotation_id = shared::domain::AnnotationId::parse(&id).expect("annotation id");
    let store = app.services.annotations();
    for v in 1..=u64::from(SAVES) {
        let saved = store.version(&annotation_id, v).await.expect("a version");
        let anchor = v / SNAPSHOT_EVERY * SNAPSHOT_EVERY;
        let want_delta = (v % SNAPSHOT_EVERY != 0).then_some(anchor);
        assert_eq!(saved.delta_of, want_delta, "version {v}");
    }

    let cold = app.cold();
    for v in [1, 2, 31, 32, 33, 63, 64, 65, SAVES as usize] {
        let warm = app.content(Who::As(&owner), &id, v as u64).await;
        assert_eq!(warm, want(v), "warm version {v}");
        assert_eq!(
            cold.content(Who::As(&owner), &id, v as u64).await,
            want(v),
            "cold version {v}"
        );
    }
    // A cold instance also saves on top of the latest, and the chain goes on.
    let next = [create_tree(999, "after")];
    cold.saved(Who::As(&owner), &id, u64::from(SAVES), &next)
        .await;
    let mut all: Vec<&[Value]> = batches.iter().map(Vec::as_slice).collect();
    all.push(&next);
    assert_eq!(
        app.content(Who::As(&owner), &id, u64::from(SAVES) + 1)
            .await,
        expected(&all)
    );
}
