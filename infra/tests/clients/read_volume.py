"""Opens a volume annotation with zarr-python 3 over HTTP, by URL alone, and compares it with
the buckets that were painted.

usage: read_volume.py SPEC_JSON
SPEC_JSON: {"versions": [{"url": ..., "buckets": [{"position": [x, y, z], "seed": k}, ...]}],
            "shape": [z, y, x], "voxel_size": [z, y, x]}
A bucket painted with seed k holds, at its voxel i (x fastest), k * 100000 + (i % 1000 where
i % 3 == 0, else 7) — so most 2x2x2 blocks have a clear mode that is not their smallest; every
voxel outside the listed buckets is 0. Every coarser level of the multiscale must be the mode
(most frequent value, the smallest on a tie) of each 2x2x2 block of the level below.
Prints one JSON report; exits non-zero on a difference.
"""
import json
import sys

import numpy as np
import zarr

EDGE = 32


def expected(shape, buckets):
    out = np.zeros(shape, dtype=np.uint32)
    index = np.arange(EDGE ** 3, dtype=np.uint32)
    ramp = np.where(index % 3 == 0, index % 1000, 7).astype(np.uint32).reshape(EDGE, EDGE, EDGE)
    for b in buckets:
        x, y, z = b["position"]
        block = ramp + np.uint32(b["seed"] * 100000)
        view = out[z:z + EDGE, y:y + EDGE, x:x + EDGE]
        view[...] = block[: view.shape[0], : view.shape[1], : view.shape[2]]
    return out


def mode_downsample(data):
    """Each 2x2x2 block's most frequent value, the smallest on a tie (odd edges padded with 0)."""
    padded = np.pad(data, [(0, n % 2) for n in data.shape])
    z, y, x = (n // 2 for n in padded.shape)
    blocks = padded.reshape(z, 2, y, 2, x, 2).transpose(0, 2, 4, 1, 3, 5).reshape(z, y, x, 8)
    blocks = np.sort(blocks, axis=-1)
    counts = (blocks[..., :, None] == blocks[..., None, :]).sum(axis=-1)
    best = np.argmax(counts, axis=-1)  # the first maximum: the smallest value on a tie
    return np.take_along_axis(blocks, best[..., None], axis=-1)[..., 0]


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
        # The coarser levels, each from the one below.
        levels_equal = True
        below = data
        for level in ms["datasets"][1:]:
            coarse = group[level["path"]][...]
            levels_equal &= bool(np.array_equal(coarse, mode_downsample(below)))
            below = coarse
        report[-1]["levels"] = len(ms["datasets"])
        report[-1]["levels_equal"] = levels_equal
        failed |= not equal or not levels_equal or scale != spec["voxel_size"]
    print(json.dumps(report), flush=True)
    sys.exit(1 if failed else 0)


main()
