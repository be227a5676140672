# Make sure Redis and PostgreSQL are reachable for the tests (sourced by ./scripts/test).
# Uses running ones; else starts them if installed; else installs them with apt when root.

REDIS_HOST=127.0.0.1 REDIS_PORT=6379
PG_HOST=127.0.0.1 PG_PORT=5432

port_open() { "$PY" - "$1" "$2" <<'PYEOF'
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
except OSError:
    sys.exit(1)
PYEOF
}

wait_port() {
  local i
  for i in $(seq 1 30); do port_open "$1" "$2" && return 0; sleep 1; done
  return 1
}

apt_install() {
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 1
  log "Installing $* with apt…"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_redis() {
  port_open "$REDIS_HOST" "$REDIS_PORT" && return 0
  if ! command -v redis-server >/dev/null 2>&1; then
    apt_install redis-server || die "Redis is not reachable on $REDIS_HOST:$REDIS_PORT and cannot be installed here (not root or no apt). Start Redis, or set TEST_REDIS_URL."
  fi
  log "Starting Redis on $REDIS_HOST:$REDIS_PORT"
  redis-server --daemonize yes --bind "$REDIS_HOST" --port "$REDIS_PORT" --save "" --appendonly no >/dev/null
  wait_port "$REDIS_HOST" "$REDIS_PORT" || die "Redis did not start on $REDIS_HOST:$REDIS_PORT."
}

ensure_postgres() {
  if ! port_open "$PG_HOST" "$PG_PORT"; then
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
      apt_install postgresql || die "PostgreSQL is not reachable on $PG_HOST:$PG_PORT and cannot be installed here (not root or no apt). Start it, or set TEST_DATABASE_URL."
      # A fresh cluster asks for a password over TCP: give the postgres role the one we use.
    fi
    log "Starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start >/dev/null 2>&1 || true
    wait_port "$PG_HOST" "$PG_PORT" || die "PostgreSQL did not start on $PG_HOST:$PG_PORT."
  fi
  # Trust auth ignores the password; password auth (a fresh Debian cluster) needs it set.
  if command -v psql >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1; then
    su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null 2>&1 || true
  fi
}

# The browser tests (tests/browser/) drive Debian's Chromium with a fake microphone playing
# speech made offline with espeak-ng and converted with sox.
ensure_chromium() {
  local chromium="${VOZ_CHROMIUM:-/usr/bin/chromium}" missing=()
  [ -x "$chromium" ] || missing+=(chromium)
  command -v sox >/dev/null 2>&1 || missing+=(sox)
  command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
  [ "${#missing[@]}" -eq 0 ] && return 0
  apt_install "${missing[@]}" || die "The browser tests need ${missing[*]}: install them (apt-get install -y ${missing[*]}) or set VOZ_CHROMIUM to a Chromium binary."
  [ -x "$chromium" ] || die "Chromium is not at $chromium after installing; set VOZ_CHROMIUM to its path."
}
