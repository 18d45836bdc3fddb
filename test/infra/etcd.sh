#!/usr/bin/env bash
# Real etcd (v3 API) for integration tests: one member, client 127.0.0.1:2389,
# peer 127.0.0.1:2390, data dir under the state dir, fresh on every start.
#
# Where etcd comes from (first that applies):
#   1. an `etcd` already on PATH (>= 3.4), e.g. from an earlier apt install;
#   2. a binary built earlier from the Go module proxy, cached under the cache dir;
#   3. Debian's package etcd-server (bookworm: 3.4.23) + etcd-client (etcdctl);
#   4. otherwise a Go build of go.etcd.io/etcd/server/v3 (about 1 minute cold).
# GOVMAP_ETCD_SOURCE=apt|go forces 3 or 4; GOVMAP_ETCD_GO_VERSION picks the Go version.
# Usage: test/infra/etcd.sh start|stop|status|install|smoke
set -euo pipefail
INFRA_NAME=etcd
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HOST=127.0.0.1
CLIENT_PORT=2389
PEER_PORT=2390
CLIENT_URL="http://$HOST:$CLIENT_PORT"
EDIR="$STATE_DIR/etcd"
PIDFILE="$EDIR/etcd.pid"
LOGFILE="$EDIR/etcd.log"
PATTERN="etcd .*$HOST:$CLIENT_PORT"
READY_TIMEOUT="${GOVMAP_ETCD_READY_TIMEOUT:-60}"
SOURCE="${GOVMAP_ETCD_SOURCE:-auto}"
GO_VERSION="${GOVMAP_ETCD_GO_VERSION:-v3.5.35}"
GO_BIN="$CACHE_DIR/etcd-$GO_VERSION/etcd"

# etcd_ok BIN : BIN runs and is etcd >= 3.4
etcd_ok() {
  local v
  v="$("$1" --version 2>/dev/null | sed -n 's/^etcd Version: *//p')" || return 1
  [ -n "$v" ] || return 1
  local major="${v%%.*}" rest="${v#*.}"
  local minor="${rest%%.*}"
  [ "$major" -gt 3 ] || { [ "$major" -eq 3 ] && [ "$minor" -ge 4 ]; }
}

apt_has_etcd() {
  # apt-cache needs fresh lists; a missing candidate means "not in this distro".
  local cand
  cand="$(apt-cache policy etcd-server 2>/dev/null | sed -n 's/^ *Candidate: *//p')"
  if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then
    as_root apt-get update -qq >/dev/null 2>&1 || true
    cand="$(apt-cache policy etcd-server 2>/dev/null | sed -n 's/^ *Candidate: *//p')"
  fi
  [ -n "$cand" ] && [ "$cand" != "(none)" ]
}

go_build_etcd() {
  command -v go >/dev/null || die "no etcd package and no Go toolchain to build one"
  local dir="$CACHE_DIR/etcd-$GO_VERSION"
  local src="$dir/src"
  log "building etcd $GO_VERSION from the Go module proxy into $dir (about a minute)"
  rm -rf "$src"; mkdir -p "$src"
  cat >"$src/main.go" <<'EOF'
// Builds the etcd server binary: the same entry point as etcd's own server/main.go.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
  printf 'module govmap.local/etcdbuild\n\ngo 1.22\n' >"$src/go.mod"
  (
    cd "$src"
    export GOFLAGS=-mod=mod GOWORK=off CGO_ENABLED=0
    go get "go.etcd.io/etcd/server/v3@$GO_VERSION" && go build -trimpath -o "$GO_BIN.tmp" .
  ) >"$dir/build.log" 2>&1 || { tail -n 30 "$dir/build.log" >&2; die "Go build of etcd failed (log: $dir/build.log)"; }
  mv "$GO_BIN.tmp" "$GO_BIN"
}

# Sets ETCD_BIN.
install() {
  case "$SOURCE" in
    auto)
      if command -v etcd >/dev/null && etcd_ok "$(command -v etcd)"; then
        ETCD_BIN="$(command -v etcd)"
      elif [ -x "$GO_BIN" ] && etcd_ok "$GO_BIN"; then
        ETCD_BIN="$GO_BIN"
      elif command -v apt-get >/dev/null && apt_has_etcd; then
        apt_ensure etcd-server etcd-client
        ETCD_BIN=/usr/bin/etcd
      else
        go_build_etcd
        ETCD_BIN="$GO_BIN"
      fi
      ;;
    apt) apt_ensure etcd-server etcd-client; ETCD_BIN=/usr/bin/etcd ;;
    go)
      if ! { [ -x "$GO_BIN" ] && etcd_ok "$GO_BIN"; }; then go_build_etcd; fi
      ETCD_BIN="$GO_BIN"
      ;;
    *) die "GOVMAP_ETCD_SOURCE must be auto, apt or go (got '$SOURCE')" ;;
  esac
  etcd_ok "$ETCD_BIN" || die "$ETCD_BIN is not a working etcd >= 3.4"
}

