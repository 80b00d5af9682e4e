#!/usr/bin/env bash
# Prometheus and Alertmanager for the tests that need them (the alert pipeline, prometheus.* actions):
# `scripts/services.sh monitoring` (or this script) installs them from apt when absent (as root),
# enables RabbitMQ's rabbitmq_prometheus plugin (:15692), and starts both as plain processes on
# loopback, data and configs under the user's data directory ($RUNBOOK_HOME/monitoring).
#   Prometheus    127.0.0.1:9090  scrape + rule evaluation every 2s, rules from monitoring/prometheus/rules/*.yml
#   Alertmanager  127.0.0.1:9093  no clustering; tests write monitoring/alertmanager/alertmanager.yml and reload
# `scripts/monitoring.sh stop` stops both. Not part of `make demo`.
set -euo pipefail
home="${RUNBOOK_HOME:-$HOME/.runbook}"
base="$home/monitoring"
prom_dir="$base/prometheus"
am_dir="$base/alertmanager"
prom_bin=$(command -v prometheus || true)
am_bin=$(command -v prometheus-alertmanager || command -v alertmanager || true)

stop() {
  for name in prometheus alertmanager; do
    pidfile="$base/$name.pid"
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      kill "$(cat "$pidfile")" && echo "stopped $name"
    fi
    rm -f "$pidfile"
  done
}
if [ "${1:-}" = stop ]; then stop; exit 0; fi

if [ -z "$prom_bin" ] || [ -z "$am_bin" ]; then
  echo "installing prometheus prometheus-alertmanager from apt"
  export DEBIAN_FRONTEND=noninteractive
  # the packages' postinst would start them through systemd: there is none here, they start below
  apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager >/dev/null
  prom_bin=$(command -v prometheus)
  am_bin=$(command -v prometheus-alertmanager || command -v alertmanager)
fi

# RabbitMQ's own exporter (ships with rabbitmq-server)
rabbitmq-plugins list -e -m 2>/dev/null | grep -q '^rabbitmq_prometheus$' || rabbitmq-plugins enable rabbitmq_prometheus >/dev/null
for _ in $(seq 1 30); do curl -fsS -m 2 -o /dev/null http://127.0.0.1:15692/metrics && break; sleep 1; done

umask 077
mkdir -p "$prom_dir/rules" "$prom_dir/data" "$am_dir/data"
if [ ! -f "$prom_dir/prometheus.yml" ]; then
  cat >"$prom_dir/prometheus.yml" <<YAML
global:
  scrape_interval: 2s
  evaluation_interval: 2s
rule_files: ["$prom_dir/rules/*.yml"]
alerting:
  alertmanagers:
    - static_configs: [{targets: ["127.0.0.1:9093"]}]
scrape_configs:
  - job_name: rabbitmq
    metrics_path: /metrics/detailed
    params: {family: [queue_coarse_metrics]}
    static_configs: [{targets: ["127.0.0.1:15692"]}]
YAML
fi
if [ ! -f "$am_dir/alertmanager.yml" ]; then
  cat >"$am_dir/alertmanager.yml" <<YAML
route: {receiver: none}
receivers: [{name: none}]
YAML
fi

up() { curl -fsS -m 2 -o /dev/null "$1" 2>/dev/null; }
if ! up http://127.0.0.1:9090/-/ready; then
  nohup "$prom_bin" --config.file="$prom_dir/prometheus.yml" --storage.tsdb.path="$prom_dir/data" \
    --storage.tsdb.retention.time=2d --web.listen-address=127.0.0.1:9090 --web.enable-lifecycle \
    >"$prom_dir/prometheus.log" 2>&1 &
  echo $! >"$base/prometheus.pid"
fi
if ! up http://127.0.0.1:9093/-/ready; then
  nohup "$am_bin" --config.file="$am_dir/alertmanager.yml" --storage.path="$am_dir/data" \
    --web.listen-address=127.0.0.1:9093 --cluster.listen-address= \
    >"$am_dir/alertmanager.log" 2>&1 &
  echo $! >"$base/alertmanager.pid"
fi
for _ in $(seq 1 60); do up http://127.0.0.1:9090/-/ready && up http://127.0.0.1:9093/-/ready && break; sleep 0.5; done
up http://127.0.0.1:9090/-/ready || { echo "Prometheus did not start; see $prom_dir/prometheus.log" >&2; exit 1; }
up http://127.0.0.1:9093/-/ready || { echo "Alertmanager did not start; see $am_dir/alertmanager.log" >&2; exit 1; }
echo "monitoring: Prometheus (127.0.0.1:9090) and Alertmanager (127.0.0.1:9093) are up, data in $base"
