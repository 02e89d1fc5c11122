#!/usr/bin/env bash
# The whole test suite, on a fresh machine of this kind: installs what it needs (LocalStack
# with DynamoDB Local, the Python real clients with Neuroglancer, Debian's Chromium, webknossos-libs,
# cargo-lambda), starts LocalStack on 127.0.0.1,
# runs every Rust test (LocalStack tests included), checks the Terraform, builds the Lambda
# zips, and stops what it started.
#
#   bash infra/scripts/test-all.sh
#
# Env: ZARRSHARE_SKIP_PACKAGING=1 skips the release build of the Lambda zips (about 6 min).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
LOG_DIR=${TEST_LOG_DIR:-$ROOT/target/test-logs}
mkdir -p "$LOG_DIR"
t0=$SECONDS
# Free space where the build happens, in MiB.
free_mib() { df -Pm "$ROOT" | awk 'NR == 2 {print $4}'; }
step() { printf '\n== %s (%d s, %s MiB free)\n' "$*" $((SECONDS - t0)) "$(free_mib)"; }

# A one-shot build gains nothing from incremental compilation, whose caches would take another
# ~1.6 GB of the disk the test binaries need (CI machines of this kind may have only a few GB).
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}

step "format"
cargo fmt --all -- --check

step "install LocalStack (S3, DynamoDB Local, SES), the Python clients, Chromium and the webknossos NML reader"
bash infra/localstack/setup.sh
bash infra/scripts/python-clients.sh >/dev/null
bash infra/scripts/browser.sh
bash infra/scripts/python-webknossos.sh >/dev/null

export AWS_ENDPOINT_URL=http://127.0.0.1:${LS_PORT:-4566}
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
started_localstack=0
if ! curl -sf "$AWS_ENDPOINT_URL/_localstack/health" >/dev/null 2>&1; then
  step "start LocalStack"
  bash infra/localstack/start.sh
  started_localstack=1
fi
cleanup() { [ "$started_localstack" = 1 ] && bash infra/localstack/stop.sh || true; }
trap cleanup EXIT

step "lint"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "cargo test --workspace (unit, handler, conformance, real-client and LocalStack tests)"
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee "$LOG_DIR/cargo-test.log"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$LOG_DIR/cargo-test.log" | awk '{s += $4} END {print s + 0}')
failed=$(grep -Eo '[0-9]+ failed;' "$LOG_DIR/cargo-test.log" | awk '{s += $1} END {print s + 0}')

step "terraform (fmt, validate, terraform test with a mocked provider, one Lambda per crate)"
bash infra/scripts/terraform-check.sh

if [ "${ZARRSHARE_SKIP_PACKAGING:-0}" != 1 ]; then
  # The release build needs about 1.5 GB (its own target tree and the cargo-lambda/Zig venv).
  # Where the disk is short, the debug artifacts, no longer needed once the tests have run,
  # make room; with room to spare they stay, for the next incremental run.
  if [ "$(free_mib)" -lt "${ZARRSHARE_MIN_FREE_MIB:-4096}" ]; then
    step "low disk: removing target/debug (the tests have run) before the release build"
    rm -rf "${CARGO_TARGET_DIR:-$ROOT/target}/debug"
  fi
  step "package every function as a Lambda bootstrap zip"
  bash infra/scripts/package-lambdas.sh
fi

step "done"
du -sh "${CARGO_TARGET_DIR:-$ROOT/target}" 2>/dev/null | sed 's/^/target dir: /' || true
echo "tests: $passed passed, $failed failed"
exit "$status"
