#!/usr/bin/env bash
# The server benchmark with the documented defaults; extra arguments go to bench/benchmark.py.
#   bench/run.sh                         # 1k and 10k people, 3 repeats, profile at 1k
#   bench/run.sh --sizes 1000,10000,50000
#   bench/run.sh --sizes 200 --repeat 1  # a quick check of the tooling (~2 min incl. HAPI start)
set -euo pipefail
cd "$(dirname "$0")/.."
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)" >&2
exec python3 bench/benchmark.py --sizes 1000,10000 --repeat 3 --profile-at 1000 "$@"
