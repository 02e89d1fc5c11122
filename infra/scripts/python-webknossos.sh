#!/usr/bin/env bash
# Creates (idempotently) <repo root>/.venv-webknossos with Python 3.11 and the hash-locked
# `webknossos` package (webknossos-libs), whose NML reader the NML export is checked against
# (infra/tests/webknossos_nml.rs). Its own venv: webknossos pins numpy, tensorstore and friends
# to versions the real-client venv need not share. The lock leaves out google-api-python-client
# (declared by webknossos, imported by none of it; see requirements-webknossos.in), so it is
# installed with --no-deps, like LocalStack's; the import check below is what proves the set is
# complete. Prints the venv's python path as its last line, e.g.
#   PY=$(infra/scripts/python-webknossos.sh | tail -n1)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)                      # scripts live in <root>/infra/scripts
VENV=${WEBKNOSSOS_VENV:-$ROOT/.venv-webknossos}
PYTHON=${CLIENTS_PYTHON:-python3.11}
REQS=$HERE/requirements-webknossos.txt

command -v "$PYTHON" >/dev/null 2>&1 || { echo "python-webknossos.sh: '$PYTHON' not found" >&2; exit 1; }
# The lock file's hash is stamped into the venv: an edited lock file reinstalls, otherwise no-op.
want=$(sha256sum "$REQS" | cut -d' ' -f1)
have=$(cat "$VENV/.requirements.sha256" 2>/dev/null || true)
if [ ! -x "$VENV/bin/python" ] || [ "$want" != "$have" ]; then
  echo "python-webknossos.sh: installing webknossos into $VENV ..." >&2
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --require-hashes --no-deps \
    -r "$REQS" >&2
  # What infra/tests/clients/load_nml.py uses (importing webknossos loads all of it).
  "$VENV/bin/python" -W ignore -c 'from webknossos import Annotation, Skeleton' \
    || { echo "python-webknossos.sh: import check failed" >&2; exit 1; }
  echo "$want" > "$VENV/.requirements.sha256"
fi
echo "$VENV/bin/python"
