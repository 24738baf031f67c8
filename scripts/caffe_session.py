"""Devices and Caffe's process for the training driver (scripts/training_run.py): which GPUs
`--gpu` can use, and running `caffe train` with its output logged, watched for a loss that
becomes NaN or infinite, and shown as progress lines (or whole). Needs Caffe's tools on PATH
(scripts/caffe-env).
"""
import functools
import math
import os
import re
import signal
import subprocess
import sys
import time

from data_prep.workers import die_with_parent
from scripts import plot_log

INTERRUPTED_EXIT = 130
CPU_ONLY_CAFFE = "Cannot use GPU in CPU-only Caffe"
MULTI_GPU_WITHOUT_NCCL = (
    "--gpu %s: several GPUs need pycaffe's NCCL solver (one process per GPU), and this Caffe "
    "has no NCCL (caffe.has_nccl() is false%s). Python layers, such as the training data layer, "
    "cannot run under `caffe train --gpu 0,1` (Caffe refuses: \"PythonLayer does not support CLI "
    "Multi-GPU\"). Use a Caffe built with CUDA and NCCL (USE_NCCL := 1), or train on one GPU "
    "(--gpu 0) with --iter-size for the effective batch.")


class TrainError(Exception):
    """A training that cannot start or go on; the message says why and what to do."""
    exit_code = 1


# ---- devices

