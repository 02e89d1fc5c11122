//! The NML export read back by the reference NML reader: webknossos-libs' `Annotation.load`
//! (the `webknossos` Python package, hash-locked in `infra/scripts/requirements-webknossos.txt`
//! and installed by `infra/scripts/python-webknossos.sh`; its `.skeleton` is what
//! `Skeleton.load` returns). A skeleton built by update actions (nested and empty groups,
//! colors, hidden trees, an empty tree, comments with XML-special, non-ASCII and line-break
//! text, branch points, extreme ids and positions) is exported with `to_nml`, loaded by
//! webknossos (`infra/tests/clients/load_nml.py` prints what it parsed as JSON), and every
//! header field, group, tree, node, edge, comment and branch point is compared with the
//! skeleton and header it came from.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use shared::domain::skeleton::{MAX_ID, NmlMeta, Skeleton, TreeGroup, UpdateAction, to_nml};

/// The webknossos venv's python (`infra/scripts/python-webknossos.sh`).
fn webknossos_python() -> Option<PathBuf> {
    crate::support::venv_python(
        "ZARRSHARE_WEBKNOSSOS_PYTHON",
        ".venv-webknossos",
        "infra/scripts/python-webknossos.sh",
    )
}

/// Writes `nml` to a temporary file and returns what webknossos parsed from it.
fn webknossos_reads(python: &Path, nml: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.nml");
    std::fs::write(&file, nml).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/load_nml.py");
    let output = std::process::Command::new(python)
        .arg(script)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "webknossos could not load the NML:\n{}\n--- the NML:\n{nml}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "load_nml.py printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn action(value: Value) -> UpdateAction {
    serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{value}: {e}"))
}

fn create_node(tree: u32, id: u32, position: [i64; 3], radius: f32, rotation: [f64; 3]) -> Value {
    json!({"name": "createNode", "value": {"treeId": tree, "node": {
        "id": id, "position": position, "radius": radius, "rotation": rotation,
        "created": 1_700_000_000_000_i64 + i64::from(id) * 1000}}})
}

/// Groups 1 { 2 { 6 } }, 3 and an empty 4; trees in groups 2, 1, 3 and 6 and two at the top
/// level (one moved there by updateTree), colored with non-dyadic components or not at all,
/// one hidden, one without nodes; chains of nodes with a branching node, non-dyadic radii and
/// rotations, negative and extreme positions, the largest node id; comments with `<&>"'`,
/// non-ASCII, tab, LF and CRLF; branch points. Deletions and updates leave traces that must not
/// show up in the export.
fn rich_skeleton() -> Skeleton {
    let mut actions = vec![json!({"name": "updateTreeGroups", "value": {"treeGroups": [
        {"id": 1, "name": "cells", "children": [
            {"id": 2, "name": "neurons & <glia>", "children": [
                {"id": 6, "name": "deep 'level' three", "children": []}]}]},
        {"id": 3, "name": "Müller \"fibres\" 神经", "children": []},
        {"id": 4, "name": "  empty group  ", "children": []},
    ]}})];
    let trees = [
        (1, "axon 1", Some([1.0, 0.0, 0.0, 1.0]), Some(2), true),
        (
            2,
            "dendrite <apical> & 'basal'",
            Some([0.1, 0.2, 0.3, 0.9]),
            Some(1),
            true,
        ),
        (3, "glia ü", None, Some(3), false),
        (
            4,
            "top-level \"soma\"",
            Some([0.0, 0.5, 1.0, 0.75]),
            None,
            true,
        ),
        (5, "empty", None, Some(6), true),
        (7, "moved later", Some([0.7, 0.7, 0.7, 1.0]), Some(3), true),
        (8, "deleted later", None, None, true),
    ];
    for (id, name, color, group, visible) in trees {
        actions.push(json!({"name": "createTree", "value": {
            "id": id, "name": name, "color": color, "groupId": group, "isVisible": visible}}));
    }
    let mut next = 1u32;
    for tree in [1u32, 2, 3, 4, 7] {
        let first = next;
        let count = if tree == 7 { 1 } else { 2 + tree };
        for k in 0..count {
            let position = [
                i64::from(next) * 3,
                100 - i64::from(k) * 70,
                i64::from(tree) * 11,
            ];
            let radius = 0.1 + k as f32 * 0.7;
            let rotation = [f64::from(k) * 12.345, -90.0, 0.1];
            actions.push(create_node(tree, next, position, radius, rotation));
            if k > 0 {
                // The last node of a longer chain hangs off the second: a branching node.
                let source = if k + 1 == count && count >= 4 {
                    first + 1
                } else {
                    next - 1
                };
                actions.push(json!({"name": "createEdge", "value": {
                    "treeId": tree, "source": source, "target": next}}));
            }
            next += 1;
        }
    }
    // Extreme positions and the largest id, in tree 4, joined to its first node (target → source).
    actions.push(create_node(
        4,
        MAX_ID,
        [i64::from(i32::MIN), i64::from(i32::MAX), 0],
        1000.5,
        [359.999, 0.0, -180.0],
    ));
    actions.push(
        json!({"name": "createEdge", "value": {"treeId": 4, "source": MAX_ID, "target": 13}}),
    );
    // Updates and deletions.
    actions.extend([
        json!({"name": "updateNode", "value": {"treeId": 2, "node": {
            "id": 5, "position": [-5, -50, -500], "radius": 3.3, "rotation": [1.5, 2.5, 3.5],
            "created": 1_700_000_123_456_i64}}}),
        create_node(2, 9000, [1, 2, 3], 1.0, [0.0, 0.0, 0.0]),
        json!({"name": "createEdge", "value": {"treeId": 2, "source": 5, "target": 9000}}),
        json!({"name": "setComment", "value": {"treeId": 2, "nodeId": 9000, "content": "gone"}}),
        json!({"name": "deleteNode", "value": {"treeId": 2, "nodeId": 9000}}),
        create_node(8, 9001, [7, 7, 7], 1.0, [0.0, 0.0, 0.0]),
        json!({"name": "deleteTree", "value": {"id": 8}}),
        json!({"name": "createEdge", "value": {"treeId": 3, "source": 12, "target": 10}}),
        json!({"name": "deleteEdge", "value": {"treeId": 3, "source": 10, "target": 12}}),
        json!({"name": "updateTree", "value": {
            "id": 7, "name": "moved to the top", "color": [0.25, 0.5, 0.125, 0.6],
            "groupId": null, "isVisible": false}}),
    ]);
    for (tree, node, text) in [
        (1, 1, "soma <here> & \"there\""),
        (1, 3, "branch? it's 'odd'"),
        (2, 5, "Nervenzelle – ünd 神经元 🧠"),
        (2, 6, "replaced"),
        (2, 6, "tab\there, LF\nthere, CRLF\r\nend"),
        (3, 10, "deleted comment"),
        (4, 16, "  leading and trailing spaces  "),
        (4, MAX_ID, "]]> <!-- not a comment --> &amp; &#10;"),
    ] {
        actions.push(json!({"name": "setComment", "value": {
            "treeId": tree, "nodeId": node, "content": text}}));
    }
    actions.push(json!({"name": "deleteComment", "value": {"treeId": 3, "nodeId": 10}}));
    for (tree, node, at) in [
        (1, 2, 1_700_000_555_000_i64),
        (3, 12, 1_700_000_777_000),
        (4, 15, 1_700_000_555_000),
        (4, 16, 1_700_000_999_000),
    ] {
        actions.push(json!({"name": "addBranchPoint", "value": {
            "treeId": tree, "nodeId": node, "timestamp": at}}));
    }
    actions.push(json!({"name": "deleteBranchPoint", "value": {"treeId": 4, "nodeId": 16}}));

    let actions: Vec<UpdateAction> = actions.into_iter().map(action).collect();
    let mut skeleton = Skeleton::default();
    skeleton
        .apply(&actions)
        .unwrap_or_else(|e| panic!("fixture: {e}"));
    skeleton
}

/// Comparisons made, so a test can say how many (and prove it compared anything).
struct Checks(usize);

impl Checks {
    #[track_caller]
    fn eq<T: PartialEq + Debug>(&mut self, got: T, want: T, what: impl std::fmt::Display) {
        assert_eq!(got, want, "{what}");
        self.0 += 1;
    }

    /// f64s written by `to_nml` as shortest round-trip decimals; Python's `float()` reads them
    /// exactly, and serde_json (without `float_roundtrip`) may parse its JSON 1 ulp off.
    #[track_caller]
    fn f64s(&mut self, got: &[f64], want: &[f64], what: impl std::fmt::Display) {
        let close = |g: f64, w: f64| g.to_bits().abs_diff(w.to_bits()) <= 1;
        assert!(
            got.len() == want.len() && got.iter().zip(want).all(|(g, w)| close(*g, *w)),
            "{what}: webknossos read {got:?}, expected {want:?}"
        );
        self.0 += 1;
    }
}

/// `value[key]` as a `T`.
fn field<T: DeserializeOwned>(value: &Value, key: &str) -> T {
    serde_json::from_value(value[key].clone())
        .unwrap_or_else(|e| panic!("{key}: {e} in {}", value[key]))
}

/// Our group forest as load_nml.py prints webknossos' groups: id, name, subgroups by id, and
/// the ids of the trees in the group.
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
                json!({"id": g.id, "name": g.name,
                       "groups": groups_json(&g.children, skeleton), "trees": trees})
            })
            .collect(),
    )
}

