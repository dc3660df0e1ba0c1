# shellcheck shell=bash
# Trino 476 (Maven Central tarball, unpacked and pruned once into .cache/),
# etc/ generated under .stack/trino/etc from docker/trino/{etc,catalog}. The
# catalog files read ${ENV:MOZART_*}, exported here exactly as `stack env`
# prints them, so docker-compose can mount the very same files.

trino_deps()    { echo s3 iceberg-rest; }
trino_port()    { echo "$MOZART_TRINO_PORT"; }
trino_timeout() { echo 300; }  # ~30 s on an idle machine; minutes on a loaded 2-core one
trino_signal()  { echo TERM; }
trino_stop_timeout() { echo 150; }  # includes writing the CDS archive on the first stop

trino_etc() { printf '%s/etc' "$(svc_dir trino)"; }

# set_prop <file> <key> <value>: replace or append "key=value".
set_prop() {
  local file="$1" key="$2" value="$3" tmp
  tmp="$(mktemp)"
  grep -v -E "^[[:space:]]*${key//./\\.}[[:space:]]*=" "$file" >"$tmp" || true
  printf '%s=%s\n' "$key" "$value" >>"$tmp"
  mv "$tmp" "$file"
}

trino_write_etc() {
  local etc dir
  etc="$(trino_etc)"; dir="$(svc_dir trino)"
  rm -rf "$etc"
  mkdir -p "$etc/catalog" "$dir/data"
  cp "$ROOT"/docker/trino/etc/{node.properties,config.properties,jvm.config,log.properties} "$etc/"
  cp "$ROOT"/docker/trino/catalog/*.properties "$etc/catalog/"
  set_prop "$etc/node.properties" node.data-dir "$dir/data"
  set_prop "$etc/node.properties" node.bind-ip "$BIND_HOST"
  set_prop "$etc/node.properties" node.internal-address "$BIND_HOST"
  set_prop "$etc/config.properties" http-server.http.port "$MOZART_TRINO_PORT"
  set_prop "$etc/config.properties" discovery.uri "http://$BIND_HOST:$MOZART_TRINO_PORT"
  trino_cds_options >>"$etc/jvm.config"
}

# Class-data sharing (CDS) archive of Trino's classes in .cache/trino-cds: the
# first run records it when Trino exits (`down`; takes ~25 s), later runs map
# it, which cuts Trino's startup by about a third. A tiny file (written by a
# short-lived JVM the launcher starts first) is recorded again. Skipped in CI
# (CI set), where every run is a fresh clone that could never reuse it.
trino_cds_options() {
  local archive="$CACHE_DIR/trino-cds/trino-$TRINO_VERSION.jsa"
  [[ -n "${CI:-}" ]] && return 0
  mkdir -p "$(dirname "$archive")"
  echo "-Xlog:cds=off"
  if [[ -f "$archive" ]] && (( $(stat -c %s "$archive") > 10000000 )); then
    echo "-XX:SharedArchiveFile=$archive"
  else
    echo "-XX:ArchiveClassesAtExit=$archive"
  fi
}

trino_prepare() {
  ensure_trino_dist
  ensure_venv_tools
  java_home >/dev/null
  trino_write_etc
}

open_files_limit() {
  local hard; hard="$(ulimit -Hn)"
  if [[ "$hard" == unlimited ]] || (( hard > 65536 )); then echo 65536; else echo "$hard"; fi
}

trino_start() {
  local dir; dir="$(svc_dir trino)"
  (
    ulimit -n "$(open_files_limit)"
    eval "$(cmd_env)"
    export JAVA_HOME; JAVA_HOME="$(java_home)"
    "$(trino_home)/bin/launcher" start --etc-dir="$(trino_etc)" --data-dir="$dir/data" \
      --pid-file="$(svc_pidfile trino)" --server-log-file="$(svc_log trino)" \
      --launcher-log-file="$dir/launcher.log" --jvm-dir="$JAVA_HOME" >>"$dir/launcher.log" 2>&1 9>&-
  ) || { log_tail trino "$dir/launcher.log"; die "trino: launcher start failed"; }
}

# /v1/info may say "starting":false before queries stop failing, so also run SELECT 1.
trino_ready() {
  curl -s -m 5 "http://$BIND_HOST:$MOZART_TRINO_PORT/v1/info" 2>/dev/null | grep -q '"starting":false' \
    && stack_probe trino-select1 >/dev/null 2>&1
}

trino_post_start() { :; }

# ------------------------------------------------------------------ trino-tls
# Opt-in second Trino (MOZART_TRINO_TLS=1|only, see common.sh) for clients that authenticate: HTTPS on
# MOZART_TRINO_TLS_PORT with a certificate signed by a throwaway CA (both made at every start; clients
# trust .stack/trino-tls/tls/ca.pem), PASSWORD authentication (file authenticator, bcrypt hash of
# MOZART_TRINO_TLS_PASSWORD for MOZART_TRINO_TLS_USER) and JWT authentication (HS256 with the base64 key
# in .stack/trino-tls/tls/jwt-hmac.key). Same catalog files as `trino`, so both see the same tables.
# Nodes talk over plain HTTP on MOZART_TRINO_TLS_HTTP_PORT, signed with a per-start shared secret.
# It runs from the same unpacked Trino (never re-unpacked while it exists) with its own plugin folder:
# symlinks to the kept plugins plus password-authenticators, extracted once into .cache/.

trino_tls_deps()    { echo s3 iceberg-rest; }
trino_tls_port()    { echo "$MOZART_TRINO_TLS_PORT"; }
trino_tls_timeout() { echo 300; }
trino_tls_signal()  { echo TERM; }
trino_tls_stop_timeout() { echo 60; }

trino_tls_ca() { printf '%s/tls/ca.pem' "$(svc_dir trino-tls)"; }
trino_extra_plugins() { printf '%s/trino-plugins-%s' "$CACHE_DIR" "$TRINO_VERSION"; }

trino_tls_prepare() {
  # ensure_trino_dist replaces a dist whose plugin stamp differs: never under the running `trino`
  [[ -x "$(trino_home)/bin/launcher" ]] || ensure_trino_dist
  ensure_venv_tools
  java_home >/dev/null
  command -v openssl >/dev/null || apt_install openssl
  command -v htpasswd >/dev/null || apt_install apache2-utils
  if port_open "$MOZART_TRINO_TLS_HTTP_PORT"; then
    die "trino-tls: internal port $MOZART_TRINO_TLS_HTTP_PORT (MOZART_TRINO_TLS_HTTP_PORT) is in use"
  fi
  ensure_password_plugin
  trino_tls_write_keys
  trino_tls_write_etc
}

# Trino's plugin/password-authenticators (pruned from the unpacked dist) from the cached tarball. Its
# shared jars are hard links to lib/ in the tarball, so lib/ points at the unpacked dist's while unpacking.
ensure_password_plugin() {
  local dest stamp tarball tmp top="trino-server-$TRINO_VERSION"
  dest="$(trino_extra_plugins)/password-authenticators"; stamp="$(trino_extra_plugins)/.password-authenticators"
  [[ -f "$stamp" && -d "$dest" ]] && return 0
  tarball="$CACHE_DIR/maven/$top.tar.gz"
  ensure_maven_artifact "io.trino:trino-server:$TRINO_VERSION:tar.gz" "$(basename "$tarball")"
  echo "$TRINO_SHA256  $tarball" | sha256sum -c --quiet - >&2 \
    || { rm -f "$tarball"; die "checksum mismatch for $tarball (removed; retry)"; }
  info "extracting Trino's password-authenticators plugin into .cache/ (once)"
  tmp="$(mktemp -d "$CACHE_DIR/trino-unpack.XXXXXX")"
  mkdir -p "$tmp/$top"
  ln -s "$(trino_home)/lib" "$tmp/$top/lib"
  tar -xzf "$tarball" -C "$tmp" "$top/plugin/password-authenticators" \
    || { rm -rf "$tmp"; die "could not extract plugin/password-authenticators from $tarball"; }
  mkdir -p "$(trino_extra_plugins)"
  rm -rf "$dest"
  mv "$tmp/$top/plugin/password-authenticators" "$dest"
  rm -rf "$tmp"
  touch "$stamp"
}

# A CA, a server certificate for 127.0.0.1/localhost signed by it (PEM keystore: key + chain), the JWT
# HMAC key and nothing else: the CA's private key is deleted once it has signed.
trino_tls_write_keys() {
  local tls; tls="$(svc_dir trino-tls)/tls"
  rm -rf "$tls"
  mkdir -p "$tls"
  chmod 700 "$tls"
  (
    cd "$tls" || exit 1
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=mozart dev stack CA" \
      -keyout ca.key -out ca.pem -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" &&
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr &&
    printf '%s\n' "subjectAltName=IP:$BIND_HOST,DNS:localhost" "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >server.ext &&
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" \
      -days 30 -extfile server.ext -out server.crt &&
    cat server.key server.crt ca.pem >server.pem &&
    openssl rand -base64 48 >jwt-hmac.key &&
    rm -f ca.key server.key server.csr server.ext server.crt &&
    chmod 644 ca.pem
  ) >>"$(svc_dir trino-tls)/launcher.log" 2>&1 || die "trino-tls: could not create the TLS certificate"
}

trino_tls_write_etc() {
  local dir etc p hash
  dir="$(svc_dir trino-tls)"; etc="$dir/etc"
  rm -rf "$etc" "$dir/plugin"
  mkdir -p "$etc/catalog" "$dir/data" "$dir/plugin"
  chmod 700 "$etc"
  for p in $TRINO_PLUGINS; do
    [[ -d "$(trino_home)/plugin/$p" ]] && ln -s "$(trino_home)/plugin/$p" "$dir/plugin/$p"
  done
  ln -s "$(trino_extra_plugins)/password-authenticators" "$dir/plugin/password-authenticators"
  cp "$ROOT"/docker/trino/etc/{node.properties,config.properties,jvm.config,log.properties} "$etc/"
  cp "$ROOT"/docker/trino/catalog/*.properties "$etc/catalog/"
  set_prop "$etc/node.properties" node.id mozart-trino-tls-1
  set_prop "$etc/node.properties" node.data-dir "$dir/data"
  set_prop "$etc/node.properties" node.bind-ip "$BIND_HOST"
  set_prop "$etc/node.properties" node.internal-address "$BIND_HOST"
  local c="$etc/config.properties"
  set_prop "$c" http-server.http.port "$MOZART_TRINO_TLS_HTTP_PORT"
  set_prop "$c" discovery.uri "http://$BIND_HOST:$MOZART_TRINO_TLS_HTTP_PORT"
  set_prop "$c" http-server.https.enabled true
  set_prop "$c" http-server.https.port "$MOZART_TRINO_TLS_PORT"
  set_prop "$c" http-server.https.keystore.path "$dir/tls/server.pem"
  set_prop "$c" http-server.authentication.type PASSWORD,JWT
  set_prop "$c" http-server.authentication.jwt.key-file "$dir/tls/jwt-hmac.key"
  set_prop "$c" internal-communication.shared-secret "$(openssl rand -base64 48 | tr -d '\n')"
  set_prop "$c" plugin.dir "$dir/plugin"
  set_prop "$c" query.max-memory 512MB   # heap 1G (a guest next to `trino` on a small machine)
  set_prop "$c" query.max-memory-per-node 512MB
  set_prop "$c" query.max-history 1000   # system.runtime.queries keeps a whole test run (audits the query text)
  sed -i 's/^-Xmx.*/-Xmx1G/' "$etc/jvm.config"
  trino_tls_cds_options >>"$etc/jvm.config"
  printf '%s\n' "password-authenticator.name=file" "file.password-file=$etc/password.db" \
    >"$etc/password-authenticator.properties"
  # htpasswd reads the password from stdin (-i): it is never on a command line
  hash="$(printf '%s' "$MOZART_TRINO_TLS_PASSWORD" | htpasswd -niB -C 10 "$MOZART_TRINO_TLS_USER")" \
    || die "trino-tls: htpasswd failed"
  (umask 077; printf '%s\n' "$hash" | grep -v '^$' >"$etc/password.db")
}