def query_gpu(gpu_id):
    """None when Caffe can use GPU `gpu_id`, else the reason."""
    try:
        query = subprocess.run(["caffe", "device_query", "-gpu", str(gpu_id)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True, errors="replace", timeout=300)
    except (OSError, subprocess.TimeoutExpired) as error:
        return "`caffe device_query` failed: %s" % error
    # scripts/caffe-env says whether ./scripts/gpu_check.sh passed on this build: remind once
    unchecked = os.environ.pop("MLN_GPU_CHECK", None) == "not-run"
    if query.returncode == 0:
        if unchecked:
            sys.stderr.write("train: this GPU set-up has not passed ./scripts/gpu_check.sh yet: "
                             "run it once (device query, GPU = CPU forward, 5 training "
                             "iterations, timing)\n")
        return None
    if CPU_ONLY_CAFFE in query.stdout:
        return "this Caffe is a CPU-only build"
    fatal = [line for line in query.stdout.splitlines() if re.match(r"[FE]\d{4} ", line)]
    return (fatal[0].split("] ", 1)[-1] if fatal
            else "`caffe device_query -gpu %s` exited with %d" % (gpu_id, query.returncode)) + (
        "; ./scripts/gpu_check.sh checks the GPU set-up" if unchecked else "")


def choose_device(gpu, query=query_gpu, has_nccl=None):
    """--gpu value -> (list of GPU ids, [] for the CPU; a notice for the user or None)."""
    if gpu == "cpu":
        return [], None
    try:
        gpus = [int(part) for part in gpu.split(",")]
    except ValueError:
        raise TrainError("--gpu must be a GPU id, ids like 0,1, or cpu; got %r" % gpu)
    if len(gpus) > 1:
        if has_nccl is None:
            import caffe
            has_nccl = caffe.has_nccl
        if not has_nccl():
            reason = query(gpus[0])
            raise TrainError(MULTI_GPU_WITHOUT_NCCL % (gpu, "; also: " + reason if reason else ""))
        for gpu_id in gpus:
            reason = query(gpu_id)
            if reason:
                raise TrainError("--gpu %s: GPU %d cannot be used: %s" % (gpu, gpu_id, reason))
        return gpus, None
    reason = query(gpus[0])
    if reason:
        return [], ("train: GPU %d cannot be used (%s): training on the CPU. (--gpu cpu says "
                    "so without this notice.)" % (gpus[0], reason))
    return gpus, None


# ---- Caffe's output

class LossWatch(object):
    """Reads Caffe's output lines; tells when a loss is NaN or infinite."""

    def __init__(self):
        self.iteration = None
        self.finite_iterations = []     # iterations whose displayed total loss was finite

    def check(self, line):
        """-> None, or the reason to stop (naming the iteration and the loss)."""
        total = plot_log.ITERATION_LOSS.search(line)
        if total:
            self.iteration = int(total.group(1))
            if _is_finite(total.group(2)):
                self.finite_iterations.append(self.iteration)
                return None
            return "the loss is %s at iteration %d" % (total.group(2), self.iteration)
        output = plot_log.NET_OUTPUT.search(line)
        if output and self.iteration is not None and not _is_finite(output.group(3)):
            return "%s is %s at iteration %d" % (output.group(2), output.group(3), self.iteration)
        return None

    def last_good_iteration(self, bad_iteration):
        good = [i for i in self.finite_iterations if i < bad_iteration]
        return max(good) if good else None


class Progress(object):
    """What the terminal gets of Caffe's output instead of its thousands of lines: one line per
    displayed iteration, with the loss, the speed, the time left and the last snapshot."""

    SNAPSHOT = re.compile(r"Snapshotting to binary proto file (\S+\.caffemodel)")

    def __init__(self, max_iter, clock=time.monotonic):
        self.max_iter, self.clock = max_iter, clock
        self.first = None               # (iteration, time) of the session's first display
        self.last_snapshot = None       # as Caffe names it: relative to the run directory

    def line(self, text):
        """-> the progress line for Caffe's output line `text`, or None."""
        snapshot = self.SNAPSHOT.search(text)
        if snapshot:
            self.last_snapshot = snapshot.group(1)
            return None
        total = plot_log.ITERATION_LOSS.search(text)
        if not total:
            return None
        iteration, now = int(total.group(1)), self.clock()
        # The speed from this session's first display on: it leaves out the nets' set-up.
        self.first = self.first or (iteration, now)
        done, seconds = iteration - self.first[0], now - self.first[1]
        rate = done / seconds if done > 0 and seconds > 0 else None
        return "train: iteration %d/%d, loss %s, %s, ETA %s, last snapshot: %s" % (
            iteration, self.max_iter, total.group(2),
            "%.3g iter/s" % rate if rate else "- iter/s",
            format_duration((self.max_iter - iteration) / rate) if rate else "-",
            self.last_snapshot or "none yet")


def format_duration(seconds):
    """1234.5 -> '20m35s'; 90061 -> '25h01m'."""
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return "%dh%02dm" % (hours, minutes)
    return "%dm%02ds" % (minutes, seconds) if minutes else "%ds" % seconds


def _is_finite(text):
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _signal_group(process, signum):
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass                                  # already gone


def run_caffe(command, cwd, log_path, echo=sys.stdout, show=None):
    """Run `command` in `cwd`, appending its whole output to log_path and echoing what
    `show(line)` returns for each line (None: nothing; without `show`: every line).

    -> (exit code, None), or (exit code, (reason, last iteration with a finite loss or None)) when
    it was stopped because a loss became NaN or infinite. Caffe gets its own process group (with
    its data workers), so that stopping it stops them too; Ctrl-C asks Caffe to stop (it snapshots) and returns 130.
    """
    watch = LossWatch()
    divergence, interrupted = None, False
    # The loss watch reads Caffe's INFO lines: ask for them, whatever the caller's environment
    # says (a quiet GLOG_minloglevel set by a tool in this process would silence them).
    environment = dict(os.environ, GLOG_minloglevel="0", GLOG_logtostderr="1")
    with open(log_path, "a") as log:
        process = subprocess.Popen(command, cwd=cwd, env=environment, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, universal_newlines=True,
                                   errors="replace", start_new_session=True,
                                   preexec_fn=functools.partial(die_with_parent, signal.SIGTERM,
                                                                os.getpid()))
        while True:
            try:
                line = process.stdout.readline()
                if not line:
                    break
                log.write(line)
                shown = line if show is None else show(line)
                if shown:
                    echo.write(shown if shown.endswith("\n") else shown + "\n")
                    echo.flush()
                reason = watch.check(line) if divergence is None else None
                if reason:
                    divergence = (reason, watch.iteration)
                    # SIGKILL: no snapshot of diverged weights, no stack trace from glog
                    _signal_group(process, signal.SIGKILL)
            except KeyboardInterrupt:
                if interrupted:                       # a second Ctrl-C: stop at once
                    _signal_group(process, signal.SIGKILL)
                else:
                    interrupted = True
                    echo.write("train: stopping Caffe (it writes a snapshot first); Ctrl-C "
                               "again to kill it\n")
                    echo.flush()
                    _signal_group(process, signal.SIGINT)
        code = process.wait()
    if divergence:
        divergence = (divergence[0], watch.last_good_iteration(divergence[1]))
    return (INTERRUPTED_EXIT if interrupted else code), divergence
