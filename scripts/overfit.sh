#!/usr/bin/env bash
# The overfit check:  ./scripts/overfit.sh --out DIR [--coco ANN.json IMAGES_DIR [--image-ids ..]]
#                     [--synthetic N] [--iters N] [--checks K] [--model mln] [--gpu 0|cpu]
#
# Sets up Caffe and the deploy venv when needed, then runs scripts/overfit.py (--help) with the
# venv's Python: pack a handful of images, train on them with the recipe that learns fastest from
# scratch, and evaluate the snapshots on the training crops and the whole images (DIR/report.json).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${MLN_VENV:-$REPO/.venv}

case " $* " in
  *" -h "*|*" --help "*) exec python3 "$REPO/scripts/overfit.py" --help ;;   # stdlib-only parser
esac
"$REPO/scripts/setup_caffe.sh"
"$REPO/scripts/setup_venv.sh"
exec "$VENV/bin/python" "$REPO/scripts/overfit.py" "$@"
