"""Loads an NML file with webknossos-libs' own reader (`webknossos.Annotation.load`; its
`.skeleton` is what `webknossos.Skeleton.load` returns) and prints, as one JSON object,
everything it parsed: the header (dataset name, description, voxel size and unit, time, edit
position and rotation, zoom level), the <meta> entries (annotation id, owner, the rest),
bounding boxes and volume layers, the group hierarchy, and every tree with its id, name, color,
group, visibility, metadata, nodes (id, position, radius, rotation, time, viewport/mag/bit
depth/interpolation, comment, branch point) and edges. Only what the reader returns is printed;
the file itself is not read here.

usage: load_nml.py FILE.nml
"""
import json
import sys

import webknossos as wk


def vec(v):
    return None if v is None else list(v)


def group_json(group):
    return {
        "id": group.id,
        "name": group.name,
        "groups": sorted((group_json(g) for g in group.groups), key=lambda g: g["id"]),
        "trees": sorted(t.id for t in group.trees),
    }


def node_json(node):
    return {
        "id": node.id,
        "position": vec(node.position),
        "radius": node.radius,
        "rotation": vec(node.rotation),
        "time": node.time,
        "in_vp": node.inVp,
        "in_mag": node.inMag,
        "bit_depth": node.bitDepth,
        "interpolation": node.interpolation,
        "comment": node.comment,
        "is_branchpoint": node.is_branchpoint,
        "branchpoint_time": node.branchpoint_time,
    }


def tree_json(tree, skeleton):
    return {
        "id": tree.id,
        "name": tree.name,
        "color": vec(tree.color),
        "group_id": None if tree.group is skeleton else tree.group.id,
        "is_visible": tree.is_visible,
        "metadata": dict(tree.metadata),
        "nodes": [node_json(n) for n in sorted(tree.nodes, key=lambda n: n.id)],
        "edges": sorted(sorted((a.id, b.id)) for a, b in tree.edges),
    }


def main():
    annotation = wk.Annotation.load(sys.argv[1])
    skeleton = annotation.skeleton
    voxel = annotation.voxel_size_with_unit
    print(json.dumps({
        "dataset_name": annotation.dataset_name,
        "description": annotation.description,
        "voxel_size": vec(voxel.factor),
        "voxel_unit": voxel.unit.value,
        "time": annotation.time,
        "edit_position": vec(annotation.edit_position),
        "edit_rotation": vec(annotation.edit_rotation),
        "zoom_level": annotation.zoom_level,
        "annotation_id": annotation.annotation_id,
        "owner_name": annotation.owner_name,
        "metadata": annotation.metadata,
        "task_bounding_box": None if annotation.task_bounding_box is None else str(annotation.task_bounding_box),
        "user_bounding_boxes": [str(b) for b in annotation.user_bounding_boxes],
        "volume_layers": sorted(annotation.get_volume_layer_names()),
        "root": group_json(skeleton),
        "trees": sorted((tree_json(t, skeleton) for t in skeleton.flattened_trees()), key=lambda t: t["id"]),
    }))


main()
