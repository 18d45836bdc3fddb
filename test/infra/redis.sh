#!/usr/bin/env bash
# Real Redis for integration tests (Debian's redis-server):
#   - a standalone Redis on 127.0.0.1:6390, no persistence
#   - a 3-master Redis Cluster on 127.0.0.1:7001-7003 (bus ports 17001-17003)
# Usage: test/infra/redis.sh start|stop|status|install|smoke
set -euo pipefail
INFRA_NAME=redis
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HOST=127.0.0.1
STANDALONE_PORT=6390
CLUSTER_PORTS=(7001 7002 7003)
RDIR="$STATE_DIR/redis"
READY_TIMEOUT="${GOVMAP_REDIS_READY_TIMEOUT:-60}"

install() {
  # openssl: the TLS cluster tests make their own CA and node certificate with it.
  apt_ensure redis-server redis-tools openssl
  command -v redis-server >/dev/null || die "redis-server not on PATH after install"
}

pidfile() { echo "$RDIR/$1/redis.pid"; }
logfile() { echo "$RDIR/$1/redis.log"; }
# The pid's command line: "redis-server --bind 127.0.0.1 --port 6390 ..." at exec,
# then as redis rewrites it: "redis-server 127.0.0.1:6390 [cluster]".
pattern() { echo "redis-server.*[: ]$1( |\$)"; }
alive() { pid_alive "$(pidfile "$1")" "$(pattern "$1")"; }
cli() { local port="$1"; shift; redis-cli -h "$HOST" -p "$port" "$@"; }
pong() { [ "$(cli "$1" PING 2>/dev/null)" = PONG ]; }
cluster_ok() { cli "$1" CLUSTER INFO 2>/dev/null | grep -q '^cluster_state:ok'; }
all_cluster_ok() {
  local p
  for p in "${CLUSTER_PORTS[@]}"; do cluster_ok "$p" || return 1; done
}

# launch PORT [extra redis-server args...] : fresh dir, no persistence, foreground
# process (daemonize no) detached by spawn, so the recorded pid is redis itself.
launch() {
  local port="$1"; shift
  local dir="$RDIR/$port"
  rm -rf "$dir"; mkdir -p "$dir"
  require_port_free "redis:$port" "$HOST" "$port"
  spawn "$(pidfile "$port")" "$(logfile "$port")" \
    redis-server --bind "$HOST" --port "$port" --protected-mode no \
    --daemonize no --dir "$dir" --save '' --appendonly no \
    --logfile '' --loglevel notice "$@"
}

start_standalone() {
  local port=$STANDALONE_PORT
  if alive "$port" && pong "$port"; then
    log "standalone already running on $HOST:$port (pid $(cat "$(pidfile "$port")"))"
    return 0
  fi
  alive "$port" && stop_pid "redis:$port" "$(pidfile "$port")" "$(pattern "$port")"
  launch "$port"
  wait_ready "redis:$port" "$READY_TIMEOUT" "$(logfile "$port")" "$(pidfile "$port")" "$(pattern "$port")" pong "$port"
}

start_cluster() {
  local p all_alive=1
  for p in "${CLUSTER_PORTS[@]}"; do alive "$p" || all_alive=0; done
  if [ "$all_alive" -eq 1 ] && all_cluster_ok; then
    log "cluster already running on $HOST:${CLUSTER_PORTS[0]}-${CLUSTER_PORTS[-1]} (cluster_state:ok)"
    return 0
  fi
  # Partial or broken cluster: rebuild it from scratch.
  for p in "${CLUSTER_PORTS[@]}"; do
    if alive "$p"; then stop_cluster; break; fi
  done
  for p in "${CLUSTER_PORTS[@]}"; do
    require_port_free "redis:$p (cluster bus)" "$HOST" "$((p + 10000))"
    launch "$p" --cluster-enabled yes --cluster-config-file "$RDIR/$p/nodes.conf" \
      --cluster-node-timeout 5000 --cluster-require-full-coverage yes
  done
  for p in "${CLUSTER_PORTS[@]}"; do
    wait_ready "redis:$p" "$READY_TIMEOUT" "$(logfile "$p")" "$(pidfile "$p")" "$(pattern "$p")" pong "$p"
  done
  local nodes=()
  for p in "${CLUSTER_PORTS[@]}"; do nodes+=("$HOST:$p"); done
  log "creating cluster ${nodes[*]}"
  if ! redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >"$RDIR/cluster-create.log" 2>&1; then
    tail -n 30 "$RDIR/cluster-create.log" >&2
    die "redis-cli --cluster create failed (log: $RDIR/cluster-create.log)"
  fi
  for p in "${CLUSTER_PORTS[@]}"; do
    wait_ready "redis-cluster:$p" "$READY_TIMEOUT" "$(logfile "$p")" "$(pidfile "$p")" "$(pattern "$p")" cluster_ok "$p"
  done
}

# stop_ports PORT... : stop those instances in parallel (redis takes ~1.5 s to exit).
stop_ports() {
  local p pids=() rc=0
  for p in "$@"; do
    stop_pid "redis:$p" "$(pidfile "$p")" "$(pattern "$p")" 10 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  [ "$rc" -eq 0 ] || die "some redis instances did not stop"
}

stop_cluster() { stop_ports "${CLUSTER_PORTS[@]}"; }

print_urls() {
  echo "GOVMAP_REDIS_URL=redis://$HOST:$STANDALONE_PORT"
  echo "GOVMAP_REDIS_CLUSTER_NODES=$HOST:7001,$HOST:7002,$HOST:7003"
}

status() {
  local rc=0 p
  for p in "$STANDALONE_PORT" "${CLUSTER_PORTS[@]}"; do
    if alive "$p" && pong "$p"; then
      local extra=""
      [ "$p" != "$STANDALONE_PORT" ] && extra=" $(cli "$p" CLUSTER INFO | grep '^cluster_state' | tr -d '\r')"
      echo "redis $HOST:$p running (pid $(cat "$(pidfile "$p")"))$extra"
    else
      echo "redis $HOST:$p not running"; rc=3
    fi
  done
  return "$rc"
}

smoke() {
  local key="govmap:smoke:$$"
  [ "$(cli "$STANDALONE_PORT" SET "$key" ok EX 30)" = OK ] || die "SET on $STANDALONE_PORT failed"
  [ "$(cli "$STANDALONE_PORT" GET "$key")" = ok ] || die "GET on $STANDALONE_PORT failed"
  # -c follows MOVED redirects: the key lands on whichever master owns its slot.
  [ "$(redis-cli -c -h "$HOST" -p 7001 SET "$key" ok EX 30)" = OK ] || die "cluster SET failed"
  [ "$(redis-cli -c -h "$HOST" -p 7003 GET "$key")" = ok ] || die "cluster GET failed"
  all_cluster_ok || die "cluster_state is not ok"
  log "smoke ok: SET/GET on standalone and cluster"
}

case "${1:-}" in start|stop|install) service_lock ;; esac
case "${1:-}" in
  install) install ;;
  start)
    install
    mkdir -p "$RDIR"
    start_standalone
    start_cluster
    print_urls
    ;;
  stop) stop_ports "$STANDALONE_PORT" "${CLUSTER_PORTS[@]}" ;;
  status) status ;;
  smoke) smoke ;;
  *) echo "usage: $0 start|stop|status|install|smoke" >&2; exit 2 ;;
esac
