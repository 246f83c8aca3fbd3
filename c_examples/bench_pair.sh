#!/bin/sh
# Runs the bench as a target/initiator pair of unrelated processes on this machine.
# usage: bench_pair.sh BENCH [initiator options...]
set -eu
bench=$1
shift
sock=${TMPDIR:-/tmp}/sunrise_link_bench.pair.$$.sock
out=${TMPDIR:-/tmp}/sunrise_link_bench.pair.$$.log
"$bench" --mode target --socket "$sock" --target-dev 1 >"$out" 2>&1 &
target=$!
trap 'kill $target 2>/dev/null || true; rm -f "$sock" "$out"' EXIT
i=0
while ! grep -q "target ready" "$out" 2>/dev/null; do
  i=$((i + 1))
  if [ $i -gt 200 ] || ! kill -0 $target 2>/dev/null; then
    echo "bench_pair: the target did not start:" >&2
    cat "$out" >&2
    exit 1
  fi
  sleep 0.05
done
"$bench" --mode initiator --socket "$sock" "$@"
wait $target
