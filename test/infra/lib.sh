# shellcheck shell=bash
# Shared helpers for the test/infra/*.sh scripts. Sourced, never run directly.
#
# Environment:
#   GOVMAP_INFRA_DIR    state dir (pids, logs, data); default /tmp/govmap-infra
#   GOVMAP_INFRA_CACHE  cache dir (downloaded jars, built binaries); default ~/.cache/govmap-infra

INFRA_SRC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck disable=SC2034 # used by the scripts that source this file
REPO_ROOT="$(cd "$INFRA_SRC_DIR/../.." && pwd)"
STATE_DIR="${GOVMAP_INFRA_DIR:-/tmp/govmap-infra}"
# shellcheck disable=SC2034
CACHE_DIR="${GOVMAP_INFRA_CACHE:-${HOME:-/root}/.cache/govmap-infra}"
INFRA_NAME="${INFRA_NAME:-infra}"

log() { printf '[%s %s] %s\n' "$INFRA_NAME" "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[%s %s] ERROR: %s\n' "$INFRA_NAME" "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# --- apt ---------------------------------------------------------------------

pkg_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# apt_ensure PKG... : install the packages that are missing, in one apt-get call.
# Runs `apt-get update` first (once per call, only when something is missing).
# Services that packages would start on install (redis on 6379, etcd on 2379,
# prometheus on 9090) are kept from starting with a temporary policy-rc.d:
# the scripts run their own instances on their own ports.
apt_ensure() {
  local missing=() p
  for p in "$@"; do pkg_installed "$p" || missing+=("$p"); done
  [ "${#missing[@]}" -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "apt-get not found; install ${missing[*]} by hand"
  local lock=/tmp/govmap-infra-apt.lock
  (
    flock -w 900 9 || die "timed out waiting for $lock"
    # Another script may have installed them while we waited for the lock.
    local still=() q
    for q in "${missing[@]}"; do pkg_installed "$q" || still+=("$q"); done
    [ "${#still[@]}" -eq 0 ] && exit 0
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [ ! -e "$policy" ]; then
      trap 'as_root rm -f "$policy"' EXIT
      printf '#!/bin/sh\n# temporary, written by govmap test/infra: do not start services on install\nexit 101\n' | as_root tee "$policy" >/dev/null
      as_root chmod 755 "$policy"
      made_policy=1
    fi
    local rc=0 aptlog
    mkdir -p "$STATE_DIR"; aptlog="$STATE_DIR/apt.log"
    log "apt-get update (log: $aptlog)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq >>"$aptlog" 2>&1 || rc=$?
    if [ "$rc" -eq 0 ]; then
      log "apt-get install ${still[*]}"
      as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends "${still[@]}" >>"$aptlog" 2>&1 || rc=$?
    fi
    if [ "$made_policy" -eq 1 ]; then as_root rm -f "$policy"; trap - EXIT; fi
    if [ "$rc" -ne 0 ]; then
      tail -n 30 "$aptlog" >&2
      die "apt-get failed (exit $rc) installing ${still[*]} (log: $aptlog)"
    fi
  ) 9>"$lock"
}

# --- processes -----------------------------------------------------------------

# pid_alive PIDFILE REGEX : the pid in PIDFILE is alive and its command line
# matches the extended REGEX (guards against a recycled pid).
pid_alive() {
  local pidfile="$1" pattern="$2" pid
  [ -s "$pidfile" ] || return 1
  pid="$(cat "$pidfile" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qE -- "$pattern"
}

# spawn PIDFILE LOGFILE CMD... : start CMD detached (own session), record its pid.
spawn() {
  local pidfile="$1" logfile="$2"; shift 2
  mkdir -p "$(dirname "$pidfile")" "$(dirname "$logfile")"
  : >"$logfile"
  # 8>&- : the daemon must not inherit (and so hold forever) the service lock.
  setsid nohup "$@" >>"$logfile" 2>&1 </dev/null 8>&- 9>&- &
  echo $! >"$pidfile"
}

# stop_pid NAME PIDFILE PATTERN [GRACE_SECONDS] : TERM, wait, then KILL.
stop_pid() {
  local name="$1" pidfile="$2" pattern="$3" grace="${4:-15}" pid i
  if ! pid_alive "$pidfile" "$pattern"; then
    rm -f "$pidfile"
    log "$name: not running"
    return 0
  fi
  pid="$(cat "$pidfile")"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name: still alive after ${grace}s, sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  kill -0 "$pid" 2>/dev/null && die "$name: pid $pid would not die"
  rm -f "$pidfile"
  log "$name: stopped (pid $pid)"
}

# service_lock : serialise start/stop/install of one service across concurrent
# invocations (two test runners starting the same service at once). Held until exit.
service_lock() {
  mkdir -p "$STATE_DIR"
  exec 8>"$STATE_DIR/.$INFRA_NAME.lock"
  flock -w 600 8 || die "timed out waiting for $STATE_DIR/.$INFRA_NAME.lock"
}

# --- network -------------------------------------------------------------------

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# require_port_free NAME HOST PORT
require_port_free() {
  if port_open "$2" "$3"; then
    die "$1: $2:$3 is already in use by a process this script did not start; free it first"
  fi
}

# http_get URL : body on stdout (curl if present, else a bare bash HTTP/1.0 GET).
http_get() {
  if command -v curl >/dev/null; then
    curl -fsS --max-time 5 "$1"
  else
    local rest="${1#http://}" hostport path host port
    hostport="${rest%%/*}"; path="/${rest#*/}"; [ "$rest" = "$hostport" ] && path=/
    host="${hostport%%:*}"; port="${hostport##*:}"
    (
      { exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null || exit 1
      printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$hostport" >&3
      timeout 5 cat <&3 | { read -r status; case "$status" in *" 200 "*) ;; *) exit 1 ;; esac
        sed '1,/^\r\{0,1\}$/d'; }
    )
  fi
}

# wait_ready NAME TIMEOUT_S LOGFILE PIDFILE PATTERN CHECK_CMD... : poll CHECK_CMD
# until it succeeds; fail early if the process died; on failure print the log tail.
wait_ready() {
  local name="$1" timeout="$2" logfile="$3" pidfile="$4" pattern="$5"; shift 5
  local start=$SECONDS
  while true; do
    if "$@" >/dev/null 2>&1; then
      log "$name: ready after $((SECONDS - start))s"
      return 0
    fi
    if ! pid_alive "$pidfile" "$pattern"; then
      # Just spawned, the pid may still be the shell that has not yet exec'd the daemon (its
      # cmdline is not the pattern's): a start under load was declared dead while the daemon went
      # on, untracked, holding the port. Only a pid that is gone is an exit.
      local pid
      pid="$(cat "$pidfile" 2>/dev/null || true)"
      if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && (( SECONDS - start < 10 )); then
        sleep 0.5
        continue
      fi
      log "$name: process exited before becoming ready. Last log lines ($logfile):"
      tail -n 40 "$logfile" >&2 || true
      rm -f "$pidfile"
      die "$name failed to start"
    fi
    if (( SECONDS - start >= timeout )); then
      log "$name: not ready after ${timeout}s. Last log lines ($logfile):"
      tail -n 40 "$logfile" >&2 || true
      stop_pid "$name" "$pidfile" "$pattern" 5 || true
      die "$name did not become ready within ${timeout}s (process stopped)"
    fi
    sleep 0.5
  done
}
