"""The GPU self-test, run once on a machine with an NVIDIA GPU: ./scripts/gpu_check.sh (--help).

    ./scripts/gpu_check.sh [--gpu N] [--json OUT]

Runs on the host's Python (standard library only) and uses the Caffe environment for each step:
  device    `caffe device_query -gpu N`: the GPU answers, with its name and compute capability
  forward   both deploy nets (prototxt/mln, prototxt/baseline) with random He-normal weights
            (inference/random_weights.py) on one random 368x432 input: the GPU's outputs equal
            the CPU's within 1e-4, relative to the output's largest magnitude (absolute below 1)
  train     5 training iterations of the overfit check on the GPU
            (./scripts/overfit.sh --synthetic 1 --iters 5 --gpu N): the run trained on the GPU
            and its losses are finite
  time      `caffe time` of both deploy nets at 368x432 on the GPU, beside the paper's figures
            (MLN 22.71 ms on a Tesla P40; baseline / MLN 2.07x)
Prints one line per step and a summary, writes OUT (JSON) when asked, and records a pass in
$MLN_CAFFE_DIR/gpu-check.ok, which `./scripts/train.sh --gpu` looks at (through scripts/caffe-env's
MLN_GPU_CHECK) to remind the user to run this check. Exit code: 0 when every step passed, 1 when
one failed, 2 when this machine has no NVIDIA GPU (one line says so).

`--inside forward` is the forward step itself, run inside the Caffe environment.
"""
import argparse
import glob
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAFFE_ENV = os.path.join(REPO, "scripts", "caffe-env")
NETS = (("mln", "prototxt/mln/deploy.prototxt"), ("baseline", "prototxt/baseline/deploy.prototxt"))
TOLERANCE = 1e-4
TRAIN_ITERATIONS = 5
TIME_ITERATIONS = 20
PAPER_MLN_MS = 22.71            # MLN's forward pass on a Tesla P40 with CUDA Caffe (the paper)
PAPER_RATIO = 2.07              # baseline / MLN, same setting
CPU_ONLY_CAFFE = "Cannot use GPU in CPU-only Caffe"
NO_GPU_EXIT, FAILED_EXIT = 2, 1


class CheckFailed(Exception):
    """A step failed; the message is the one line the user sees."""


def say(text):
    print("gpu_check: %s" % text, flush=True)


# ---------------------------------------------------------------- the host

def ldconfig_has_libcuda():
    for tool in (shutil.which("ldconfig"), "/sbin/ldconfig", "/usr/sbin/ldconfig"):
        if tool and os.access(tool, os.X_OK):
            try:
                listing = subprocess.run([tool, "-p"], stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, universal_newlines=True,
                                         timeout=60).stdout
            except (OSError, subprocess.TimeoutExpired):
                return False
            return re.search(r"^\s*libcuda\.so\.1 ", listing, re.M) is not None
    return False


def host_gpu_problem(dev="/dev"):
    """None when this host has an NVIDIA GPU with its driver, else why not (one sentence)."""
    devices = [path for path in glob.glob(os.path.join(dev, "nvidia[0-9]*"))]
    libcuda = ldconfig_has_libcuda()
    if not devices and not libcuda:
        return ("no NVIDIA GPU on this machine (no %s/nvidia0, no libcuda.so.1 in ldconfig's "
                "cache): nothing to check" % dev)
    if not devices:
        return ("libcuda.so.1 is installed but there is no GPU device (%s/nvidia0): is the "
                "nvidia kernel module loaded?" % dev)
    if not libcuda:
        return ("%s exists but ldconfig's cache has no libcuda.so.1: install the NVIDIA "
                "driver's user-space libraries" % devices[0])
    return None


def run(command, log=None, timeout=None):
    """Run `command` from the repository; -> (exit code, output). Output goes to `log` too."""
    try:
        done = subprocess.run([str(part) for part in command], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, universal_newlines=True,
                              errors="replace", timeout=timeout)
        code, output = done.returncode, done.stdout
    except subprocess.TimeoutExpired as error:
        output = error.output or ""
        if isinstance(output, bytes):
            output = output.decode("utf-8", "replace")
        code, output = 124, output + "\n(timed out after %s s)" % timeout
    if log:
        with open(log, "a") as handle:
            handle.write("$ %s\n%s\n" % (" ".join(str(part) for part in command), output))
    return code, output


def fatal_line(output):
    """Caffe's (glog's) first fatal or error message in `output`, else its last line."""
    for line in output.splitlines():
        if re.match(r"[FE]\d{4} ", line):
            return line.split("] ", 1)[-1].strip()
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"


# ---------------------------------------------------------------- the steps

