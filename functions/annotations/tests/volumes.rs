//! Volume annotations end to end, through the annotations, chunk and datasets functions mounted
//! together: creation over an image layer (its Zarr metadata readable at once), saves of
//! webKnossos `updateBucket` actions (consecutive versions, stale saves refused and their
//! buckets removed, invalid batches saving nothing, all-zero buckets erasing), the bucket bytes
//! read back through the chunk function and decoded as a Zarr reader would, who reads an
//! annotation through public URLs, share links and personal viewer URLs, links scoped to one
//! annotation and the view states they open, the viewer endpoint, and copies sharing their
//! origin's buckets.
//!
//! The harness is in `support`; the dataset's OME-Zarr files exist on disk where image data is
//! read, and the annotation storage is a local directory whose files the tests count.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::support::*;
use axum::http::{StatusCode, header};
use base64::Engine as _;
use serde_json::{Value, json};
use shared::domain::{Dataset, Layer, LayerKind, Level, OrgRole, StorageUrl, TeamId, Visibility};

/// Voxels in one bucket (32³).
const VOXELS: usize = 32 * 32 * 32;

// ---------------------------------------------------------------------------------------------
// Buckets, files and reads
// ---------------------------------------------------------------------------------------------

/// 32³ voxels from `f(x, y, z)` (coordinates inside the bucket), x fastest, then y, then z.
fn voxels(f: impl Fn(u64, u64, u64) -> u64) -> Vec<u64> {
    let mut out = Vec::with_capacity(VOXELS);
    for z in 0..32 {
        for y in 0..32 {
            for x in 0..32 {
                out.push(f(x, y, z));
            }
        }
    }
    out
}

/// Voxels as little-endian integers of `size` bytes.
fn le(voxels: &[u64], size: usize) -> Vec<u8> {
    voxels
        .iter()
        .flat_map(|v| v.to_le_bytes()[..size].to_vec())
        .collect()
}

/// A `uint32` bucket holding `value` everywhere.
fn uniform(value: u32) -> Vec<u8> {
    std::iter::repeat_n(value.to_le_bytes(), VOXELS)
        .flatten()
        .collect()
}

/// A `uint32` bucket whose voxels all differ (and none is 0).
fn gradient(seed: u64) -> Vec<u8> {
    le(&voxels(|x, y, z| seed + x + 32 * y + 1024 * z), 4)
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// webKnossos' action replacing the bucket whose first voxel is `position` (x, y, z).
fn update_bucket(position: [u64; 3], data: &[u8]) -> Value {
    json!({"name": "updateBucket", "value": {
        "position": position, "mag": [1, 1, 1], "cubeSize": 32, "base64Data": b64(data)
    }})
}

/// The chunk key (below the volume root) of the bucket at `position` (x, y, z).
fn key_at(position: [u64; 3]) -> String {
    format!(
        "0/c/{}/{}/{}",
        position[2] / 32,
        position[1] / 32,
        position[0] / 32
    )
}

/// Every file (not directory) below `dir`, sorted; none when it does not exist.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// A stored chunk as a Zarr reader decodes it: zstd (the array's bytes-to-bytes codec) around
/// little-endian voxels in C order (z, y, x; x fastest, like a bucket's).
fn decoded(chunk: &[u8]) -> Vec<u8> {
    assert!(
        chunk.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]),
        "a chunk is a zstd frame; starts with {:02x?}",
        &chunk[..chunk.len().min(4)]
    );
    zstd::decode_all(chunk).expect("a valid zstd frame")
}

fn u32s(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().expect("four bytes")))
        .collect()
}

/// The orientation quaternion of a state, as numbers.
fn quaternion(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("no quaternion: {value}"))
        .iter()
        .map(|v| v.as_f64().expect("a number"))
        .collect()
}

fn assert_close(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-4, "{got:?} is not {want:?}");
    }
}

/// The layers of a view state with `type`.
fn layers_of<'a>(state: &'a Value, kind: &str) -> Vec<&'a Value> {
    state["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("no layers in {state}"))
        .iter()
        .filter(|l| l["type"] == kind)
        .collect()
}

/// An annotation layer's annotations of `type` (point, line).
fn annotations_of<'a>(layer: &'a Value, kind: &str) -> Vec<&'a Value> {
    layer["annotations"]
        .as_array()
        .unwrap_or_else(|| panic!("no annotations in {layer}"))
        .iter()
        .filter(|a| a["type"] == kind)
        .collect()
}

impl TestApp {
    /// Creates a volume annotation (with `extra` fields) and returns its id.
    async fn volume(&self, who: Who<'_>, dataset: &Dataset, name: &str, extra: Value) -> String {
        let mut body = json!({"kind": "volume"});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        let created = self.create(who, dataset, name, body).await;
        assert_eq!(created["kind"], "volume", "{created}");
        id_of(&created)
    }

    /// `GET /api/annotations/{id}/viewer?{query}` that must succeed.
    async fn viewer(&self, who: Who<'_>, id: &str, query: &str) -> Value {
        self.get(&format!("/api/annotations/{id}/viewer?{query}"), who)
            .await
            .ok(StatusCode::OK)
    }

    /// The Zarr URL of a volume annotation through `who`'s personal viewer URL.
    async fn zarr_url(&self, who: Who<'_>, id: &str, query: &str) -> String {
        let viewer = self.viewer(who, id, query).await;
        viewer["zarr_url"]
            .as_str()
            .unwrap_or_else(|| panic!("no zarr_url in {viewer}"))
            .to_owned()
    }

    /// A key below a URL the service handed out, read without any other credential.
    async fn under(&self, base: &str, key: &str) -> Reply {
        self.fetch(&format!("{base}{key}"), Who::Anonymous).await
    }

    /// A stored chunk below `base` that must exist, decoded.
    async fn voxels_at(&self, base: &str, key: &str) -> Vec<u8> {
        let reply = self.under(base, key).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{base}{key}: {}",
            reply.text()
        );
        decoded(&reply.body)
    }

    /// The files of an annotation's volume in the annotation storage.
    fn volume_files(&self, id: &str) -> Vec<PathBuf> {
        files_under(&self.annotations_dir.join(id).join("volume"))
    }
}

/// An app with the installation's admin, a team "tracers", its member "owner" and an imaged
/// dataset "em" the team may annotate.
struct World {
    app: TestApp,
    tracers: TeamId,
    owner: Person,
    ds: Dataset,
}

async fn world(visibility: Visibility) -> World {
    let app = spawn_app();
    app.org_admin().await;
    let tracers = app.team(ORG, "tracers").await;
    let owner = app.member("owner@lab.example", &[&tracers]).await;
    let ds = app.imaged_dataset("em", visibility, &[&tracers]).await;
    World {
        app,
        tracers,
        owner,
        ds,
    }
}

