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
# A resumed run names no database on its command line; the one recorded in its params.json (and
# its initial weights) must still be reachable inside the sandbox.
run_dir=""; resume=0; previous=""
for arg in "$@"; do
  case "$previous" in --run-dir) run_dir=$arg ;; esac
  case "$arg" in --resume) resume=1 ;; --run-dir=*) run_dir=${arg#--run-dir=} ;; esac
  previous=$arg
done
if [ "$resume" = 1 ] && [ -f "$run_dir/params.json" ]; then
  recorded=$(python3 -c 'import json, sys
settings = json.load(open(sys.argv[1])).get("settings", {})
print(":".join(p for p in (settings.get("lmdb"), settings.get("weights")) if p))' \
    "$run_dir/params.json" 2>/dev/null || true)
  [ -z "$recorded" ] || export MLN_CAFFE_BIND="${MLN_CAFFE_BIND:+$MLN_CAFFE_BIND:}$recorded"
fi
"$REPO/scripts/caffe-env" python "$REPO/scripts/train.py" "$@"