def device_query(gpu, log):
    code, output = run([CAFFE_ENV, "caffe", "device_query", "-gpu", gpu], log, timeout=600)
    if code != 0:
        if CPU_ONLY_CAFFE in output:
            raise CheckFailed("this Caffe is a CPU-only build: build the CUDA one with "
                              "MLN_CAFFE=embedded-cuda ./scripts/setup_caffe.sh")
        hint = ("; CUDA 11.2 needs an NVIDIA driver of version 450.80.02 or newer on the host, "
                "which scripts/caffe-env binds in" if "driver version is insufficient" in output
                else "")
        raise CheckFailed("`caffe device_query -gpu %s` failed: %s%s"
                          % (gpu, fatal_line(output), hint))
    fields = {}
    for key, pattern in (("name", r"Name: (.+)"), ("major", r"Major revision number: +(\d+)"),
                         ("minor", r"Minor revision number: +(\d+)"),
                         ("memory_bytes", r"Total global memory: +(\d+)")):
        found = re.search(pattern, output)
        if found:
            fields[key] = found.group(1).strip()
    device = {"name": fields.get("name", "?")}
    if "major" in fields and "minor" in fields:
        device["compute_capability"] = "%s.%s" % (fields["major"], fields["minor"])
    if "memory_bytes" in fields:
        device["memory_gib"] = round(int(fields["memory_bytes"]) / 2.0 ** 30, 1)
    return device


def forward(gpu, work, log):
    code, output = run([CAFFE_ENV, "python", os.path.join(REPO, "scripts", "gpu_check.py"),
                        "--inside", "forward", "--gpu", gpu, "--work", work], log, timeout=1800)
    results = None
    for line in reversed(output.splitlines()):
        if line.startswith("{"):
            try:
                results = json.loads(line)
                break
            except ValueError:
                pass
    if code != 0 or results is None:
        raise CheckFailed("the forward comparison failed: %s" % fatal_line(output))
    return results


def train(gpu, work, log):
    out = os.path.join(work, "overfit")
    code, output = run([os.path.join(REPO, "scripts", "overfit.sh"), "--out", out,
                        "--synthetic", 1, "--iters", TRAIN_ITERATIONS, "--checks", 1,
                        "--gpu", gpu], log, timeout=3600)
    if code != 0:
        raise CheckFailed("%d training iterations failed (./scripts/overfit.sh exited with %d): "
                          "%s" % (TRAIN_ITERATIONS, code, fatal_line(output)))
    devices = []
    for params in sorted(glob.glob(os.path.join(out, "train", "*", "params.json"))):
        with open(params) as handle:
            devices += [session.get("device") for session in json.load(handle)["sessions"]]
    if not devices or any(device != "gpu %s" % gpu for device in devices):
        raise CheckFailed("the training did not run on GPU %s (devices: %s)"
                          % (gpu, ", ".join(map(str, devices)) or "none recorded"))
    with open(os.path.join(out, "report.json")) as handle:
        report = json.load(handle)
    losses = [loss for _, loss in report.get("curve", [])]
    if not losses or not all(math.isfinite(loss) for loss in losses):
        raise CheckFailed("the training on GPU %s gave no finite loss: %s" % (gpu, losses))
    return {"iterations": TRAIN_ITERATIONS, "device": devices[0], "loss_first": losses[0],
            "loss_last": losses[-1], "seconds": report.get("seconds")}


def caffe_time(gpu, deploy, log):
    code, output = run([CAFFE_ENV, "caffe", "time", "-model", deploy, "-gpu", gpu,
                        "-iterations", TIME_ITERATIONS], log, timeout=1800)
    found = re.search(r"Average Forward pass: ([0-9.]+) ms", output)
    if code != 0 or not found:
        raise CheckFailed("`caffe time -model %s -gpu %s` failed: %s"
                          % (deploy, gpu, fatal_line(output)))
    return float(found.group(1))


# ---------------------------------------------------------------- inside Caffe's environment

def compare_forward(deploy, weights, gpu, seed=1):
    """The deploy net's outputs on the CPU and on GPU `gpu` (gpu < 0: the CPU again) for one
    random input -> {output: {max_abs_diff, max_abs, relative, ok}}."""
    import numpy as np
    from inference.backends import import_caffe_quietly
    caffe = import_caffe_quietly()
    outputs = []
    for on_gpu in (False, gpu >= 0):
        if on_gpu:
            caffe.set_device(gpu)
            caffe.set_mode_gpu()
        else:
            caffe.set_mode_cpu()
        net = caffe.Net(deploy, weights, caffe.TEST)
        data = net.blobs[net.inputs[0]]
        data.data[...] = np.random.RandomState(seed).uniform(-0.5, 0.5, data.data.shape)
        outputs.append({name: blob.copy() for name, blob in net.forward().items()})
        del net
    caffe.set_mode_cpu()
    compared = {}
    for name, cpu in outputs[0].items():
        difference = float(np.abs(outputs[1][name] - cpu).max())
        largest = float(np.abs(cpu).max())
        relative = difference / max(1.0, largest)
        compared[name] = {"max_abs_diff": difference, "max_abs": largest, "relative": relative,
                          "ok": bool(np.isfinite(relative) and relative <= TOLERANCE)}
    return compared


