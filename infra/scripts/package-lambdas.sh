#!/usr/bin/env bash
# Builds every Lambda crate under functions/ into <target dir>/lambda/<name>/bootstrap.zip
# (default <repo root>/target/lambda, which is terraform's default var.artifacts_dir):
#   cargo lambda build --release --x86-64 --output-format zip --package <each crate>
#
# cargo-lambda and the Zig toolchain it cross-links with come from PyPI (hash-locked in
# requirements-tools.txt) into <repo root>/.tools/venv, created on first use.
#
# Env:
#   LAMBDA_ARCH        x86-64 (default; terraform's default lambda_architecture) or arm64
#   CARGO_TARGET_DIR   honoured as usual; zips land in $CARGO_TARGET_DIR/lambda/<name>/
#   TOOLS_VENV         override the venv location
# Extra arguments are passed to `cargo lambda build` (e.g. --locked).
#
# arm64 (cheaper per GB-second) needs the Rust standard library of that target:
# `rustup target add aarch64-unknown-linux-gnu` (which needs the Rust distribution server), then
# LAMBDA_ARCH=arm64 and terraform -var lambda_architecture=arm64.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)                      # scripts live in <root>/infra/scripts
VENV=${TOOLS_VENV:-$ROOT/.tools/venv}
PYTHON=${TOOLS_PYTHON:-python3.11}
REQS=$HERE/requirements-tools.txt
ARCH=${LAMBDA_ARCH:-x86-64}

die() { echo "package-lambdas: $*" >&2; exit 1; }
case "$ARCH" in
  arm64)  arch_flag=--arm64;  triple=aarch64-unknown-linux-gnu ;;
  x86-64) arch_flag=--x86-64; triple=x86_64-unknown-linux-gnu ;;
  *) die "LAMBDA_ARCH must be arm64 or x86-64, not '$ARCH'" ;;
esac
command -v cargo >/dev/null 2>&1 || die "cargo not found"
command -v "$PYTHON" >/dev/null 2>&1 || die "'$PYTHON' not found"

# 1. Tools venv (idempotent: reinstalled only when requirements-tools.txt changes).
want=$(sha256sum "$REQS" | cut -d' ' -f1)
have=$(cat "$VENV/.requirements.sha256" 2>/dev/null || true)
if [ ! -x "$VENV/bin/cargo-lambda" ] || [ "$want" != "$have" ]; then
  echo "package-lambdas: installing cargo-lambda + zig into $VENV ..."
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --require-hashes -r "$REQS"
  echo "$want" > "$VENV/.requirements.sha256"
fi
# cargo-lambda finds Zig as `zig` on PATH or `python3 -m ziglang`: the venv's bin must come first.
export PATH="$VENV/bin:$PATH"

# 2. The crates: [package] name of every functions/*/Cargo.toml.
packages=()
for toml in "$ROOT"/functions/*/Cargo.toml; do
  [ -f "$toml" ] || continue
  name=$(awk '/^[[:space:]]*\[/ { pkg = ($0 ~ /^[[:space:]]*\[package\][[:space:]]*$/) }
              pkg && /^[[:space:]]*name[[:space:]]*=/ { sub(/^[^=]*=[[:space:]]*"/, ""); sub(/".*/, ""); print; exit }' "$toml")
  [ -n "$name" ] || die "no [package] name in $toml"
  packages+=("$name")
done
[ ${#packages[@]} -gt 0 ] || die "no crates under $ROOT/functions"

if command -v rustup >/dev/null 2>&1 && ! (cd "$ROOT" && rustup target list --installed 2>/dev/null) | grep -qx "$triple"; then
  echo "package-lambdas: note: Rust target $triple is not installed; cargo-lambda will try 'rustup target add $triple'" >&2
fi

# 3. Build. The lambda dir follows the cargo target dir, as terraform's default expects.
target_dir=${CARGO_TARGET_DIR:-$ROOT/target}
lambda_dir=$target_dir/lambda
pkg_args=()
for p in "${packages[@]}"; do pkg_args+=(--package "$p"); done
echo "package-lambdas: cargo lambda build --release $arch_flag --output-format zip ${pkg_args[*]} $*"
t0=$SECONDS
(cd "$ROOT" && cargo lambda build --release "$arch_flag" --output-format zip --lambda-dir "$lambda_dir" "${pkg_args[@]}" "$@")

# 4. Every function must have produced its zip.
for p in "${packages[@]}"; do
  zip=$lambda_dir/$p/bootstrap.zip
  [ -s "$zip" ] || die "missing $zip (does the crate's binary have another name than the package?)"
  printf 'package-lambdas: %s (%s bytes)\n' "$zip" "$(stat -c %s "$zip")"
done
echo "package-lambdas: done in $((SECONDS - t0)) s ($ARCH); terraform: -var artifacts_dir=$lambda_dir (the default when CARGO_TARGET_DIR is unset)"