# Maps `trino`'s class-data archive when it exists; never records one (that is `trino`'s job).
trino_tls_cds_options() {
  local archive="$CACHE_DIR/trino-cds/trino-$TRINO_VERSION.jsa"
  [[ -z "${CI:-}" && -f "$archive" ]] && (( $(stat -c %s "$archive") > 10000000 )) || return 0
  printf '%s\n' "-Xlog:cds=off" "-XX:SharedArchiveFile=$archive"
}

trino_tls_start() {
  local dir; dir="$(svc_dir trino-tls)"
  (
    ulimit -n "$(open_files_limit)"
    eval "$(cmd_env)"
    unset MOZART_TRINO_TLS_PASSWORD  # Trino only needs the hash: keep the password out of its environment
    export JAVA_HOME; JAVA_HOME="$(java_home)"
    "$(trino_home)/bin/launcher" start --etc-dir="$dir/etc" --data-dir="$dir/data" \
      --pid-file="$(svc_pidfile trino-tls)" --server-log-file="$(svc_log trino-tls)" \
      --launcher-log-file="$dir/launcher.log" --jvm-dir="$JAVA_HOME" >>"$dir/launcher.log" 2>&1 9>&-
  ) || { log_tail trino-tls "$dir/launcher.log"; die "trino-tls: launcher start failed"; }
}

