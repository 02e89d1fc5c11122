//! Skeleton annotations as webKnossos models them: trees of nodes and edges, with comments,
//! branch points and a forest of tree groups; the batched update actions a client saves;
//! and the export as NML, the XML format webKnossos and its Python library read.
//!
//! # The model
//!
//! * Ids are `u32` as in webKnossos, but webKnossos keeps them as 32-bit signed integers
//!   (its readers parse them with `toIntOpt`/`int()`), so every id must be at most
//!   [`MAX_ID`] (`i32::MAX`). Node ids are unique across the whole skeleton, tree ids and group
//!   ids each among themselves (the three kinds may share numbers, as in webKnossos' own NMLs).
//! * Node positions are integer voxel coordinates (x, y, z) in the finest magnification,
//!   `[i64; 3]` limited to the `i32` range. NML itself would carry decimals (the Python reader
//!   parses `x`/`y`/`z` with `float()`), but both consumers turn them into integers, and not the
//!   same way: the webKnossos server rounds (`NmlParser.parsePoint3D`, `math.round`) while
//!   webknossos-libs truncates (`Vec3Int.from_vec3_float`, `int()`). Integers are therefore the
//!   only positions that mean the same thing everywhere; webKnossos itself writes integers.
//! * Nodes keep `radius`, `rotation` and `created` (ms since the epoch). The NML node
//!   attributes `inVp`, `inMag`, `bitDepth` and `interpolation` are optional in both readers
//!   (the server falls back to defaults, the Python `Node` has them as `None`), so they are
//!   neither stored nor written. Writing `interpolation="false"` would even be read back as
//!   `True` by webknossos-libs (`bool(nml_node.get("interpolation"))`).
//! * Edges are stored as given (source → target) but are undirected for validation: a tree
//!   cannot hold both 1→2 and 2→1, and `deleteEdge` removes either orientation.
//! * The fields are public for reading and building responses; the only validated way to change
//!   a skeleton is [`Skeleton::apply`].
//!
//! # JSON
//!
//! Keys are camelCase like webKnossos' own JSON. Maps keyed by id are written as arrays, which
//! clients can consume directly: `trees` (sorted by id), a tree's `nodes` (sorted by id),
//! `edges` (`{source, target}`), `comments` (`{nodeId, content}`) and `branchPoints`
//! (`{nodeId, timestamp}`), all sorted by node id. Reading rejects a repeated tree id within
//! `trees` and a repeated node id within one tree's `nodes`.
//!
//! Update actions are adjacently tagged like webKnossos' update actions:
//! `{"name": "createEdge", "value": {"treeId": 2, "source": 7, "target": 8}}`. (A plain
//! internal `"name"` tag would collide with the `name` field of `createTree`/`updateTree`.)
//!
//! # NML
//!
//! [`to_nml`] writes the elements and attributes that the real readers look for. Checked
//! against webknossos-libs (commit `b1412a6ec74a29bbacbe4a92bdc1412c48c8c941`):
//!
//! * `webknossos/webknossos/_nml/nml.py` (`Nml.parse`, `Nml._dump`: `<things>`, `<meta>`,
//!   `<parameters>`, `<thing>`, `<branchpoints>`, `<comments>`, `<groups>` nesting),
//! * `webknossos/webknossos/_nml/parameters.py` (`<experiment name description>`,
//!   `<scale x y z unit>`, `<time ms>`, `<editPosition x y z>`,
//!   `<editRotation xRot yRot zRot>`, `<zoomLevel zoom>`; `experiment` and `scale` required),
//! * `webknossos/webknossos/_nml/tree.py` (`<thing id color.r color.g color.b color.a name
//!   groupId isVisible>` with `<nodes>` and `<edges>`; missing or empty colour means none),
//! * `webknossos/webknossos/_nml/node.py` (`<node id radius x y z rotX rotY rotZ inVp inMag
//!   bitDepth interpolation time>`, all but `id` optional),
//! * `webknossos/webknossos/_nml/edge.py` (`<edge source target>`),
//! * `webknossos/webknossos/_nml/branchpoint.py` (`<branchpoint id time>`, `id` is the node),
//! * `webknossos/webknossos/_nml/comment.py` (`<comment node content>`),
//! * `webknossos/webknossos/_nml/group.py` (`<group id name>` nested),
//! * `webknossos/webknossos/_nml/meta.py` (`<meta name content>`),
//! * `webknossos/webknossos/annotation/_nml_conversion.py` (`nml_to_skeleton`: groups must
//!   exist, comments and branch points must name existing nodes) and
//!   `webknossos/webknossos/annotation/annotation.py` (`_load_from_nml` reads
//!   `<meta name="annotationId">`),
//! * `webknossos/webknossos/dataset_properties/length_unit.py` (`unit="nanometer"`),
//! * `webknossos/webknossos/geometry/vec3_int.py` (`from_vec3_float` truncates),
//! * the samples `webknossos/testdata/nmls/test_a.nml` (written by webKnossos) and
//!   `generated_skeleton_snapshot.nml` (written by the library);
//!
//! and against the webKnossos server's `app/models/annotation/nml/NmlWriter.scala` and
//! `NmlParser.scala` (scalableminds/webknossos): the writer puts `<meta>` first, lists branch
//! points newest first, and nests `<group name id>`; the parser accepts every attribute
//! written here and defaults the node attributes left out.
//!
//! Output of this writer (the golden skeleton, one with every escape, an empty one) was also
//! loaded with webknossos 4.3.3 from PyPI (`webknossos._nml.Nml.parse` and
//! `webknossos.Annotation.load`): trees, groups, colours, visibility, integer positions,
//! comments (line breaks, tab, carriage return, `<&"'>` intact), branch points with their
//! times, `annotationId`, scale and edit parameters all came back unchanged.
//!
//! Everything is written as attributes (NML has no text content), escaped with `&amp; &lt;
//! &gt; &quot; &apos;` and, so that XML attribute-value normalisation does not turn them into
//! spaces, `&#9; &#10; &#13;` for tab, line feed and carriage return. Characters XML 1.0
//! cannot carry at all are replaced by U+FFFD (the actions already refuse them in names and
//! comments; this only guards the free-form [`NmlMeta`] strings). Numbers use Rust's shortest
//! round-trip formatting (`1`, `0.5`, never an exponent), which Python's `float()`/`int()`
//! and Scala's `toDouble`/`toIntOpt` all parse.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::{self, Write as _};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// At most this many update actions in one save.
pub const MAX_ACTIONS_PER_SAVE: usize = 5000;
/// Tree and group names: 1 to this many characters.
pub const MAX_NAME_CHARS: usize = 1000;
/// Comments: 1 to this many characters.
pub const MAX_COMMENT_CHARS: usize = 10_000;
/// The largest id webKnossos can hold (its ids are 32-bit signed integers).
pub const MAX_ID: u32 = 0x7FFF_FFFF;
/// Tree groups nest at most this deep (a group at the top is at depth 1).
pub const MAX_GROUP_DEPTH: usize = 50;

/// Node positions must lie within this range on every axis (webKnossos stores `int32`).
const POSITION_RANGE: std::ops::RangeInclusive<i64> = (i32::MIN as i64)..=(i32::MAX as i64);

/// A skeleton annotation: trees and the group forest they are sorted into.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Skeleton {
    /// By tree id; JSON: an array sorted by id.
    #[serde(default, with = "list_by_id")]
    #[schema(value_type = Vec<Tree>)]
    pub trees: BTreeMap<u32, Tree>,
    #[serde(default)]
    pub tree_groups: Vec<TreeGroup>,
}

/// One tree (an NML `<thing>`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tree {
    pub id: u32,
    /// 1–1000 characters.
    pub name: String,
    /// RGBA, each component within 0..=1.
    #[serde(default)]
    pub color: Option<[f32; 4]>,
    /// The group it is sorted into; none: at the top.
    #[serde(default)]
    pub group_id: Option<u32>,
    /// By node id; JSON: an array sorted by id.
    #[serde(default, with = "list_by_id")]
    #[schema(value_type = Vec<Node>)]
    pub nodes: BTreeMap<u32, Node>,
    #[serde(default)]
    #[schema(value_type = Vec<Edge>)]
    pub edges: BTreeSet<Edge>,
    /// Node id → comment; JSON: `[{nodeId, content}]`.
    #[serde(default, with = "comment_list")]
    #[schema(value_type = Vec<Comment>)]
    pub comments: BTreeMap<u32, String>,
    /// Node id → when it was marked (ms since the epoch); JSON: `[{nodeId, timestamp}]`.
    #[serde(default, with = "branch_point_list")]
    #[schema(value_type = Vec<BranchPoint>)]
    pub branch_points: BTreeMap<u32, i64>,
    #[serde(default = "visible")]
    pub is_visible: bool,
}

fn visible() -> bool {
    true
}

/// One node of a tree.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// Unique across the skeleton.
    pub id: u32,
    /// x, y, z in voxels of the finest magnification (integers, within the `i32` range).
    pub position: [i64; 3],
    /// Rendering radius (finite, not negative).
    pub radius: f32,
    /// Camera rotation when the node was set, in degrees (finite).
    #[serde(default)]
    pub rotation: [f64; 3],
    /// When it was created, ms since the epoch.
    pub created: i64,
}

/// An edge between two nodes of the same tree.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
pub struct Edge {
    pub source: u32,
    pub target: u32,
}

/// A comment on a node (JSON form of [`Tree::comments`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Comment {
    pub node_id: u32,
    /// 1–10000 characters; line breaks and tabs are kept.
    pub content: String,
}

/// A branch point (JSON form of [`Tree::branch_points`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BranchPoint {
    pub node_id: u32,
    /// ms since the epoch.
    pub timestamp: i64,
}

/// A group of trees; groups nest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TreeGroup {
    pub id: u32,
    /// 1–1000 characters.
    pub name: String,
    #[serde(default)]
    #[schema(no_recursion)]
    pub children: Vec<TreeGroup>,
}

/// Counts for listings and limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SkeletonStats {
    pub trees: usize,
    pub nodes: usize,
    pub edges: usize,
}

