# shellcheck shell=bash
# PostgreSQL: Debian's binaries, own cluster under .stack/postgres, run as the
# postgres OS user, TCP on 127.0.0.1:$MOZART_PG_PORT, socket in .stack/postgres.

postgres_deps()    { :; }
postgres_port()    { echo "$MOZART_PG_PORT"; }
postgres_timeout() { echo 120; }
postgres_signal()  { echo INT; }   # fast shutdown (TERM would wait for clients)
postgres_stop_timeout() { echo 60; }

pg_data() { printf '%s/data' "$(svc_dir postgres)"; }
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }

pg_psql() {
  as_postgres "$(pg_bindir)/psql" -X -q -v ON_ERROR_STOP=1 \
    -h "$(svc_dir postgres)" -p "$MOZART_PG_PORT" -U postgres "$@"
}

postgres_prepare() {
  ensure_postgres_binaries
  local dir data
  dir="$(svc_dir postgres)"; data="$(pg_data)"
  install -d -o postgres -g postgres -m 0750 "$dir"
  [[ -f "$data/PG_VERSION" ]] && return 0
  info "postgres: initdb $data"
  rm -rf "$data"
  install -d -o postgres -g postgres -m 0700 "$data"
  as_postgres "$(pg_bindir)/initdb" -D "$data" -U postgres --encoding=UTF8 --locale=C \
    --auth-local=peer --auth-host=scram-sha-256 >>"$(svc_log postgres)" 2>&1 \
    || { log_tail postgres; die "postgres: initdb failed"; }
}

postgres_start() {
  spawn "$(svc_pidfile postgres)" "$(svc_log postgres)" \
    setpriv --reuid=postgres --regid=postgres --init-groups -- \
    "$(pg_bindir)/postgres" -D "$(pg_data)" -p "$MOZART_PG_PORT" \
    -c listen_addresses="$BIND_HOST" -c unix_socket_directories="$(svc_dir postgres)" \
    -c TimeZone=UTC -c log_timezone=UTC -c synchronous_commit=off
}

postgres_ready() { "$(pg_bindir)/pg_isready" -q -h "$BIND_HOST" -p "$MOZART_PG_PORT"; }

# First start: load docker/postgres/init.sql. Every start: apply passwords
# from the environment (read by psql's \getenv, never on a command line).
postgres_post_start() {
  local marker; marker="$(svc_dir postgres)/.initialized"
  if [[ ! -f "$marker" ]]; then
    info "postgres: loading docker/postgres/init.sql"
    pg_psql -d postgres <"$ROOT/docker/postgres/init.sql" >>"$(svc_log postgres)" 2>&1 \
      || { log_tail postgres; die "postgres: init.sql failed"; }
    touch "$marker"
  fi
  MOZART_PG_PASSWORD="$MOZART_PG_PASSWORD" ACME_DB_PASSWORD="$ACME_DB_PASSWORD" \
    pg_psql -d postgres >/dev/null <<'SQL' || die "postgres: could not set passwords"
\getenv mozart_pw MOZART_PG_PASSWORD
\getenv acme_pw ACME_DB_PASSWORD
ALTER ROLE mozart PASSWORD :'mozart_pw';
ALTER ROLE acme_reader PASSWORD :'acme_pw';
SQL
}
