#!/usr/bin/env bash
# The embedded default Prefect server: SQLite under the runbook data directory, telemetry off.
# Usage: scripts/prefect_server.sh start|stop|status   (idempotent; waits until healthy)
# RUNBOOK_PREFECT_DB=postgres runs it on the local PostgreSQL instead (database `prefect`, created
# when missing; PREFECT_PG_URL overrides the asyncpg URL): for many concurrent runs or approvals.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$HERE/.venv}
RUNBOOK_HOME=${RUNBOOK_HOME:-$HOME/.runbook}
PORT=${RUNBOOK_PREFECT_PORT:-4200}
export PREFECT_HOME="$RUNBOOK_HOME/prefect"
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
if [ "${RUNBOOK_PREFECT_DB:-sqlite}" = postgres ]; then
  PG_URL=${PREFECT_PG_URL:-postgresql+asyncpg://root@127.0.0.1:5432/prefect}
  DB=${PG_URL##*/}
  psql -h 127.0.0.1 -U root -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$DB'" | grep -q 1 \
    || psql -h 127.0.0.1 -U root -d postgres -c "CREATE DATABASE \"$DB\"" >/dev/null
  export PREFECT_API_DATABASE_CONNECTION_URL=$PG_URL
else
  export PREFECT_API_DATABASE_CONNECTION_URL=${PREFECT_API_DATABASE_CONNECTION_URL:-"sqlite+aiosqlite:///$PREFECT_HOME/prefect.db"}
fi
export PREFECT_UI_ENABLED=${PREFECT_UI_ENABLED:-true}
export PREFECT_SERVER_API_HOST=127.0.0.1 PREFECT_SERVER_API_PORT=$PORT
mkdir -p "$PREFECT_HOME"
PIDFILE="$RUNBOOK_HOME/prefect-server.pid"
LOG="$RUNBOOK_HOME/prefect-server.log"
healthy() { curl -fsS -m 2 "http://127.0.0.1:$PORT/api/health" >/dev/null 2>&1; }
case "${1:-start}" in
  start)
    if healthy; then echo "prefect server: already up on :$PORT"; exit 0; fi
    nohup "$VENV/bin/prefect" server start --host 127.0.0.1 --port "$PORT" >"$LOG" 2>&1 &
    echo $! >"$PIDFILE"
    for _ in $(seq 1 120); do
      if healthy; then echo "prefect server: up on :$PORT (home $PREFECT_HOME)"; exit 0; fi
      sleep 0.5
    done
    echo "prefect server did not become healthy; last log lines:" >&2; tail -20 "$LOG" >&2; exit 1 ;;
  stop)
    [ -f "$PIDFILE" ] && kill "$(cat "$PIDFILE")" 2>/dev/null || true; rm -f "$PIDFILE" ;;
  status)
    healthy && echo up || { echo down; exit 1; } ;;
esac
