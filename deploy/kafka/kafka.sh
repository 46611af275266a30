#!/usr/bin/env bash
# A real single-node Apache Kafka 4.0 broker (KRaft, broker+controller in one JVM), assembled from
# Maven Central jars: no tarball, no Docker. See deploy/kafka/README.md.
#
#   kafka.sh install | start | ready | stop | status | reset | topics ARGS... | run CLASS ARGS...
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

KAFKA_VERSION="${KAFKA_VERSION:-4.0.2}"
KAFKA_HOME="${KAFKA_HOME:-$HOME/.cache/monitor-kafka/$KAFKA_VERSION}"
KAFKA_DATA="${KAFKA_DATA:-$HOME/.cache/monitor-kafka/data}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_HOST="${KAFKA_HOST:-localhost}"
KAFKA_HEAP="${KAFKA_HEAP:-512m}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
KAFKA_READY_TIMEOUT="${KAFKA_READY_TIMEOUT:-10}"

LIB="$KAFKA_HOME/lib"
STAMP="$LIB/.installed"
PROPS="$KAFKA_DATA/server.properties"
LOG_DIRS="$KAFKA_DATA/kraft-combined-logs"
APP_LOG_DIR="$KAFKA_DATA/logs"
PID_FILE="$KAFKA_DATA/kafka.pid"
OUT_FILE="$KAFKA_DATA/kafka.out"
BOOTSTRAP="$KAFKA_HOST:$KAFKA_PORT"