/// Everything webknossos read (`read`, from load_nml.py) against the skeleton and header the
/// NML was written from. Returns the number of comparisons.
fn assert_reads_back(skeleton: &Skeleton, meta: &NmlMeta, read: &Value) -> usize {
    let mut c = Checks(0);

    // The header: <experiment>, <scale>, <time>, <editPosition>, <editRotation>, <zoomLevel>.
    c.eq(
        field::<String>(read, "dataset_name"),
        meta.dataset_name.clone(),
        "dataset name",
    );
    c.eq(
        field::<Option<String>>(read, "description"),
        Some(meta.description.clone()),
        "description",
    );
    c.f64s(
        &field::<Vec<f64>>(read, "voxel_size"),
        &meta.scale,
        "voxel size",
    );
    // NmlMeta::scale is in nanometres.
    c.eq(
        field::<String>(read, "voxel_unit"),
        "nanometer".into(),
        "voxel size unit",
    );
    c.eq(
        field::<Option<i64>>(read, "time"),
        Some(meta.time_ms),
        "time",
    );
    for (key, want) in [
        ("edit_position", meta.edit_position),
        ("edit_rotation", meta.edit_rotation),
    ] {
        match (field::<Option<Vec<f64>>>(read, key), want) {
            (Some(got), Some(want)) => c.f64s(&got, &want, key),
            (got, want) => c.eq(got, want.map(Vec::from), key),
        }
    }
    match (field::<Option<f64>>(read, "zoom_level"), meta.zoom) {
        (Some(got), Some(want)) => c.f64s(&[got], &[want], "zoom level"),
        (got, want) => c.eq(got, want, "zoom level"),
    }
    // <meta>: the annotation id (left out when empty), the writer; nothing else.
    c.eq(
        field::<Option<String>>(read, "annotation_id"),
        Some(meta.annotation_id.clone()).filter(|id| !id.is_empty()),
        "annotation id",
    );
    c.eq(read["owner_name"].clone(), Value::Null, "owner");
    c.eq(
        read["metadata"].clone(),
        json!({"writer": "zarrshare"}),
        "other <meta>",
    );
    c.eq(
        read["task_bounding_box"].clone(),
        Value::Null,
        "task bounding box",
    );
    c.eq(
        read["user_bounding_boxes"].clone(),
        json!([]),
        "user bounding boxes",
    );
    c.eq(read["volume_layers"].clone(), json!([]), "volume layers");

    // The groups, nested, with the trees sorted into them; top-level trees at the root.
    c.eq(
        read["root"]["groups"].clone(),
        groups_json(&skeleton.tree_groups, skeleton),
        "groups",
    );
    let top: Vec<u32> = skeleton
        .trees
        .values()
        .filter(|t| t.group_id.is_none())
        .map(|t| t.id)
        .collect();
    c.eq(read["root"]["trees"].clone(), json!(top), "top-level trees");

    // Every tree, node and edge.
    let trees = read["trees"].as_array().unwrap();
    c.eq(
        trees
            .iter()
            .map(|t| field::<u32>(t, "id"))
            .collect::<Vec<_>>(),
        skeleton.trees.keys().copied().collect(),
        "tree ids",
    );
    for (t, tree) in trees.iter().zip(skeleton.trees.values()) {
        let id = tree.id;
        c.eq(
            field::<String>(t, "name"),
            tree.name.clone(),
            format!("tree {id} name"),
        );
        c.eq(
            field::<Option<u32>>(t, "group_id"),
            tree.group_id,
            format!("tree {id} group"),
        );
        c.eq(
            field::<bool>(t, "is_visible"),
            tree.is_visible,
            format!("tree {id} visible"),
        );
        c.eq(
            t["metadata"].clone(),
            json!({}),
            format!("tree {id} metadata"),
        );
        // Colors are f32 (written as shortest f32 decimals): exact once narrowed back.
        let color = field::<Option<Vec<f64>>>(t, "color")
            .map(|c| c.into_iter().map(|v| v as f32).collect::<Vec<_>>());
        c.eq(color, tree.color.map(Vec::from), format!("tree {id} color"));

        let nodes = t["nodes"].as_array().unwrap();
        c.eq(
            nodes
                .iter()
                .map(|n| field::<u32>(n, "id"))
                .collect::<Vec<_>>(),
            tree.nodes.keys().copied().collect(),
            format!("tree {id} node ids"),
        );
        for (n, node) in nodes.iter().zip(tree.nodes.values()) {
            let what = |f: &str| format!("tree {id} node {} {f}", node.id);
            c.eq(
                field::<[i64; 3]>(n, "position"),
                node.position,
                what("position"),
            );
            c.eq(
                field::<f64>(n, "radius") as f32,
                node.radius,
                what("radius"),
            );
            c.f64s(
                &field::<Vec<f64>>(n, "rotation"),
                &node.rotation,
                what("rotation"),
            );
            c.eq(
                field::<Option<i64>>(n, "time"),
                Some(node.created),
                what("time"),
            );
            for unwritten in ["in_vp", "in_mag", "bit_depth", "interpolation"] {
                c.eq(n[unwritten].clone(), Value::Null, what(unwritten));
            }
            c.eq(
                field::<Option<String>>(n, "comment"),
                tree.comments.get(&node.id).cloned(),
                what("comment"),
            );
            c.eq(
                field::<bool>(n, "is_branchpoint"),
                tree.branch_points.contains_key(&node.id),
                what("branch point"),
            );
            c.eq(
                field::<Option<i64>>(n, "branchpoint_time"),
                tree.branch_points.get(&node.id).copied(),
                what("branch point time"),
            );
        }

        // webknossos keeps a tree as an undirected graph: edges as sorted pairs.
        let mut want: Vec<[u32; 2]> = tree
            .edges
            .iter()
            .map(|e| [e.source.min(e.target), e.source.max(e.target)])
            .collect();
        want.sort_unstable();
        c.eq(
            field::<Vec<[u32; 2]>>(t, "edges"),
            want,
            format!("tree {id} edges"),
        );
    }
    c.0
}

