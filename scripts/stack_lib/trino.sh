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
