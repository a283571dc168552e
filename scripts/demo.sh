#!/usr/bin/env bash
# make demo: the end-to-end run (train, serve, enroll, identify). Filled in by issue #7.
set -euo pipefail
echo "faceid demo: the build is ready in build/bin; the end-to-end demo is not implemented yet."
