"""Opens a volume annotation with zarr-python 3 over HTTP, by URL alone, and compares it with
the buckets that were painted.

usage: read_volume.py SPEC_JSON
SPEC_JSON: {"versions": [{"url": ..., "buckets": [{"position": [x, y, z], "seed": k}, ...]}],
            "shape": [z, y, x], "voxel_size": [z, y, x]}
A bucket painted with seed k holds, at its voxel i (x fastest), k * 100000 + i % 1000; every
voxel outside the listed buckets is 0. Prints one JSON report; exits non-zero on a difference.
"""
import json
import sys

import numpy as np
import zarr

EDGE = 32


def expected(shape, buckets):
    out = np.zeros(shape, dtype=np.uint32)
    ramp = (np.arange(EDGE ** 3, dtype=np.uint32) % 1000).reshape(EDGE, EDGE, EDGE)  # z, y, x
    for b in buckets:
        x, y, z = b["position"]
        block = ramp + np.uint32(b["seed"] * 100000)
        view = out[z:z + EDGE, y:y + EDGE, x:x + EDGE]
        view[...] = block[: view.shape[0], : view.shape[1], : view.shape[2]]
    return out


def main():
    spec = json.loads(sys.argv[1])
    report = []
    failed = False
    for version in spec["versions"]:
        group = zarr.open_group(version["url"], mode="r")
        ms = group.attrs["ome"]["multiscales"][0]
        scale = ms["datasets"][0]["coordinateTransformations"][0]["scale"]
        array = group[ms["datasets"][0]["path"]]
        data = array[...]
        want = expected(tuple(spec["shape"]), version["buckets"])
        equal = bool(data.dtype == np.uint32 and data.shape == want.shape and np.array_equal(data, want))
        report.append({
            "url": version["url"],
            "shape": list(array.shape),
            "chunks": list(array.chunks),
            "dtype": str(array.dtype),
            "axes": [a["name"] for a in ms["axes"]],
            "scale": scale,
            "nonzero_voxels": int(np.count_nonzero(data)),
            "equal": equal,
        })
        failed |= not equal or scale != spec["voxel_size"]
    print(json.dumps(report), flush=True)
    sys.exit(1 if failed else 0)


main()
