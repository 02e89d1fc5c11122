#!/usr/bin/env bash
# Installs (idempotently) the browser the page tests drive: Debian's Chromium and its
# chromedriver (/usr/bin/chromium, /usr/bin/chromedriver), without recommended packages
# (about 450 MB on disk). Needs root, or sudo without a password; runs apt-get update only if
# the package lists do not know the packages yet.
set -euo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
command -v apt-get >/dev/null 2>&1 || { echo "browser.sh: apt-get not found (Debian's chromium and chromium-driver are needed)" >&2; exit 1; }
if [ "$(id -u)" = 0 ]; then
  as_root=()
elif sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "browser.sh: installing chromium needs root (or sudo without a password)" >&2
  exit 1
fi
install() {
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends chromium chromium-driver >&2
}
echo "browser.sh: installing Debian's chromium and chromium-driver ..." >&2
if ! install; then
  "${as_root[@]}" apt-get update -q >&2
  install
fi
/usr/bin/chromium --version >&2
