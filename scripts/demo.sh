#!/usr/bin/env bash
# make demo: the main job end to end on real faces.
#   1. (make) installs what is missing and builds;
#   2. trains a model with centre loss on the training identities (live progress bar);
#   3-6. scripts/demo_driver.py starts faceid-server on 127.0.0.1 with a fresh database,
#        enrolls people the model never saw, identifies their other photos and people who were
#        not enrolled, prints a summary and stops the server cleanly.
#
# Environment:
#   FACEID_DATA=DIR            face data: a folder holding lfw_deepfunneled/ (and att_orl/), or
#                              any person-per-folder tree (default: ../shared/data)
#   FACEID_DEMO_DIR=DIR        where model, report and database go (default: runs/demo)
#   FACEID_RETRAIN=1           train again even if DIR/model.faceid exists
#   FACEID_TRAIN_EPOCHS=N      training epochs (default 10: 5.5-7 minutes on 2 cores)
#   FACEID_TRAIN_SECONDS=S     safety cap on training time (default 1200); on a machine too
#                              slow or busy for the epochs, fewer are planned to fit the cap
#   FACEID_CACHE_DIR=DIR       aligned-crop cache (default: runs/cache)
#   FACEID_DEMO_QUICK=1        tiny variant used by the tests: few people, seconds of training
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${FACEID_BIN:-$root/build/bin}
data=${FACEID_DATA:-$root/../shared/data}
out=${FACEID_DEMO_DIR:-$root/runs/demo}
epochs=${FACEID_TRAIN_EPOCHS:-10}
seconds=${FACEID_TRAIN_SECONDS:-1200}
quick=${FACEID_DEMO_QUICK:-0}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

for program in faceid-train faceid-server faceid; do
  if [ ! -x "$bin/$program" ]; then
    echo "demo: $bin/$program is missing; run 'make build' first." >&2
    exit 1
  fi
done

if [ ! -d "$data" ]; then
  cat >&2 <<EOF
demo: no face data at '$data'.
Point FACEID_DATA at a folder with one sub-folder per person, each holding that person's
photos, for example the public "Labeled Faces in the Wild" set (deep-funneled version,
http://vis-www.cs.umass.edu/lfw/):
    FACEID_DATA=/data/lfw_deepfunneled make demo
    /data/lfw_deepfunneled/Ada_Lovelace/Ada_Lovelace_0001.jpg ...
EOF
  exit 1
fi
data=$(cd "$data" && pwd)

# Which datasets to train on: the known sets of the shared data, or the tree itself.
datasets=()
if [ -d "$data/lfw_deepfunneled" ]; then
  datasets+=(--data "$data/lfw_deepfunneled")
  [ -d "$data/att_orl" ] && datasets+=(--data "$data/att_orl")
else
  datasets+=(--data "$data")
fi

# A fixed number of epochs, so the model (and the figures in README.md) do not depend on how
# busy the machine is; the time budget only guards against a machine far slower than ours.
train_flags=(--loss center --epochs "$epochs" --time-budget-s "$seconds" --min-images 2)
driver_flags=()
if [ "$quick" = "1" ]; then
  datasets=("${datasets[@]:0:2}")
  train_flags=(--loss center --max-people 60 --min-images 4 --max-images-per-person 8
               --epochs 3 --batch 32 --split 0.5,0.1,0.4)
  driver_flags=(--max-enrolled 8 --max-unknown 8 --enroll-per-person 2
                --max-probes-per-person 2)
fi

mkdir -p "$out"
if [ -f "$out/model.faceid" ] && [ "${FACEID_RETRAIN:-0}" != "1" ]; then
  echo "demo: reusing the model in $out/model.faceid (FACEID_RETRAIN=1 trains again)"
else
  echo "demo: training with centre loss on ${datasets[*]} into $out"
  "$bin/faceid-train" fit "${datasets[@]}" --out "$out" --cache-dir "${FACEID_CACHE_DIR:-$root/runs/cache}" \
    "${train_flags[@]}"
  "$bin/faceid-train" report --run "$out/run" || echo "demo: report.png could not be drawn"
fi

/usr/bin/python3 "$root/scripts/demo_driver.py" --bin "$bin" --run "$out" "${driver_flags[@]}"

cat <<EOF

demo: done.
  model     $out/model.faceid
  report    $out/run/report.png, metrics in $out/run/metrics.jsonl
  database  $out/demo.db (server log: $out/demo-server.log)
Run it yourself:
  $bin/faceid-server --model $out/model.faceid --db $out/demo.db --listen 127.0.0.1:50051 &
  $bin/faceid enroll --name "Ada Lovelace" photo1.jpg photo2.jpg
  $bin/faceid identify group.jpg --all-faces
  $bin/faceid people
EOF