def inside_forward(gpu, work):
    from inference.random_weights import write_random_weights
    results = {"caffe_build": os.environ.get("MLN_CAFFE_BUILD"), "nets": {}}
    for name, deploy in NETS:
        weights = os.path.join(work, "%s_random.caffemodel" % name)
        write_random_weights(os.path.join(REPO, deploy), weights, seed=0)
        started = time.time()
        results["nets"][name] = {"outputs": compare_forward(os.path.join(REPO, deploy), weights,
                                                            gpu),
                                 "seconds": round(time.time() - started, 1)}
    print(json.dumps(results))
    return 0


# ---------------------------------------------------------------- the check

def caffe_dir():
    return os.environ.get("MLN_CAFFE_DIR") or os.path.join(REPO, ".caffe")


def check(args):
    gpu = str(args.gpu)
    problem = host_gpu_problem()
    if problem:
        print("gpu_check: %s" % problem, file=sys.stderr)
        return NO_GPU_EXIT
    code = subprocess.run([os.path.join(REPO, "scripts", "setup_caffe.sh")], cwd=REPO).returncode
    if code != 0:
        raise CheckFailed("scripts/setup_caffe.sh failed (exit code %d); see above" % code)
    work = tempfile.mkdtemp(prefix="mln-gpu-check-")
    log = os.path.join(work, "gpu_check.log")
    report = {"gpu": args.gpu, "passed": False, "tolerance": TOLERANCE,
              "paper": {"mln_ms": PAPER_MLN_MS, "ratio": PAPER_RATIO}}
    say("GPU %s; every command's output goes to %s" % (gpu, log))
    try:
        report["device"] = device_query(gpu, log)
        say("device    ok: %s" % ", ".join("%s %s" % (key, value) for key, value
                                               in sorted(report["device"].items())))

        forward_results = forward(gpu, work, log)
        report["caffe_build"] = forward_results["caffe_build"]
        report["forward"] = forward_results["nets"]
        bad = []
        for name, result in sorted(report["forward"].items()):
            worst = max(result["outputs"].values(), key=lambda output: output["relative"])
            say("forward   %-8s GPU vs CPU: largest difference %.2e of outputs up to %.3g "
                "(relative %.2e, limit %.0e)" % (name, worst["max_abs_diff"], worst["max_abs"],
                                                 worst["relative"], TOLERANCE))
            bad += ["%s/%s" % (name, output) for output, value in
                    sorted(result["outputs"].items()) if not value["ok"]]
        if bad:
            raise CheckFailed("the GPU's forward pass differs from the CPU's beyond %.0e in %s"
                              % (TOLERANCE, ", ".join(bad)))

        report["training"] = train(gpu, work, log)
        say("train     ok: %d iterations on %s, loss %.1f -> %.1f"
            % (report["training"]["iterations"], report["training"]["device"],
               report["training"]["loss_first"], report["training"]["loss_last"]))

        timing = {name: caffe_time(gpu, deploy, log) for name, deploy in NETS}
        timing["ratio"] = timing["baseline"] / timing["mln"]
        report["timing"] = timing
        say("time      caffe time at 368x432 on %s:" % report["device"]["name"])
        say("          MLN       %8.2f ms   (paper: %.2f ms on a Tesla P40)"
            % (timing["mln"], PAPER_MLN_MS))
        say("          baseline  %8.2f ms" % timing["baseline"])
        say("          baseline / MLN %5.2fx   (paper: %.2fx)" % (timing["ratio"], PAPER_RATIO))
        report["passed"] = True
    except CheckFailed as failure:
        report["failure"] = str(failure)
        raise CheckFailed("%s (every command's output: %s)" % (failure, log))
    finally:
        if args.json:
            with open(args.json, "w") as handle:
                json.dump(report, handle, indent=1, sort_keys=True)
    if report.get("caffe_build"):
        with open(os.path.join(caffe_dir(), "gpu-check.ok"), "w") as handle:
            handle.write("%s\n%s\n" % (report["caffe_build"], json.dumps(report, sort_keys=True)))
    shutil.rmtree(work, ignore_errors=True)
    say("passed: this GPU runs MLN's Caffe; ./scripts/train.sh --gpu %s will use it" % gpu)
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="./scripts/gpu_check.sh",
        description="The GPU self-test: device query, GPU forward = CPU forward for both deploy "
                    "nets, %d training iterations on the GPU, and `caffe time` beside the paper's "
                    "figures." % TRAIN_ITERATIONS)
    parser.add_argument("--gpu", type=int, default=0, help="GPU id (default 0)")
    parser.add_argument("--json", help="write the results to this JSON file")
    parser.add_argument("--inside", choices=("forward",), help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    return parser


def main(argv=None):
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.inside == "forward":
        return inside_forward(args.gpu, args.work)
    if args.json:
        args.json = os.path.abspath(args.json)
    try:
        return check(args)
    except CheckFailed as failure:
        print("gpu_check: failed: %s" % failure, file=sys.stderr)
        return FAILED_EXIT
    except KeyboardInterrupt:
        print("gpu_check: interrupted", file=sys.stderr)
        return 130
    except Exception as error:             # one line, never a stack trace
        print("gpu_check: error: %s: %s" % (type(error).__name__, error), file=sys.stderr)
        return FAILED_EXIT


if __name__ == "__main__":
    sys.exit(main())
