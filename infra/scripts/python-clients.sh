#!/usr/bin/env bash
# Creates (idempotently) <repo root>/.venv-clients with Python 3.11 and the hash-locked real
# clients used by the client tests: zarr 3.1.x (last line supporting 3.11), fsspec + aiohttp
# (zarr's HTTP store), requests, numpy, and neuroglancer (whose package carries the built
# Neuroglancer client) with selenium, which drives Debian's Chromium (infra/scripts/browser.sh).
# Prints the venv's python path as its last line, e.g.
#   PY=$(infra/scripts/python-clients.sh | tail -n1)
#
# Opening a dataset over HTTP with zarr-python 3 (read-only; HTTP needs fsspec[http] = aiohttp):
#   zarr.open_group("http://127.0.0.1:PORT/data/<ds>/x.zarr", mode="r")
# A plain http(s) URL is turned into an FsspecStore by zarr itself; no storage_options needed.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)                      # scripts live in <root>/infra/scripts
VENV=${CLIENTS_VENV:-$ROOT/.venv-clients}
PYTHON=${CLIENTS_PYTHON:-python3.11}
REQS=$HERE/requirements-clients.txt

command -v "$PYTHON" >/dev/null 2>&1 || { echo "python-clients.sh: '$PYTHON' not found" >&2; exit 1; }
# The lock file's hash is stamped into the venv: an edited lock file reinstalls, otherwise no-op.
want=$(sha256sum "$REQS" | cut -d' ' -f1)
have=$(cat "$VENV/.requirements.sha256" 2>/dev/null || true)
if [ ! -x "$VENV/bin/python" ] || [ "$want" != "$have" ]; then
  echo "python-clients.sh: installing clients into $VENV ..." >&2
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --require-hashes -r "$REQS" >&2
  "$VENV/bin/python" -c 'import zarr, fsspec, aiohttp, requests, numpy, neuroglancer.webdriver, selenium.webdriver' \
    || { echo "python-clients.sh: import check failed" >&2; exit 1; }
  echo "$want" > "$VENV/.requirements.sha256"
fi
echo "$VENV/bin/python"
