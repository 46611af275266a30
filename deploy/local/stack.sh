#!/usr/bin/env bash
# The whole monitor on one machine, in one command: a Kafka broker of its own, a worker on the sample
# bank, Prometheus with the shipped rules, Alertmanager, and a Slack-like receiver that prints what would
# be posted. See README.md, "A local stack".
#
#   bash deploy/local/stack.sh up | down | status
#
# Everything it starts uses its own ports and data directory (settings below, all environment variables),
# so it runs beside another broker on 9092 and never touches it. Logs, pid files and data go under
# STACK_DIR; `down` stops every process it started and leaves nothing running.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

STACK_DIR="${STACK_DIR:-$REPO/var/local-stack}"               # logs, pids, data of every component
STACK_KAFKA_PORT="${STACK_KAFKA_PORT:-19092}"                 # the stack's broker
STACK_KAFKA_CONTROLLER_PORT="${STACK_KAFKA_CONTROLLER_PORT:-19093}"
STACK_METRICS_PORT="${STACK_METRICS_PORT:-19464}"             # the worker's /metrics
STACK_PROMETHEUS_PORT="${STACK_PROMETHEUS_PORT:-19090}"
STACK_ALERTMANAGER_PORT="${STACK_ALERTMANAGER_PORT:-19095}"   # not 9093 (Kafka's controller by default)
STACK_SLACK_PORT="${STACK_SLACK_PORT:-18080}"                 # the Slack-like receiver
STACK_BANK="${STACK_BANK:-$REPO/monitor/sample/bank}"
STACK_THRESHOLD="${STACK_THRESHOLD:-20}"                      # the sample's threshold: its three alerts
STACK_SCRAPE_INTERVAL="${STACK_SCRAPE_INTERVAL:-5s}"
STACK_START_TIMEOUT="${STACK_START_TIMEOUT:-60}"              # seconds each component has to come up
STACK_STOP_TIMEOUT="${STACK_STOP_TIMEOUT:-60}"                # seconds before a component is killed
if [[ -z "${STACK_PYTHON:-}" ]]; then                         # a Python with the package installed
  if [[ -x "$REPO/.venv/bin/python" ]]; then STACK_PYTHON="$REPO/.venv/bin/python"; else STACK_PYTHON=python3; fi
fi

STACK_DIR="$(realpath -m "$STACK_DIR")"  # absolute: the processes' command lines name it (pid_of)
COMPONENTS=(kafka slack alertmanager prometheus worker)  # started in this order, stopped in reverse
RUN="$STACK_DIR/run"
LOGS="$STACK_DIR/logs"

say() { echo "stack.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

usage() {
  cat >&2 <<EOF
usage: stack.sh up | down | status
  up      start Kafka (localhost:$STACK_KAFKA_PORT), the Slack-like receiver (:$STACK_SLACK_PORT),
          Alertmanager (:$STACK_ALERTMANAGER_PORT), Prometheus (:$STACK_PROMETHEUS_PORT) and a worker
          (metrics :$STACK_METRICS_PORT, bank $STACK_BANK, threshold $STACK_THRESHOLD); skips what runs
  down    stop them all, the worker first
  status  one line per component, up or down; exit 0 only when all are up
data, logs and pids: $STACK_DIR
EOF
}

kafka() {
  KAFKA_PORT="$STACK_KAFKA_PORT" KAFKA_CONTROLLER_PORT="$STACK_KAFKA_CONTROLLER_PORT" \
    KAFKA_DATA="$STACK_DIR/kafka" bash "$REPO/deploy/kafka/kafka.sh" "$@"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

http_ok() {
  "$STACK_PYTHON" - "$1" <<'EOF' 2>/dev/null
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=3) as answer:
        sys.exit(0 if answer.status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}

# The pid of a component we started, if it is alive and still ours (its command line names STACK_DIR).
pid_of() {
  local file="$RUN/$1.pid" pid
  [[ -f "$file" ]] || return 1
  pid="$(cat "$file")"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$STACK_DIR" || return 1
  echo "$pid"
}

port_of() {
  case "$1" in
    kafka) echo "$STACK_KAFKA_PORT" ;;
    slack) echo "$STACK_SLACK_PORT" ;;
    alertmanager) echo "$STACK_ALERTMANAGER_PORT" ;;
    prometheus) echo "$STACK_PROMETHEUS_PORT" ;;
    worker) echo "$STACK_METRICS_PORT" ;;
  esac
}

