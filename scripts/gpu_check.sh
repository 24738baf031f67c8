#!/usr/bin/env bash
# The GPU self-test, once per machine with an NVIDIA GPU:
#   ./scripts/gpu_check.sh [--gpu N] [--json OUT]
# Sets up Caffe when needed (on a host with an NVIDIA driver: the CUDA Caffe), then checks GPU N
# (default 0): device query; both deploy nets' GPU forward equal to the CPU forward within 1e-4;
# 5 training iterations of the overfit check on the GPU; `caffe time` of MLN and the baseline at
# 368x432 beside the paper's 22.71 ms and 2.07x. scripts/gpu_check.py (--help) says more.
# Exit code: 0 passed, 1 a step failed, 2 no NVIDIA GPU here (one line says so).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# A CUDA failure that aborts Caffe must leave a message, not a core file.
ulimit -c 0 2>/dev/null || true
exec python3 "$REPO/scripts/gpu_check.py" "$@"