/// One change to a skeleton. Several are saved together and applied all or nothing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "name", content = "value", rename_all = "camelCase")]
pub enum UpdateAction {
    /// A new, empty tree.
    #[serde(rename_all = "camelCase")]
    CreateTree {
        id: u32,
        name: String,
        #[serde(default)]
        color: Option<[f32; 4]>,
        #[serde(default)]
        group_id: Option<u32>,
        #[serde(default = "visible")]
        is_visible: bool,
    },
    /// Deletes a tree with its nodes, edges, comments and branch points.
    #[serde(rename_all = "camelCase")]
    DeleteTree { id: u32 },
    /// Replaces a tree's properties (all of them; its nodes and edges stay).
    #[serde(rename_all = "camelCase")]
    UpdateTree {
        id: u32,
        name: String,
        #[serde(default)]
        color: Option<[f32; 4]>,
        #[serde(default)]
        group_id: Option<u32>,
        #[serde(default = "visible")]
        is_visible: bool,
    },
    /// Adds a node (its id unused anywhere in the skeleton) to a tree.
    #[serde(rename_all = "camelCase")]
    CreateNode { tree_id: u32, node: Node },
    /// Replaces a node of a tree (found by `node.id`).
    #[serde(rename_all = "camelCase")]
    UpdateNode { tree_id: u32, node: Node },
    /// Deletes a node with its edges, comment and branch point.
    #[serde(rename_all = "camelCase")]
    DeleteNode { tree_id: u32, node_id: u32 },
    #[serde(rename_all = "camelCase")]
    CreateEdge {
        tree_id: u32,
        source: u32,
        target: u32,
    },
    /// Deletes the edge between two nodes, in either direction.
    #[serde(rename_all = "camelCase")]
    DeleteEdge {
        tree_id: u32,
        source: u32,
        target: u32,
    },
    /// Sets or replaces a node's comment.
    #[serde(rename_all = "camelCase")]
    SetComment {
        tree_id: u32,
        node_id: u32,
        content: String,
    },
    #[serde(rename_all = "camelCase")]
    DeleteComment { tree_id: u32, node_id: u32 },
    #[serde(rename_all = "camelCase")]
    AddBranchPoint {
        tree_id: u32,
        node_id: u32,
        timestamp: i64,
    },
    #[serde(rename_all = "camelCase")]
    DeleteBranchPoint { tree_id: u32, node_id: u32 },
    /// Replaces the whole group forest; every tree's group must still be in it.
    #[serde(rename_all = "camelCase")]
    UpdateTreeGroups { tree_groups: Vec<TreeGroup> },
}

impl UpdateAction {
    /// The action's name as it appears in JSON (`createTree`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Self::CreateTree { .. } => "createTree",
            Self::DeleteTree { .. } => "deleteTree",
            Self::UpdateTree { .. } => "updateTree",
            Self::CreateNode { .. } => "createNode",
            Self::UpdateNode { .. } => "updateNode",
            Self::DeleteNode { .. } => "deleteNode",
            Self::CreateEdge { .. } => "createEdge",
            Self::DeleteEdge { .. } => "deleteEdge",
            Self::SetComment { .. } => "setComment",
            Self::DeleteComment { .. } => "deleteComment",
            Self::AddBranchPoint { .. } => "addBranchPoint",
            Self::DeleteBranchPoint { .. } => "deleteBranchPoint",
            Self::UpdateTreeGroups { .. } => "updateTreeGroups",
        }
    }
}

/// A save that was refused; nothing of it was applied. The text is safe to show to the caller.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ActionError {
    #[error("a save may hold at most {MAX_ACTIONS_PER_SAVE} actions, this one has {count}")]
    TooManyActions { count: usize },
    /// `index` counts from 0 within the submitted array.
    #[error("action {index} ({action}): {kind}")]
    Invalid {
        index: usize,
        action: &'static str,
        kind: ActionErrorKind,
    },
}