healthy() { http_get "$CLIENT_URL/health" | grep -q '"health":"true"'; }

start() {
  if pid_alive "$PIDFILE" "$PATTERN" && healthy; then
    log "already running on $CLIENT_URL (pid $(cat "$PIDFILE"))"
    return 0
  fi
  pid_alive "$PIDFILE" "$PATTERN" && stop_pid etcd "$PIDFILE" "$PATTERN"
  install
  require_port_free etcd "$HOST" "$CLIENT_PORT"
  require_port_free etcd "$HOST" "$PEER_PORT"
  rm -rf "$EDIR/data"; mkdir -p "$EDIR"
  log "starting $("$ETCD_BIN" --version | head -1) ($ETCD_BIN)"
  spawn "$PIDFILE" "$LOGFILE" "$ETCD_BIN" \
    --name govmap-test \
    --data-dir "$EDIR/data" \
    --listen-client-urls "$CLIENT_URL" \
    --advertise-client-urls "$CLIENT_URL" \
    --listen-peer-urls "http://$HOST:$PEER_PORT" \
    --initial-advertise-peer-urls "http://$HOST:$PEER_PORT" \
    --initial-cluster "govmap-test=http://$HOST:$PEER_PORT" \
    --initial-cluster-state new \
    --initial-cluster-token govmap-test \
    --logger zap --log-outputs stderr
  wait_ready etcd "$READY_TIMEOUT" "$LOGFILE" "$PIDFILE" "$PATTERN" healthy
}

status() {
  if pid_alive "$PIDFILE" "$PATTERN" && healthy; then
    echo "etcd $CLIENT_URL running (pid $(cat "$PIDFILE")) $(http_get "$CLIENT_URL/version")"
  else
    echo "etcd $CLIENT_URL not running"; return 3
  fi
}

b64() { printf '%s' "$1" | base64 -w0; }

smoke() {
  local key="/govmap/smoke/$$" val="ok-$RANDOM" got
  # The v3 API through etcd's gRPC gateway (the same KV service the etcd3 npm client calls over gRPC).
  curl -fsS --max-time 5 -X POST "$CLIENT_URL/v3/kv/put" \
    -d "{\"key\":\"$(b64 "$key")\",\"value\":\"$(b64 "$val")\"}" >/dev/null || die "v3 put failed"
  got="$(curl -fsS --max-time 5 -X POST "$CLIENT_URL/v3/kv/range" -d "{\"key\":\"$(b64 "$key")\"}" |
    sed -n 's/.*"value":"\([^"]*\)".*/\1/p' | base64 -d)"
  [ "$got" = "$val" ] || die "v3 range returned '$got', expected '$val'"
  if command -v etcdctl >/dev/null; then
    ETCDCTL_API=3 etcdctl --endpoints "$CLIENT_URL" put "$key" "$val-2" >/dev/null
    got="$(ETCDCTL_API=3 etcdctl --endpoints "$CLIENT_URL" get --print-value-only "$key")"
    [ "$got" = "$val-2" ] || die "etcdctl get returned '$got'"
    ETCDCTL_API=3 etcdctl --endpoints "$CLIENT_URL" del "$key" >/dev/null
  fi
  log "smoke ok: v3 put/range via the gateway$(command -v etcdctl >/dev/null && echo ', put/get/del via etcdctl')"
}

case "${1:-}" in start|stop|install) service_lock ;; esac
case "${1:-}" in
  install) install; log "etcd binary: $ETCD_BIN ($("$ETCD_BIN" --version | head -1))" ;;
  start) start; echo "GOVMAP_ETCD_ENDPOINTS=$CLIENT_URL" ;;
  stop) stop_pid etcd "$PIDFILE" "$PATTERN" 15 ;;
  status) status ;;
  smoke) smoke ;;
  *) echo "usage: $0 start|stop|status|install|smoke" >&2; exit 2 ;;
esac