// ---------------------------------------------------------------------------------------------
// a. Creation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_volume_takes_the_image_geometry_and_its_zarr_metadata_is_readable_at_once() {
    let World { app, owner, ds, .. } = world(Visibility::Private).await;
    let me = Who::As(&owner);

    let created = app
        .create(me, &ds, "cells", json!({"kind": "volume"}))
        .await;
    let id = id_of(&created);
    assert_eq!(created["kind"], "volume");
    assert_eq!(created["version"], 0);
    assert_eq!(
        created["volume"],
        json!({
            "layer": "",
            "data_type": "uint32",
            "shape": IMAGE_SHAPE,
            "voxel_size": [2.0, 0.5, 0.25],
            "unit": "micrometer",
            "levels": 3
        }),
        "the finest level of the first image layer, z, y, x; uint32 by default; 96 → 48 → 24 \
         voxels along x make three levels"
    );
    assert_eq!(app.record(me, &id).await["volume"], created["volume"]);
    // Version 0: nothing painted.
    assert_eq!(
        app.content(me, &id, 0).await,
        json!({"buckets": {}, "largest_segment_id": 0})
    );
    // The layer and type can be chosen.
    let small = app
        .create(
            me,
            &ds,
            "few cells",
            json!({"kind": "volume", "volume": {"layer": "", "data_type": "uint8"}}),
        )
        .await;
    assert_eq!(small["volume"]["data_type"], "uint8", "{small}");
    assert_eq!(small["volume"]["shape"], json!(IMAGE_SHAPE), "{small}");

    // Refused: a layer the dataset does not have, volume settings on a skeleton.
    app.post(
        "/api/annotations",
        me,
        &json!({"dataset_id": ds.id, "name": "nowhere", "kind": "volume", "volume": {"layer": "raw/elsewhere"}}),
    )
    .await
    .problem_about(StatusCode::UNPROCESSABLE_ENTITY, "raw/elsewhere");
    app.post(
        "/api/annotations",
        me,
        &json!({"dataset_id": ds.id, "name": "mixed", "kind": "skeleton", "volume": {}}),
    )
    .await
    .problem_about(StatusCode::UNPROCESSABLE_ENTITY, "volume");
    let listed = app
        .listed(&format!("dataset={}", ds.id), me)
        .await
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(
        listed,
        [id.clone(), id_of(&small)].into_iter().collect(),
        "refused requests create nothing"
    );

    // The group and every level's array metadata are written at creation …
    let root = app.annotations_dir.join(&id).join("volume");
    assert_eq!(
        app.volume_files(&id),
        [
            root.join("0/zarr.json"),
            root.join("1/zarr.json"),
            root.join("2/zarr.json"),
            root.join("zarr.json")
        ]
    );
    // … and read through the chunk function with the owner's personal viewer URL.
    let zarr = app.zarr_url(me, &id, "").await;
    assert!(
        zarr.starts_with(&format!("{PUBLIC_BASE}/u/"))
            && zarr.ends_with(&format!("/__annotations/{id}/volume/")),
        "{zarr}"
    );
    let group_reply = app.under(&zarr, "zarr.json").await;
    let group = group_reply.ok(StatusCode::OK);
    assert_eq!(
        group_reply.header(header::CACHE_CONTROL),
        "private, no-cache",
        "the latest version moves on"
    );
    assert_eq!(group["zarr_format"], 3, "{group}");
    assert_eq!(group["node_type"], "group", "{group}");
    let ome = &group["attributes"]["ome"];
    assert_eq!(ome["version"], "0.5", "{group}");
    let multiscale = &ome["multiscales"][0];
    assert_eq!(multiscale["name"], "cells", "{group}");
    let axes: Vec<&Value> = multiscale["axes"]
        .as_array()
        .expect("axes")
        .iter()
        .map(|a| &a["name"])
        .collect();
    assert_eq!(axes, [&json!("z"), &json!("y"), &json!("x")], "{group}");
    assert_eq!(multiscale["axes"][0]["unit"], "micrometer", "{group}");
    assert_eq!(multiscale["datasets"][0]["path"], "0", "{group}");
    assert_eq!(
        multiscale["datasets"][0]["coordinateTransformations"][0],
        json!({"type": "scale", "scale": [2.0, 0.5, 0.25]}),
        "{group}"
    );

    let array = app.under(&zarr, "0/zarr.json").await.ok(StatusCode::OK);
    assert_eq!(array["node_type"], "array", "{array}");
    assert_eq!(array["shape"], json!(IMAGE_SHAPE), "{array}");
    assert_eq!(array["data_type"], "uint32", "{array}");
    assert_eq!(
        array["chunk_grid"]["configuration"]["chunk_shape"],
        json!([32, 32, 32]),
        "{array}"
    );
    assert_eq!(array["fill_value"], 0, "{array}");
    assert_eq!(array["dimension_names"], json!(["z", "y", "x"]), "{array}");
    let small_zarr = app.zarr_url(me, &id_of(&small), "").await;
    assert_eq!(
        app.under(&small_zarr, "0/zarr.json")
            .await
            .ok(StatusCode::OK)["data_type"],
        "uint8"
    );
    // Nothing painted: chunks are absent (readers use the fill value), as are other keys.
    for key in [
        "0/c/0/0/0",
        "0/c/9/9/9",
        "3/zarr.json",
        "0/.zarray",
        "0/c/0/0",
    ] {
        assert_eq!(
            app.under(&zarr, key).await.status,
            StatusCode::NOT_FOUND,
            "{key}"
        );
    }
}

