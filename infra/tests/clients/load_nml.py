"""Loads an NML file with webknossos-libs' own reader (`webknossos.Skeleton.load`) and prints,
as one JSON object, everything it parsed: the dataset name, voxel size, description, the group
hierarchy, and every tree with its id, name, color, visibility, nodes (id, position, radius,
rotation, time, comment, branch point) and edges.

usage: load_nml.py FILE.nml
"""
import json
import sys

import webknossos as wk


def group_json(group):
    return {
        "id": group.id,
        "name": group.name,
        "groups": sorted((group_json(g) for g in group.groups), key=lambda g: g["id"]),
        "trees": sorted(t.id for t in group.trees),
    }


def tree_json(tree):
    nodes = []
    for node in sorted(tree.nodes, key=lambda n: n.id):
        nodes.append({
            "id": node.id,
            "position": list(node.position),
            "radius": node.radius,
            "rotation": list(node.rotation) if node.rotation is not None else None,
            "time": node.time,
            "comment": node.comment,
            "is_branchpoint": node.is_branchpoint,
            "branchpoint_time": node.branchpoint_time,
        })
    edges = sorted(sorted((a.id, b.id)) for a, b in tree.edges)
    return {
        "id": tree.id,
        "name": tree.name,
        "color": list(tree.color) if tree.color is not None else None,
        "is_visible": tree.is_visible,
        "nodes": nodes,
        "edges": edges,
    }


def main():
    skeleton = wk.Skeleton.load(sys.argv[1])
    print(json.dumps({
        "dataset_name": skeleton.dataset_name,
        "voxel_size": list(skeleton.voxel_size),
        "description": skeleton.description,
        "root": group_json(skeleton),
        "trees": sorted((tree_json(t) for t in skeleton.flattened_trees()), key=lambda t: t["id"]),
    }))


main()
