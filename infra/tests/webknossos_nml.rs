//! The NML export read back by the reference NML reader: webknossos-libs' `Skeleton.load`
//! (the `webknossos` Python package, hash-locked in `infra/scripts/requirements-webknossos.txt`
//! and installed by `infra/scripts/python-webknossos.sh`). A skeleton with nested groups,
//! colors, hidden trees, comments with XML-special and non-ASCII text, branch points and an
//! empty tree is exported with `to_nml`, loaded by webknossos, and compared field by field with
//! the skeleton it came from.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::{Value, json};
use shared::domain::skeleton::{NmlMeta, Skeleton, TreeGroup, UpdateAction, to_nml};

/// The webknossos venv's python. Missing: in CI a failure, elsewhere a skip that says so.
fn webknossos_python() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var_os("ZARRSHARE_WEBKNOSSOS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv-webknossos/bin/python"));
    if python.exists() {
        return Some(python);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must check NML with webknossos: run infra/scripts/python-webknossos.sh"
    );
    eprintln!(
        "skipped: no webknossos venv at {} (run infra/scripts/python-webknossos.sh)",
        python.display()
    );
    None
}

fn action(value: Value) -> UpdateAction {
    serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{value}: {e}"))
}

fn node(tree: u32, id: u32, position: [i64; 3], radius: f32, rotation: [f64; 3]) -> UpdateAction {
    action(
        json!({"name": "createNode", "value": {"treeId": tree, "node": {
        "id": id, "position": position, "radius": radius, "rotation": rotation,
        "created": 1_700_000_000_000_i64 + i64::from(id) * 1000}}}),
    )
}

/// Trees in three groups (one nested), at the top and hidden; an empty tree; comments that
/// need escaping; branch points.
fn rich_skeleton() -> Skeleton {
    let mut actions = vec![action(
        json!({"name": "updateTreeGroups", "value": {"treeGroups": [
            {"id": 1, "name": "cells", "children": [{"id": 2, "name": "neurons & <glia>", "children": []}]},
            {"id": 3, "name": "Müller \"fibres\"", "children": []},
        ]}}),
    )];
    let trees = [
        (1, "axon 1", Some([1.0, 0.0, 0.0, 1.0]), Some(2), true),
        (2, "dendrite", Some([0.2, 0.4, 0.6, 1.0]), Some(1), true),
        (3, "glia ü", None, Some(3), false),
        (4, "top-level", Some([0.0, 0.5, 1.0, 0.75]), None, true),
        (5, "empty", None, None, true),
    ];
    for (id, name, color, group, visible) in trees {
        actions.push(action(json!({"name": "createTree", "value": {
            "id": id, "name": name, "color": color, "groupId": group, "isVisible": visible}})));
    }
    let mut next = 1u32;
    for tree in 1..=4u32 {
        let count = 2 + tree;
        for k in 0..count {
            let position = [
                i64::from(next) * 3,
                -i64::from(k) * 7 + 100,
                i64::from(tree) * 11,
            ];
            let radius = 0.5 + k as f32 * 1.25;
            let rotation = [0.0, f64::from(k) * 15.0, -90.0];
            actions.push(node(tree, next, position, radius, rotation));
            if k > 0 {
                actions.push(action(json!({"name": "createEdge", "value": {
                    "treeId": tree, "source": next - 1, "target": next}})));
            }
            next += 1;
        }
    }
    // A second edge into node 2 makes it a branching node of tree 1.
    actions.push(action(
        json!({"name": "createEdge", "value": {"treeId": 1, "source": 3, "target": 1}}),
    ));
    for (tree, node, text) in [
        (1, 1, "soma <here> & \"there\""),
        (1, 3, "branch? it's 'odd'"),
        (2, 5, "Nervenzelle – ünd 神经元"),
        (4, 16, "end\nof line"),
    ] {
        actions.push(action(json!({"name": "setComment", "value": {
            "treeId": tree, "nodeId": node, "content": text}})));
    }
    for (tree, node, at) in [(1, 2, 1_700_000_555_000_i64), (3, 12, 1_700_000_777_000)] {
        actions.push(action(json!({"name": "addBranchPoint", "value": {
            "treeId": tree, "nodeId": node, "timestamp": at}})));
    }
    let mut skeleton = Skeleton::default();
    skeleton
        .apply(&actions)
        .unwrap_or_else(|e| panic!("fixture: {e}"));
    skeleton
}

/// Our group forest as the reader's JSON shows it: ids, names, children, and tree ids.
fn groups_json(groups: &[TreeGroup], skeleton: &Skeleton) -> Value {
    let mut sorted: Vec<&TreeGroup> = groups.iter().collect();
    sorted.sort_by_key(|g| g.id);
    Value::Array(
        sorted
            .into_iter()
            .map(|g| {
                let trees: Vec<u32> = skeleton
                    .trees
                    .values()
                    .filter(|t| t.group_id == Some(g.id))
                    .map(|t| t.id)
                    .collect();
                json!({"id": g.id, "name": g.name, "groups": groups_json(&g.children, skeleton), "trees": trees})
            })
            .collect(),
    )
}

