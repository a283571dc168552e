#!/bin/sh
# Centre loss vs softmax alone, same budget, several seeds; test-identity figures as mean and
# spread (sample standard deviation), plus OpenCV's LBPH on the same test people and protocol.
# Usage: bench/trainer/center_vs_softmax.sh BUILD_DIR [SEEDS] [extra faceid-train fit flags]
#   default: every person with >= 2 photos of lfw_deepfunneled and att_orl (the demo's data),
#   split 0.7/0.15/0.15 by identity, BENCH_EPOCHS epochs (24), batch 64, 2 threads: about
#   8-10 min per run on an idle 2-core box. BENCH_QUICK=1 runs a small subset (LFW people with
#   >= 10 photos, the first 40, 12 photos each, 8 epochs, batch 32) in a few minutes.
# Extra flags go to both losses (e.g. --center-weight 0.003 affects only the centre runs).
set -eu
build=${1:?build dir}; seeds=${2:-"0 1 2"}; shift 2 2>/dev/null || shift $#
shared=$(cd "$(dirname "$0")/../../.." && pwd)/shared/data
cache=${BENCH_CACHE:-/tmp/faceid-bench-cache}
work=${BENCH_WORK:-$(mktemp -d)}
if [ "${BENCH_QUICK:-0}" = 1 ]; then
  max_images=12  # also given to the LBPH run, so both see the same images
  set -- --data "$shared/lfw_deepfunneled" --min-images 10 --max-people 40 \
    --max-images-per-person $max_images --epochs 8 --batch 32 "$@"
else
  max_images=0
  set -- --data "$shared/lfw_deepfunneled" --data "$shared/att_orl" --min-images 2 \
    --epochs "${BENCH_EPOCHS:-24}" --batch 64 "$@"
fi
export OMP_WAIT_POLICY=PASSIVE
mkdir -p "$work"
for seed in $seeds; do
  for loss in center softmax; do
    out="$work/$loss-$seed"
    if [ ! -f "$out/run/eval.json" ]; then  # finished runs are kept: rerun to resume the set
      "$build/bin/faceid-train" --log-level warn fit --out "$out" --cache-dir "$cache" \
        --threads 2 --seed "$seed" --loss "$loss" "$@" > "$out.log" 2>&1
    fi
    tail -1 "$out.log"
    if [ "$loss" = center ]; then
      "$build/bin/trainer_bench" lbph --run "$out/run" --cache-dir "$cache" \
        --max-images-per-person "$max_images" > "$out.lbph"
      cat "$out.lbph"
    fi
  done
done
/usr/bin/python3 - "$work" $seeds <<'PY'
import json, statistics, sys
work, seeds = sys.argv[1], sys.argv[2:]
keys = ["rank1", "auc", "accuracy", "tar_far_1e-2", "tar_far_1e-3", "intra_inter"]
def ms(v):
    return f"{statistics.mean(v):.3f} ± {statistics.stdev(v) if len(v) > 1 else 0:.3f}"
for loss in ["center", "softmax"]:
    runs = [json.load(open(f"{work}/{loss}-{s}/run/eval.json"))["test"] for s in seeds]
    print(f"{loss:8s} " + "  ".join(f"{k} {ms([r[k] for r in runs])}" for k in keys))
lbph = []
for s in seeds:
    line = open(f"{work}/center-{s}.lbph").read()
    lbph.append(float(line.split("LBPH rank-1 ")[1].split(",")[0]))
print(f"LBPH     rank1 {ms(lbph)} (same test people as the centre runs)")
PY
echo "runs in $work"