/// Why one action was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ActionErrorKind {
    #[error("{what} id {id} is too large (at most {MAX_ID})")]
    IdOutOfRange { what: &'static str, id: u32 },
    #[error("tree {0} already exists")]
    DuplicateTree(u32),
    #[error("node {node} already exists (in tree {tree})")]
    DuplicateNode { node: u32, tree: u32 },
    #[error("group id {0} is used more than once")]
    DuplicateGroup(u32),
    #[error("tree {0} does not exist")]
    MissingTree(u32),
    #[error("node {node} is not in tree {tree}")]
    NodeNotInTree { node: u32, tree: u32 },
    #[error("group {0} does not exist")]
    MissingGroup(u32),
    #[error("tree {tree} is in group {group}, which the new groups do not contain")]
    GroupStillUsed { group: u32, tree: u32 },
    #[error("an edge cannot connect node {0} to itself")]
    SelfLoop(u32),
    #[error("tree {tree} already has an edge between nodes {from} and {to}")]
    DuplicateEdge { tree: u32, from: u32, to: u32 },
    #[error("tree {tree} has no edge between nodes {from} and {to}")]
    MissingEdge { tree: u32, from: u32, to: u32 },
    #[error("node {0} has no comment")]
    MissingComment(u32),
    #[error("node {0} is already a branch point")]
    DuplicateBranchPoint(u32),
    #[error("node {0} is not a branch point")]
    MissingBranchPoint(u32),
    #[error("{what} must be 1-{MAX_NAME_CHARS} characters and not blank")]
    NameLength { what: &'static str },
    #[error("{what} must not contain control characters")]
    NameCharacters { what: &'static str },
    #[error("comment must be 1-{MAX_COMMENT_CHARS} characters")]
    CommentLength,
    #[error("comment must not contain control characters other than tab and line breaks")]
    CommentCharacters,
    #[error("node {node}: {why}")]
    InvalidNode { node: u32, why: &'static str },
    #[error("tree colour components must be finite numbers from 0 to 1")]
    InvalidColor,
    #[error("tree groups must not nest deeper than {MAX_GROUP_DEPTH} levels")]
    GroupsTooDeep,
}

use ActionErrorKind as Kind;

/// Lookups kept up to date while a batch is applied.
struct Index {
    /// Node id → the tree holding it.
    node_tree: HashMap<u32, u32>,
    groups: HashSet<u32>,
}

impl Index {
    fn new(skeleton: &Skeleton) -> Self {
        let node_tree = skeleton
            .trees
            .values()
            .flat_map(|tree| tree.nodes.keys().map(move |node| (*node, tree.id)))
            .collect();
        let mut groups = HashSet::new();
        collect_group_ids(&skeleton.tree_groups, &mut groups);
        Self { node_tree, groups }
    }

    fn require_node(&self, tree: u32, node: u32) -> Result<(), Kind> {
        if self.node_tree.get(&node) == Some(&tree) {
            Ok(())
        } else {
            Err(Kind::NodeNotInTree { node, tree })
        }
    }

    fn require_group(&self, group: Option<u32>) -> Result<(), Kind> {
        match group {
            Some(id) if !self.groups.contains(&id) => Err(Kind::MissingGroup(id)),
            _ => Ok(()),
        }
    }
}

fn collect_group_ids(groups: &[TreeGroup], into: &mut HashSet<u32>) {
    for group in groups {
        into.insert(group.id);
        collect_group_ids(&group.children, into);
    }
}

impl Skeleton {
    /// The skeleton as a Neuroglancer overlay: every node a point (its comment the
    /// description), every edge a line.
    pub fn overlay(&self, name: &str) -> crate::neuroglancer::Overlay {
        let at = |n: &Node| n.position.map(|v| v as f64);
        let mut nodes = Vec::new();
        let mut edges = Vec::new();
        for tree in self.trees.values() {
            for node in tree.nodes.values() {
                nodes.push(crate::neuroglancer::OverlayNode {
                    id: format!("node-{}", node.id),
                    position: at(node),
                    description: tree.comments.get(&node.id).cloned(),
                });
            }
            for edge in &tree.edges {
                if let (Some(a), Some(b)) =
                    (tree.nodes.get(&edge.source), tree.nodes.get(&edge.target))
                {
                    edges.push((at(a), at(b)));
                }
            }
        }
        crate::neuroglancer::Overlay::Skeleton {
            name: name.to_owned(),
            nodes,
            edges,
        }
    }

    /// Applies a batch of actions in order, all or nothing: on the first refused action the
    /// skeleton is left exactly as it was.
    pub fn apply(&mut self, actions: &[UpdateAction]) -> Result<(), ActionError> {
        if actions.len() > MAX_ACTIONS_PER_SAVE {
            return Err(ActionError::TooManyActions {
                count: actions.len(),
            });
        }
        let mut next = self.clone();
        let mut index = Index::new(&next);
        for (i, action) in actions.iter().enumerate() {
            next.apply_one(&mut index, action)
                .map_err(|kind| ActionError::Invalid {
                    index: i,
                    action: action.name(),
                    kind,
                })?;
        }
        *self = next;
        Ok(())
    }

    /// How many trees, nodes and edges it holds.
    pub fn stats(&self) -> SkeletonStats {
        self.trees
            .values()
            .fold(SkeletonStats::default(), |acc, tree| SkeletonStats {
                trees: acc.trees + 1,
                nodes: acc.nodes + tree.nodes.len(),
                edges: acc.edges + tree.edges.len(),
            })
    }

    fn tree_mut(&mut self, id: u32) -> Result<&mut Tree, Kind> {
        self.trees.get_mut(&id).ok_or(Kind::MissingTree(id))
    }

    fn apply_one(&mut self, index: &mut Index, action: &UpdateAction) -> Result<(), Kind> {
        match action {
            UpdateAction::CreateTree {
                id,
                name,
                color,
                group_id,
                is_visible,
            } => {
                check_id("tree", *id)?;
                if self.trees.contains_key(id) {
                    return Err(Kind::DuplicateTree(*id));
                }
                check_name("tree name", name)?;
                check_color(color.as_ref())?;
                index.require_group(*group_id)?;
                self.trees.insert(
                    *id,
                    Tree {
                        id: *id,
                        name: name.clone(),
                        color: *color,
                        group_id: *group_id,
                        nodes: BTreeMap::new(),
                        edges: BTreeSet::new(),
                        comments: BTreeMap::new(),
                        branch_points: BTreeMap::new(),
                        is_visible: *is_visible,
                    },
                );
            }
            UpdateAction::DeleteTree { id } => {
                let tree = self.trees.remove(id).ok_or(Kind::MissingTree(*id))?;
                for node in tree.nodes.keys() {
                    index.node_tree.remove(node);
                }
            }
            UpdateAction::UpdateTree {
                id,
                name,
                color,
                group_id,
                is_visible,
            } => {
                check_name("tree name", name)?;
                check_color(color.as_ref())?;
                index.require_group(*group_id)?;
                let tree = self.tree_mut(*id)?;
                tree.name.clone_from(name);
                tree.color = *color;
                tree.group_id = *group_id;
                tree.is_visible = *is_visible;
            }
            UpdateAction::CreateNode { tree_id, node } => {
                let tree = self.tree_mut(*tree_id)?;
                check_id("node", node.id)?;
                if let Some(other) = index.node_tree.get(&node.id) {
                    return Err(Kind::DuplicateNode {
                        node: node.id,
                        tree: *other,
                    });
                }
                check_node(node)?;
                tree.nodes.insert(node.id, node.clone());
                index.node_tree.insert(node.id, *tree_id);
            }
            UpdateAction::UpdateNode { tree_id, node } => {
                let tree = self.tree_mut(*tree_id)?;
                index.require_node(*tree_id, node.id)?;
                check_node(node)?;
                tree.nodes.insert(node.id, node.clone());
            }
            UpdateAction::DeleteNode { tree_id, node_id } => {
                let tree = self.tree_mut(*tree_id)?;
                index.require_node(*tree_id, *node_id)?;
                tree.nodes.remove(node_id);
                tree.edges
                    .retain(|edge| edge.source != *node_id && edge.target != *node_id);
                tree.comments.remove(node_id);
                tree.branch_points.remove(node_id);
                index.node_tree.remove(node_id);
            }
            UpdateAction::CreateEdge {
                tree_id,
                source,
                target,
            } => {
                let tree = self.tree_mut(*tree_id)?;
                if source == target {
                    return Err(Kind::SelfLoop(*source));
                }
                index.require_node(*tree_id, *source)?;
                index.require_node(*tree_id, *target)?;
                let edge = Edge {
                    source: *source,
                    target: *target,
                };
                let reverse = Edge {
                    source: *target,
                    target: *source,
                };
                if tree.edges.contains(&edge) || tree.edges.contains(&reverse) {
                    return Err(Kind::DuplicateEdge {
                        tree: *tree_id,
                        from: *source,
                        to: *target,
                    });
                }
                tree.edges.insert(edge);
            }
            UpdateAction::DeleteEdge {
                tree_id,
                source,
                target,
            } => {
                let tree = self.tree_mut(*tree_id)?;
                let edge = Edge {
                    source: *source,
                    target: *target,
                };
                let reverse = Edge {
                    source: *target,
                    target: *source,
                };
                if !tree.edges.remove(&edge) && !tree.edges.remove(&reverse) {
                    return Err(Kind::MissingEdge {
                        tree: *tree_id,
                        from: *source,
                        to: *target,
                    });
                }
            }
            UpdateAction::SetComment {
                tree_id,
                node_id,
                content,
            } => {
                let tree = self.tree_mut(*tree_id)?;
                index.require_node(*tree_id, *node_id)?;
                check_comment(content)?;
                tree.comments.insert(*node_id, content.clone());
            }
            UpdateAction::DeleteComment { tree_id, node_id } => {
                let tree = self.tree_mut(*tree_id)?;
                index.require_node(*tree_id, *node_id)?;
                if tree.comments.remove(node_id).is_none() {
                    return Err(Kind::MissingComment(*node_id));
                }
            }
            UpdateAction::AddBranchPoint {
                tree_id,
                node_id,
                timestamp,
            } => {
                let tree = self.tree_mut(*tree_id)?;
                index.require_node(*tree_id, *node_id)?;
                if tree.branch_points.contains_key(node_id) {
                    return Err(Kind::DuplicateBranchPoint(*node_id));
                }
                tree.branch_points.insert(*node_id, *timestamp);
            }
            UpdateAction::DeleteBranchPoint { tree_id, node_id } => {
                let tree = self.tree_mut(*tree_id)?;
                index.require_node(*tree_id, *node_id)?;
                if tree.branch_points.remove(node_id).is_none() {
                    return Err(Kind::MissingBranchPoint(*node_id));
                }
            }
            UpdateAction::UpdateTreeGroups { tree_groups } => {
                let mut ids = HashSet::new();
                check_groups(tree_groups, 1, &mut ids)?;
                let orphan = self.trees.values().find_map(|tree| {
                    tree.group_id
                        .filter(|group| !ids.contains(group))
                        .map(|group| (tree.id, group))
                });
                if let Some((tree, group)) = orphan {
                    return Err(Kind::GroupStillUsed { group, tree });
                }
                self.tree_groups.clone_from(tree_groups);
                index.groups = ids;
            }
        }
        Ok(())
    }
}

fn check_id(what: &'static str, id: u32) -> Result<(), Kind> {
    if id > MAX_ID {
        return Err(Kind::IdOutOfRange { what, id });
    }
    Ok(())
}

fn check_name(what: &'static str, name: &str) -> Result<(), Kind> {
    if name.trim().is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(Kind::NameLength { what });
    }
    if name.chars().any(|c| c.is_control() || !is_xml_char(c)) {
        return Err(Kind::NameCharacters { what });
    }
    Ok(())
}

fn check_comment(content: &str) -> Result<(), Kind> {
    let count = content.chars().count();
    if count == 0 || count > MAX_COMMENT_CHARS {
        return Err(Kind::CommentLength);
    }
    let allowed = |c: char| matches!(c, '\t' | '\n' | '\r') || !c.is_control();
    if content.chars().any(|c| !allowed(c) || !is_xml_char(c)) {
        return Err(Kind::CommentCharacters);
    }
    Ok(())
}

fn check_color(color: Option<&[f32; 4]>) -> Result<(), Kind> {
    match color {
        Some(rgba) if !rgba.iter().all(|c| (0.0..=1.0).contains(c)) => Err(Kind::InvalidColor),
        _ => Ok(()),
    }
}

fn check_node(node: &Node) -> Result<(), Kind> {
    let invalid = |why| Kind::InvalidNode { node: node.id, why };
    if !node.position.iter().all(|v| POSITION_RANGE.contains(v)) {
        return Err(invalid("position must lie within -2147483648..=2147483647"));
    }
    if !(node.radius.is_finite() && node.radius >= 0.0) {
        return Err(invalid("radius must be a finite number, not negative"));
    }
    if !node.rotation.iter().all(|r| r.is_finite()) {
        return Err(invalid("rotation must be finite numbers"));
    }
    Ok(())
}

fn check_groups(groups: &[TreeGroup], depth: usize, ids: &mut HashSet<u32>) -> Result<(), Kind> {
    if depth > MAX_GROUP_DEPTH && !groups.is_empty() {
        return Err(Kind::GroupsTooDeep);
    }
    for group in groups {
        check_id("group", group.id)?;
        if !ids.insert(group.id) {
            return Err(Kind::DuplicateGroup(group.id));
        }
        check_name("group name", &group.name)?;
        check_groups(&group.children, depth + 1, ids)?;
    }
    Ok(())
}

/// Characters XML 1.0 can carry (its `Char` production).
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Things with an id, kept in maps by that id and written as arrays.
trait HasId {
    const WHAT: &'static str;
    fn id(&self) -> u32;
}

impl HasId for Tree {
    const WHAT: &'static str = "tree";
    fn id(&self) -> u32 {
        self.id
    }
}

impl HasId for Node {
    const WHAT: &'static str = "node";
    fn id(&self) -> u32 {
        self.id
    }
}

/// `BTreeMap<u32, T>` as an array of `T` sorted by id; repeated ids are refused.
mod list_by_id {
    use std::collections::BTreeMap;

    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::HasId;

    pub fn serialize<S: Serializer, T: Serialize>(
        map: &BTreeMap<u32, T>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(map.values())
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: HasId + Deserialize<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<u32, T>, D::Error> {
        let mut map = BTreeMap::new();
        for item in Vec::<T>::deserialize(deserializer)? {
            let id = item.id();
            if map.insert(id, item).is_some() {
                return Err(D::Error::custom(format!(
                    "{} id {id} appears twice",
                    T::WHAT
                )));
            }
        }
        Ok(map)
    }
}

/// `Tree::comments` as `[{nodeId, content}]`.
mod comment_list {
    use std::collections::BTreeMap;

    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Comment;

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Out<'a> {
        node_id: u32,
        content: &'a str,
    }

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<u32, String>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(map.iter().map(|(node_id, content)| Out {
            node_id: *node_id,
            content,
        }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<u32, String>, D::Error> {
        let mut map = BTreeMap::new();
        for comment in Vec::<Comment>::deserialize(deserializer)? {
            if map.insert(comment.node_id, comment.content).is_some() {
                return Err(D::Error::custom(format!(
                    "node {} has two comments",
                    comment.node_id
                )));
            }
        }
        Ok(map)
    }
}

/// `Tree::branch_points` as `[{nodeId, timestamp}]`.
mod branch_point_list {
    use std::collections::BTreeMap;

    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    use super::BranchPoint;

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<u32, i64>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(map.iter().map(|(node_id, timestamp)| BranchPoint {
            node_id: *node_id,
            timestamp: *timestamp,
        }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<u32, i64>, D::Error> {
        let mut map = BTreeMap::new();
        for point in Vec::<BranchPoint>::deserialize(deserializer)? {
            if map.insert(point.node_id, point.timestamp).is_some() {
                return Err(D::Error::custom(format!(
                    "node {} is a branch point twice",
                    point.node_id
                )));
            }
        }
        Ok(map)
    }
}

// ---------------------------------------------------------------------------------------------
// NML
// ---------------------------------------------------------------------------------------------

/// What an NML file says besides the skeleton (its `<parameters>` and `<meta>`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NmlMeta {
    /// `<experiment name>`: the dataset's name.
    pub dataset_name: String,
    /// `<experiment description>`: the annotation's description.
    pub description: String,
    /// `<scale x y z unit="nanometer">`: voxel size in nm.
    pub scale: [f64; 3],
    /// `<editPosition x y z>`, voxels.
    pub edit_position: Option<[f64; 3]>,
    /// `<editRotation xRot yRot zRot>`, degrees.
    pub edit_rotation: Option<[f64; 3]>,
    /// `<zoomLevel zoom>`.
    pub zoom: Option<f64>,
    /// `<time ms>`: when the annotation was created, ms since the epoch.
    pub time_ms: i64,
    /// `<meta name="annotationId" content>` (left out when empty).
    pub annotation_id: String,
}

impl NmlMeta {
    /// The NML header of `annotation` on `dataset`: the dataset's name, the annotation's
    /// description, id and creation time, and the voxel size (x, y, z in nanometres) of the
    /// dataset's first layer's finest level (1 nm when it gives none).
    pub fn of(annotation: &super::Annotation, dataset: &super::Dataset) -> Self {
        let scale = dataset
            .layers
            .first()
            .and_then(|l| {
                let level = l.levels.first()?;
                let scale = level.scale.as_ref()?;
                let size = |name: &str| {
                    let i = l.axes.iter().position(|a| a == name)?;
                    let factor = match l.units.get(i).map(String::as_str) {
                        Some("micrometer") => 1000.0,
                        Some("millimeter") => 1e6,
                        Some("meter") => 1e9,
                        _ => 1.0,
                    };
                    Some(scale.get(i)? * factor)
                };
                Some([size("x")?, size("y")?, size("z")?])
            })
            .unwrap_or([1.0, 1.0, 1.0]);
        Self {
            dataset_name: dataset.name.as_str().to_owned(),
            description: annotation.description.clone(),
            scale,
            edit_position: None,
            edit_rotation: None,
            zoom: None,
            time_ms: i64::try_from(annotation.created_at.unix_timestamp_nanos() / 1_000_000)
                .unwrap_or_default(),
            annotation_id: annotation.id.to_string(),
        }
    }
}

/// The skeleton as an NML document (UTF-8 XML), readable by webKnossos and webknossos-libs.
/// Non-finite numbers in `meta` are written as `0`.
pub fn to_nml(skeleton: &Skeleton, meta: &NmlMeta) -> String {
    let mut xml = XmlOut::default();
    xml.buf
        .push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    xml.open("things");

    xml.start("meta");
    xml.attr("name", "writer");
    xml.attr("content", "zarrshare");
    xml.end_empty();
    if !meta.annotation_id.is_empty() {
        xml.start("meta");
        xml.attr("name", "annotationId");
        xml.attr("content", &meta.annotation_id);
        xml.end_empty();
    }

    xml.open("parameters");
    xml.start("experiment");
    xml.attr("name", &meta.dataset_name);
    xml.attr("description", &meta.description);
    xml.end_empty();
    xml.start("scale");
    xml.attr("x", Num(meta.scale[0]));
    xml.attr("y", Num(meta.scale[1]));
    xml.attr("z", Num(meta.scale[2]));
    xml.attr("unit", "nanometer");
    xml.end_empty();
    xml.start("time");
    xml.attr("ms", meta.time_ms);
    xml.end_empty();
    if let Some([x, y, z]) = meta.edit_position {
        xml.start("editPosition");
        xml.attr("x", Num(x));
        xml.attr("y", Num(y));
        xml.attr("z", Num(z));
        xml.end_empty();
    }
    if let Some([x, y, z]) = meta.edit_rotation {
        xml.start("editRotation");
        xml.attr("xRot", Num(x));
        xml.attr("yRot", Num(y));
        xml.attr("zRot", Num(z));
        xml.end_empty();
    }
    if let Some(zoom) = meta.zoom {
        xml.start("zoomLevel");
        xml.attr("zoom", Num(zoom));
        xml.end_empty();
    }
    xml.close("parameters");

    for tree in skeleton.trees.values() {
        write_tree(&mut xml, tree);
    }

    // Newest first, as webKnossos writes them (ties by node id).
    let mut branch_points: Vec<(u32, i64)> = skeleton
        .trees
        .values()
        .flat_map(|tree| tree.branch_points.iter().map(|(node, time)| (*node, *time)))
        .collect();
    branch_points.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let no_branch_points = branch_points.is_empty();
    xml.container("branchpoints", no_branch_points);
    for (node, time) in branch_points {
        xml.start("branchpoint");
        xml.attr("id", node);
        xml.attr("time", time);
        xml.end_empty();
    }
    xml.close_container("branchpoints", no_branch_points);

    let no_comments = skeleton.trees.values().all(|tree| tree.comments.is_empty());
    xml.container("comments", no_comments);
    for tree in skeleton.trees.values() {
        for (node, content) in &tree.comments {
            xml.start("comment");
            xml.attr("node", node);
            xml.attr("content", content);
            xml.end_empty();
        }
    }
    xml.close_container("comments", no_comments);

    xml.container("groups", skeleton.tree_groups.is_empty());
    write_groups(&mut xml, &skeleton.tree_groups);
    xml.close_container("groups", skeleton.tree_groups.is_empty());

    xml.close("things");
    xml.buf
}

fn write_tree(xml: &mut XmlOut, tree: &Tree) {
    xml.start("thing");
    xml.attr("id", tree.id);
    if let Some([r, g, b, a]) = tree.color {
        xml.attr("color.r", NumF32(r));
        xml.attr("color.g", NumF32(g));
        xml.attr("color.b", NumF32(b));
        xml.attr("color.a", NumF32(a));
    }
    xml.attr("name", &tree.name);
    if let Some(group) = tree.group_id {
        xml.attr("groupId", group);
    }
    xml.attr("isVisible", tree.is_visible);
    xml.end_open();

    xml.container("nodes", tree.nodes.is_empty());
    for node in tree.nodes.values() {
        xml.start("node");
        xml.attr("id", node.id);
        xml.attr("radius", NumF32(node.radius));
        xml.attr("x", node.position[0]);
        xml.attr("y", node.position[1]);
        xml.attr("z", node.position[2]);
        xml.attr("rotX", Num(node.rotation[0]));
        xml.attr("rotY", Num(node.rotation[1]));
        xml.attr("rotZ", Num(node.rotation[2]));
        xml.attr("time", node.created);
        xml.end_empty();
    }
    xml.close_container("nodes", tree.nodes.is_empty());

    xml.container("edges", tree.edges.is_empty());
    for edge in &tree.edges {
        xml.start("edge");
        xml.attr("source", edge.source);
        xml.attr("target", edge.target);
        xml.end_empty();
    }
    xml.close_container("edges", tree.edges.is_empty());
    xml.close("thing");
}

fn write_groups(xml: &mut XmlOut, groups: &[TreeGroup]) {
    for group in groups {
        xml.start("group");
        xml.attr("id", group.id);
        xml.attr("name", &group.name);
        if group.children.is_empty() {
            xml.end_empty();
        } else {
            xml.end_open();
            write_groups(xml, &group.children);
            xml.close("group");
        }
    }
}

/// A number as NML carries it: shortest round-trip decimal, non-finite as `0`.
#[derive(Clone, Copy)]
struct Num(f64);

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_finite() {
            write!(f, "{}", self.0)
        } else {
            f.write_str("0")
        }
    }
}

/// The same for an `f32`, by its own shortest form (`0.1`, not `0.10000000149011612`).
#[derive(Clone, Copy)]
struct NumF32(f32);

impl fmt::Display for NumF32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_finite() {
            write!(f, "{}", self.0)
        } else {
            f.write_str("0")
        }
    }
}

/// A tiny indenting XML writer; everything NML carries is an attribute.
#[derive(Default)]
struct XmlOut {
    buf: String,
    depth: usize,
}

impl XmlOut {
    fn indent(&mut self) {
        for _ in 0..self.depth {
            self.buf.push_str("  ");
        }
    }

    /// `<name` (attributes follow, then `end_empty` or `end_open`).
    fn start(&mut self, name: &str) {
        self.indent();
        self.buf.push('<');
        self.buf.push_str(name);
    }

    fn attr(&mut self, key: &str, value: impl fmt::Display) {
        self.buf.push(' ');
        self.buf.push_str(key);
        self.buf.push_str("=\"");
        // Writing into a String cannot fail.
        let _ = write!(Escaper(&mut self.buf), "{value}");
        self.buf.push('"');
    }

    fn end_empty(&mut self) {
        self.buf.push_str("/>\n");
    }

    fn end_open(&mut self) {
        self.buf.push_str(">\n");
        self.depth += 1;
    }

    fn open(&mut self, name: &str) {
        self.start(name);
        self.end_open();
    }

    fn close(&mut self, name: &str) {
        self.depth = self.depth.saturating_sub(1);
        self.indent();
        self.buf.push_str("</");
        self.buf.push_str(name);
        self.buf.push_str(">\n");
    }

    /// `<name/>` when empty, else `<name>` (closed by `close_container`).
    fn container(&mut self, name: &str, empty: bool) {
        self.start(name);
        if empty {
            self.end_empty();
        } else {
            self.end_open();
        }
    }

    fn close_container(&mut self, name: &str, empty: bool) {
        if !empty {
            self.close(name);
        }
    }
}

/// Escapes what passes through it for use inside a double-quoted XML attribute.
struct Escaper<'a>(&'a mut String);