ready() {
  local port
  port="$(port_of "$1")"
  case "$1" in
    kafka) kafka ready >/dev/null 2>&1 ;;
    slack) http_ok "http://127.0.0.1:$port/" ;;
    alertmanager | prometheus) http_ok "http://127.0.0.1:$port/-/ready" ;;
    worker) http_ok "http://127.0.0.1:$port/metrics" ;;
  esac
}

find_binary() {
  local name
  for name in "$@"; do
    if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return 0; fi
  done
  return 1
}

# Starts a command in a session of its own (so `down` can stop it with all its children), logging to
# LOGS/NAME.log; the command line must name STACK_DIR (pid_of checks it).
launch() {
  local name="$1"; shift
  local -a launcher=()
  command -v setsid >/dev/null 2>&1 && launcher=(setsid)
  nohup "${launcher[@]}" "$@" </dev/null >>"$LOGS/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
}

wait_ready() {
  local name="$1" start=$SECONDS
  while (( SECONDS - start < STACK_START_TIMEOUT )); do
    # Liveness by pid alone: until the launched command has exec'd, its command line is still this
    # script's and does not name STACK_DIR (pid_of's check), which a loaded machine shows for a while.
    if ! kill -0 "$(cat "$RUN/$name.pid" 2>/dev/null)" 2>/dev/null; then
      tail -n 30 "$LOGS/$name.log" >&2 || true
      die "$name exited during start-up (log: $LOGS/$name.log)"
    fi
    if ready "$name"; then
      say "$name up on port $(port_of "$name") after $(( SECONDS - start ))s"
      return 0
    fi
    sleep 1
  done
  tail -n 30 "$LOGS/$name.log" >&2 || true
  die "$name not ready after ${STACK_START_TIMEOUT}s (log: $LOGS/$name.log); 'stack.sh down' stops what started"
}

refuse_busy_port() {
  if port_open "$2"; then
    die "port $2 for $1 is in use by another process; set $3 to a free port"
  fi
}

start_slack() {
  refuse_busy_port slack "$STACK_SLACK_PORT" STACK_SLACK_PORT
  launch slack "$STACK_PYTHON" "$REPO/deploy/local/slack_receiver.py" \
    --port "$STACK_SLACK_PORT" --record "$STACK_DIR/slack/received.jsonl"
}

start_alertmanager() {
  local binary dir="$STACK_DIR/alertmanager"
  binary="$(find_binary prometheus-alertmanager alertmanager)" \
    || die "alertmanager not found (Debian: apt-get install prometheus-alertmanager)"
  refuse_busy_port alertmanager "$STACK_ALERTMANAGER_PORT" STACK_ALERTMANAGER_PORT
  mkdir -p "$dir/data"
  echo "http://127.0.0.1:$STACK_SLACK_PORT/services/alertmanager" >"$dir/slack_webhook_url"
  # The shipped configuration, with the webhook file of this stack and quicker grouping.
  sed -e "s#/etc/alertmanager/slack_webhook_url#$dir/slack_webhook_url#" \
    -e "s#group_wait: 30s#group_wait: 5s#" "$REPO/deploy/prometheus/alertmanager.yml" >"$dir/alertmanager.yml"
  # --cluster.listen-address= : no gossip port (its default 9094 would clash between stacks).
  launch alertmanager "$binary" --config.file="$dir/alertmanager.yml" --storage.path="$dir/data" \
    --web.listen-address="127.0.0.1:$STACK_ALERTMANAGER_PORT" --cluster.listen-address=
}

start_prometheus() {
  local binary dir="$STACK_DIR/prometheus"
  binary="$(find_binary prometheus)" || die "prometheus not found (Debian: apt-get install prometheus)"
  refuse_busy_port prometheus "$STACK_PROMETHEUS_PORT" STACK_PROMETHEUS_PORT
  mkdir -p "$dir/data"
  cp "$REPO/deploy/prometheus/rules.yml" "$dir/rules.yml"
  cat >"$dir/prometheus.yml" <<EOF
# Written by deploy/local/stack.sh: deploy/prometheus/prometheus.yml with this stack's ports.
global:
  scrape_interval: $STACK_SCRAPE_INTERVAL
  evaluation_interval: $STACK_SCRAPE_INTERVAL
rule_files:
  - rules.yml
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:$STACK_ALERTMANAGER_PORT"]
scrape_configs:
  - job_name: monitor
    static_configs:
      - targets: ["127.0.0.1:$STACK_METRICS_PORT"]
EOF
  launch prometheus "$binary" --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
    --web.listen-address="127.0.0.1:$STACK_PROMETHEUS_PORT"
}

