#!/usr/bin/env bash
# The main job, end to end:  ./scripts/demo.sh [--quick] [--coco ANN.json IMAGES_DIR] [--out DIR]
#
# Sets up Caffe and the deploy venv when needed, then runs scripts/demo.py (--help) with the
# venv's Python: generate the nets (Table 2 beside the paper), make or split a dataset, pack it,
# train MLN briefly, predict held-out images with the untrained and the trained network,
# evaluate both, and write DIR/facts.json and DIR/report.md rendered from it by
# scripts/demo_report.py (default DIR: runs/demo).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${MLN_VENV:-$REPO/.venv}

case " $* " in
  *" -h "*|*" --help "*) exec python3 "$REPO/scripts/demo.py" --help ;;   # --help needs only the stdlib
esac
"$REPO/scripts/setup_caffe.sh"
"$REPO/scripts/setup_venv.sh"
exec "$VENV/bin/python" "$REPO/scripts/demo.py" "$@"