# Ready when /v1/info says so over HTTPS (verified against the CA) and SELECT 1 passes with the password.
trino_tls_ready() {
  local answer  # read whole: a reader that stops early makes Trino log a closed-stream ERROR
  answer="$(curl -s -m 5 --cacert "$(trino_tls_ca)" "https://$BIND_HOST:$MOZART_TRINO_TLS_PORT/v1/info" 2>/dev/null)"
  [[ "$answer" == *'"starting":false'* ]] && trino_tls_select1 >/dev/null 2>&1
}

# The password goes by environment (never argv). requests would let REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE
# override the CA given as verify, so the subshell unsets them.
trino_tls_select1() (
  unset REQUESTS_CA_BUNDLE CURL_CA_BUNDLE
  TLS_PASSWORD="$MOZART_TRINO_TLS_PASSWORD" TLS_USER="$MOZART_TRINO_TLS_USER" TLS_CA="$(trino_tls_ca)" \
    TLS_PORT="$MOZART_TRINO_TLS_PORT" "$(venv_python)" - <<'PY'
import os
import trino

env = os.environ
conn = trino.dbapi.connect(
    host="127.0.0.1", port=int(env["TLS_PORT"]), user=env["TLS_USER"], http_scheme="https",
    auth=trino.auth.BasicAuthentication(env["TLS_USER"], env["TLS_PASSWORD"]), verify=env["TLS_CA"],
    request_timeout=10,
)
try:
    cursor = conn.cursor()
    cursor.execute("SELECT 1")
    assert cursor.fetchall() == [[1]]
finally:
    conn.close()
PY
)

