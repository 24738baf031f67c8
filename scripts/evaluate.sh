#!/usr/bin/env bash
# Evaluate a deploy net on a COCO set under named protocols (single, openpose4, openpose4-flip):
#   ./scripts/evaluate.sh --deploy P --weights W --ann ANN --images DIR --out DIR \
#       [--protocol single openpose4 openpose4-flip] [--image-ids FILE] [--backend B] [...]
# Runs inference/protocols.py (--help) in the deploy venv, or inside scripts/caffe-env for
# --backend caffe (pycaffe lives there). Writes DIR/metrics.json and DIR/metrics.md.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${MLN_VENV:-$REPO/.venv}

backend=opencv
previous=
for argument in "$@"; do
  [ "$previous" = "--backend" ] && backend=$argument
  case $argument in --backend=*) backend=${argument#--backend=} ;; esac
  previous=$argument
done
cd "$REPO"
if [ "${MLN_IN_CAFFE_ENV:-}" = 1 ]; then
  exec python3 -m inference.protocols "$@"   # already inside: its Python has pycaffe and OpenCV
fi
if [ "$backend" = caffe ]; then
  "$REPO/scripts/setup_caffe.sh" >&2
  exec "$REPO/scripts/caffe-env" python -m inference.protocols "$@"
fi
"$REPO/scripts/setup_venv.sh"
exec "$VENV/bin/python" -m inference.protocols "$@"
