# shellcheck shell=bash
# MariaDB: Debian's mariadbd, own datadir under .stack/mysql, run as root
# (--user=root), TCP on 127.0.0.1:$MOZART_MYSQL_PORT, socket in .stack/mysql.

mysql_deps()    { :; }
mysql_port()    { echo "$MOZART_MYSQL_PORT"; }
mysql_timeout() { echo 120; }
mysql_signal()  { echo TERM; }
mysql_stop_timeout() { echo 60; }

mysql_data()   { printf '%s/data' "$(svc_dir mysql)"; }
mysql_socket() { printf '%s/mysqld.sock' "$(svc_dir mysql)"; }
mysql_root()   { mariadb --no-defaults --protocol=socket --socket="$(mysql_socket)" -uroot "$@"; }

mysql_prepare() {
  ensure_mariadb_binaries
  local data; data="$(mysql_data)"
  mkdir -p "$(svc_dir mysql)"
  [[ -d "$data/mysql" ]] && return 0
  info "mysql: mariadb-install-db $data"
  rm -rf "$data"
  mariadb-install-db --no-defaults --datadir="$data" --user=root \
    --auth-root-authentication-method=socket --skip-test-db >>"$(svc_log mysql)" 2>&1 \
    || { log_tail mysql; die "mysql: mariadb-install-db failed"; }
}

mysql_start() {
  spawn "$(svc_pidfile mysql)" "$(svc_log mysql)" \
    mariadbd --no-defaults --user=root --datadir="$(mysql_data)" \
    --socket="$(mysql_socket)" --pid-file="$(svc_dir mysql)/mariadbd.pid" \
    --bind-address="$BIND_HOST" --port="$MOZART_MYSQL_PORT" --skip-name-resolve \
    --default-time-zone=+00:00 --character-set-server=utf8mb4 \
    --collation-server=utf8mb4_unicode_ci --innodb-buffer-pool-size=128M \
    --innodb-flush-log-at-trx-commit=2
}

mysql_ready() {
  port_open "$MOZART_MYSQL_PORT" && mysql_root -e 'SELECT 1' >/dev/null 2>&1
}

# First start: load docker/mysql/init.sql. Every start: apply passwords from
# the environment (sent on the client's stdin, never on a command line).
mysql_post_start() {
  local marker; marker="$(svc_dir mysql)/.initialized"
  if [[ ! -f "$marker" ]]; then
    info "mysql: loading docker/mysql/init.sql"
    mysql_root <"$ROOT/docker/mysql/init.sql" >>"$(svc_log mysql)" 2>&1 \
      || { log_tail mysql; die "mysql: init.sql failed"; }
    touch "$marker"
  fi
  {
    printf "ALTER USER 'mozart'@'%%' IDENTIFIED BY %s;\n" "$(mysql_quote "$MOZART_MYSQL_PASSWORD")"
    printf "ALTER USER 'globex_reader'@'%%' IDENTIFIED BY %s;\n" "$(mysql_quote "$GLOBEX_DB_PASSWORD")"
  } | mysql_root || die "mysql: could not set passwords"
}