impl fmt::Write for Escaper<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            match c {
                '&' => self.0.push_str("&amp;"),
                '<' => self.0.push_str("&lt;"),
                '>' => self.0.push_str("&gt;"),
                '"' => self.0.push_str("&quot;"),
                '\'' => self.0.push_str("&apos;"),
                '\t' => self.0.push_str("&#9;"),
                '\n' => self.0.push_str("&#10;"),
                '\r' => self.0.push_str("&#13;"),
                c if is_xml_char(c) => self.0.push(c),
                _ => self.0.push('\u{FFFD}'),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fmt::Display;
    use std::mem::discriminant;

    use super::*;

    fn ok<T, E: Display>(result: Result<T, E>) -> T {
        result.unwrap_or_else(|e| panic!("{e}"))
    }

    fn node(id: u32, position: [i64; 3]) -> Node {
        Node {
            id,
            position,
            radius: 1.5,
            rotation: [0.0; 3],
            created: 1_000 * i64::from(id),
        }
    }

    fn create_tree(id: u32, name: &str, group_id: Option<u32>) -> UpdateAction {
        UpdateAction::CreateTree {
            id,
            name: name.to_owned(),
            color: None,
            group_id,
            is_visible: true,
        }
    }

    fn create_node(tree_id: u32, id: u32) -> UpdateAction {
        UpdateAction::CreateNode {
            tree_id,
            node: node(id, [i64::from(id), 2 * i64::from(id), 3]),
        }
    }

    fn create_edge(tree_id: u32, source: u32, target: u32) -> UpdateAction {
        UpdateAction::CreateEdge {
            tree_id,
            source,
            target,
        }
    }

    fn group(id: u32, name: &str, children: Vec<TreeGroup>) -> TreeGroup {
        TreeGroup {
            id,
            name: name.to_owned(),
            children,
        }
    }

    /// Groups 1 { 2 } and 3; tree 1 (group 2) with the path 1-2-3, a comment on 1 and a branch
    /// point on 2; tree 2 (no group) with node 4.
    fn sample_actions() -> Vec<UpdateAction> {
        vec![
            UpdateAction::UpdateTreeGroups {
                tree_groups: vec![
                    group(1, "axons", vec![group(2, "left", vec![])]),
                    group(3, "spare", vec![]),
                ],
            },
            create_tree(1, "axon", Some(2)),
            create_tree(2, "soma", None),
            create_node(1, 1),
            create_node(1, 2),
            create_node(1, 3),
            create_node(2, 4),
            create_edge(1, 1, 2),
            create_edge(1, 2, 3),
            UpdateAction::SetComment {
                tree_id: 1,
                node_id: 1,
                content: "start".to_owned(),
            },
            UpdateAction::AddBranchPoint {
                tree_id: 1,
                node_id: 2,
                timestamp: 77,
            },
        ]
    }

    fn sample() -> Skeleton {
        let mut skeleton = Skeleton::default();
        ok(skeleton.apply(&sample_actions()));
        skeleton
    }

    fn tree(skeleton: &Skeleton, id: u32) -> &Tree {
        skeleton
            .trees
            .get(&id)
            .unwrap_or_else(|| panic!("no tree {id}"))
    }

    fn edges(pairs: &[(u32, u32)]) -> BTreeSet<Edge> {
        pairs
            .iter()
            .map(|(source, target)| Edge {
                source: *source,
                target: *target,
            })
            .collect()
    }

