#!/usr/bin/env bash
# The test command (README.md, and exactly what .ci/run calls): install what the tests need, start the
# real Kafka broker, lint, type-check and run every test. The broker is stopped on exit.
#
# Installs into the current Python environment (a virtualenv if one is active). pip leaves packages that
# are already satisfied alone, so torch (several GB) is downloaded once per machine, not once per run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
echo "== installing the package and test dependencies" >&2
"$PYTHON" -m pip install --quiet --disable-pip-version-check --progress-bar off -e '.[test]'

if ! command -v promtool >/dev/null || ! command -v amtool >/dev/null || ! command -v prometheus >/dev/null; then
  echo "== installing Prometheus, promtool and amtool (Debian packages)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus prometheus-alertmanager >/dev/null
fi

echo "== starting Kafka (deploy/kafka/kafka.sh)" >&2
bash deploy/kafka/kafka.sh start
trap 'bash deploy/kafka/kafka.sh stop' EXIT

echo "== ruff and mypy" >&2
"$PYTHON" -m ruff check monitor tests benchmarks
"$PYTHON" -m ruff format --check monitor tests benchmarks
"$PYTHON" -m mypy monitor

echo "== pytest" >&2
export HF_HUB_OFFLINE=1
"$PYTHON" -m pytest "$@"