trino_tls_post_start() { :; }

# -------------------------------------------------------------- trino-cluster
# Opt-in Trino cluster (MOZART_TRINO_WORKERS=N, see common.sh): a coordinator on MOZART_TRINO_CLUSTER_PORT
# with node-scheduler.include-coordinator=false (it plans, workers execute) and N worker JVMs on
# MOZART_TRINO_CLUSTER_WORKER_PORT + 0..N-1 that announce themselves to the coordinator's discovery URI.
# Same catalog files (iceberg over the REST catalog and S3) as `trino`, so every Trino sees the same tables.
# Files: .stack/trino-cluster/{etc,data,log,pid} for the coordinator, .stack/trino-cluster/worker-I/ for
# worker I, configured from docker/trino/cluster/ (as compose's profile `cluster`). Each JVM has a 1 GB heap. `stack` stops and kills the workers with the coordinator (the
# stop_members/kill_members hooks). Ready when the coordinator counts N active workers and a query runs.

trino_cluster_deps()    { echo s3 iceberg-rest; }
trino_cluster_port()    { echo "$MOZART_TRINO_CLUSTER_PORT"; }
trino_cluster_timeout() { echo 420; }  # two or more JVMs starting at once on a small machine
trino_cluster_signal()  { echo TERM; }
trino_cluster_stop_timeout() { echo 60; }