    #[test]
    fn actions_build_the_skeleton() {
        let skeleton = sample();
        assert_eq!(
            skeleton.stats(),
            SkeletonStats {
                trees: 2,
                nodes: 4,
                edges: 2
            }
        );
        let axon = tree(&skeleton, 1);
        assert_eq!(axon.name, "axon");
        assert_eq!(axon.group_id, Some(2));
        assert_eq!(axon.nodes.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(axon.nodes.get(&2), Some(&node(2, [2, 4, 3])));
        assert_eq!(axon.edges, edges(&[(1, 2), (2, 3)]));
        assert_eq!(axon.comments.get(&1).map(String::as_str), Some("start"));
        assert_eq!(axon.branch_points, BTreeMap::from([(2, 77)]));
        assert_eq!(tree(&skeleton, 2).nodes.len(), 1);
        assert_eq!(skeleton.tree_groups.len(), 2);
    }

    #[test]
    fn deleting_a_node_removes_its_edges_comment_and_branch_point() {
        let mut skeleton = sample();
        ok(skeleton.apply(&[UpdateAction::DeleteNode {
            tree_id: 1,
            node_id: 2,
        }]));
        let axon = tree(&skeleton, 1);
        assert_eq!(axon.nodes.keys().copied().collect::<Vec<_>>(), [1, 3]);
        assert!(axon.edges.is_empty(), "{:?}", axon.edges);
        assert!(axon.branch_points.is_empty());
        assert_eq!(axon.comments.len(), 1, "the comment on node 1 stays");

        ok(skeleton.apply(&[UpdateAction::DeleteNode {
            tree_id: 1,
            node_id: 1,
        }]));
        assert!(tree(&skeleton, 1).comments.is_empty());
        assert_eq!(
            skeleton.stats(),
            SkeletonStats {
                trees: 2,
                nodes: 2,
                edges: 0
            }
        );
    }

    #[test]
    fn deleting_a_tree_removes_its_nodes_and_frees_their_ids() {
        let mut skeleton = sample();
        ok(skeleton.apply(&[
            UpdateAction::DeleteTree { id: 1 },
            // Node 2 was in tree 1; its id is free again, within the same batch.
            create_node(2, 2),
            create_edge(2, 4, 2),
        ]));
        assert_eq!(skeleton.trees.keys().copied().collect::<Vec<_>>(), [2]);
        assert_eq!(
            skeleton.stats(),
            SkeletonStats {
                trees: 1,
                nodes: 2,
                edges: 1
            }
        );
        let err = skeleton.apply(&[create_node(2, 1), create_node(2, 1)]);
        assert_eq!(
            err.map_err(|e| e.to_string()),
            Err("action 1 (createNode): node 1 already exists (in tree 2)".to_owned())
        );
    }

    #[test]
    fn edges_are_undirected_and_delete_in_either_direction() {
        let mut skeleton = sample();
        let err = skeleton.apply(&[create_edge(1, 3, 2)]);
        assert_eq!(
            err.map_err(|e| e.to_string()),
            Err(
                "action 0 (createEdge): tree 1 already has an edge between nodes 3 and 2"
                    .to_owned()
            )
        );
        ok(skeleton.apply(&[
            UpdateAction::DeleteEdge {
                tree_id: 1,
                source: 2,
                target: 1,
            },
            UpdateAction::DeleteEdge {
                tree_id: 1,
                source: 2,
                target: 3,
            },
            create_edge(1, 3, 1),
        ]));
        assert_eq!(tree(&skeleton, 1).edges, edges(&[(3, 1)]));
    }

    #[test]
    fn updates_replace_tree_and_node_properties() {
        let mut skeleton = sample();
        let moved = Node {
            id: 3,
            position: [-5, 0, 2_147_483_647],
            radius: 0.0,
            rotation: [90.0, -45.5, 0.25],
            created: 9,
        };
        ok(skeleton.apply(&[
            UpdateAction::UpdateTree {
                id: 1,
                name: "axon 2".to_owned(),
                color: Some([0.1, 0.2, 0.3, 1.0]),
                group_id: Some(3),
                is_visible: false,
            },
            UpdateAction::UpdateNode {
                tree_id: 1,
                node: moved.clone(),
            },
            UpdateAction::SetComment {
                tree_id: 1,
                node_id: 1,
                content: "replaced\nwith two lines".to_owned(),
            },
            UpdateAction::DeleteBranchPoint {
                tree_id: 1,
                node_id: 2,
            },
            UpdateAction::AddBranchPoint {
                tree_id: 1,
                node_id: 3,
                timestamp: 5,
            },
        ]));
        let axon = tree(&skeleton, 1);
        assert_eq!(axon.name, "axon 2");
        assert_eq!(axon.color, Some([0.1, 0.2, 0.3, 1.0]));
        assert_eq!(axon.group_id, Some(3));
        assert!(!axon.is_visible);
        assert_eq!(axon.nodes.get(&3), Some(&moved));
        assert_eq!(axon.edges.len(), 2, "updates keep the edges");
        assert_eq!(
            axon.comments.get(&1).map(String::as_str),
            Some("replaced\nwith two lines")
        );
        assert_eq!(axon.branch_points, BTreeMap::from([(3, 5)]));

        ok(skeleton.apply(&[
            UpdateAction::DeleteComment {
                tree_id: 1,
                node_id: 1,
            },
            // Group 2 is no longer used by any tree, so it may go.
            UpdateAction::UpdateTreeGroups {
                tree_groups: vec![group(3, "kept", vec![])],
            },
        ]));
        assert!(tree(&skeleton, 1).comments.is_empty());
        assert_eq!(skeleton.tree_groups, vec![group(3, "kept", vec![])]);
    }

    #[test]
    fn every_error_kind_names_the_action() {
        let deep = (1..=u32::try_from(MAX_GROUP_DEPTH + 1).unwrap_or(0))
            .rev()
            .fold(Vec::new(), |children, id| {
                vec![group(100 + id, "g", children)]
            });
        let within = (1..=u32::try_from(MAX_GROUP_DEPTH).unwrap_or(0))
            .rev()
            .fold(Vec::new(), |children, id| {
                vec![group(100 + id, "g", children)]
            });
        let mut bad_node = node(9, [0, 0, 0]);
        bad_node.position[1] = i64::from(i32::MAX) + 1;
        let mut nan_radius = node(9, [0, 0, 0]);
        nan_radius.radius = f32::NAN;
        let mut negative_radius = node(9, [0, 0, 0]);
        negative_radius.radius = -1.0;
        let mut inf_rotation = node(9, [0, 0, 0]);
        inf_rotation.rotation[2] = f64::INFINITY;
        let comment = |content: &str| UpdateAction::SetComment {
            tree_id: 1,
            node_id: 1,
            content: content.to_owned(),
        };
        let colored = |color: [f32; 4]| UpdateAction::CreateTree {
            id: 9,
            name: "c".to_owned(),
            color: Some(color),
            group_id: None,
            is_visible: true,
        };

        let cases: Vec<(Vec<UpdateAction>, &str)> = vec![
            (
                vec![create_tree(MAX_ID + 1, "x", None)],
                "action 0 (createTree): tree id 2147483648 is too large (at most 2147483647)",
            ),
            (
                vec![create_node(2, MAX_ID + 1)],
                "action 0 (createNode): node id 2147483648 is too large (at most 2147483647)",
            ),
            (
                vec![UpdateAction::UpdateTreeGroups {
                    tree_groups: vec![group(MAX_ID + 1, "x", vec![])],
                }],
                "action 0 (updateTreeGroups): group id 2147483648 is too large (at most 2147483647)",
            ),
            (
                vec![create_tree(9, "new", None), create_tree(1, "again", None)],
                "action 1 (createTree): tree 1 already exists",
            ),
            (
                vec![create_node(2, 3)],
                "action 0 (createNode): node 3 already exists (in tree 1)",
            ),
            (
                vec![UpdateAction::UpdateTreeGroups {
                    tree_groups: vec![group(1, "a", vec![group(1, "b", vec![])])],
                }],
                "action 0 (updateTreeGroups): group id 1 is used more than once",
            ),
            (
                vec![create_node(7, 9)],
                "action 0 (createNode): tree 7 does not exist",
            ),
            (
                vec![UpdateAction::DeleteTree { id: 7 }],
                "action 0 (deleteTree): tree 7 does not exist",
            ),
            (
                vec![
                    create_node(2, 9),
                    create_node(2, 10),
                    create_edge(1, 7, 1),
                    create_edge(2, 9, 10),
                ],
                "action 2 (createEdge): node 7 is not in tree 1",
            ),
            (
                vec![create_edge(2, 4, 1)],
                "action 0 (createEdge): node 1 is not in tree 2",
            ),
            (
                vec![UpdateAction::UpdateNode {
                    tree_id: 2,
                    node: node(1, [0, 0, 0]),
                }],
                "action 0 (updateNode): node 1 is not in tree 2",
            ),
            (
                vec![UpdateAction::DeleteNode {
                    tree_id: 1,
                    node_id: 4,
                }],
                "action 0 (deleteNode): node 4 is not in tree 1",
            ),
            (
                vec![create_tree(9, "x", Some(7))],
                "action 0 (createTree): group 7 does not exist",
            ),
            (
                vec![UpdateAction::UpdateTree {
                    id: 2,
                    name: "soma".to_owned(),
                    color: None,
                    group_id: Some(8),
                    is_visible: true,
                }],
                "action 0 (updateTree): group 8 does not exist",
            ),
            (
                vec![UpdateAction::UpdateTreeGroups {
                    tree_groups: vec![group(1, "axons", vec![])],
                }],
                "action 0 (updateTreeGroups): tree 1 is in group 2, which the new groups do not contain",
            ),
            (
                vec![create_edge(1, 3, 3)],
                "action 0 (createEdge): an edge cannot connect node 3 to itself",
            ),
            (
                vec![create_edge(1, 1, 2)],
                "action 0 (createEdge): tree 1 already has an edge between nodes 1 and 2",
            ),
            (
                vec![UpdateAction::DeleteEdge {
                    tree_id: 1,
                    source: 1,
                    target: 3,
                }],
                "action 0 (deleteEdge): tree 1 has no edge between nodes 1 and 3",
            ),
            (
                vec![UpdateAction::DeleteComment {
                    tree_id: 1,
                    node_id: 2,
                }],
                "action 0 (deleteComment): node 2 has no comment",
            ),
            (
                vec![UpdateAction::AddBranchPoint {
                    tree_id: 1,
                    node_id: 2,
                    timestamp: 1,
                }],
                "action 0 (addBranchPoint): node 2 is already a branch point",
            ),
            (
                vec![UpdateAction::DeleteBranchPoint {
                    tree_id: 1,
                    node_id: 3,
                }],
                "action 0 (deleteBranchPoint): node 3 is not a branch point",
            ),
            (
                vec![create_tree(9, "", None)],
                "action 0 (createTree): tree name must be 1-1000 characters and not blank",
            ),
            (
                vec![create_tree(9, " \t ", None)],
                "action 0 (createTree): tree name must be 1-1000 characters and not blank",
            ),
            (
                vec![create_tree(9, &"x".repeat(MAX_NAME_CHARS + 1), None)],
                "action 0 (createTree): tree name must be 1-1000 characters and not blank",
            ),
            (
                vec![UpdateAction::UpdateTreeGroups {
                    tree_groups: vec![group(5, "", vec![])],
                }],
                "action 0 (updateTreeGroups): group name must be 1-1000 characters and not blank",
            ),
            (
                vec![create_tree(9, "two\nlines", None)],
                "action 0 (createTree): tree name must not contain control characters",
            ),
            (
                vec![comment("")],
                "action 0 (setComment): comment must be 1-10000 characters",
            ),
            (
                vec![comment(&"é".repeat(MAX_COMMENT_CHARS + 1))],
                "action 0 (setComment): comment must be 1-10000 characters",
            ),
            (
                vec![comment("bell \u{7}")],
                "action 0 (setComment): comment must not contain control characters other than tab and line breaks",
            ),
            (
                vec![comment("not xml \u{FFFE}")],
                "action 0 (setComment): comment must not contain control characters other than tab and line breaks",
            ),
            (
                vec![UpdateAction::CreateNode {
                    tree_id: 2,
                    node: bad_node,
                }],
                "action 0 (createNode): node 9: position must lie within -2147483648..=2147483647",
            ),
            (
                vec![UpdateAction::CreateNode {
                    tree_id: 2,
                    node: nan_radius,
                }],
                "action 0 (createNode): node 9: radius must be a finite number, not negative",
            ),
            (
                vec![UpdateAction::CreateNode {
                    tree_id: 2,
                    node: negative_radius,
                }],
                "action 0 (createNode): node 9: radius must be a finite number, not negative",
            ),
            (
                vec![UpdateAction::CreateNode {
                    tree_id: 2,
                    node: inf_rotation,
                }],
                "action 0 (createNode): node 9: rotation must be finite numbers",
            ),
            (
                vec![colored([0.0, 1.5, 0.0, 1.0])],
                "action 0 (createTree): tree colour components must be finite numbers from 0 to 1",
            ),
            (
                vec![colored([f32::NAN, 0.0, 0.0, 1.0])],
                "action 0 (createTree): tree colour components must be finite numbers from 0 to 1",
            ),
            (
                vec![
                    UpdateAction::UpdateTreeGroups {
                        tree_groups: [within, vec![group(2, "left", vec![])]].concat(),
                    },
                    UpdateAction::UpdateTreeGroups { tree_groups: deep },
                ],
                "action 1 (updateTreeGroups): tree groups must not nest deeper than 50 levels",
            ),
        ];

        let before = sample();
        let mut kinds = Vec::new();
        for (actions, expected) in cases {
            let mut skeleton = before.clone();
            let err = match skeleton.apply(&actions) {
                Ok(()) => panic!("{expected:?}: the actions were accepted"),
                Err(err) => err,
            };
            assert_eq!(err.to_string(), expected);
            assert_eq!(skeleton, before, "{expected}: the skeleton changed");
            match err {
                ActionError::Invalid { kind, .. } => kinds.push(discriminant(&kind)),
                ActionError::TooManyActions { .. } => panic!("{expected}: {err}"),
            }
        }
        kinds.sort_by_key(|kind| format!("{kind:?}"));
        kinds.dedup();
        // Every variant of ActionErrorKind is produced by some case above.
        assert_eq!(kinds.len(), 21);
    }

    #[test]
    fn a_failing_last_action_leaves_the_skeleton_unchanged() {
        let before = sample();
        let mut prefix = vec![
            create_tree(9, "new", Some(3)),
            create_node(9, 20),
            create_node(9, 21),
            create_edge(9, 20, 21),
            UpdateAction::DeleteTree { id: 2 },
            UpdateAction::DeleteNode {
                tree_id: 1,
                node_id: 1,
            },
            UpdateAction::UpdateTreeGroups {
                tree_groups: vec![
                    group(1, "a", vec![group(2, "b", vec![])]),
                    group(3, "c", vec![]),
                ],
            },
        ];

        let mut changed = before.clone();
        ok(changed.apply(&prefix));
        assert_ne!(changed, before, "the prefix alone changes the skeleton");

        prefix.push(create_edge(9, 20, 4));
        let mut skeleton = before.clone();
        let err = skeleton.apply(&prefix);
        assert_eq!(
            err.map_err(|e| e.to_string()),
            Err("action 7 (createEdge): node 4 is not in tree 9".to_owned())
        );
        assert_eq!(skeleton, before);
    }

    #[test]
    fn at_most_max_actions_per_save() {
        let actions: Vec<UpdateAction> = (1..=u32::try_from(MAX_ACTIONS_PER_SAVE + 1).unwrap_or(0))
            .map(|id| create_tree(id, "t", None))
            .collect();
        let mut skeleton = Skeleton::default();
        let err = skeleton.apply(&actions);
        assert_eq!(
            err.map_err(|e| e.to_string()),
            Err("a save may hold at most 5000 actions, this one has 5001".to_owned())
        );
        assert_eq!(skeleton, Skeleton::default());

        ok(skeleton.apply(&actions[..MAX_ACTIONS_PER_SAVE]));
        assert_eq!(skeleton.stats().trees, 5000);
        ok(skeleton.apply(&[]));
        assert_eq!(skeleton.stats().trees, 5000);
    }

    #[test]
    fn json_round_trip_uses_arrays_and_camel_case() {
        let mut skeleton = sample();
        ok(skeleton.apply(&[create_tree(0, "first", Some(1))]));
        let json = ok(serde_json::to_value(&skeleton));
        let ids: Vec<_> = json["trees"]
            .as_array()
            .map(|trees| trees.iter().map(|tree| tree["id"].clone()).collect())
            .unwrap_or_default();
        assert_eq!(ids, [0, 1, 2]);
        let axon = &json["trees"][1];
        assert_eq!(axon["groupId"], 2);
        assert_eq!(axon["isVisible"], true);
        assert_eq!(axon["color"], serde_json::Value::Null);
        assert_eq!(
            axon["nodes"][1],
            serde_json::json!({"id": 2, "position": [2, 4, 3], "radius": 1.5,
                "rotation": [0.0, 0.0, 0.0], "created": 2000})
        );
        assert_eq!(
            axon["edges"],
            serde_json::json!([{"source": 1, "target": 2}, {"source": 2, "target": 3}])
        );
        assert_eq!(
            axon["comments"],
            serde_json::json!([{"nodeId": 1, "content": "start"}])
        );
        assert_eq!(
            axon["branchPoints"],
            serde_json::json!([{"nodeId": 2, "timestamp": 77}])
        );
        assert_eq!(json["treeGroups"][0]["children"][0]["name"], "left");

        let back: Skeleton = ok(serde_json::from_value(json));
        assert_eq!(back, skeleton);
    }

    #[test]
    fn json_fills_defaults_and_refuses_repeated_ids() {
        let minimal: Skeleton = ok(serde_json::from_str(
            r#"{"trees": [{"id": 3, "name": "t", "nodes": [{"id": 1, "position": [1, 2, 3], "radius": 1, "created": 5}]}]}"#,
        ));
        let tree = tree(&minimal, 3);
        assert!(tree.is_visible);
        assert_eq!(tree.group_id, None);
        assert_eq!(tree.nodes.get(&1).map(|n| n.rotation), Some([0.0; 3]));
        assert!(minimal.tree_groups.is_empty());
        assert_eq!(
            ok(serde_json::from_str::<Skeleton>("{}")),
            Skeleton::default()
        );

        for (json, expected) in [
            (
                r#"{"trees": [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]}"#,
                "tree id 1 appears twice",
            ),
            (
                r#"{"trees": [{"id": 1, "name": "a", "nodes": [
                    {"id": 4, "position": [0, 0, 0], "radius": 1, "created": 0},
                    {"id": 4, "position": [1, 0, 0], "radius": 1, "created": 0}]}]}"#,
                "node id 4 appears twice",
            ),
            (
                r#"{"trees": [{"id": 1, "name": "a", "comments": [
                    {"nodeId": 4, "content": "x"}, {"nodeId": 4, "content": "y"}]}]}"#,
                "node 4 has two comments",
            ),
            (
                r#"{"trees": [{"id": 1, "name": "a", "branchPoints": [
                    {"nodeId": 4, "timestamp": 1}, {"nodeId": 4, "timestamp": 2}]}]}"#,
                "node 4 is a branch point twice",
            ),
        ] {
            match serde_json::from_str::<Skeleton>(json) {
                Ok(skeleton) => panic!("{expected}: accepted {skeleton:?}"),
                Err(err) => assert!(err.to_string().contains(expected), "{err}"),
            }
        }
    }

    #[test]
    fn actions_use_webknossos_names_and_value_objects() {
        let parsed: Vec<UpdateAction> = ok(serde_json::from_str(
            r#"[
                {"name": "createTree", "value": {"id": 5, "name": "t", "groupId": null}},
                {"name": "createNode", "value": {"treeId": 5, "node":
                    {"id": 1, "position": [1, 2, 3], "radius": 2, "rotation": [0, 0, 0], "created": 7}}},
                {"name": "createNode", "value": {"treeId": 5, "node":
                    {"id": 2, "position": [1, 2, 4], "radius": 2, "created": 8}}},
                {"name": "createEdge", "value": {"treeId": 5, "source": 1, "target": 2}},
                {"name": "setComment", "value": {"treeId": 5, "nodeId": 2, "content": "end"}},
                {"name": "addBranchPoint", "value": {"treeId": 5, "nodeId": 1, "timestamp": 9}}
            ]"#,
        ));
        assert_eq!(parsed[0], create_tree(5, "t", None));
        assert_eq!(parsed[3], create_edge(5, 1, 2));
        let mut skeleton = Skeleton::default();
        ok(skeleton.apply(&parsed));
        assert_eq!(
            skeleton.stats(),
            SkeletonStats {
                trees: 1,
                nodes: 2,
                edges: 1
            }
        );

        let all = [
            create_tree(1, "t", Some(2)),
            UpdateAction::DeleteTree { id: 1 },
            UpdateAction::UpdateTree {
                id: 1,
                name: "t".to_owned(),
                color: Some([1.0, 0.0, 0.0, 1.0]),
                group_id: None,
                is_visible: false,
            },
            create_node(1, 2),
            UpdateAction::UpdateNode {
                tree_id: 1,
                node: node(2, [0, 0, 0]),
            },
            UpdateAction::DeleteNode {
                tree_id: 1,
                node_id: 2,
            },
            create_edge(1, 2, 3),
            UpdateAction::DeleteEdge {
                tree_id: 1,
                source: 2,
                target: 3,
            },
            UpdateAction::SetComment {
                tree_id: 1,
                node_id: 2,
                content: "c".to_owned(),
            },
            UpdateAction::DeleteComment {
                tree_id: 1,
                node_id: 2,
            },
            UpdateAction::AddBranchPoint {
                tree_id: 1,
                node_id: 2,
                timestamp: 3,
            },
            UpdateAction::DeleteBranchPoint {
                tree_id: 1,
                node_id: 2,
            },
            UpdateAction::UpdateTreeGroups {
                tree_groups: vec![group(1, "g", vec![])],
            },
        ];
        for action in all {
            let json = ok(serde_json::to_value(&action));
            assert_eq!(json["name"], action.name());
            let keys: Vec<&String> = json["value"]
                .as_object()
                .map(|value| value.keys().collect())
                .unwrap_or_default();
            assert!(!keys.is_empty(), "{json}");
            assert!(keys.iter().all(|key| !key.contains('_')), "{json}");
            let back: UpdateAction = ok(serde_json::from_value(json));
            assert_eq!(back, action);
        }
    }

    #[test]
    fn openapi_schemas_use_the_wire_names() {
        let tree = ok(serde_json::to_string(
            &<Tree as utoipa::PartialSchema>::schema(),
        ));
        for key in [
            "\"groupId\"",
            "\"isVisible\"",
            "\"branchPoints\"",
            "\"comments\"",
        ] {
            assert!(tree.contains(key), "{key} missing from {tree}");
        }
        assert!(!tree.contains("branch_points"), "{tree}");
        let actions = ok(serde_json::to_string(
            &<UpdateAction as utoipa::PartialSchema>::schema(),
        ));
        for key in [
            "\"treeId\"",
            "\"nodeId\"",
            "\"createEdge\"",
            "\"treeGroups\"",
            "\"value\"",
        ] {
            assert!(actions.contains(key), "{key} missing from {actions}");
        }
        assert!(!actions.contains("tree_id"), "{actions}");
    }

    // ---- NML ----

    fn golden_meta() -> NmlMeta {
        NmlMeta {
            dataset_name: "ds".to_owned(),
            description: String::new(),
            scale: [11.24, 11.24, 28.0],
            edit_position: Some([10.0, 20.0, 30.0]),
            edit_rotation: Some([0.0, 0.0, 0.0]),
            zoom: Some(1.5),
            time_ms: 1_700_000_000_000,
            annotation_id: "a1".to_owned(),
        }
    }

    fn golden_skeleton() -> Skeleton {
        let mut skeleton = Skeleton::default();
        ok(skeleton.apply(&[
            UpdateAction::UpdateTreeGroups {
                tree_groups: vec![
                    group(1, "Axons", vec![group(2, "Left", vec![])]),
                    group(3, "Spare", vec![]),
                ],
            },
            UpdateAction::CreateTree {
                id: 1,
                name: "axon".to_owned(),
                color: Some([1.0, 0.0, 0.0, 1.0]),
                group_id: Some(2),
                is_visible: true,
            },
            UpdateAction::CreateTree {
                id: 2,
                name: "soma".to_owned(),
                color: None,
                group_id: None,
                is_visible: false,
            },
            UpdateAction::CreateNode {
                tree_id: 1,
                node: node(1, [10, 20, 30]),
            },
            UpdateAction::CreateNode {
                tree_id: 1,
                node: Node {
                    id: 2,
                    position: [11, 20, 30],
                    radius: 2.0,
                    rotation: [90.0, 0.0, 0.5],
                    created: 2000,
                },
            },
            create_edge(1, 1, 2),
            UpdateAction::SetComment {
                tree_id: 1,
                node_id: 2,
                content: "tip".to_owned(),
            },
            UpdateAction::AddBranchPoint {
                tree_id: 1,
                node_id: 1,
                timestamp: 3000,
            },
            UpdateAction::AddBranchPoint {
                tree_id: 1,
                node_id: 2,
                timestamp: 5000,
            },
        ]));
        skeleton
    }

    const GOLDEN: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<things>
  <meta name="writer" content="zarrshare"/>
  <meta name="annotationId" content="a1"/>
  <parameters>
    <experiment name="ds" description=""/>
    <scale x="11.24" y="11.24" z="28" unit="nanometer"/>
    <time ms="1700000000000"/>
    <editPosition x="10" y="20" z="30"/>
    <editRotation xRot="0" yRot="0" zRot="0"/>
    <zoomLevel zoom="1.5"/>
  </parameters>
  <thing id="1" color.r="1" color.g="0" color.b="0" color.a="1" name="axon" groupId="2" isVisible="true">
    <nodes>
      <node id="1" radius="1.5" x="10" y="20" z="30" rotX="0" rotY="0" rotZ="0" time="1000"/>
      <node id="2" radius="2" x="11" y="20" z="30" rotX="90" rotY="0" rotZ="0.5" time="2000"/>
    </nodes>
    <edges>
      <edge source="1" target="2"/>
    </edges>
  </thing>
  <thing id="2" name="soma" isVisible="false">
    <nodes/>
    <edges/>
  </thing>
  <branchpoints>
    <branchpoint id="2" time="5000"/>
    <branchpoint id="1" time="3000"/>
  </branchpoints>
  <comments>
    <comment node="2" content="tip"/>
  </comments>
  <groups>
    <group id="1" name="Axons">
      <group id="2" name="Left"/>
    </group>
    <group id="3" name="Spare"/>
  </groups>
