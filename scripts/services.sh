#!/usr/bin/env bash
# Ensure the local services runbook needs: RabbitMQ (management + shovel plugins), PostgreSQL and Redis
# (BullMQ queues).
# Installs them from apt when absent (as root), starts them when stopped, waits until they answer.
set -euo pipefail
# `scripts/services.sh monitoring`: these services, then Prometheus and Alertmanager for the tests that need
# them (scripts/monitoring.sh; `make demo` never starts them)
if [ "${1:-}" = monitoring ]; then "$0"; exec "$(dirname "$0")/monitoring.sh" "${@:2}"; fi
# `scripts/services.sh browser`: these services, then Debian's chromium for the one browser test
# (tests/compiler/test_prefect_ui_browser.py drives the Prefect UI headless; never a downloaded browser)
if [ "${1:-}" = browser ]; then
  "$0"
  if ! command -v chromium >/dev/null 2>&1; then
    echo "installing chromium from apt"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  fi
  exit 0
fi
need_apt=()
command -v rabbitmq-server >/dev/null 2>&1 || need_apt+=(rabbitmq-server)
command -v pg_ctlcluster >/dev/null 2>&1 || need_apt+=(postgresql)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
# the systemd tests boot a real systemd: a debootstrapped Debian tree under systemd-nspawn
command -v debootstrap >/dev/null 2>&1 || need_apt+=(debootstrap)
command -v systemd-nspawn >/dev/null 2>&1 || need_apt+=(systemd-container)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing ${need_apt[*]} from apt"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# PostgreSQL
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  ver=$(ls /etc/postgresql | sort -V | tail -1)
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  for _ in $(seq 1 60); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.5; done
fi
pg_isready -h 127.0.0.1 -p 5432 >/dev/null || { echo "PostgreSQL did not start" >&2; exit 1; }
# trust for local TCP in a fresh install is not the Debian default: make a role for root if missing
if ! psql -h 127.0.0.1 -U root -d postgres -Atc 'select 1' >/dev/null 2>&1; then
  su postgres -c "psql -Atc \"DO \\\$\\\$BEGIN CREATE ROLE root SUPERUSER LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END\\\$\\\$\"" || true
  hba=$(ls /etc/postgresql/*/main/pg_hba.conf | head -1)
  grep -q "runbook-trust" "$hba" || { sed -i '1i host all all 127.0.0.1/32 trust # runbook-trust' "$hba"; pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main reload; }
fi
for db in test root; do
  psql -h 127.0.0.1 -U root -d postgres -Atc "select 1 from pg_database where datname='$db'" | grep -q 1 \
    || psql -h 127.0.0.1 -U root -d postgres -c "create database $db" >/dev/null
done

# RabbitMQ
plugins="rabbitmq_management rabbitmq_shovel rabbitmq_shovel_management"
if ! rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
  rabbitmq-plugins enable --offline $plugins >/dev/null
  rabbitmq-server -detached
  for _ in $(seq 1 60); do rabbitmq-diagnostics -q ping >/dev/null 2>&1 && break; sleep 1; done
fi
rabbitmq-plugins list -e -m 2>/dev/null | grep -q rabbitmq_shovel_management || rabbitmq-plugins enable $plugins >/dev/null
for _ in $(seq 1 90); do
  curl -fsS -m 2 -u guest:guest http://127.0.0.1:15672/api/overview >/dev/null 2>&1 && break; sleep 1
done
curl -fsS -m 2 -u guest:guest http://127.0.0.1:15672/api/overview >/dev/null || { echo "RabbitMQ management API did not answer" >&2; exit 1; }

# Redis (BullMQ): loopback only, no persistence, started as env's machine notes say
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 1 40); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.25; done
fi
redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || { echo "Redis did not start" >&2; exit 1; }
echo "services: PostgreSQL, RabbitMQ (management, shovel) and Redis are up"