#[tokio::test]
async fn a_volume_over_a_layer_without_z_y_x_is_unprocessable() {
    let World {
        app,
        tracers,
        owner,
        ds,
    } = world(Visibility::Private).await;
    let me = Who::As(&owner);
    // A dataset whose only image is 2-D with channels: c, y, x.
    let flat = app
        .dataset_with(
            "overview",
            Visibility::Private,
            &[&tracers],
            StorageUrl::parse("s3://lab-data/overview.zarr").expect("storage URL"),
            vec![Layer {
                name: "overview".into(),
                kind: LayerKind::Image,
                path: "overview".into(),
                axes: vec!["c".into(), "y".into(), "x".into()],
                units: vec![String::new(), "micrometer".into(), "micrometer".into()],
                levels: vec![Level {
                    path: "overview/0".into(),
                    shape: vec![3, 64, 96],
                    chunk_shape: vec![1, 32, 32],
                    shard_shape: None,
                    data_type: "uint8".into(),
                    codecs: vec!["bytes".into()],
                    scale: Some(vec![1.0, 0.5, 0.25]),
                    translation: None,
                }],
            }],
        )
        .await;
    for (dataset, volume) in [
        (&flat, json!({})),
        (&flat, json!({"layer": "overview"})),
        (&ds, json!({"layer": "labels/cells"})),
    ] {
        app.post(
            "/api/annotations",
            me,
            &json!({"dataset_id": dataset.id, "name": "cells", "kind": "volume", "volume": volume}),
        )
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    }
    assert!(app.listed("scope=mine", me).await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// b. Saves
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn volume_saves_make_versions_refuse_bad_buckets_and_erase_with_zeros() {
    let World { app, owner, ds, .. } = world(Visibility::Private).await;
    let me = Who::As(&owner);
    let id = app.volume(me, &ds, "cells", json!({})).await;
    let zarr = app.zarr_url(me, &id, "").await;
    let at = |v: u64| zarr.replace("/volume/", &format!("/versions/{v}/volume/"));

    // Version 1: two buckets. The reply counts buckets and the largest id, nothing of trees.
    let (a, b, c) = ([0, 0, 0], [32, 32, 32], [64, 0, 32]);
    let first = app
        .saved(
            me,
            &id,
            0,
            &[
                update_bucket(a, &gradient(1)),
                update_bucket(b, &uniform(5)),
            ],
        )
        .await;
    let top_of_a = 1 + 31 + 32 * 31 + 1024 * 31;
    assert_eq!(
        first,
        json!({"version": 1, "buckets": 2, "largest_segment_id": top_of_a, "derived_buckets": 0})
    );
    // Version 2: one more bucket, with the largest id so far.
    let second = app
        .saved(me, &id, 1, &[update_bucket(c, &uniform(70_000))])
        .await;
    assert_eq!(
        second,
        json!({"version": 2, "buckets": 3, "largest_segment_id": 70_000, "derived_buckets": 0})
    );
    // The version's content is the index of which save holds each bucket.
    let index = app.content(me, &id, 2).await;
    let buckets = index["buckets"].as_object().expect("bucket index");
    let mut keys = vec![key_at(a), key_at(b), key_at(c)];
    keys.sort();
    assert_eq!(
        buckets
            .keys()
            .filter(|k| k.starts_with("0/"))
            .cloned()
            .collect::<Vec<_>>(),
        keys,
        "{index}"
    );
    // Above them, the coarser levels' chunks that the saves recomputed.
    assert!(
        buckets.keys().any(|k| k.starts_with("1/")) && buckets.keys().any(|k| k.starts_with("2/")),
        "{index}"
    );
    assert_eq!(
        buckets[&key_at(a)],
        buckets[&key_at(b)],
        "one save wrote a and b"
    );
    assert_ne!(buckets[&key_at(a)], buckets[&key_at(c)], "{index}");
    assert_eq!(index["largest_segment_id"], 70_000);
    assert_eq!(
        app.content(me, &id, 1).await["buckets"]
            .as_object()
            .map(|o| o.keys().filter(|k| k.starts_with("0/")).count()),
        Some(2)
    );
    // Every chunk is one object: the four metadata documents; version 1's two buckets, the
    // level-1 chunk above both and the level-2 chunk above that; version 2's bucket, its new
    // level-1 chunk and the level-2 chunk recomputed.
    let files = app.volume_files(&id);
    assert_eq!(files.len(), 4 + 4 + 3, "{files:?}");

    // A stale base: 409 naming the latest version, and nothing written.
    app.save(me, &id, 1, &[update_bucket(a, &uniform(9))])
        .await
        .problem_about(StatusCode::CONFLICT, "latest is version 2");
    app.save(me, &id, 5, &[update_bucket(a, &uniform(9))])
        .await
        .problem_about(StatusCode::CONFLICT, "latest is version 2");
    assert_eq!(app.volume_files(&id), files);

    // Invalid batches: 422, and nothing of them is saved or stored (the good bucket in front
    // of each bad one included).
    let good = update_bucket([32, 0, 0], &uniform(99));
    let mut bad_mag = update_bucket([0, 0, 0], &uniform(3));
    bad_mag["value"]["mag"] = json!([2, 2, 1]);
    let mut bad_cube = update_bucket([0, 0, 0], &uniform(3));
    bad_cube["value"]["cubeSize"] = json!(64);
    let mut bad_base64 = update_bucket([0, 0, 0], &uniform(3));
    bad_base64["value"]["base64Data"] = json!("%%% not base64 %%%");
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "unaligned",
            update_bucket([16, 0, 0], &uniform(3)),
            "multiple of 32",
        ),
        ("mag", bad_mag, "mag"),
        ("cube size", bad_cube, "cubeSize"),
        (
            "short data",
            update_bucket([0, 0, 0], &uniform(1)[..VOXELS]),
            "bytes",
        ),
        (
            "long data",
            update_bucket([0, 0, 0], &[uniform(1), uniform(1)].concat()),
            "bytes",
        ),
        (
            "x beyond",
            update_bucket([96, 0, 0], &uniform(3)),
            "outside",
        ),
        (
            "z beyond",
            update_bucket([0, 0, 64], &uniform(3)),
            "outside",
        ),
        ("bad base64", bad_base64, "base64"),
        (
            "unknown action",
            json!({"name": "updateBuckets", "value": {"position": [0, 0, 0]}}),
            "action 1",
        ),
        ("a skeleton action", create_tree(1, "axon"), "action 1"),
        ("no value", json!({"name": "updateBucket"}), "action 1"),
    ];
    for (what, action, needle) in cases {
        let detail = app
            .save(me, &id, 2, &[good.clone(), action])
            .await
            .problem(StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            detail.contains(needle),
            "{what}: {detail:?} does not mention {needle:?}"
        );
        assert!(
            detail.contains("action 1"),
            "{what}: {detail:?} names the action"
        );
    }
    app.save(me, &id, 2, &[])
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    let record = app.record(me, &id).await;
    assert_eq!(record["version"], 2, "{record}");
    assert_eq!(app.volume_files(&id), files, "refused saves store nothing");
    assert_eq!(
        app.under(&zarr, &key_at([32, 0, 0])).await.status,
        StatusCode::NOT_FOUND
    );

    // Volume actions on a skeleton are refused the same way.
    let skeleton = id_of(&app.create(me, &ds, "axon", json!({})).await);
    app.saved(me, &skeleton, 0, &first_batch()).await;
    app.save(me, &skeleton, 1, &[update_bucket(a, &uniform(3))])
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.record(me, &skeleton).await["version"], 1);
    assert_eq!(
        app.content(me, &skeleton, 1).await,
        expected(&[&first_batch()])
    );
    assert!(app.volume_files(&skeleton).is_empty());

    // An all-zero bucket erases: gone from the index, unreadable at the latest version,
    // still there at the earlier one. The largest id painted stays.
    let third = app
        .saved(
            me,
            &id,
            2,
            &[update_bucket(c, &uniform(0)), update_bucket(b, &uniform(6))],
        )
        .await;
    assert_eq!(
        third,
        json!({"version": 3, "buckets": 2, "largest_segment_id": 70_000, "derived_buckets": 0})
    );
    let latest = app.content(me, &id, 3).await;
    assert!(latest["buckets"].get(key_at(c)).is_none(), "{latest}");
    assert_eq!(
        app.under(&zarr, &key_at(c)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        u32s(&app.voxels_at(&at(2), &key_at(c)).await),
        vec![70_000; VOXELS]
    );
    // Bucket b: 5 at versions 1 and 2, 6 from version 3; a: untouched since version 1.
    for (version, want) in [(1, 5), (2, 5), (3, 6)] {
        assert_eq!(
            u32s(&app.voxels_at(&at(version), &key_at(b)).await),
            vec![want; VOXELS],
            "b at version {version}"
        );
    }
    assert_eq!(app.voxels_at(&zarr, &key_at(b)).await, uniform(6));
    assert_eq!(app.voxels_at(&zarr, &key_at(a)).await, gradient(1));
    assert_eq!(app.voxels_at(&at(3), &key_at(a)).await, gradient(1));
    // The erasing save stored only its non-zero bucket, and the level-1 and level-2 chunks
    // recomputed above it (the level-1 chunk above c alone is now empty: not stored).
    assert_eq!(app.volume_files(&id).len(), files.len() + 3);
    // Written twice in one save, the last write counts (here: the erasing one).
    let fourth = app
        .saved(
            me,
            &id,
            3,
            &[update_bucket(a, &uniform(8)), update_bucket(a, &uniform(0))],
        )
        .await;
    assert_eq!(fourth["buckets"], 1, "{fourth}");
    assert_eq!(
        app.under(&zarr, &key_at(a)).await.status,
        StatusCode::NOT_FOUND
    );
    // No bucket stored, but the two coarser chunks above a recomputed.
    assert_eq!(app.volume_files(&id).len(), files.len() + 5);

    // Versions beyond the latest do not exist.
    assert_eq!(
        app.under(&at(5), "zarr.json").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.under(&at(4), "zarr.json").await.status, StatusCode::OK);
    app.get(&format!("/api/annotations/{id}/versions/5"), me)
        .await
        .problem(StatusCode::NOT_FOUND);
    // Volumes are not NML; their index downloads as JSON.
    app.get(&format!("/api/annotations/{id}/download"), me)
        .await
        .problem_about(StatusCode::UNPROCESSABLE_ENTITY, "NML");
    assert_eq!(
        app.get(
            &format!("/api/annotations/{id}/download?format=json&version=3"),
            me
        )
        .await
        .json(),
        latest
    );
}

/// webKnossos sends the buckets of the coarser mags it downsampled itself along with the full
/// resolution ones: they are checked, counted and left out, the coarser levels being the
/// service's own recomputation.
#[tokio::test]
async fn coarser_mags_a_client_sends_are_checked_and_recomputed_not_stored() {
    let World { app, owner, ds, .. } = world(Visibility::Private).await;
    let me = Who::As(&owner);
    let id = app.volume(me, &ds, "cells", json!({})).await;
    let coarse = |position: [u64; 3], mag: u64, value: u32| {
        let mut action = update_bucket(position, &uniform(value));
        action["value"]["mag"] = json!([mag, mag, mag]);
        action
    };
    let saved = app
        .saved(
            me,
            &id,
            0,
            &[
                update_bucket([0, 0, 0], &uniform(5)),
                coarse([0, 0, 0], 2, 99),
                coarse([0, 0, 0], 4, 99),
            ],
        )
        .await;
    assert_eq!(
        saved,
        json!({"version": 1, "buckets": 1, "largest_segment_id": 5, "derived_buckets": 2})
    );
    // The level-1 chunk is the mode of the full resolution below it: 5 over the painted
    // octant, 0 elsewhere; nothing of the client's 99.
    let zarr = app.zarr_url(me, &id, "").await;
    let level_1 = u32s(&app.voxels_at(&zarr, "1/c/0/0/0").await);
    assert_eq!(level_1.iter().filter(|v| **v == 5).count(), 16 * 16 * 16);
    assert!(level_1.iter().all(|v| *v == 5 || *v == 0), "no 99");
    // A save of coarse buckets alone is a version that changes nothing.
    let again = app.saved(me, &id, 1, &[coarse([64, 0, 0], 2, 7)]).await;
    assert_eq!(again["buckets"], 1);
    assert_eq!(again["derived_buckets"], 1);
    assert_eq!(again["largest_segment_id"], 5);
    // Coarse buckets are held to their level's grid: aligned to its extent, inside it, and of
    // one of the volume's levels (64 → 32 → 16 along z: mags 1, 2 and 4 only).
    for (action, needle) in [
        (coarse([32, 0, 0], 2, 1), "multiple"),
        (coarse([0, 0, 128], 2, 1), "outside"),
        (coarse([0, 0, 0], 8, 1), "mag"),
    ] {
        app.save(me, &id, 2, &[action])
            .await
            .problem_about(StatusCode::UNPROCESSABLE_ENTITY, needle);
    }
}

