#!/usr/bin/env bash
# Runs the demo's quick variant from scratch and checks its summary: enrolled people (never
# seen in training) are recognised above chance, people who were not enrolled come back
# unknown, and the server stopped cleanly.
set -euo pipefail
root=$1 bin=$2 out=$3 cache=$4
rm -rf "$out"
FACEID_DEMO_QUICK=1 FACEID_RETRAIN=1 FACEID_BIN="$bin" FACEID_DEMO_DIR="$out" \
  FACEID_CACHE_DIR="$cache" "$root/scripts/demo.sh" | tee "$out.log"

grep -q "demo summary" "$out.log"
/usr/bin/python3 - "$out/demo_summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print("summary:", json.dumps(s))
assert s["enrolled_people"] >= 4, "too few people enrolled"
assert s["probes"] >= 4, "too few probes"
assert s["rank1"] > s["chance_rank1"], f"rank-1 {s['rank1']} not above chance {s['chance_rank1']}"
assert s["unknown_probes"] >= 1, "no unknown probes"
assert s["unknown_rejected"] >= 0.5, f"only {s['unknown_rejected']} of unknowns rejected"
assert s["server_exit_code"] == 0, f"server exit code {s['server_exit_code']}"
print("quick demo: OK")
PY
