#!/usr/bin/env bash
# Two checkouts of deployq, the queue benchmark of each in turn (A B, B A, A B, ...), so both
# meet the same load of a shared machine. One JSON line per run on stdout (rates only).
# Usage: bench/queue_ab.sh CHECKOUT_A CHECKOUT_B [ROUNDS=4] [JOBS=500]
#   each checkout with its own .venv (scripts/provision --venv-only); the older one may have
#   bench/queue.py instead of bench/queue_bench.py. Set DEPLOYQ_DATABASE_URL to run both on one
#   server (else each starts a throwaway embedded one). See bench/README.md.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: bench/queue_ab.sh CHECKOUT_A CHECKOUT_B [ROUNDS] [JOBS]" >&2; exit 2; }
a=$1 b=$2 rounds=${3:-4} jobs=${4:-500}
run() {
  local dir=$1 script=$1/bench/queue_bench.py
  [ -f "$script" ] || script=$dir/bench/queue.py
  "$dir/.venv/bin/python" "$script" --skip-peers --jobs "$jobs" --samples 30 2>/dev/null \
    | "$dir/.venv/bin/python" -c 'import json, sys; d = json.load(sys.stdin)["deployq"]; d.pop("latency", None); print(json.dumps(d))'
}
for round in $(seq 1 "$rounds"); do
  if [ $((round % 2)) -eq 1 ]; then order="A B"; else order="B A"; fi
  for side in $order; do
    if [ "$side" = A ]; then dir=$a; else dir=$b; fi
    rates=$(run "$dir")
    printf '{"round": %d, "side": "%s", "at": "%s", "load": %s, "rates": %s}\n' \
      "$round" "$side" "$(date -u +%H:%M:%S)" "$(cut -d' ' -f1 /proc/loadavg)" "$rates"
  done
done
