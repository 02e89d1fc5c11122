"""Opens the demo dataset with zarr-python 3 over HTTP, by URL alone, and compares every array
of the OME-Zarr pyramid (image levels and the sharded label levels) with the source on disk.

usage: read_demo.py SOURCE_DIR URL [URL ...]
Prints one JSON line per URL: {"url", "arrays": [{"path", "shape", "chunks", "shards", "equal"}]}.
Exits non-zero on the first difference.
"""
import json
import sys

import numpy as np
import zarr


def arrays_of(group, prefix=""):
    """Array paths from the OME metadata (as a viewer would find them), not from listing."""
    ome = group.attrs.get("ome", {})
    out = []
    for ms in ome.get("multiscales", []):
        out += [prefix + d["path"] for d in ms["datasets"]]
    if "labels" in ome:
        return out
    try:
        labels = group["labels"]
    except KeyError:
        return out
    for name in labels.attrs["ome"]["labels"]:
        out += arrays_of(labels[name], prefix=f"{prefix}labels/{name}/")
    return out


def main():
    source = zarr.open_group(sys.argv[1], mode="r")
    failed = False
    for url in sys.argv[2:]:
        remote = zarr.open_group(url, mode="r")
        report = []
        for path in arrays_of(remote):
            a, b = remote[path], source[path]
            equal = bool(a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a[...], b[...]))
            report.append({"path": path, "shape": list(a.shape), "chunks": list(a.chunks),
                           "shards": list(a.shards) if a.shards else None, "equal": equal})
            failed |= not equal
            # A partial read inside one shard: the shard index (suffix range) and one inner chunk.
            if a.shards:
                window = tuple(slice(3, 9) for _ in a.shape)
                failed |= not np.array_equal(a[window], b[window])
        print(json.dumps({"url": url, "arrays": report}), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