say() { echo "kafka.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

usage() {
  cat >&2 <<EOF
usage: kafka.sh COMMAND
  install   copy the Kafka $KAFKA_VERSION jars from Maven Central into $LIB (skipped when present)
  start     install if needed, format storage once, start the broker in background, wait until ready
  ready     exit 0 only if the broker at $BOOTSTRAP answers a metadata request
  stop      SIGTERM, wait up to ${KAFKA_STOP_TIMEOUT}s, then SIGKILL (ok when not running)
  status    print running/stopped and ready/not ready
  reset     stop and delete the data dir $KAFKA_DATA
  topics .. run kafka-topics (TopicCommand) against $BOOTSTRAP, e.g. topics --list
  run CLASS ARGS..  run any class on the broker classpath with the quiet tools logging
EOF
}

# ---------------------------------------------------------------- java / maven

JAVA=""
find_java() {
  [[ -n "$JAVA" ]] && return 0
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
    JAVA="$JAVA_HOME/bin/java"
  elif command -v java >/dev/null 2>&1; then
    JAVA="$(command -v java)"
  else
    die "java not found: Kafka $KAFKA_VERSION needs Java 17 or newer (apt-get install openjdk-17-jre-headless, or set JAVA_HOME)"
  fi
  local v major
  v="$("$JAVA" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n1)"
  major="${v%%.*}"
  [[ "$major" == 1 ]] && major="$(echo "$v" | cut -d. -f2)"
  if [[ "$major" =~ ^[0-9]+$ ]] && (( major < 17 )); then
    die "$JAVA is Java $v; Kafka $KAFKA_VERSION needs Java 17 or newer (set JAVA_HOME)"
  fi
}

# Hash of the inputs of the lib dir: a changed pom.xml or version triggers a reinstall.
lib_stamp() {
  { echo "$KAFKA_VERSION"; cat "$SCRIPT_DIR/pom.xml"; } | sha256sum | cut -d' ' -f1
}

have_jars() { compgen -G "$LIB/kafka_2.13-*.jar" >/dev/null; }

# Installed and up to date with pom.xml / KAFKA_VERSION.
installed() { have_jars && [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(lib_stamp)" ]]; }

cmd_install() {
  if installed; then
    say "jars already installed in $LIB ($(ls "$LIB"/*.jar | wc -l) jars)"
    return 0
  fi
  find_java
  mkdir -p "$KAFKA_HOME"
  if command -v flock >/dev/null 2>&1; then
    exec 8>"$KAFKA_HOME/.install.lock"
    flock 8
    if installed; then
      say "jars already installed in $LIB (by a concurrent install)"
      return 0
    fi
  fi
  command -v mvn >/dev/null 2>&1 \
    || die "mvn not found: Maven is needed once to fetch the Kafka jars from Maven Central (apt-get install maven)"
  local tmp="$LIB.tmp.$$"
  rm -rf "$tmp"
  say "fetching Kafka $KAFKA_VERSION jars from Maven Central into $LIB ..."
  local mvn_log="$KAFKA_HOME/install.log"
  if ! mvn -q -B -f "$SCRIPT_DIR/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" >"$mvn_log" 2>&1; then
    tail -n 30 "$mvn_log" >&2
    rm -rf "$tmp"
    die "mvn could not copy the dependencies (is Maven Central reachable? does org.apache.kafka:kafka_2.13:$KAFKA_VERSION exist?)"
  fi
  # Guard against the silent-logging trap: an SLF4J 2.x api with the 1.x binding logs nothing.
  if compgen -G "$tmp/slf4j-api-2.*.jar" >/dev/null; then
    rm -rf "$tmp"
    die "an SLF4J 2.x api jar got onto the classpath; broker logging would be a no-op (check pom.xml)"
  fi
  lib_stamp >"$tmp/.installed"
  local old="$LIB.old.$$"
  [[ -d "$LIB" ]] && mv "$LIB" "$old"
  mv "$tmp" "$LIB"
  rm -rf "$old"
  say "installed $(ls "$LIB"/*.jar | wc -l) jars ($(du -sh "$LIB" | cut -f1)) in $LIB"
}

# For the tools: any complete lib dir will do (never swap jars under a running broker).
ensure_jars() { have_jars || cmd_install; }

# Runs a class on the broker classpath, as the command line tools do (quick start, quiet logging).
# With TOOL_TIMEOUT set (seconds), the JVM is killed after that long.
run_tool() {
  find_java
  local -a prefix=()
  if [[ -n "${TOOL_TIMEOUT:-}" ]] && command -v timeout >/dev/null 2>&1; then
    prefix=(timeout -s KILL "$TOOL_TIMEOUT")
  fi
  "${prefix[@]}" "$JAVA" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$SCRIPT_DIR/tools-log4j2.xml" \
    -cp "$LIB/*" "$@"
}

# ---------------------------------------------------------------- process state

# Prints the pid of our broker if it is alive (and really is a Kafka JVM, not a recycled pid).
broker_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(cat "$PID_FILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  if [[ -r "/proc/$pid/cmdline" ]]; then
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'kafka\.Kafka' || return 1
  fi
  echo "$pid"
}

port_open() {
  (exec 3<>"/dev/tcp/$KAFKA_HOST/$1") 2>/dev/null
}

# A broker is ready when it answers a metadata request (a TCP connect is not enough: the port opens
# before the broker can serve). TopicCommand --list sends ListTopics = a Metadata request.
is_ready() {
  port_open "$KAFKA_PORT" || return 1
  local cfg
  cfg="$(mktemp)"
  printf '%s\n' "request.timeout.ms=3000" "default.api.timeout.ms=5000" \
    "socket.connection.setup.timeout.ms=2000" "socket.connection.setup.timeout.max.ms=2000" >"$cfg"
  local rc=0
  TOOL_TIMEOUT="$KAFKA_READY_TIMEOUT" run_tool org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "$BOOTSTRAP" --command-config "$cfg" --list >/dev/null 2>&1 || rc=$?
  rm -f "$cfg"
  return "$rc"
}

cmd_ready() {
  have_jars || die "Kafka jars not installed (run: kafka.sh install)"
  if is_ready; then
    say "ready: broker at $BOOTSTRAP answers metadata requests"
    return 0
  fi
  say "not ready: no metadata answer from $BOOTSTRAP"
  return 1
}

cmd_status() {
  local pid rc=0
  if pid="$(broker_pid)"; then
    echo "running (pid $pid, data $KAFKA_DATA)"
  else
    echo "stopped"
    rc=1
  fi
  if have_jars && is_ready; then
    echo "ready ($BOOTSTRAP)"
  else
    echo "not ready ($BOOTSTRAP)"
    rc=1
  fi
  return "$rc"
}

# ---------------------------------------------------------------- start / stop

write_properties() {
  mkdir -p "$KAFKA_DATA" "$APP_LOG_DIR"
  cat >"$PROPS" <<EOF
# Written by deploy/kafka/kafka.sh at every start; edits are overwritten (use KAFKA_EXTRA_CONFIG).
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$LOG_DIRS
num.partitions=1
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
default.replication.factor=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
num.network.threads=2
num.io.threads=4
EOF
  if [[ -n "${KAFKA_EXTRA_CONFIG:-}" ]]; then
    printf '%s\n' "# KAFKA_EXTRA_CONFIG" "$KAFKA_EXTRA_CONFIG" >>"$PROPS"
  fi
}

format_storage() {
  if [[ -f "$LOG_DIRS/meta.properties" ]]; then
    return 0
  fi
  local cluster_id
  cluster_id="$(run_tool kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1 || true)"
  if ! [[ "$cluster_id" =~ ^[A-Za-z0-9_-]{22}$ ]]; then
    # base64url of 16 random bytes, no padding, not starting with '-' (as Kafka's Uuid does).
    cluster_id="-"
    while [[ "$cluster_id" == -* ]]; do
      cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    done
  fi
  say "formatting storage $LOG_DIRS (cluster id $cluster_id)"
  run_tool kafka.tools.StorageTool format -t "$cluster_id" -c "$PROPS" >&2 \
    || die "kafka.tools.StorageTool format failed"
}

show_log_tail() {
  local f
  for f in "$APP_LOG_DIR/server.log" "$OUT_FILE"; do
    if [[ -s "$f" ]]; then
      say "---- last lines of $f ----"
      tail -n 40 "$f" >&2
    fi
  done
}

cmd_start() {
  local pid
  find_java
  if pid="$(broker_pid)"; then
    if is_ready; then
      say "already running (pid $pid) and ready on $BOOTSTRAP"
      return 0
    fi
    say "already running (pid $pid), waiting until ready ..."
  else
    if port_open "$KAFKA_PORT"; then
      die "port $KAFKA_PORT is already in use by another process (not started by this script with KAFKA_DATA=$KAFKA_DATA); set KAFKA_PORT or stop it"
    fi
    if port_open "$KAFKA_CONTROLLER_PORT"; then
      die "controller port $KAFKA_CONTROLLER_PORT is already in use; set KAFKA_CONTROLLER_PORT or stop it"
    fi
    installed || cmd_install
    write_properties
    format_storage
    say "starting Kafka $KAFKA_VERSION on $BOOTSTRAP (controller $KAFKA_HOST:$KAFKA_CONTROLLER_PORT, heap $KAFKA_HEAP, data $KAFKA_DATA)"
    local -a jvm=(
      "-Xms$KAFKA_HEAP" "-Xmx$KAFKA_HEAP"
      -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
      -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true
      "-Dlog4j2.configurationFile=$SCRIPT_DIR/log4j2.xml"
      "-Dkafka.logs.dir=$APP_LOG_DIR" -Dkafka.console.level=WARN
    )
    # shellcheck disable=SC2206
    [[ -n "${KAFKA_JVM_OPTS:-}" ]] && jvm+=($KAFKA_JVM_OPTS)
    local -a launcher=()
    command -v setsid >/dev/null 2>&1 && launcher=(setsid)
    : >"$OUT_FILE"
    # 8>&- 9>&-: the broker must not inherit the lock fds, or it would hold the lock while it runs.
    nohup "${launcher[@]}" "$JAVA" "${jvm[@]}" -cp "$LIB/*" kafka.Kafka "$PROPS" \
      </dev/null >>"$OUT_FILE" 2>&1 8>&- 9>&- &
    pid=$!
    echo "$pid" >"$PID_FILE"
  fi

  local start=$SECONDS
  while (( SECONDS - start < KAFKA_START_TIMEOUT )); do
    if ! kill -0 "$pid" 2>/dev/null; then
      show_log_tail
      rm -f "$PID_FILE"
      die "broker process $pid exited during start-up"
    fi
    if is_ready; then
      say "ready on $BOOTSTRAP after $(( SECONDS - start ))s (pid $pid, log $APP_LOG_DIR/server.log)"
      return 0
    fi
    sleep 1
  done
  show_log_tail
  die "broker (pid $pid) not ready on $BOOTSTRAP after ${KAFKA_START_TIMEOUT}s; it is left running (kafka.sh stop)"
}

cmd_stop() {
  local pid
  if ! pid="$(broker_pid)"; then
    rm -f "$PID_FILE"
    say "not running"
    return 0
  fi
  say "stopping broker (pid $pid) ..."
  kill -TERM "$pid" 2>/dev/null || true
  local start=$SECONDS
  while kill -0 "$pid" 2>/dev/null; do
    if (( SECONDS - start >= KAFKA_STOP_TIMEOUT )); then
      say "still running after ${KAFKA_STOP_TIMEOUT}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 1
      break
    fi
    sleep 0.5
  done
  rm -f "$PID_FILE"
  say "stopped after $(( SECONDS - start ))s"
}

cmd_reset() {
  cmd_stop
  case "$KAFKA_DATA" in
    "" | "/" | "$HOME" | "$HOME/") die "refusing to delete KAFKA_DATA=$KAFKA_DATA" ;;
  esac
  rm -rf "$KAFKA_DATA"
  say "deleted $KAFKA_DATA"
}

# Serialize start/stop/reset of the same data dir (several test sessions may call start at once).
with_lock() {
  if command -v flock >/dev/null 2>&1; then
    mkdir -p "$(dirname "$KAFKA_DATA")"
    exec 9>"$KAFKA_DATA.lock"
    flock 9
  fi
  "$@"
}

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
    install) cmd_install ;;
    start) with_lock cmd_start ;;
    stop) with_lock cmd_stop ;;
    reset) with_lock cmd_reset ;;
    ready) cmd_ready ;;
    status) cmd_status ;;
    topics)
      ensure_jars
      run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" "$@" ;;
    run)
      [[ $# -gt 0 ]] || die "usage: kafka.sh run CLASS ARGS..."
      ensure_jars
      run_tool "$@" ;;
    -h | --help | help) usage ;;
    *) usage; exit 2 ;;
  esac
}

main "$@"
