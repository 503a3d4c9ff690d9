# shellcheck shell=bash
# Sourced by scripts/run and scripts/test: makes sure PostgreSQL is installed
# (from Debian's packages) and a private instance of it runs under the
# project's data directory, then exports PG_ADMIN_URL for it.
#
# Nothing here touches a system-wide PostgreSQL: the private instance has its
# own data directory, port and socket directory, trusts only loopback
# connections, and is stopped with `scripts/postgres.sh stop`... or simply
# `pg_ctl -D .data/postgres stop`.

MARAUDERS_DATA_DIR="${MARAUDERS_DATA_DIR:-$PROJECT_ROOT/.data}"
PG_PORT="${MARAUDERS_PG_PORT:-54329}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

find_pg_bin() {
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then echo "$dir"; return 0; fi
  done
  return 1
}

install_postgres_if_missing() {
  if PG_BIN="$(find_pg_bin)"; then return 0; fi
  say "PostgreSQL is not installed; installing it from Debian's packages"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql postgresql-client >/dev/null
  PG_BIN="$(find_pg_bin)" || { echo "PostgreSQL installation failed" >&2; exit 1; }
}

# initdb and postgres refuse to run as root; as root we run them as the
# 'postgres' user the Debian package creates.
run_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start_private_postgres() {
  install_postgres_if_missing
  PG_DATA="$MARAUDERS_DATA_DIR/postgres"
  PG_SOCKET_DIR="$MARAUDERS_DATA_DIR/postgres-socket"
  mkdir -p "$MARAUDERS_DATA_DIR"
  if [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -x "$MARAUDERS_DATA_DIR"; then
    # The postgres user cannot reach the project directory (a private home,
    # say): keep the instance's files in a directory it can reach instead.
    MARAUDERS_DATA_DIR="/var/tmp/marauders-map-$(echo "$PROJECT_ROOT" | md5sum | cut -c1-12)"
    PG_DATA="$MARAUDERS_DATA_DIR/postgres"
    PG_SOCKET_DIR="$MARAUDERS_DATA_DIR/postgres-socket"
    mkdir -p "$MARAUDERS_DATA_DIR"
    say "postgres cannot reach the project directory; its data lives in $MARAUDERS_DATA_DIR"
  fi
  mkdir -p "$PG_SOCKET_DIR"
  if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$PG_SOCKET_DIR"; fi
  if [ ! -f "$PG_DATA/PG_VERSION" ]; then
    say "initialising a private PostgreSQL instance in $PG_DATA"
    mkdir -p "$PG_DATA"
    if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$PG_DATA"; fi
    run_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  fi
  if run_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
    # Already running: use the port it was started on.
    PG_PORT="$(cat "$MARAUDERS_DATA_DIR/postgres.port" 2>/dev/null || echo "$PG_PORT")"
  else
    # Another project's server (or a stale one) may hold the port: take the
    # next free one rather than fail.
    local tries=0
    while port_in_use "$PG_PORT"; do
      tries=$((tries + 1))
      [ "$tries" -le 50 ] || { echo "no free port near $PG_PORT for PostgreSQL" >&2; exit 1; }
      PG_PORT=$((PG_PORT + 1))
    done
    echo "$PG_PORT" > "$MARAUDERS_DATA_DIR/postgres.port"
    say "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    run_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/server.log" -w -t 60 \
      -o "-p $PG_PORT -k $PG_SOCKET_DIR -c listen_addresses=127.0.0.1 -c max_connections=400 -c shared_buffers=256MB" \
      start >/dev/null
  fi
  PG_ADMIN_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
  export PG_ADMIN_URL PG_BIN PG_DATA PG_PORT MARAUDERS_DATA_DIR
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# psql against the private instance.
pg_sql() {
  "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres "$@"
}

ensure_database() {
  local name="$1"
  if [ -z "$(pg_sql -tAc "SELECT 1 FROM pg_database WHERE datname = '$name'")" ]; then
    pg_sql -c "CREATE DATABASE \"$name\"" >/dev/null
  fi
}