#[tokio::test]
async fn largest_segment_id_is_the_largest_ever_painted_in_any_type() {
    let World { app, owner, ds, .. } = world(Visibility::Private).await;
    let me = Who::As(&owner);
    // uint64 ids beyond 2^53 come back exactly.
    let big = app
        .volume(me, &ds, "big", json!({"volume": {"data_type": "uint64"}}))
        .await;
    let huge: u64 = (1 << 60) + 3;
    let data = le(&voxels(|x, _, _| if x == 7 { huge } else { 1 }), 8);
    let saved = app
        .saved(me, &big, 0, &[update_bucket([0, 32, 0], &data)])
        .await;
    assert_eq!(saved["largest_segment_id"].as_u64(), Some(huge), "{saved}");
    let zarr = app.zarr_url(me, &big, "").await;
    assert_eq!(app.voxels_at(&zarr, "0/c/0/1/0").await, data);
    // Smaller ids later leave it.
    let later = app
        .saved(
            me,
            &big,
            1,
            &[update_bucket([0, 32, 0], &le(&voxels(|_, _, _| 2), 8))],
        )
        .await;
    assert_eq!(later["largest_segment_id"].as_u64(), Some(huge), "{later}");

    // uint8: one byte per voxel.
    let few = app
        .volume(me, &ds, "few", json!({"volume": {"data_type": "uint8"}}))
        .await;
    app.save(me, &few, 0, &[update_bucket([0, 0, 0], &uniform(1))])
        .await
        .problem_about(StatusCode::UNPROCESSABLE_ENTITY, "32768 bytes");
    let bytes = le(&voxels(|x, y, _| (x + y) % 200), 1);
    let saved = app
        .saved(me, &few, 0, &[update_bucket([0, 0, 0], &bytes)])
        .await;
    assert_eq!(saved["largest_segment_id"], 62, "{saved}");
    let zarr = app.zarr_url(me, &few, "").await;
    assert_eq!(app.voxels_at(&zarr, "0/c/0/0/0").await, bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_volume_saves_keep_one_and_remove_the_losers_buckets() {
    const RACERS: u32 = 8;
    const ROUNDS: u64 = 4;
    let World { app, owner, ds, .. } = world(Visibility::Private).await;
    let app = Arc::new(app);
    let owner = Arc::new(owner);
    let id = app.volume(Who::As(&owner), &ds, "cells", json!({})).await;
    let zarr = app.zarr_url(Who::As(&owner), &id, "").await;
    // Every racer paints the same four buckets with its own id.
    let positions = [[0, 0, 0], [32, 0, 0], [0, 32, 32], [64, 32, 32]];
    let mut stored = app.volume_files(&id).len();
    assert_eq!(stored, 4, "the metadata: the group and three levels");
    // Losers that passed the early version check wrote their buckets (each save in a
    // directory of its own) before the store refused them.
    let mut late_losers = 0;

    for round in 0..ROUNDS {
        let before = app.volume_files(&id);
        let tasks: Vec<_> = (1..=RACERS)
            .map(|racer| {
                let (app, owner, id) = (app.clone(), owner.clone(), id.clone());
                let value = u32::try_from(round).expect("few rounds") * 100 + racer;
                tokio::spawn(async move {
                    let actions: Vec<Value> = positions
                        .iter()
                        .map(|p| update_bucket(*p, &uniform(value)))
                        .collect();
                    let reply = app.save(Who::As(&owner), &id, round, &actions).await;
                    (value, reply)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            let (value, reply) = task.await.expect("racer");
            match reply.status {
                StatusCode::CREATED => winners.push(value),
                StatusCode::CONFLICT => {
                    reply.problem_about(
                        StatusCode::CONFLICT,
                        &format!("latest is version {}", round + 1),
                    );
                }
                other => panic!("racer {value}: {other} {}", reply.text()),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "exactly one save per version: {winners:?}"
        );
        let winner = winners[0];
        // The winner's buckets are there, and only they: every loser's objects are gone. The
        // four buckets (z, y, x chunks 0,0,0 0,0,1 1,1,0 1,1,2) make two chunks at level 1
        // and one at level 2.
        stored += positions.len() + 2 + 1;
        let after = app.volume_files(&id);
        assert_eq!(
            after.len(),
            stored,
            "round {round}: new files {:?}",
            after
                .iter()
                .filter(|f| !before.contains(f))
                .collect::<Vec<_>>()
        );
        for p in positions {
            assert_eq!(
                app.voxels_at(&zarr, &key_at(p)).await,
                uniform(winner),
                "round {round}, bucket {p:?}"
            );
        }
        assert_eq!(app.record(Who::As(&owner), &id).await["version"], round + 1);
        let volume_dir = app.annotations_dir.join(&id).join("volume");
        let save_dirs = std::fs::read_dir(&volume_dir)
            .expect("the volume directory")
            .filter_map(|e| e.expect("directory entry").file_name().into_string().ok())
            .filter(|name| name.starts_with(&format!("s{}-", round + 1)))
            .count();
        late_losers += save_dirs - 1;
    }
    assert!(
        late_losers > 0,
        "no loser ever got past the early check: the removal of its buckets went untested"
    );
}

// ---------------------------------------------------------------------------------------------
// c. The voxels read back
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn painted_voxels_read_back_through_the_chunk_function_as_zstd_zarr_chunks() {
    let World { app, owner, ds, .. } = world(Visibility::Private).await;
    let me = Who::As(&owner);
    let id = app.volume(me, &ds, "cells", json!({})).await;
    // A ball of segment 4 in an otherwise empty bucket, and segment 9 on one plane z = 3.
    let painted = voxels(|x, y, z| {
        let d = |v: u64| v.abs_diff(16).pow(2);
        if d(x) + d(y) + d(z) <= 100 {
            4
        } else if z == 3 {
            9
        } else {
            0
        }
    });
    let position = [32, 0, 32];
    app.saved(me, &id, 0, &[update_bucket(position, &le(&painted, 4))])
        .await;

    let zarr = app.zarr_url(me, &id, "").await;
    // The array says how its chunks are encoded: little-endian bytes, then zstd.
    let array = app.under(&zarr, "0/zarr.json").await.ok(StatusCode::OK);
    let codecs: Vec<&str> = array["codecs"]
        .as_array()
        .expect("codecs")
        .iter()
        .map(|c| c["name"].as_str().expect("codec name"))
        .collect();
    assert_eq!(codecs, ["bytes", "zstd"], "{array}");
    assert_eq!(
        array["codecs"][0]["configuration"]["endian"], "little",
        "{array}"
    );
    assert_eq!(
        array["chunk_key_encoding"],
        json!({"name": "default", "configuration": {"separator": "/"}}),
        "{array}"
    );

    // Bucket x 32.., y 0.., z 32.. is chunk (z 1, y 0, x 1).
    assert_eq!(key_at(position), "0/c/1/0/1");
    let reply = app.under(&zarr, "0/c/1/0/1").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        reply.header(header::CONTENT_TYPE),
        "application/octet-stream"
    );
    assert!(
        reply.body.len() < VOXELS * 4 / 4,
        "stored compressed: {} bytes",
        reply.body.len()
    );
    let got = u32s(&decoded(&reply.body));
    let want: Vec<u32> = painted
        .iter()
        .map(|v| u32::try_from(*v).expect("small ids"))
        .collect();
    assert_eq!(got.len(), VOXELS);
    assert!(got == want, "the voxels differ from what was painted");
    let at = |x: usize, y: usize, z: usize| got[x + 32 * y + 1024 * z];
    assert_eq!(at(16, 16, 16), 4);
    assert_eq!(at(0, 31, 3), 9);
    assert_eq!(at(31, 0, 0), 0);
    assert_eq!(
        got.iter().filter(|v| **v == 4).count(),
        painted.iter().filter(|v| **v == 4).count()
    );

    // Byte ranges work as for any object.
    let request = axum::http::Request::builder()
        .uri(path_of(&format!("{zarr}0/c/1/0/1")))
        .header(header::RANGE, "bytes=0-3")
        .body(axum::body::Body::empty())
        .expect("request");
    let part = app.send(request).await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT, "{}", part.text());
    assert_eq!(&part.body[..], &reply.body[..4]);

    // The stored object is the same bytes, where the version's index says.
    let index = app.content(me, &id, 1).await;
    let save = index["buckets"]["0/c/1/0/1"]
        .as_str()
        .expect("the saving save");
    let object = app
        .annotations_dir
        .join(&id)
        .join("volume")
        .join(save)
        .join("0/c/1/0/1");
    assert_eq!(std::fs::read(&object).expect("stored chunk"), reply.body);
}

// ---------------------------------------------------------------------------------------------
// d. Who reads a volume
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn anonymous_readers_of_a_public_dataset_read_only_public_annotations() {
    let World { app, owner, ds, .. } = world(Visibility::Public).await;
    let me = Who::As(&owner);
    let mut ids = Vec::new();
    for visibility in ["private", "internal", "public"] {
        let id = app
            .volume(me, &ds, visibility, json!({"visibility": visibility}))
            .await;
        app.saved(me, &id, 0, &[update_bucket([0, 0, 0], &uniform(3))])
            .await;
        ids.push(id);
    }
    let [private, internal, public] = [&ids[0], &ids[1], &ids[2]];
    let data = |id: &str, key: &str| format!("/data/{}/__annotations/{id}/{key}", ds.id);

    for id in [private, internal] {
        for key in [
            "volume/zarr.json",
            "volume/0/c/0/0/0",
            "versions/1/volume/zarr.json",
        ] {
            app.get(&data(id, key), Who::Anonymous)
                .await
                .problem(StatusCode::UNAUTHORIZED);
        }
    }
    let group = app
        .get(&data(public, "volume/zarr.json"), Who::Anonymous)
        .await;
    assert_eq!(
        group.ok(StatusCode::OK)["attributes"]["ome"]["version"],
        "0.5"
    );
    let chunk = app
        .get(&data(public, "volume/0/c/0/0/0"), Who::Anonymous)
        .await;
    assert_eq!(chunk.status, StatusCode::OK, "{}", chunk.text());
    assert_eq!(decoded(&chunk.body), uniform(3));
    let old = app
        .get(&data(public, "versions/1/volume/0/c/0/0/0"), Who::Anonymous)
        .await;
    assert_eq!(old.status, StatusCode::OK, "{}", old.text());
    assert_eq!(old.body, chunk.body);
    // Versions beyond the latest, or before anything was painted.
    for key in [
        "versions/2/volume/zarr.json",
        "versions/0/volume/0/c/0/0/0",
        "versions/x/volume/zarr.json",
        "skeleton.json",
        "volume",
    ] {
        assert_eq!(
            app.get(&data(public, key), Who::Anonymous).await.status,
            StatusCode::NOT_FOUND,
            "{key}"
        );
    }
    // The dataset's own image is public too (its files exist).
    let image = app
        .get(&format!("/data/{}/0/c/1/1/2", ds.id), Who::Anonymous)
        .await;
    assert_eq!(image.status, StatusCode::OK, "{}", image.text());
    assert_eq!(image.body, image_chunk([1, 1, 2]));

    // A deleted public annotation is unreadable.
    app.delete(&format!("/api/annotations/{public}"), me)
        .await
        .ok(StatusCode::OK);
    assert_ne!(
        app.get(&data(public, "volume/zarr.json"), Who::Anonymous)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn share_links_read_the_annotations_their_scope_allows() {
    let World { app, owner, ds, .. } = world(Visibility::Private).await;
    let me = Who::As(&owner);
    let mut ids = Vec::new();
    for visibility in ["private", "internal", "public"] {
        let id = app
            .volume(me, &ds, visibility, json!({"visibility": visibility}))
            .await;
        app.saved(me, &id, 0, &[update_bucket([0, 0, 0], &uniform(11))])
            .await;
        ids.push(id);
    }
    let [private, internal, public] = [&ids[0], &ids[1], &ids[2]];
    let at = |link: &Value, key: &str| format!("{}{key}", link["url"].as_str().expect("link url"));
    let volume =
        |link: &Value, id: &str, key: &str| at(link, &format!("__annotations/{id}/volume/{key}"));

    // A link to the whole dataset: public annotations only.
    let whole = app.link(Who::Admin, &ds, &json!({})).await;
    assert_eq!(whole["scope"], json!({"kind": "dataset"}));
    let chunk = app
        .fetch(&volume(&whole, public, "0/c/0/0/0"), Who::Anonymous)
        .await;
    assert_eq!(chunk.status, StatusCode::OK, "{}", chunk.text());
    assert_eq!(decoded(&chunk.body), uniform(11));
    app.fetch(&volume(&whole, public, "zarr.json"), Who::Anonymous)
        .await
        .ok(StatusCode::OK);
    for id in [private, internal] {
        app.fetch(&volume(&whole, id, "zarr.json"), Who::Anonymous)
            .await
            .problem(StatusCode::NOT_FOUND);
    }

    // A link to one (internal) annotation: it, and the dataset's image, and nothing else.
    let one = app
        .link(
            Who::Admin,
            &ds,
            &json!({"scope": {"kind": "annotation", "annotation": internal}}),
        )
        .await;
    assert_eq!(
        one["scope"],
        json!({"kind": "annotation", "annotation": internal})
    );
    assert_eq!(
        one["url"],
        format!("{PUBLIC_BASE}/s/{}/", one["token"].as_str().expect("token"))
    );
    let mine = app
        .fetch(&volume(&one, internal, "0/c/0/0/0"), Who::Anonymous)
        .await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.text());
    assert_eq!(decoded(&mine.body), uniform(11));
    app.fetch(&volume(&one, internal, "0/zarr.json"), Who::Anonymous)
        .await
        .ok(StatusCode::OK);
    let old = app
        .fetch(
            &at(
                &one,
                &format!("__annotations/{internal}/versions/1/volume/0/c/0/0/0"),
            ),
            Who::Anonymous,
        )
        .await;
    assert_eq!(old.status, StatusCode::OK, "{}", old.text());
    app.fetch(
        &at(
            &one,
            &format!("__annotations/{internal}/versions/2/volume/zarr.json"),
        ),
        Who::Anonymous,
    )
    .await
    .problem(StatusCode::NOT_FOUND);
    for c in IMAGE_CHUNKS {
        let key = format!("0/c/{}/{}/{}", c[0], c[1], c[2]);
        let image = app.fetch(&at(&one, &key), Who::Anonymous).await;
        assert_eq!(image.status, StatusCode::OK, "{key}: {}", image.text());
        assert_eq!(image.body, image_chunk(c), "{key}");
    }
    app.fetch(&at(&one, "zarr.json"), Who::Anonymous)
        .await
        .ok(StatusCode::OK);
    for id in [private, public] {
        app.fetch(&volume(&one, id, "zarr.json"), Who::Anonymous)
            .await
            .problem(StatusCode::NOT_FOUND);
    }

    // A link to a sub-path: no annotations at all, even public ones.
    let labels = app
        .link(
            Who::Admin,
            &ds,
            &json!({"scope": {"kind": "path", "prefix": "labels/cells"}}),
        )
        .await;
    let label_chunk = app.fetch(&at(&labels, "0/c/0/0/0"), Who::Anonymous).await;
    assert_eq!(
        label_chunk.status,
        StatusCode::OK,
        "the link works: {}",
        label_chunk.text()
    );
    let base = format!(
        "{PUBLIC_BASE}/s/{}/",
        labels["token"].as_str().expect("token")
    );
    for id in [private, internal, public] {
        let r = app
            .fetch(
                &format!("{base}__annotations/{id}/volume/zarr.json"),
                Who::Anonymous,
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{id}: {}", r.text());
    }

    // Deleted annotations are unreadable through links, until restored; a link made for one
    // annotation ends with it altogether (its dataset's pixels too).
    for id in [internal, public] {
        app.delete(&format!("/api/annotations/{id}"), me)
            .await
            .ok(StatusCode::OK);
    }
    app.fetch(&volume(&one, internal, "0/c/0/0/0"), Who::Anonymous)
        .await
        .problem_about(StatusCode::GONE, "deleted");
    app.fetch(
        &format!("{}0/zarr.json", one["url"].as_str().expect("url")),
        Who::Anonymous,
    )
    .await
    .problem_about(StatusCode::GONE, "deleted");
    app.fetch(&volume(&whole, public, "zarr.json"), Who::Anonymous)
        .await
        .problem(StatusCode::NOT_FOUND);
    app.post_empty(&format!("/api/annotations/{internal}/restore"), me)
        .await
        .ok(StatusCode::OK);
    let back = app
        .fetch(&volume(&one, internal, "0/c/0/0/0"), Who::Anonymous)
        .await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.text());
    assert_eq!(decoded(&back.body), uniform(11));
}

// ---------------------------------------------------------------------------------------------
// e. Links scoped to one annotation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn links_scoped_to_an_annotation_are_checked_and_open_a_view_of_it() {
    let World {
        app,
        tracers,
        owner,
        ds,
    } = world(Visibility::Private).await;
    let me = Who::As(&owner);
    let other = app
        .imaged_dataset("other", Visibility::Private, &[&tracers])
        .await;
    let manager = app
        .person(ORG, "manager@lab.example", OrgRole::DatasetManager, &[])
        .await;

    let skeleton = id_of(&app.create(me, &ds, "axon", json!({})).await);
    app.saved(me, &skeleton, 0, &first_batch()).await;
    app.saved(me, &skeleton, 1, &second_batch()).await;
    let hidden = id_of(
        &app.create(me, &ds, "draft", json!({"visibility": "private"}))
            .await,
    );
    let elsewhere = id_of(
        &app.create(me, &other, "far", json!({"visibility": "public"}))
            .await,
    );
    app.saved(me, &elsewhere, 0, &first_batch()).await;
    let gone = id_of(&app.create(me, &ds, "gone", json!({})).await);
    app.delete(&format!("/api/annotations/{gone}"), me)
        .await
        .ok(StatusCode::OK);
    let scoped = |id: &str| json!({"scope": {"kind": "annotation", "annotation": id}});

    // Refused: another dataset's annotation, a deleted one, one that does not exist, and one
    // the maker cannot read (a private annotation of someone else, for a dataset manager).
    for id in [
        &elsewhere,
        &gone,
        &shared::domain::AnnotationId::generate().to_string(),
    ] {
        app.make_link(Who::Admin, &ds, &scoped(id))
            .await
            .problem_about(StatusCode::UNPROCESSABLE_ENTITY, "no annotation");
    }
    app.make_link(Who::As(&manager), &ds, &scoped(&hidden))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    // … while the same maker may link an annotation they read, and the admin key any.
    app.link(Who::As(&manager), &ds, &scoped(&skeleton)).await;
    app.link(Who::Admin, &ds, &scoped(&hidden)).await;
    // Nor is another dataset's annotation read through this dataset's links, even a public
    // one that a link to its own dataset reads.
    let here = app.link(Who::Admin, &ds, &json!({})).await;
    let there = app.link(Who::Admin, &other, &json!({})).await;
    let far = |link: &Value| {
        format!(
            "{}__annotations/{elsewhere}/skeleton.json",
            link["url"].as_str().expect("url")
        )
    };
    app.fetch(&far(&here), Who::Anonymous)
        .await
        .problem(StatusCode::NOT_FOUND);
    assert_eq!(
        app.fetch(&far(&there), Who::Anonymous)
            .await
            .ok(StatusCode::OK),
        expected(&[&first_batch()])
    );
    // Batches are for whole datasets.
    app.post(
        "/api/links",
        Who::Admin,
        &json!({"dataset_ids": [ds.id], "scope": {"kind": "annotation", "annotation": skeleton}}),
    )
    .await
    .problem_about(StatusCode::UNPROCESSABLE_ENTITY, "annotation");
    let listed = app
        .get(&format!("/api/datasets/{}/links", ds.id), Who::Admin)
        .await
        .ok(StatusCode::OK);
    assert_eq!(listed.as_array().map(Vec::len), Some(3), "{listed}");

    // A skeleton link with a stored view: the state shows the skeleton's nodes and edges over
    // the image, where the view says, rotated by 90° about z.
    let link = app
        .link(
            Who::Admin,
            &ds,
            &json!({
                "scope": {"kind": "annotation", "annotation": skeleton},
                "view": {"position": [10, 20, 30], "rotation": [0, 0, 90], "zoom": 2, "layout": "xy"}
            }),
        )
        .await;
    let token = link["token"].as_str().expect("token");
    let state_url = link["state_url"].as_str().expect("state_url");
    assert_eq!(state_url, format!("{PUBLIC_BASE}/ng/s/{token}.json"));
    let state = app
        .fetch(state_url, Who::Anonymous)
        .await
        .ok(StatusCode::OK);
    assert_eq!(
        state["position"],
        json!([30.0, 20.0, 10.0]),
        "x, y, z: {state}"
    );
    assert_eq!(state["layout"], "xy");
    assert_eq!(state["crossSectionScale"], json!(0.5));
    assert_close(
        &quaternion(&state["crossSectionOrientation"]),
        &[
            0.0,
            0.0,
            std::f64::consts::FRAC_1_SQRT_2,
            std::f64::consts::FRAC_1_SQRT_2,
        ],
    );
    let images = layers_of(&state, "image");
    assert_eq!(images.len(), 1, "{state}");
    assert_eq!(
        images[0]["source"],
        format!("zarr3://{PUBLIC_BASE}/s/{token}/")
    );
    let overlays = layers_of(&state, "annotation");
    assert_eq!(overlays.len(), 1, "{state}");
    assert_eq!(overlays[0]["name"], "axon");
    let points = annotations_of(overlays[0], "point");
    let lines = annotations_of(overlays[0], "line");
    assert_eq!(points.len(), 5, "one point per node: {}", overlays[0]);
    assert_eq!(lines.len(), 3, "one line per edge: {}", overlays[0]);
    let node = |id: u32| {
        points
            .iter()
            .find(|p| p["id"] == format!("node-{id}"))
            .unwrap_or_else(|| panic!("no node {id} in {points:?}"))
    };
    assert_eq!(
        node(1)["point"],
        json!([10.0, 20.0, 30.0]),
        "x, y, z voxels"
    );
    assert_eq!(node(2)["description"], "synapse here");
    assert_eq!(node(5)["point"], json!([41.0, 50.0, 60.0]));
    let ends: Vec<(&Value, &Value)> = lines.iter().map(|l| (&l["pointA"], &l["pointB"])).collect();
    assert!(
        ends.contains(&(&json!([40.0, 50.0, 60.0]), &json!([41.0, 50.0, 60.0]))),
        "{ends:?}"
    );
    // The query overrides the stored view; no other annotation can be shown through it.
    let moved = app
        .get(
            &format!("/ng/s/{token}.json?position=1,2,3&rotation=90,0,0"),
            Who::Anonymous,
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(moved["position"], json!([3.0, 2.0, 1.0]));
    assert_close(
        &quaternion(&moved["crossSectionOrientation"]),
        &[
            std::f64::consts::FRAC_1_SQRT_2,
            0.0,
            0.0,
            std::f64::consts::FRAC_1_SQRT_2,
        ],
    );
    assert_eq!(layers_of(&moved, "annotation").len(), 1);
    app.get(
        &format!("/ng/s/{token}.json?annotation={hidden}"),
        Who::Anonymous,
    )
    .await
    .problem(StatusCode::NOT_FOUND);
    // An older version of the skeleton: only the first tree.
    let old = app
        .get(&format!("/ng/s/{token}.json?version=1"), Who::Anonymous)
        .await
        .ok(StatusCode::OK);
    let old_layer = layers_of(&old, "annotation")[0];
    assert_eq!(annotations_of(old_layer, "point").len(), 3);
    assert_eq!(annotations_of(old_layer, "line").len(), 2);
    // The skeleton itself reads through the link too.
    let nml = app
        .fetch(
            &format!(
                "{}__annotations/{skeleton}/skeleton.json",
                link["url"].as_str().expect("url")
            ),
            Who::Anonymous,
        )
        .await
        .ok(StatusCode::OK);
    assert_eq!(nml, expected(&[&first_batch(), &second_batch()]));

    // A volume link: a segmentation layer read through the link.
    let volume = app.volume(me, &ds, "segments", json!({})).await;
    app.saved(me, &volume, 0, &[update_bucket([0, 0, 0], &uniform(2))])
        .await;
    let link = app.link(Who::Admin, &ds, &scoped(&volume)).await;
    let token = link["token"].as_str().expect("token");
    let state = app
        .fetch(
            link["state_url"].as_str().expect("state_url"),
            Who::Anonymous,
        )
        .await
        .ok(StatusCode::OK);
    let segmentations = layers_of(&state, "segmentation");
    assert_eq!(
        segmentations.len(),
        2,
        "the label image and the overlay: {state}"
    );
    let overlay = segmentations
        .iter()
        .find(|l| l["name"] == "segments")
        .unwrap_or_else(|| panic!("no overlay in {state}"));
    let source = overlay["source"].as_str().expect("source");
    assert!(
        source.ends_with(&format!("__annotations/{volume}/volume/")),
        "{source}"
    );
    assert_eq!(
        source,
        format!("zarr3://{PUBLIC_BASE}/s/{token}/__annotations/{volume}/volume/")
    );
    assert!(
        state.get("crossSectionOrientation").is_none(),
        "no rotation stored: {state}"
    );
    // What the viewer would read there exists.
    let zarr = source.strip_prefix("zarr3://").expect("a zarr3 source");
    app.fetch(&format!("{zarr}zarr.json"), Who::Anonymous)
        .await
        .ok(StatusCode::OK);
    assert_eq!(app.voxels_at(zarr, "0/c/0/0/0").await, uniform(2));
}

// ---------------------------------------------------------------------------------------------
// f. The viewer endpoint
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_viewer_endpoint_gives_a_personal_view_of_any_version() {
    let World {
        app,
        tracers,
        owner,
        ds,
    } = world(Visibility::Private).await;
    let me = Who::As(&owner);
    let id = app.volume(me, &ds, "segments", json!({})).await;
    app.saved(me, &id, 0, &[update_bucket([0, 0, 0], &uniform(1))])
        .await;
    app.saved(me, &id, 1, &[update_bucket([32, 0, 0], &uniform(2))])
        .await;

    let view = app
        .viewer(
            me,
            &id,
            "position=10,20,30&rotation=0,0,90&zoom=2&layout=xy&version=1",
        )
        .await;
    let state_url = view["state_url"].as_str().expect("state_url");
    assert!(
        state_url.starts_with(&format!("{PUBLIC_BASE}/ng/u/")),
        "{state_url}"
    );
    let neuroglancer = view["neuroglancer_url"].as_str().expect("neuroglancer_url");
    assert!(
        neuroglancer.starts_with("https://neuroglancer-demo.appspot.com/#!https://zarr.test/ng/u/"),
        "{neuroglancer}"
    );
    let expires = time::OffsetDateTime::parse(
        view["expires_at"].as_str().expect("expires_at"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339");
    assert!(expires > time::OffsetDateTime::now_utc(), "{view}");
    let zarr = view["zarr_url"].as_str().expect("zarr_url");
    assert!(zarr.starts_with(&format!("{PUBLIC_BASE}/u/")), "{zarr}");
    assert!(
        zarr.ends_with(&format!("/__annotations/{id}/versions/1/volume/")),
        "an older version: {zarr}"
    );
    // That URL reads version 1: the bucket of version 2 is not there yet.
    assert_eq!(app.voxels_at(zarr, "0/c/0/0/0").await, uniform(1));
    assert_eq!(
        app.under(zarr, "0/c/0/0/1").await.status,
        StatusCode::NOT_FOUND
    );

    // The state: the position, the overlay at version 1, rotated 90° about z.
    let state = app
        .fetch(state_url, Who::Anonymous)
        .await
        .ok(StatusCode::OK);
    assert_eq!(state["position"], json!([30.0, 20.0, 10.0]), "{state}");
    assert_eq!(state["layout"], "xy");
    assert_eq!(state["crossSectionScale"], json!(0.5));
    assert_close(
        &quaternion(&state["crossSectionOrientation"]),
        &[
            0.0,
            0.0,
            std::f64::consts::FRAC_1_SQRT_2,
            std::f64::consts::FRAC_1_SQRT_2,
        ],
    );
    assert_eq!(
        state["projectionOrientation"],
        state["crossSectionOrientation"]
    );
    assert_eq!(
        layers_of(&state, "segmentation").len(),
        2,
        "the label image and the overlay: {state}"
    );
    let overlay = layers_of(&state, "segmentation")
        .into_iter()
        .find(|l| l["name"] == "segments")
        .unwrap_or_else(|| panic!("no overlay in {state}"));
    assert_eq!(overlay["source"], format!("zarr3://{zarr}"));
    let image = layers_of(&state, "image")[0]["source"]
        .as_str()
        .expect("image source")
        .strip_prefix("zarr3://")
        .expect("zarr3");
    let pixels = app.under(image, "0/c/1/1/2").await;
    assert_eq!(pixels.status, StatusCode::OK, "{}", pixels.text());
    assert_eq!(pixels.body, image_chunk([1, 1, 2]));

    // The latest version: the volume's own root.
    for query in ["", "version=2"] {
        let latest = app.zarr_url(me, &id, query).await;
        assert!(
            latest.ends_with(&format!("/__annotations/{id}/volume/")),
            "{query}: {latest}"
        );
        assert_eq!(app.voxels_at(&latest, "0/c/0/0/1").await, uniform(2));
    }
    // A skeleton: no Zarr, its points and lines in the state.
    let skeleton = id_of(&app.create(me, &ds, "axon", json!({})).await);
    app.saved(me, &skeleton, 0, &first_batch()).await;
    let view = app.viewer(me, &skeleton, "layout=4panel").await;
    assert!(view.get("zarr_url").is_none(), "{view}");
    let state = app
        .fetch(
            view["state_url"].as_str().expect("state_url"),
            Who::Anonymous,
        )
        .await
        .ok(StatusCode::OK);
    let layer = layers_of(&state, "annotation")[0];
    assert_eq!(annotations_of(layer, "point").len(), 3);
    assert_eq!(annotations_of(layer, "line").len(), 2);
    assert!(state.get("crossSectionOrientation").is_none(), "{state}");

    // Refusals.
    let uri = format!("/api/annotations/{id}/viewer");
    for query in ["rotation=a,b,c", "rotation=0,90", "position=x,1,2"] {
        app.get(&format!("{uri}?{query}"), me)
            .await
            .problem(StatusCode::BAD_REQUEST);
    }
    for query in [
        "rotation=0,0,400",
        "rotation=-361,0,0",
        "position=1,2",
        "zoom=0",
    ] {
        app.get(&format!("{uri}?{query}"), me)
            .await
            .problem(StatusCode::UNPROCESSABLE_ENTITY);
    }
    app.get(&format!("{uri}?version=3"), me)
        .await
        .problem(StatusCode::NOT_FOUND);
    app.get(&uri, Who::Admin)
        .await
        .problem_about(StatusCode::UNPROCESSABLE_ENTITY, "personal");
    app.get(&uri, Who::Anonymous)
        .await
        .problem(StatusCode::NOT_FOUND);
    // Someone outside the team does not see it; a team mate does (it is internal).
    let stranger = app.member("stranger@lab.example", &[]).await;
    assert_ne!(
        app.get(&uri, Who::As(&stranger)).await.status,
        StatusCode::OK
    );
    let mate = app.member("mate@lab.example", &[&tracers]).await;
    let theirs = app.zarr_url(Who::As(&mate), &id, "").await;
    assert_eq!(app.voxels_at(&theirs, "0/c/0/0/0").await, uniform(1));
    // A private annotation: not for the team mate, even through their viewer URL.
    let draft = app
        .volume(me, &ds, "draft", json!({"visibility": "private"}))
        .await;
    assert_ne!(
        app.get(&format!("/api/annotations/{draft}/viewer"), Who::As(&mate))
            .await
            .status,
        StatusCode::OK
    );
    let through_theirs = theirs.replace(&id, &draft);
    assert_ne!(
        app.under(&through_theirs, "zarr.json").await.status,
        StatusCode::OK
    );
}

// ---------------------------------------------------------------------------------------------
// g. Copies
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_copy_of_a_volume_reads_the_same_voxels_and_never_changes_with_its_origin() {
    let World {
        app,
        tracers,
        owner,
        ds,
    } = world(Visibility::Private).await;
    let me = Who::As(&owner);
    let peer = app.member("peer@lab.example", &[&tracers]).await;
    let original = app.volume(me, &ds, "cells", json!({})).await;
    let (a, b) = ([0, 0, 0], [64, 32, 0]);
    app.saved(
        me,
        &original,
        0,
        &[
            update_bucket(a, &gradient(100)),
            update_bucket(b, &uniform(12)),
        ],
    )
    .await;

    let copy = app
        .post_empty(&format!("/api/annotations/{original}/copy"), Who::As(&peer))
        .await
        .ok(StatusCode::CREATED);
    let copy_id = id_of(&copy);
    assert_eq!(copy["owner"], peer.id());
    assert_eq!(copy["kind"], "volume");
    assert_eq!(copy["version"], 1);
    assert_eq!(
        copy["forked_from"],
        json!({"annotation": original, "version": 1})
    );
    let spec = app.record(me, &original).await["volume"].clone();
    assert_eq!(copy["volume"], spec);
    assert_eq!(
        app.content(Who::As(&peer), &copy_id, 1).await["largest_segment_id"],
        100 + 31 + 32 * 31 + 1024 * 31
    );

    // The copy reads the same voxels at its version 1, through its own keys.
    let mine = app.zarr_url(me, &original, "").await;
    let theirs = app.zarr_url(Who::As(&peer), &copy_id, "").await;
    assert!(
        theirs.contains(&format!("/__annotations/{copy_id}/volume/")),
        "{theirs}"
    );
    let theirs_v1 = theirs.replace("/volume/", "/versions/1/volume/");
    for (p, want) in [(a, gradient(100)), (b, uniform(12))] {
        let key = key_at(p);
        assert_eq!(app.voxels_at(&theirs, &key).await, want, "{key}");
        assert_eq!(app.voxels_at(&theirs_v1, &key).await, want, "{key}");
        assert_eq!(
            app.under(&theirs, &key).await.body,
            app.under(&mine, &key).await.body,
            "the very same object"
        );
    }
    let group = app.under(&theirs, "zarr.json").await.ok(StatusCode::OK);
    assert_eq!(
        group["attributes"]["ome"]["multiscales"][0]["name"],
        "cells (copy)"
    );
    // The copy stores no voxels of its own: it shares its origin's buckets.
    assert_eq!(app.volume_files(&copy_id).len(), 4, "metadata only");

    // Later saves on the original leave the copy alone.
    app.saved(
        me,
        &original,
        1,
        &[
            update_bucket(a, &uniform(21)),
            update_bucket(b, &uniform(0)),
        ],
    )
    .await;
    assert_eq!(app.voxels_at(&mine, &key_at(a)).await, uniform(21));
    assert_eq!(
        app.under(&mine, &key_at(b)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.voxels_at(&theirs, &key_at(a)).await, gradient(100));
    assert_eq!(app.voxels_at(&theirs, &key_at(b)).await, uniform(12));
    assert_eq!(app.record(Who::As(&peer), &copy_id).await["version"], 1);

    // The copier's saves leave the original alone.
    let c = [32, 32, 32];
    app.saved(
        Who::As(&peer),
        &copy_id,
        1,
        &[update_bucket(c, &uniform(33))],
    )
    .await;
    assert_eq!(app.voxels_at(&theirs, &key_at(c)).await, uniform(33));
    assert_eq!(app.voxels_at(&theirs, &key_at(a)).await, gradient(100));
    assert_eq!(
        app.under(&mine, &key_at(c)).await.status,
        StatusCode::NOT_FOUND
    );
    // The metadata, and the copy's own bucket with the two coarser chunks above it.
    assert_eq!(app.volume_files(&copy_id).len(), 4 + 3);

    // A copy of the copy still reads the first owner's buckets and the copy's own.
    let again = id_of(
        &app.post_empty(&format!("/api/annotations/{copy_id}/copy"), me)
            .await
            .ok(StatusCode::CREATED),
    );
    let again_zarr = app.zarr_url(me, &again, "").await;
    assert_eq!(app.voxels_at(&again_zarr, &key_at(a)).await, gradient(100));
    assert_eq!(app.voxels_at(&again_zarr, &key_at(b)).await, uniform(12));
    assert_eq!(app.voxels_at(&again_zarr, &key_at(c)).await, uniform(33));

    // Deleting the original (softly) does not take the copies' voxels away.
    app.delete(&format!("/api/annotations/{original}"), me)
        .await
        .ok(StatusCode::OK);
    assert_eq!(app.voxels_at(&theirs, &key_at(a)).await, gradient(100));
    assert_eq!(app.voxels_at(&again_zarr, &key_at(b)).await, uniform(12));
}

// ---------------------------------------------------------------------------------------------
// f. Share-link holders on the annotations API
// ---------------------------------------------------------------------------------------------

/// The segment a link's holder presents (`{token}`, or `{token}.{unlock}`), from its URL.
fn segment_of(url: &str) -> String {
    let after = url.split("/s/").nth(1).expect("a /s/ URL");
    after.trim_end_matches('/').to_owned()
}

#[tokio::test]
async fn an_annotate_link_lets_its_holder_save_to_its_annotation_and_to_nothing_else() {
    let World { app, owner, ds, .. } = world(Visibility::Private).await;
    let me = Who::As(&owner);
    let skeleton = id_of(
        &app.create(me, &ds, "axon", json!({"visibility": "private"}))
            .await,
    );
    app.saved(me, &skeleton, 0, &first_batch()).await;
    let public = id_of(
        &app.create(me, &ds, "open", json!({"visibility": "public"}))
            .await,
    );
    let volume = id_of(
        &app.create(
            me,
            &ds,
            "cells",
            json!({"kind": "volume", "visibility": "private"}),
        )
        .await,
    );
    let link = |annotation: &str, permission: &str| json!({"scope": {"kind": "annotation", "annotation": annotation}, "permission": permission});
    let annotate = app
        .link(Who::Admin, &ds, &link(&skeleton, "annotate"))
        .await;
    let token = annotate["token"].as_str().expect("token").to_owned();
    let holder = Who::Link(&token);

    // The holder reads the annotation and may edit it, not manage or copy it …
    let record = app.record(holder, &skeleton).await;
    assert_eq!(
        record["access"],
        json!({"read": true, "edit": true, "manage": false, "copy": false}),
        "{record}"
    );
    // … saves onto it, under the same rules as anyone (a stale save is 409) …
    let saved = app.saved(holder, &skeleton, 1, &second_batch()).await;
    assert_eq!(saved["version"], 2);
    app.save(holder, &skeleton, 1, &[set_comment(1, 1, "late")])
        .await
        .problem_about(StatusCode::CONFLICT, "version 2");
    // … and the owner reads the save, its author being the link by id (never its token).
    assert_eq!(
        app.content(me, &skeleton, 2).await,
        expected(&[&first_batch(), &second_batch()])
    );
    let versions = app
        .get(&format!("/api/annotations/{skeleton}/versions"), me)
        .await
        .ok(StatusCode::OK);
    let link_id = annotate["id"].as_str().expect("link id");
    let authors: Vec<&str> = versions["items"]
        .as_array()
        .or_else(|| versions.as_array())
        .expect("versions")
        .iter()
        .map(|v| v["author"].as_str().expect("author"))
        .collect();
    assert!(
        authors.contains(&format!("link:{link_id}").as_str()),
        "{versions}"
    );
    assert!(!versions.to_string().contains(&token), "{versions}");
    // The holder downloads every version, like any reader.
    let nml = app
        .get(
            &format!("/api/annotations/{skeleton}/download?version=2"),
            holder,
        )
        .await;
    assert_eq!(nml.status, StatusCode::OK, "{}", nml.text());
    assert!(nml.text().contains("<thing "), "{}", nml.text());

    // The link reaches no other annotation of the dataset, not even a public one.
    app.get(&format!("/api/annotations/{public}"), holder)
        .await
        .problem(StatusCode::NOT_FOUND);
    app.save(holder, &public, 0, &first_batch())
        .await
        .problem(StatusCode::NOT_FOUND);
    // A view link reads its annotation but does not save; nor does a whole-dataset link with
    // annotate permission save to a public annotation it reads.
    let view = app.link(Who::Admin, &ds, &link(&skeleton, "view")).await;
    let viewer = view["token"].as_str().expect("token").to_owned();
    assert_eq!(
        app.record(Who::Link(&viewer), &skeleton).await["access"]["edit"],
        false
    );
    app.save(Who::Link(&viewer), &skeleton, 2, &[set_comment(1, 1, "no")])
        .await
        .problem(StatusCode::FORBIDDEN);
    let whole = app
        .link(Who::Admin, &ds, &json!({"permission": "annotate"}))
        .await;
    let whole = whole["token"].as_str().expect("token").to_owned();
    assert_eq!(
        app.record(Who::Link(&whole), &public).await["access"]["read"],
        true
    );
    app.save(Who::Link(&whole), &public, 0, &first_batch())
        .await
        .problem(StatusCode::FORBIDDEN);
    // Links are for the annotation itself: managing it still takes an account.
    app.patch(
        &format!("/api/annotations/{skeleton}"),
        holder,
        &json!({"name": "renamed", "revision": 2}),
    )
    .await
    .problem(StatusCode::UNAUTHORIZED);
    // Unknown and malformed tokens do not authenticate.
    let unknown = shared::domain::LinkToken::generate().expose().to_owned();
    for bad in [unknown.as_str(), "not a token", ""] {
        app.get(&format!("/api/annotations/{skeleton}"), Who::Link(bad))
            .await
            .problem(StatusCode::UNAUTHORIZED);
    }

    // Volumes the same: a bucket painted through the link is read back by the owner.
    let painter = app.link(Who::Admin, &ds, &link(&volume, "annotate")).await;
    let painter = painter["token"].as_str().expect("token").to_owned();
    app.saved(
        Who::Link(&painter),
        &volume,
        0,
        &[update_bucket([0, 0, 0], &uniform(5))],
    )
    .await;
    let zarr = app.zarr_url(me, &volume, "").await;
    assert_eq!(app.voxels_at(&zarr, "0/c/0/0/0").await, uniform(5));

    // A password-protected link saves only once unlocked, with the unlock it was given.
    let locked = app
        .link(
            Who::Admin,
            &ds,
            &json!({"scope": {"kind": "annotation", "annotation": skeleton},
                    "permission": "annotate", "password": "correct horse battery"}),
        )
        .await;
    let locked_token = locked["token"].as_str().expect("token").to_owned();
    app.save(
        Who::Link(&locked_token),
        &skeleton,
        2,
        &[set_comment(1, 1, "locked")],
    )
    .await
    .problem(StatusCode::UNAUTHORIZED);
    let unlocked = app
        .post(
            "/api/links/unlock",
            Who::Anonymous,
            &json!({"token": locked_token, "password": "correct horse battery"}),
        )
        .await
        .ok(StatusCode::OK);
    let unlocked = segment_of(unlocked["url"].as_str().expect("url"));
    app.saved(
        Who::Link(&unlocked),
        &skeleton,
        2,
        &[set_comment(1, 1, "unlocked")],
    )
    .await;

    // Revoked: the next save is refused at once, even by another instance that has just seen
    // the link (the API reads links afresh; only chunk reads use the bounded cache).
    let elsewhere = app.cold();
    assert_eq!(elsewhere.record(holder, &skeleton).await["version"], 3);
    app.delete(
        &format!("/api/datasets/{}/links/{link_id}", ds.id),
        Who::Admin,
    )
    .await
    .ok(StatusCode::OK);
    elsewhere
        .save(holder, &skeleton, 3, &[set_comment(1, 1, "revoked")])
        .await
        .problem_about(StatusCode::GONE, "revoked");
    assert_eq!(app.record(me, &skeleton).await["version"], 3);
}
