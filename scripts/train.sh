#!/usr/bin/env bash
# Train MLN or the OpenPose baseline with Caffe:
#   ./scripts/train.sh --model mln --lmdb DB [--gpu 0|cpu] [--iters N] [--batch N] ...
#   ./scripts/train.sh --resume --run-dir DIR [--iters N]
# Sets up Caffe when needed, then runs scripts/train.py inside its environment (--help).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ "${MLN_IN_CAFFE_ENV:-}" = 1 ] || "$REPO/scripts/setup_caffe.sh" >&2
# Ctrl-C is train.py's to handle (Caffe snapshots, then stops): the sandbox must not die of it.
trap '' INT
# Not exec: caffe-env's sandbox dies with its parent process, so this script stays that parent.
# A training started with `nohup ./scripts/train.sh ... &` then survives the shell that started
# it (with exec, the sandbox's parent would be that shell, and closing it would end training).
"$REPO/scripts/caffe-env" python "$REPO/scripts/train.py" "$@"
