#!/usr/bin/env bash
# Debian's Chromium for headless browser tests (dashboard screenshots, page checks).
# Usage: test/infra/chromium.sh install|path|version
#   install  apt-get install chromium (+ fonts-liberation for readable text); prints the path
set -euo pipefail
INFRA_NAME=chromium
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BIN=/usr/bin/chromium

install() {
  apt_ensure chromium fonts-liberation
  [ -x "$BIN" ] || die "$BIN missing after install"
  # A real launch, not just a file check: headless Chromium must render a page.
  local out
  out="$(timeout 60 "$BIN" --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage \
    --user-data-dir="$(mktemp -d)" --dump-dom 'data:text/html,<p id=x>govmap-ok</p>' 2>/dev/null)" ||
    die "headless $BIN failed to start"
  grep -q 'govmap-ok' <<<"$out" || die "headless $BIN did not render a page"
  log "$("$BIN" --version 2>/dev/null) works headless"
  echo "$BIN"
}

case "${1:-}" in
  install) install ;;
  path) if [ -x "$BIN" ]; then echo "$BIN"; else die "not installed; run $0 install"; fi ;;
  version) "$BIN" --version ;;
  *) echo "usage: $0 install|path|version" >&2; exit 2 ;;
esac