#[test]
fn webknossos_reads_back_exactly_what_the_nml_export_wrote() {
    let Some(python) = webknossos_python() else {
        return;
    };
    let skeleton = rich_skeleton();
    let meta = NmlMeta {
        dataset_name: "l4_sample & <friends>".into(),
        description: "Tracing of \"cell 7\" — first pass".into(),
        scale: [11.24, 11.24, 28.0],
        edit_position: Some([1.0, 2.0, 3.0]),
        edit_rotation: Some([0.0, 0.0, 90.0]),
        zoom: Some(1.5),
        time_ms: 1_700_000_000_000,
        annotation_id: "k2v4n6p8r0t2v4x6".into(),
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.nml");
    std::fs::write(&file, to_nml(&skeleton, &meta)).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/load_nml.py");
    let output = std::process::Command::new(&python)
        .arg(script)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "webknossos could not load the NML:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let read: Value = serde_json::from_slice(&output.stdout).unwrap();

    // The header.
    assert_eq!(read["dataset_name"], meta.dataset_name);
    assert_eq!(read["description"], meta.description);
    let voxel: Vec<f64> = serde_json::from_value(read["voxel_size"].clone()).unwrap();
    for (got, want) in voxel.iter().zip(meta.scale) {
        assert!((got - want).abs() < 1e-9, "voxel size {voxel:?}");
    }

    // The groups, nested, with the trees sorted into them; top-level trees at the root.
    assert_eq!(
        read["root"]["groups"],
        groups_json(&skeleton.tree_groups, &skeleton)
    );
    let top: Vec<u32> = skeleton
        .trees
        .values()
        .filter(|t| t.group_id.is_none())
        .map(|t| t.id)
        .collect();
    assert_eq!(read["root"]["trees"], json!(top));

    // Every tree, node and edge.
    let trees = read["trees"].as_array().unwrap();
    assert_eq!(
        trees
            .iter()
            .map(|t| t["id"].as_u64().unwrap() as u32)
            .collect::<Vec<_>>(),
        skeleton.trees.keys().copied().collect::<Vec<_>>()
    );
    let mut compared_nodes = 0;
    for (t, tree) in trees.iter().zip(skeleton.trees.values()) {
        assert_eq!(t["name"], tree.name, "tree {}", tree.id);
        assert_eq!(t["is_visible"], tree.is_visible, "tree {}", tree.id);
        match tree.color {
            Some(c) => {
                let got: Vec<f64> = serde_json::from_value(t["color"].clone()).unwrap();
                assert_eq!(got.len(), 4, "tree {}", tree.id);
                for (g, w) in got.iter().zip(c) {
                    assert!(
                        (g - f64::from(w)).abs() < 1e-6,
                        "tree {} color {got:?}",
                        tree.id
                    );
                }
            }
            None => assert!(
                t["color"].is_null() || t["color"].as_array().is_some_and(|c| c.len() == 4),
                "tree {}: {}",
                tree.id,
                t["color"]
            ),
        }
        let nodes = t["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), tree.nodes.len(), "tree {}", tree.id);
        for (n, node) in nodes.iter().zip(tree.nodes.values()) {
            assert_eq!(n["id"], node.id);
            assert_eq!(n["position"], json!(node.position), "node {}", node.id);
            let radius = n["radius"].as_f64().unwrap();
            assert!(
                (radius - f64::from(node.radius)).abs() < 1e-6,
                "node {}",
                node.id
            );
            assert_eq!(n["rotation"], json!(node.rotation), "node {}", node.id);
            assert_eq!(n["time"], json!(node.created), "node {}", node.id);
            assert_eq!(
                n["comment"],
                json!(tree.comments.get(&node.id)),
                "node {}",
                node.id
            );
            assert_eq!(
                n["is_branchpoint"],
                tree.branch_points.contains_key(&node.id),
                "node {}",
                node.id
            );
            assert_eq!(
                n["branchpoint_time"],
                json!(tree.branch_points.get(&node.id)),
                "node {}",
                node.id
            );
            compared_nodes += 1;
        }
        let edges: BTreeSet<(u32, u32)> =
            serde_json::from_value::<Vec<(u32, u32)>>(t["edges"].clone())
                .unwrap()
                .into_iter()
                .collect();
        let want: BTreeSet<(u32, u32)> = tree
            .edges
            .iter()
            .map(|e| (e.source.min(e.target), e.source.max(e.target)))
            .collect();
        assert_eq!(edges, want, "tree {}", tree.id);
    }
    let total: usize = skeleton.trees.values().map(|t| t.nodes.len()).sum();
    assert_eq!(compared_nodes, total);
    assert_eq!(total, 18, "the fixture's size");
    let commented: BTreeMap<u32, &str> = skeleton
        .trees
        .values()
        .flat_map(|t| t.comments.iter().map(|(n, c)| (*n, c.as_str())))
        .collect();
    assert_eq!(commented.len(), 4, "every comment made it into the fixture");
}
