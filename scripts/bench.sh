#!/usr/bin/env bash
# make bench: runs every benchmark under bench/ once and prints their figures. Nothing here is
# a pass/fail test. Needs a trained model for the model-dependent ones: the demo's
# (runs/demo/model.faceid, from `make demo`) or the test fixture's (build/fixture, from
# `make test`). Expect 15-30 minutes on 2 cores; set FACEID_BENCH_QUICK=1 for a short pass.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${FACEID_BIN:-$root/build/bin}
quick=${FACEID_BENCH_QUICK:-0}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

model=""
for candidate in "$root/runs/demo/model.faceid" "$root/build/fixture/model.faceid"; do
  if [ -f "$candidate" ]; then model=$candidate; break; fi
done

section() { printf '\n===== %s =====\n' "$1"; }
status=0
run() { "$@" || { echo "bench: '$*' failed with code $?"; status=1; }; }

section "core: detection quality and pipeline speed"
run "$bin/core_pipeline_bench" "$([ "$quick" = 1 ] && echo 50 || echo 300)"

section "nn: embedding extraction images/s"
run "$bin/nn_embed_bench" --seconds "$([ "$quick" = 1 ] && echo 2 || echo 5)"

section "server: synthetic gallery (store, rebuild, flat vs HNSW)"
run "$bin/gallery_bench" --faces "$([ "$quick" = 1 ] && echo 20000 || echo 100000)"

if [ -n "$model" ]; then
  section "server: Identify over gRPC vs in-process ($model)"
  run "$bin/identify_bench" --model "$model" --seconds "$([ "$quick" = 1 ] && echo 5 || echo 15)"
  section "trainer: training images/s, C++ vs python3-torch twin"
  run "$root/bench/trainer/throughput.sh" "$root/build" "$([ "$quick" = 1 ] && echo 20 || echo 60)"
else
  echo "bench: no trained model found; run 'make demo' or 'make test' for the model benchmarks"
fi
if [ "$quick" != 1 ]; then
  # The full comparison (all of LFW + AT&T, 24 epochs, 3 seeds per loss: about an hour on 2
  # cores) is bench/trainer/center_vs_softmax.sh build; make bench runs the small subset.
  section "trainer: centre loss vs softmax alone (small subset, 3 seeds) and LBPH"
  run env BENCH_QUICK=1 "$root/bench/trainer/center_vs_softmax.sh" "$root/build" "0 1 2"
fi
exit $status