#[test]
fn webknossos_reads_back_a_rich_skeleton_and_full_header() {
    let Some(python) = webknossos_python() else {
        return;
    };
    let skeleton = rich_skeleton();
    // The fixture is what its doc says (so the comparison below covers all of it).
    let nodes: usize = skeleton.trees.values().map(|t| t.nodes.len()).sum();
    let edges: usize = skeleton.trees.values().map(|t| t.edges.len()).sum();
    let comments: usize = skeleton.trees.values().map(|t| t.comments.len()).sum();
    let branch_points: usize = skeleton.trees.values().map(|t| t.branch_points.len()).sum();
    assert_eq!(
        (skeleton.trees.len(), nodes, edges, comments, branch_points),
        (6, 20, 15, 6, 3)
    );
    assert!(skeleton.trees.values().any(|t| t.nodes.is_empty()));
    assert!(skeleton.trees.values().any(|t| !t.is_visible));
    assert!(skeleton.trees.values().any(|t| t.color.is_none()));

    let meta = NmlMeta {
        dataset_name: "l4_sample & <friends> \"ü\"".into(),
        description: "Tracing of \"cell 7\" — first pass\nsecond line\t<b>&</b>".into(),
        scale: [11.24, 11.24, 28.0],
        edit_position: Some([1024.5, 2048.0, -3.25]),
        edit_rotation: Some([0.0, 12.5, 90.0]),
        zoom: Some(1.3),
        time_ms: 1_700_000_000_123,
        annotation_id: "k2v4n6p8r0t2v4x6".into(),
    };
    let read = webknossos_reads(&python, &to_nml(&skeleton, &meta));
    let compared = assert_reads_back(&skeleton, &meta, &read);
    eprintln!("webknossos read back {compared} fields as written");
    assert!(compared > 200, "{compared}");
}

#[test]
fn webknossos_reads_back_a_bare_header_and_one_tree() {
    let Some(python) = webknossos_python() else {
        return;
    };
    let mut skeleton = Skeleton::default();
    skeleton
        .apply(&[action(
            json!({"name": "createTree", "value": {"id": 3, "name": "only"}}),
        )])
        .unwrap();
    // No edit position, rotation or zoom, no annotation id, an empty description, time 0, and
    // a whole-number scale (written without a fraction).
    let meta = NmlMeta {
        dataset_name: "ds".into(),
        description: String::new(),
        scale: [4.0, 4.0, 40.0],
        time_ms: 0,
        ..NmlMeta::default()
    };
    let read = webknossos_reads(&python, &to_nml(&skeleton, &meta));
    let compared = assert_reads_back(&skeleton, &meta, &read);
    assert!(compared >= 20, "{compared}");
}
