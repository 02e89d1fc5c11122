#!/usr/bin/env bash
# Offline checks of the Terraform deployment in <repo root>/terraform:
#   fmt -check, init (providers from a local filesystem mirror only), validate, test (mocked AWS),
#   and "every crate under functions/ has an entry in locals.functions, and vice versa".
# Runs from any directory. Env: TF_PLUGIN_MIRROR (default /opt/tf-plugins), a directory laid out
# as <host>/<namespace>/<type>/<version>/<os_arch>/ holding hashicorp/aws (>= 5.100, < 7).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)                      # scripts live in <root>/infra/scripts
TF_DIR=$ROOT/terraform
MIRROR=${TF_PLUGIN_MIRROR:-/opt/tf-plugins}

fail() { echo "terraform-check: FAIL: $*" >&2; exit 1; }
step() { echo "terraform-check: $*"; }

command -v terraform >/dev/null 2>&1 || fail "terraform is not on PATH"
[ -d "$MIRROR/registry.terraform.io/hashicorp/aws" ] \
  || fail "provider mirror $MIRROR has no registry.terraform.io/hashicorp/aws (set TF_PLUGIN_MIRROR to a filesystem mirror; there is no registry access here)"

# Providers come only from the mirror: a CLI config of our own, removed on exit.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/terraformrc" <<RC
provider_installation {
  filesystem_mirror {
    path = "$MIRROR"
  }
}
RC
export TF_CLI_CONFIG_FILE=$tmp/terraformrc TF_IN_AUTOMATION=1 TF_INPUT=0 CHECKPOINT_DISABLE=1
# Deployment values a developer may have exported must not leak into the offline checks.
for v in $(compgen -e | grep '^TF_VAR_' || true); do unset "$v"; done

cd "$TF_DIR"
step "terraform fmt -check -recursive"
terraform fmt -check -recursive -diff || fail "formatting: run 'terraform fmt -recursive' in terraform/"
step "terraform init -backend=false"   # writes .terraform/ and .terraform.lock.hcl (both gitignored)
terraform init -backend=false -input=false -no-color >"$tmp/init.log" 2>&1 || { cat "$tmp/init.log" >&2; fail "terraform init"; }
step "terraform validate"
terraform validate -no-color
step "terraform test"
terraform test -no-color

step "functions/ crates vs locals.functions"
crates=$(
  for toml in "$ROOT"/functions/*/Cargo.toml; do
    [ -f "$toml" ] || continue
    # name = "..." of the [package] table
    name=$(awk '/^[[:space:]]*\[/ { pkg = ($0 ~ /^[[:space:]]*\[package\][[:space:]]*$/) }
                pkg && /^[[:space:]]*name[[:space:]]*=/ { sub(/^[^=]*=[[:space:]]*"/, ""); sub(/".*/, ""); print; exit }' "$toml")
    [ -n "$name" ] || fail "no [package] name in ${toml#"$ROOT"/}"
    echo "$name"
  done | sort -u
)
# Evaluate the real local value (no HCL scraping). Console leaves the required variables unknown.
keys=$(echo 'join(" ", sort(keys(local.functions)))' | terraform console -no-color 2>"$tmp/console.log") \
  || { cat "$tmp/console.log" >&2; fail "could not evaluate local.functions with terraform console"; }
keys=$(echo "$keys" | tr -d '"' | tr ' ' '\n' | sed '/^$/d' | sort -u)

missing_tf=$(comm -23 <(echo "$crates") <(echo "$keys"))
missing_crate=$(comm -13 <(echo "$crates") <(echo "$keys"))
for c in $missing_tf; do echo "terraform-check: crate '$c' (functions/) has no entry in locals.functions (terraform/locals.tf)" >&2; done
for k in $missing_crate; do echo "terraform-check: locals.functions entry '$k' has no crate under functions/" >&2; done
[ -z "$missing_tf$missing_crate" ] || fail "functions/ and locals.functions disagree"
step "OK: functions = $(echo $keys)"
