#!/usr/bin/env bash
# The test command:  ./scripts/test.sh [PYTEST_ARGS...]
#
# Sets up Caffe (scripts/setup_caffe.sh) and the deploy venv (scripts/setup_venv.sh) when needed,
# then runs two pytest sessions and fails if either fails:
#   1. tests/ (except tests/host) inside the Caffe environment, with real Caffe;
#   2. tests/host in the deploy venv on the host's Python: what must work without Caffe
#      (inference through OpenCV's DNN module) and scripts/caffe-env seen from outside.
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
run_suite "$VENV/bin/python" -m pytest tests/host "$@" || status=1
exit $status
