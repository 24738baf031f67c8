#!/usr/bin/env bash
# Make the deploy virtual environment: the host's own Python, no Caffe, for inference through
# OpenCV's DNN module (pip install -e .[deploy]) and for the tests that run outside Caffe's env.
#
# Environment: MLN_VENV (default <repo>/.venv), MLN_VENV_PYTHON (default python3).
# Reinstalls when setup.py changes; a second run takes about a second.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${MLN_VENV:-$REPO/.venv}
PYTHON=${MLN_VENV_PYTHON:-python3}

say() { printf 'setup_venv: %s\n' "$*" >&2; }

stamp=$(cat "$REPO/setup.py" | sha256sum | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.mln-stamp" 2>/dev/null)" = "$stamp" ]; then
  say "deploy venv in $VENV is up to date"
  exit 0
fi
if [ "${MLN_IN_CAFFE_ENV:-}" = 1 ]; then
  # inside caffe-env, python3 is the embedded root's: a venv made with it would replace the
  # host's with one the host cannot run
  say "error: the deploy venv $VENV is missing or out of date, and it is made with the host's Python: run scripts/setup_venv.sh outside scripts/caffe-env"
  exit 1
fi
say "making the deploy venv in $VENV with $($PYTHON --version 2>&1)"
"$PYTHON" -m venv "$VENV" || { say "error: $PYTHON -m venv failed (apt-get install python3-venv?)"; exit 1; }
"$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
"$VENV/bin/python" -m pip install --quiet -e "$REPO[deploy,test]" >&2 \
  || { say "error: pip install -e .[deploy,test] failed"; exit 1; }
echo "$stamp" > "$VENV/.mln-stamp"
say "deploy venv ready"
