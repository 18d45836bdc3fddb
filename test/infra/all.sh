#!/usr/bin/env bash
# Start / stop the real services the integration tests use, in parallel.
# Usage: test/infra/all.sh start|stop|status [service...]
#   services: redis etcd kafka prometheus chromium
#   start default: redis etcd kafka. `chromium` is install-only (chromium.sh install).
#   stop/status default: redis etcd kafka prometheus.
# start also installs Debian's `prometheus` package (not started unless asked) so that
# `promtool` is there for the alert-rule tests; GOVMAP_INFRA_PROMTOOL=0 skips that.
# Exports nothing: use `eval "$(test/infra/env.sh)"` for the connection variables.
set -euo pipefail
INFRA_NAME=all
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cmd="${1:-}"; shift || true
case "$cmd" in
  start) services=(redis etcd kafka) ;;
  stop|status) services=(redis etcd kafka prometheus) ;;
  *) echo "usage: $0 start|stop|status [redis|etcd|kafka|prometheus|chromium]..." >&2; exit 2 ;;
esac
[ $# -gt 0 ] && services=("$@")
for s in "${services[@]}"; do
  if ! [[ "$s" =~ ^(redis|etcd|kafka|prometheus|chromium)$ ]]; then die "unknown service '$s'"; fi
done

OUT="$STATE_DIR/all"
mkdir -p "$OUT"

# run_parallel ACTION : run "<svc>.sh ACTION" for every service at once (chromium:
# `install` on start, nothing otherwise); print each one's output, in order, when all
# are done; fail if any failed.
run_parallel() {
  local action="$1" s a pids=() names=() failed=() i
  for s in "${services[@]}"; do
    a="$action"
    if [ "$s" = chromium ]; then
      [ "$action" = start ] || continue
      a=install
    fi
    "$INFRA_SRC_DIR/$s.sh" "$a" >"$OUT/$s.$a.out" 2>&1 &
    pids+=($!); names+=("$s.$a")
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || failed+=("${names[$i]%.*}")
    sed "s/^/  /" "$OUT/${names[$i]}.out" >&2
  done
  [ "${#failed[@]}" -eq 0 ] || die "$action failed for: ${failed[*]} (outputs in $OUT)"
}

if [ "$cmd" = start ]; then
  t0=$SECONDS
  # One apt-get call (one `apt-get update`) for every Debian package needed, while
  # Kafka's jars are fetched from Maven Central at the same time.
  apt_pkgs=()
  [ "${GOVMAP_INFRA_PROMTOOL:-1}" = 0 ] || apt_pkgs+=(prometheus)
  for s in "${services[@]}"; do
    case "$s" in
      redis) apt_pkgs+=(redis-server redis-tools openssl) ;;
      etcd) command -v etcd >/dev/null || apt_pkgs+=(etcd-server etcd-client) ;;
      prometheus) apt_pkgs+=(prometheus) ;;
      chromium) apt_pkgs+=(chromium fonts-liberation) ;;
    esac
  done
  install_pids=()
  if [ "${#apt_pkgs[@]}" -gt 0 ]; then
    ( apt_ensure "${apt_pkgs[@]}" ) >"$OUT/apt.out" 2>&1 &
    install_pids+=($!)
  fi
  if [[ " ${services[*]} " == *" kafka "* ]]; then
    "$INFRA_SRC_DIR/kafka.sh" install >"$OUT/kafka.install.out" 2>&1 &
    install_pids+=($!)
  fi
  rc=0
  for p in "${install_pids[@]}"; do wait "$p" || rc=1; done
  cat "$OUT/apt.out" "$OUT/kafka.install.out" 2>/dev/null | sed 's/^/  /' >&2 || true
  rm -f "$OUT/apt.out" "$OUT/kafka.install.out"
  [ "$rc" -eq 0 ] || die "install failed"
  log "installs done after $((SECONDS - t0))s; starting ${services[*]}"
  run_parallel start
  log "all started after $((SECONDS - t0))s"
else
  run_parallel "$cmd"
fi