start_worker() {
  refuse_busy_port worker "$STACK_METRICS_PORT" STACK_METRICS_PORT
  [[ -d "$STACK_BANK" ]] || die "bank directory not found: $STACK_BANK (STACK_BANK)"
  "$STACK_PYTHON" -c 'import monitor.cli' 2>/dev/null \
    || die "$STACK_PYTHON cannot import monitor: install the package (README.md) or set STACK_PYTHON"
  MONITOR_BROKER="kafka://localhost:$STACK_KAFKA_PORT" \
    MONITOR_BANK="$STACK_BANK" \
    MONITOR_THRESHOLD="$STACK_THRESHOLD" \
    MONITOR_METRICS_PORT="$STACK_METRICS_PORT" \
    MONITOR_SLACK_WEBHOOK_URL="http://127.0.0.1:$STACK_SLACK_PORT/services/monitor" \
    launch worker "$STACK_PYTHON" -m monitor.cli --log-level info worker --data-dir "$STACK_DIR/worker"
}

component_up() {
  local name="$1"
  if [[ "$name" == kafka ]]; then
    kafka start
    return
  fi
  if pid_of "$name" >/dev/null; then
    say "$name already running (pid $(pid_of "$name"))"
    return 0
  fi
  "start_$name"
  wait_ready "$name"
}

cmd_up() {
  mkdir -p "$RUN" "$LOGS" "$STACK_DIR/slack"
  local name
  for name in "${COMPONENTS[@]}"; do
    component_up "$name"
  done
  cat >&2 <<EOF
stack.sh: all up. Replay the sample and watch the alerts arrive:
  monitor replay monitor/sample/archive.jsonl --to-kafka --broker localhost:$STACK_KAFKA_PORT
  tail -f $LOGS/slack.log                      # what Slack would show
  curl -s localhost:$STACK_METRICS_PORT/metrics | grep monitor_posts_analyzed_total
  Prometheus http://localhost:$STACK_PROMETHEUS_PORT/alerts, Alertmanager http://localhost:$STACK_ALERTMANAGER_PORT/
EOF
}

# SIGTERM to the component's session (the process and its children), SIGKILL after STACK_STOP_TIMEOUT.
stop_component() {
  local name="$1" pid start
  if [[ "$name" == kafka ]]; then
    kafka stop
    return
  fi
  if ! pid="$(pid_of "$name")"; then
    rm -f "$RUN/$name.pid"
    return 0
  fi
  say "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  start=$SECONDS
  while kill -0 "$pid" 2>/dev/null && (( SECONDS - start < STACK_STOP_TIMEOUT )); do
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "$name still running after ${STACK_STOP_TIMEOUT}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  # Whatever it left in its session (analysis processes of a killed worker, say).
  if pgrep -s "$pid" >/dev/null 2>&1; then
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$RUN/$name.pid"
}

cmd_down() {
  local i
  for (( i = ${#COMPONENTS[@]} - 1; i >= 0; i-- )); do
    stop_component "${COMPONENTS[$i]}"
  done
  say "all stopped (data and logs kept in $STACK_DIR)"
}

cmd_status() {
  local name pid rc=0 port
  for name in "${COMPONENTS[@]}"; do
    port="$(port_of "$name")"
    if [[ "$name" == kafka ]]; then
      pid="$(cat "$STACK_DIR/kafka/kafka.pid" 2>/dev/null || true)"
      [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null && pid=""
    else
      pid="$(pid_of "$name" || true)"
    fi
    if [[ -n "$pid" ]] && ready "$name"; then
      printf '%-13s up    pid %-8s port %s\n' "$name" "$pid" "$port"
    elif [[ -n "$pid" ]]; then
      printf '%-13s down  pid %-8s port %s (running, not answering; log %s)\n' "$name" "$pid" "$port" "$LOGS/$name.log"
      rc=3
    else
      printf '%-13s down  %-12s port %s\n' "$name" "" "$port"
      rc=3
    fi
  done
  return "$rc"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  -h | --help | help) usage ;;
  *) usage; exit 2 ;;
esac