</things>
"#;

    #[test]
    fn nml_matches_the_golden_file() {
        assert_eq!(to_nml(&golden_skeleton(), &golden_meta()), GOLDEN);
    }

    #[test]
    fn nml_of_an_empty_skeleton_has_empty_containers_and_no_optional_parts() {
        let meta = NmlMeta {
            dataset_name: "ds".to_owned(),
            scale: [1.0, 2.0, 3.5],
            time_ms: 0,
            ..NmlMeta::default()
        };
        let expected = r#"<?xml version="1.0" encoding="UTF-8"?>
<things>
  <meta name="writer" content="zarrshare"/>
  <parameters>
    <experiment name="ds" description=""/>
    <scale x="1" y="2" z="3.5" unit="nanometer"/>
    <time ms="0"/>
  </parameters>
  <branchpoints/>
  <comments/>
  <groups/>
</things>
"#;
        assert_eq!(to_nml(&Skeleton::default(), &meta), expected);
    }

    #[test]
    fn nml_escapes_markup_and_line_breaks() {
        let name = r#"a<b & "c" 'd'>"#;
        let content = "line 1\nline 2\ttab\r & <x> \"q\" 'a'";
        let mut skeleton = Skeleton::default();
        ok(skeleton.apply(&[
            UpdateAction::UpdateTreeGroups {
                tree_groups: vec![group(4, "<&>", vec![])],
            },
            create_tree(1, name, Some(4)),
            create_node(1, 1),
            UpdateAction::SetComment {
                tree_id: 1,
                node_id: 1,
                content: content.to_owned(),
            },
        ]));
        let meta = NmlMeta {
            dataset_name: "bad \u{1} char & more".to_owned(),
            description: "say \"hi\"\n".to_owned(),
            annotation_id: "<id>".to_owned(),
            ..golden_meta()
        };
        let nml = to_nml(&skeleton, &meta);
        for expected in [
            r#"name="a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;""#,
            r#"content="line 1&#10;line 2&#9;tab&#13; &amp; &lt;x&gt; &quot;q&quot; &apos;a&apos;""#,
            r#"<group id="4" name="&lt;&amp;&gt;"/>"#,
            "<experiment name=\"bad \u{FFFD} char &amp; more\" description=\"say &quot;hi&quot;&#10;\"/>",
            r#"<meta name="annotationId" content="&lt;id&gt;"/>"#,
        ] {
            assert!(nml.contains(expected), "{expected} not in\n{nml}");
        }

        let root = ok(parse_xml(&nml));
        let (back, parsed) = from_nml(&root);
        assert_eq!(back, skeleton);
        assert_eq!(parsed.dataset_name, "bad \u{FFFD} char & more");
        assert_eq!(parsed.description, "say \"hi\"\n");
        assert_eq!(parsed.annotation_id, "<id>");
    }

    #[test]
    fn nml_writes_non_finite_parameters_as_zero() {
        let meta = NmlMeta {
            scale: [f64::NAN, f64::INFINITY, 4.0],
            zoom: Some(f64::NEG_INFINITY),
            ..golden_meta()
        };
        let nml = to_nml(&Skeleton::default(), &meta);
        assert!(
            nml.contains(r#"<scale x="0" y="0" z="4" unit="nanometer"/>"#),
            "{nml}"
        );
        assert!(nml.contains(r#"<zoomLevel zoom="0"/>"#), "{nml}");
    }

    #[test]
    fn nml_parses_back_into_the_same_skeleton() {
        let mut actions = vec![UpdateAction::UpdateTreeGroups {
            tree_groups: vec![
                group(
                    1,
                    "top",
                    vec![group(2, "mid", vec![group(3, "Zellkörper 🧠", vec![])])],
                ),
                group(4, "other", vec![]),
            ],
        }];
        let mut next_node = 1;
        for tree_id in 1..=4_u32 {
            actions.push(UpdateAction::CreateTree {
                id: tree_id * 10,
                name: format!("tree {tree_id}"),
                color: (tree_id % 2 == 0).then_some([0.1, 0.2 * 0.5, 0.3, 0.7]),
                group_id: (tree_id < 4).then_some(tree_id),
                is_visible: tree_id != 3,
            });
            let first = next_node;
            for k in 0..5_i64 {
                actions.push(UpdateAction::CreateNode {
                    tree_id: tree_id * 10,
                    node: Node {
                        id: next_node,
                        position: [-1_000 + 37 * k, 2_000_000 - k, 3 * k],
                        radius: 0.1 + f32::from(u8::try_from(k).unwrap_or(0)) / 3.0,
                        rotation: [k as f64 / 7.0, -12.5, 1e-9],
                        created: 1_700_000_000_000 + k,
                    },
                });
                if next_node > first {
                    actions.push(create_edge(tree_id * 10, next_node - 1, next_node));
                }
                next_node += 1;
            }
            actions.push(UpdateAction::SetComment {
                tree_id: tree_id * 10,
                node_id: first,
                content: format!("first of {tree_id}: → ✓ \"ok\""),
            });
            actions.push(UpdateAction::AddBranchPoint {
                tree_id: tree_id * 10,
                node_id: first + 2,
                timestamp: i64::from(tree_id),
            });
        }
        let mut skeleton = Skeleton::default();
        ok(skeleton.apply(&actions));
        assert_eq!(skeleton.stats().nodes, 20);

        let meta = golden_meta();
        let root = ok(parse_xml(&to_nml(&skeleton, &meta)));
        let order: Vec<&str> = root.children.iter().map(|el| el.name.as_str()).collect();
        assert_eq!(
            order,
            [
                "meta",
                "meta",
                "parameters",
                "thing",
                "thing",
                "thing",
                "thing",
                "branchpoints",
                "comments",
                "groups"
            ]
        );
        let times: Vec<&str> = root
            .child("branchpoints")
            .all("branchpoint")
            .map(|bp| bp.req("time"))
            .collect();
        assert_eq!(times, ["4", "3", "2", "1"], "newest first");
        let (back, parsed) = from_nml(&root);
        assert_eq!(back, skeleton);
        assert_eq!(parsed, meta);
    }

    // ---- a minimal XML reader for the checks above ----

    #[derive(Debug, PartialEq)]
    struct El {
        name: String,
        attrs: Vec<(String, String)>,
        children: Vec<El>,
    }

    impl El {
        fn attr(&self, key: &str) -> Option<&str> {
            self.attrs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        }

        fn req(&self, key: &str) -> &str {
            self.attr(key)
                .unwrap_or_else(|| panic!("<{}> has no {key}", self.name))
        }

        fn num<T: std::str::FromStr>(&self, key: &str) -> T {
            let text = self.req(key);
            text.parse()
                .unwrap_or_else(|_| panic!("<{} {key}={text:?}> is not a number", self.name))
        }

        fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a El> + 'a {
            self.children.iter().filter(move |el| el.name == name)
        }

        fn child(&self, name: &str) -> &El {
            let mut found = self.children.iter().filter(|el| el.name == name);
            match (found.next(), found.next()) {
                (Some(el), None) => el,
                _ => panic!("<{}> needs exactly one <{name}>", self.name),
            }
        }
    }

    struct Reader<'a> {
        rest: &'a str,
    }

    impl Reader<'_> {
        fn eat(&mut self, literal: &str) -> bool {
            match self.rest.strip_prefix(literal) {
                Some(rest) => {
                    self.rest = rest;
                    true
                }
                None => false,
            }
        }

        fn skip_space(&mut self) -> bool {
            let trimmed = self.rest.trim_start_matches([' ', '\n', '\t', '\r']);
            let skipped = trimmed.len() < self.rest.len();
            self.rest = trimmed;
            skipped
        }

        fn name(&mut self) -> Result<String, String> {
            let end = self
                .rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
                .unwrap_or(self.rest.len());
            if end == 0 {
                return Err(format!("expected a name at {:?}", self.head()));
            }
            let (name, rest) = self.rest.split_at(end);
            self.rest = rest;
            Ok(name.to_owned())
        }

        fn head(&self) -> String {
            self.rest.chars().take(20).collect()
        }

        fn value(&mut self) -> Result<String, String> {
            if !self.eat("\"") {
                return Err(format!("expected '\"' at {:?}", self.head()));
            }
            let mut out = String::new();
            let mut chars = self.rest.char_indices();
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        self.rest = &self.rest[i + 1..];
                        return Ok(out);
                    }
                    '<' => return Err("raw '<' in an attribute value".to_owned()),
                    // Attribute-value normalisation: literal whitespace becomes a space.
                    '\n' | '\t' | '\r' => out.push(' '),
                    '&' => {
                        let entity: String = chars
                            .by_ref()
                            .map(|(_, c)| c)
                            .take_while(|c| *c != ';')
                            .collect();
                        let decoded = match entity.as_str() {
                            "amp" => '&',
                            "lt" => '<',
                            "gt" => '>',
                            "quot" => '"',
                            "apos" => '\'',
                            _ => entity
                                .strip_prefix('#')
                                .and_then(|n| n.parse::<u32>().ok())
                                .and_then(char::from_u32)
                                .ok_or_else(|| format!("bad entity &{entity};"))?,
                        };
                        out.push(decoded);
                    }
                    c => out.push(c),
                }
            }
            Err("unterminated attribute value".to_owned())
        }

        fn element(&mut self) -> Result<El, String> {
            if !self.eat("<") {
                return Err(format!("expected '<' at {:?}", self.head()));
            }
            let name = self.name()?;
            let mut attrs: Vec<(String, String)> = Vec::new();
            loop {
                let spaced = self.skip_space();
                if self.eat("/>") {
                    return Ok(El {
                        name,
                        attrs,
                        children: Vec::new(),
                    });
                }
                if self.eat(">") {
                    break;
                }
                if !spaced {
                    return Err(format!("attributes of <{name}> need spaces between them"));
                }
                let key = self.name()?;
                if !self.eat("=") {
                    return Err(format!("expected '=' after {key}"));
                }
                let value = self.value()?;
                if attrs.iter().any(|(k, _)| *k == key) {
                    return Err(format!("<{name}> repeats {key}"));
                }
                attrs.push((key, value));
            }
            let mut children = Vec::new();
            loop {
                self.skip_space();
                if self.eat("</") {
                    let end = self.name()?;
                    self.skip_space();
                    if end != name || !self.eat(">") {
                        return Err(format!("<{name}> closed by </{end}"));
                    }
                    return Ok(El {
                        name,
                        attrs,
                        children,
                    });
                }
                if self.rest.starts_with('<') {
                    children.push(self.element()?);
                } else {
                    return Err(format!("text in <{name}>: {:?}", self.head()));
                }
            }
        }
    }

    fn parse_xml(text: &str) -> Result<El, String> {
        let mut reader = Reader { rest: text };
        if !reader.eat(r#"<?xml version="1.0" encoding="UTF-8"?>"#) {
            return Err("no XML declaration".to_owned());
        }
        reader.skip_space();
        let root = reader.element()?;
        reader.skip_space();
        if !reader.rest.is_empty() {
            return Err(format!("content after the root: {:?}", reader.head()));
        }
        Ok(root)
    }

    /// Reads an NML back the way webKnossos' readers do (only what `to_nml` writes).
    fn from_nml(root: &El) -> (Skeleton, NmlMeta) {
        assert_eq!(root.name, "things");
        let meta_content = |name: &str| {
            root.all("meta")
                .find(|m| m.req("name") == name)
                .map(|m| m.req("content").to_owned())
                .unwrap_or_else(|| panic!("no meta {name}"))
        };
        assert_eq!(meta_content("writer"), "zarrshare");
        let params = root.child("parameters");
        let experiment = params.child("experiment");
        let scale = params.child("scale");
        assert_eq!(scale.req("unit"), "nanometer");
        let xyz = |el: &El, keys: [&str; 3]| keys.map(|k| el.num::<f64>(k));
        let meta = NmlMeta {
            dataset_name: experiment.req("name").to_owned(),
            description: experiment.req("description").to_owned(),
            scale: xyz(scale, ["x", "y", "z"]),
            edit_position: params
                .all("editPosition")
                .next()
                .map(|el| xyz(el, ["x", "y", "z"])),
            edit_rotation: params
                .all("editRotation")
                .next()
                .map(|el| xyz(el, ["xRot", "yRot", "zRot"])),
            zoom: params.all("zoomLevel").next().map(|el| el.num("zoom")),
            time_ms: params.child("time").num("ms"),
            annotation_id: meta_content("annotationId"),
        };

        let mut skeleton = Skeleton::default();
        for thing in root.all("thing") {
            let color = thing
                .attr("color.r")
                .map(|_| ["color.r", "color.g", "color.b", "color.a"].map(|k| thing.num::<f32>(k)));
            let nodes = thing
                .child("nodes")
                .all("node")
                .map(|n| {
                    let node = Node {
                        id: n.num("id"),
                        position: [n.num("x"), n.num("y"), n.num("z")],
                        radius: n.num("radius"),
                        rotation: [n.num("rotX"), n.num("rotY"), n.num("rotZ")],
                        created: n.num("time"),
                    };
                    (node.id, node)
                })
                .collect();
            let edges = thing
                .child("edges")
                .all("edge")
                .map(|e| Edge {
                    source: e.num("source"),
                    target: e.num("target"),
                })
                .collect();
            let tree = Tree {
                id: thing.num("id"),
                name: thing.req("name").to_owned(),
                color,
                group_id: thing.attr("groupId").map(|_| thing.num("groupId")),
                nodes,
                edges,
                comments: BTreeMap::new(),
                branch_points: BTreeMap::new(),
                is_visible: match thing.req("isVisible") {
                    "true" => true,
                    "false" => false,
                    other => panic!("isVisible={other}"),
                },
            };
            skeleton.trees.insert(tree.id, tree);
        }
        let tree_of = |skeleton: &mut Skeleton, node: u32| -> u32 {
            skeleton
                .trees
                .values()
                .find(|t| t.nodes.contains_key(&node))
                .map(|t| t.id)
                .unwrap_or_else(|| panic!("node {node} is in no tree"))
        };
        for bp in root.child("branchpoints").all("branchpoint") {
            let node: u32 = bp.num("id");
            let id = tree_of(&mut skeleton, node);
            if let Some(tree) = skeleton.trees.get_mut(&id) {
                tree.branch_points.insert(node, bp.num("time"));
            }
        }
        for comment in root.child("comments").all("comment") {
            let node: u32 = comment.num("node");
            let id = tree_of(&mut skeleton, node);
            if let Some(tree) = skeleton.trees.get_mut(&id) {
                tree.comments
                    .insert(node, comment.req("content").to_owned());
            }
        }
        fn groups(parent: &El) -> Vec<TreeGroup> {
            parent
                .all("group")
                .map(|g| TreeGroup {
                    id: g.num("id"),
                    name: g.req("name").to_owned(),
                    children: groups(g),
                })
                .collect()
        }
        skeleton.tree_groups = groups(root.child("groups"));
        (skeleton, meta)
    }

    #[test]
    fn the_test_reader_refuses_malformed_xml() {
        let decl = r#"<?xml version="1.0" encoding="UTF-8"?>"#;
        for bad in [
            r#"<a b="x&y"/>"#,
            r#"<a b="x&bogus;"/>"#,
            r#"<a b="<"/>"#,
            r#"<a></b>"#,
            r#"<a b="1" b="2"/>"#,
            r#"<a b="1"c="2"/>"#,
            r#"<a>text</a>"#,
            r#"<a/><b/>"#,
            r#"<a b="1/>"#,
        ] {
            let doc = format!("{decl}\n{bad}");
            assert!(parse_xml(&doc).is_err(), "accepted {bad}");
        }
        assert!(
            parse_xml("<a/>").is_err(),
            "accepted a document without declaration"
        );
        let good = ok(parse_xml(&format!(
            "{decl}\n<a x=\"1&#10;2\" y=\"3\n4\" z=\"&lt;&amp;&gt;&quot;&apos;\">\n  <b/>\n</a>\n"
        )));
        assert_eq!(good.req("x"), "1\n2");
        assert_eq!(
            good.req("y"),
            "3 4",
            "raw line breaks are normalised to spaces"
        );
        assert_eq!(good.req("z"), "<&>\"'");
        assert_eq!(good.children.len(), 1);
    }
}
