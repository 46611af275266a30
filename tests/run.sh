#!/usr/bin/env bash
# The test command (README.md, and exactly what .ci/run calls): install what the tests need, start the
# real Kafka broker, lint, type-check and run every test. A broker this script started is stopped on exit;
# one that was already running is left running.
#
# Installs into the active virtualenv. Without one, on a Python whose pip refuses installs (Debian's own
# python3: PEP 668, "externally-managed-environment"), it creates and uses .venv in the checkout; any other
# Python is used as it is. pip leaves packages that are already satisfied alone, so torch (several GB) is
# downloaded once per environment, not once per run. Debian packages (prometheus, prometheus-alertmanager,
# python3-venv where needed) are installed with apt-get, through sudo when not root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"

as_root() {
  if [[ "$(id -u)" == 0 ]]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

externally_managed() {
  "$1" -c 'import pathlib, sys, sysconfig
managed = (pathlib.Path(sysconfig.get_path("stdlib")) / "EXTERNALLY-MANAGED").exists()
sys.exit(0 if managed and sys.prefix == sys.base_prefix else 1)'
}

if externally_managed "$PYTHON"; then
  if [[ ! -x .venv/bin/python ]]; then
    echo "== $PYTHON refuses pip installs outside a virtualenv: creating .venv" >&2
    if ! "$PYTHON" -c 'import ensurepip' 2>/dev/null; then
      echo "== installing python3-venv (Debian package)" >&2
      apt_install python3-venv
    fi
    "$PYTHON" -m venv .venv
  fi
  echo "== using the virtualenv .venv (activate it to run monitor: . .venv/bin/activate)" >&2
  PYTHON=.venv/bin/python
fi

echo "== installing the package and test dependencies" >&2
"$PYTHON" -m pip install --quiet --disable-pip-version-check --progress-bar off -e '.[test]'

if ! command -v promtool >/dev/null || ! command -v amtool >/dev/null || ! command -v prometheus >/dev/null; then
  echo "== installing Prometheus, promtool and amtool (Debian packages prometheus, prometheus-alertmanager)" >&2
  apt_install prometheus prometheus-alertmanager
fi

# The whole status is read before it is tested: piped into `head`/`grep -q`, kafka.sh could be cut off by
# SIGPIPE, and under pipefail a running broker then read as stopped, and was stopped at exit.
kafka_status="$(bash deploy/kafka/kafka.sh status 2>/dev/null || true)"
if [[ "$kafka_status" == running* ]]; then
  echo "== Kafka is already running: using it, and leaving it running" >&2
  bash deploy/kafka/kafka.sh start
else
  echo "== starting Kafka (deploy/kafka/kafka.sh; jars and data under ~/.cache/monitor-kafka)" >&2
  bash deploy/kafka/kafka.sh start
  trap 'bash deploy/kafka/kafka.sh stop' EXIT
fi

echo "== ruff and mypy" >&2
"$PYTHON" -m ruff check monitor tests benchmarks
"$PYTHON" -m ruff format --check monitor tests benchmarks
"$PYTHON" -m mypy monitor

echo "== pytest" >&2
export HF_HUB_OFFLINE=1
"$PYTHON" -m pytest "$@"
