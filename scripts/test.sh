#!/usr/bin/env bash
# The test command:  ./scripts/test.sh [PYTEST_ARGS...]
#
# Sets up Caffe (scripts/setup_caffe.sh) and the deploy venv (scripts/setup_venv.sh) when needed,
# then runs two pytest sessions and fails if either fails:
#   1. inside the Caffe environment (Python 3.9, numpy 1.19, real Caffe): tests/caffe and tests/*.py;
#   2. in the deploy venv on the host's Python (no Caffe): tests/host and tests/*.py again.
# tests/*.py hold the tests of code that runs in both places (keypoints, labels, grouping, ...).
# PYTEST_ARGS (e.g. -k grouping, -x) go to both sessions.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${MLN_VENV:-$REPO/.venv}
cd "$REPO"

scripts/setup_caffe.sh || exit 1
scripts/setup_venv.sh || exit 1

# pytest's exit code 5 means "no test collected": a failure, unless the caller filtered the tests.
run_suite() {
  local code=0
  "$@" || code=$?
  if [ "$code" -eq 5 ] && [ "$FILTERED" = 1 ]; then code=0; fi
  return "$code"
}
FILTERED=0; [ $# -gt 0 ] && FILTERED=1

status=0
echo "== tests inside the Caffe environment"
run_suite scripts/caffe-env python -m pytest tests --ignore=tests/host "$@" || status=1
echo "== tests on the host (deploy venv)"
run_suite "$VENV/bin/python" -m pytest tests --ignore=tests/caffe "$@" || status=1
exit $status