trino_cluster_workers() { echo "${MOZART_TRINO_WORKERS:-1}"; }
trino_cluster_worker_dir() { printf '%s/worker-%s' "$(svc_dir trino-cluster)" "$1"; }
trino_cluster_worker_port() { echo $(( MOZART_TRINO_CLUSTER_WORKER_PORT + $1 - 1 )); }

# Pid files of the workers of the last start (whatever N was then): .stack/trino-cluster/worker-*/pid.
trino_cluster_worker_pids() {
  local f pid
  for f in "$(svc_dir trino-cluster)"/worker-*/pid; do
    [[ -f "$f" ]] || continue
    pid="$(read_pid "$f")"
    [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || { rm -f "$f"; continue; }
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$(dirname "$f")" || { rm -f "$f"; continue; }
    printf '%s %s\n' "$pid" "$f"
  done
}

# Stop the workers (TERM, then KILL after the stop timeout); called after the coordinator stopped.
trino_cluster_stop_members() {
  local pid f t0
  t0="$(now)"
  while read -r pid f; do
    [[ -n "$pid" ]] || continue
    kill -s TERM "$pid" 2>/dev/null || true
    if ! wait_pid_exit "$pid" "$(trino_cluster_stop_timeout)"; then
      info "trino-cluster: worker pid $pid still alive; sending KILL"
      kill -s KILL "$pid" 2>/dev/null || true
      wait_pid_exit "$pid" 10 || die "trino-cluster: could not stop worker pid $pid"
    fi
    rm -f "$f"
    info "$(printf '%-13s stopped      (worker %s, pid %s, %s)' trino-cluster \
      "$(basename "$(dirname "$f")")" "$pid" "$(elapsed "$t0")")"
  done < <(trino_cluster_worker_pids)
}

trino_cluster_kill_members() {
  local pid f
  while read -r pid f; do
    [[ -n "$pid" ]] || continue
    kill -s KILL "$pid" 2>/dev/null || true
    wait_pid_exit "$pid" 30 || die "trino-cluster: worker pid $pid survived SIGKILL"
    rm -f "$f"
    info "$(printf '%-13s killed       (worker pid %s)' trino-cluster "$pid")"
  done < <(trino_cluster_worker_pids)
}

trino_cluster_prepare() {
  local i n
  [[ -x "$(trino_home)/bin/launcher" ]] || ensure_trino_dist  # never re-unpacked under a running `trino`
  ensure_venv_tools
  java_home >/dev/null
  trino_cluster_stop_members  # workers left from a coordinator that died
  n="$(trino_cluster_workers)"
  for (( i = 1; i <= n; i++ )); do
    if port_open "$(trino_cluster_worker_port "$i")"; then
      die "trino-cluster: worker port $(trino_cluster_worker_port "$i") (MOZART_TRINO_CLUSTER_WORKER_PORT + $((i - 1))) is in use"
    fi
  done
  trino_cluster_write_etc
}

# trino_cluster_node_etc <dir> <node id> <http port> <config file>: etc/ (with the catalogs) and data/ of
# one node, from docker/trino/cluster/ (the files docker-compose's profile `cluster` mounts).
trino_cluster_node_etc() {
  local dir="$1" id="$2" port="$3" etc="$1/etc" src="$ROOT/docker/trino/cluster"
  rm -rf "$etc"
  mkdir -p "$etc/catalog" "$dir/data"
  cp "$src/node.properties" "$src/jvm.config" "$ROOT/docker/trino/etc/log.properties" "$etc/"
  cp "$src/$4" "$etc/config.properties"
  cp "$ROOT"/docker/trino/catalog/*.properties "$etc/catalog/"
  set_prop "$etc/node.properties" node.id "$id"
  set_prop "$etc/node.properties" node.data-dir "$dir/data"
  set_prop "$etc/node.properties" node.bind-ip "$BIND_HOST"
  set_prop "$etc/node.properties" node.internal-address "$BIND_HOST"
  set_prop "$etc/config.properties" http-server.http.port "$port"
  set_prop "$etc/config.properties" discovery.uri "http://$BIND_HOST:$MOZART_TRINO_CLUSTER_PORT"
  trino_tls_cds_options >>"$etc/jvm.config"
}

trino_cluster_write_etc() {
  local dir i n
  dir="$(svc_dir trino-cluster)"; n="$(trino_cluster_workers)"
  rm -rf "$dir"/worker-*
  trino_cluster_node_etc "$dir" mozart-trino-cluster-coordinator "$MOZART_TRINO_CLUSTER_PORT" coordinator.properties
  for (( i = 1; i <= n; i++ )); do
    trino_cluster_node_etc "$(trino_cluster_worker_dir "$i")" "mozart-trino-cluster-worker-$i" \
      "$(trino_cluster_worker_port "$i")" worker.properties
  done
}

# trino_cluster_launch <node dir> <pid file> <server log>
trino_cluster_launch() {
  local dir="$1"
  (
    ulimit -n "$(open_files_limit)"
    eval "$(cmd_env)"
    export JAVA_HOME; JAVA_HOME="$(java_home)"
    "$(trino_home)/bin/launcher" start --etc-dir="$dir/etc" --data-dir="$dir/data" \
      --pid-file="$2" --server-log-file="$3" \
      --launcher-log-file="$dir/launcher.log" --jvm-dir="$JAVA_HOME" >>"$dir/launcher.log" 2>&1 9>&-
  ) || { log_tail trino-cluster "$dir/launcher.log"; die "trino-cluster: launcher start failed in $dir"; }
}

trino_cluster_start() {
  local i n w
  n="$(trino_cluster_workers)"
  trino_cluster_launch "$(svc_dir trino-cluster)" "$(svc_pidfile trino-cluster)" "$(svc_log trino-cluster)"
  for (( i = 1; i <= n; i++ )); do
    w="$(trino_cluster_worker_dir "$i")"
    trino_cluster_launch "$w" "$w/pid" "$w/log"
  done
}

# Ready when the coordinator is up, counts N active workers (it schedules nothing itself) and a query
# that needs a worker returns.
trino_cluster_ready() {
  local answer
  answer="$(curl -s -m 5 "http://$BIND_HOST:$MOZART_TRINO_CLUSTER_PORT/v1/info" 2>/dev/null)"
  [[ "$answer" == *'"starting":false'* ]] || return 1
  CLUSTER_PORT="$MOZART_TRINO_CLUSTER_PORT" CLUSTER_WORKERS="$(trino_cluster_workers)" \
    "$(venv_python)" - >/dev/null 2>&1 <<'PY'
import os
import trino

conn = trino.dbapi.connect(host="127.0.0.1", port=int(os.environ["CLUSTER_PORT"]), user="mozart",
                           request_timeout=10)
try:
    cursor = conn.cursor()
    cursor.execute("SELECT count(*) FROM system.runtime.nodes WHERE coordinator = false AND state = 'active'")
    assert cursor.fetchall() == [[int(os.environ["CLUSTER_WORKERS"])]]
    cursor.execute("SELECT count(*) FROM tpch.tiny.nation")
    assert cursor.fetchall() == [[25]]
finally:
    conn.close()
PY
}

trino_cluster_post_start() {
  local n; n="$(trino_cluster_workers)"
  info "trino-cluster: $n worker(s) active, ports $MOZART_TRINO_CLUSTER_WORKER_PORT-$(trino_cluster_worker_port "$n")" \
    "(the coordinator schedules no work)"
}
