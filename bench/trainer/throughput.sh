#!/bin/sh
# Training images/s, end to end (loader + augmentation + step): faceid-train vs the
# python3-torch twin (bench/trainer/torch_twin.py), same network, batch, threads and data
# back to back in one run. Default data: att_orl crops (320 images, so an epoch ends, with its
# checkpoint, every 5 steps: a handicap for the C++ side). Larger data, e.g. aligned LFW:
#   THROUGHPUT_DATA="/abs/lfw_deepfunneled --min-images 5 --max-images-per-person 20 \
#     --cache-dir /tmp/faceid-bench-cache" bench/trainer/throughput.sh BUILD 60
# Usage: bench/trainer/throughput.sh BUILD_DIR [STEPS]
set -eu
build=${1:?build dir}; steps=${2:-30}
data=${THROUGHPUT_DATA:-"$(cd "$(dirname "$0")/../../.." && pwd)/shared/data/att_orl:crops"}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
export OMP_WAIT_POLICY=PASSIVE
"$build/bin/faceid-train" --log-level warn fit --data $data --out "$work/run" \
  --split 1,0,0 --epochs 1000 --batch 64 --max-steps "$steps" --threads 2 --loader-threads 2 \
  | tee "$work/cpp.txt"
cache=$(sed -n 's/.*--cache-dir \([^ ]*\).*/\1/p' <<EOF2
$data
EOF2
)
"$build/bin/trainer_bench" export-crops --run "$work/run/run" --cache-dir "${cache:-$work/run/cache}" \
  --out "$work/crops.bin" $(echo "$data" | grep -o -- '--max-images-per-person [0-9]*' || true)
/usr/bin/python3 "$(dirname "$0")/torch_twin.py" --crops "$work/crops.bin" --steps "$steps" \
  --batch 64 --threads 2 --workers 2 | tee "$work/py.txt"
cpp=$(sed -n 's/.* \([0-9.]*\) images\/s$/\1/p' "$work/cpp.txt")
py=$(sed -n 's/.* \([0-9.]*\) images\/s$/\1/p' "$work/py.txt")
/usr/bin/python3 -c "print(f'C++ {float($cpp):.1f} images/s, python {float($py):.1f} images/s, ratio {float($cpp)/float($py):.2f}x')"
