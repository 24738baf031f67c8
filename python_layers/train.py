"""Train MLN or the OpenPose COCO baseline with Caffe on data_prep's LMDB (./scripts/train.sh).

    ./scripts/train.sh --model mln --lmdb coco_train2017.lmdb --weights vgg19_conv.caffemodel
    ./scripts/train.sh --resume --run-dir runs/mln-20240101-120000 --iters 200000

A run directory holds everything about one training:
    params.json          every setting, the device and one entry per session (command, start)
    <model>/train.prototxt, solver.prototxt, deploy.prototxt   generated for these settings
    snapshots/<model>_iter_N.caffemodel, .solverstate          every --snapshot-every and at the end
    caffe.log            Caffe's output, appended by each session
    losses.png           the losses against the iterations (python_layers/plot_log.py)
    diverged/            snapshots taken after the loss became NaN/infinite (if it did)
Paths inside are relative to the run directory (Caffe runs there), so it can be moved; only the
LMDB (and --weights) are named by absolute paths.

The nets come from the generators (generators/make_net.py write_net_files). Caffe's output is
watched line by line: a NaN or infinite loss stops Caffe at once with a message, and the exit
code is 3. Ctrl-C stops Caffe the way Caffe stops itself (it writes a snapshot), exit code 130.

Devices: --gpu ID uses that GPU when this Caffe has CUDA and the device answers `caffe
device_query`; otherwise it trains on the CPU and says so. --gpu 0,1 trains on several GPUs
through pycaffe's NCCL solver, one process per GPU (python_layers/train_multi_gpu.py); Python
layers cannot run under `caffe train --gpu 0,1`, so a Caffe without NCCL is an error. The batch
is per GPU: the effective batch is batch x iter-size x GPUs.
"""
import argparse
import contextlib
import datetime
import functools
import glob
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys

from generators.make_net import parse_json_object, write_net_files
from generators.fillers import FILLERS
from generators.mln import WIRINGS
from generators.nets import MODELS, NetOptions
from generators.solver import SOLVER_TYPES, SolverOptions
from python_layers import plot_log
from python_layers.batch_source import die_with_parent

PARAMS_FILE = "params.json"
LOG_FILE = "caffe.log"
PLOT_FILE = "losses.png"
SNAPSHOT_DIR = "snapshots"
DIVERGED_DIR = "diverged"
DIVERGED_EXIT = 3
INTERRUPTED_EXIT = 130
# The settings that define a training; a resumed run keeps them.
FIXED_SETTINGS = {"model": None, "lmdb": None, "batch": 28, "iter_size": 1, "crop": 368,
                  "base_lr": 6e-5, "seed": 0, "wiring": "a", "data_param": {},
                  "solver": "sgd", "weight_decay": 5e-4, "clip_gradients": None,
                  "fillers": None}
# The settings a resumed run may change.
SESSION_SETTINGS = {"iters": 600000, "gpu": "0", "workers": None, "display": 20,
                    "snapshot_every": 2000}
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


# ---- settings and the run directory

def build_parser():
    parser = argparse.ArgumentParser(
        prog="train.sh", description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--model", choices=MODELS, help="network (a new run needs it)")
    add("--lmdb", help="training database made by data_prep/coco_to_lmdb.py (a new run needs it)")
    add("--run-dir", help="run directory (default: runs/<model>-<date>-<time>)")
    add("--resume", action="store_true",
        help="continue the run in --run-dir from its latest .solverstate, with its settings")
    add("--gpu", help="GPU id, several as 0,1, or cpu (default 0: the GPU when Caffe has CUDA "
                      "and the device exists, else the CPU with a notice)")
    add("--iters", type=int, help="train up to this iteration (solver max_iter; default 600000)")
    add("--batch", type=int, help="samples per forward pass, per GPU (default 28, the paper)")
    add("--iter-size", type=int,
        help="forward passes per update (default 1): batch 7 x iter-size 4 = the paper's 28")
    add("--crop", type=int, help="square training crop, a multiple of 8 (default 368)")
    add("--base-lr", type=float, help="learning rate (default 6e-5, the paper)")
    add("--solver", choices=sorted(SOLVER_TYPES),
        help="sgd (default: the paper's SGD with momentum 0.9) or adam (Caffe's Adam: what "
             "trains MLN from scratch, generators/README.md)")
    add("--weight-decay", type=float, help="L2 weight decay (default 5e-4, the paper)")
    add("--clip-gradients", type=float,
        help="scale the gradient down when its L2 norm exceeds this (default: no clipping)")
    add("--fillers", choices=FILLERS,
        help="initial-weight fillers of the generated nets (default: msra for MLN, openpose "
             "for the baseline; generators/fillers.py)")
    add("--seed", type=int, help="data order, augmentation and initial weights (default 0)")
    add("--wiring", choices=WIRINGS, help="MLN's wiring (generators/README.md; default a)")
    add("--data-param", type=parse_json_object,
        help="JSON object of extra data-layer keys, e.g. '{\"flip_prob\": 0}' "
             "(python_layers/README.md)")
    add("--weights", help="initial weights copied by layer name (e.g. VGG-19 from "
                          "python_layers/vgg19_keras_to_caffe.py); not with --resume")
    add("--workers", type=int,
        help="data-layer worker processes (default: the layer's, cores up to 4; 0 = in Caffe)")
    add("--display", type=int, help="print (averaged) losses every N iterations (default 20)")
    add("--snapshot-every", type=int, help="snapshot every N iterations (default 2000)")
    return parser


def default_run_dir(model, now=None):
    now = now or datetime.datetime.now()
    return os.path.join("runs", "%s-%s" % (model, now.strftime("%Y%m%d-%H%M%S")))


def settings_for_new_run(args):
    """The full settings of a new run from the command line and the defaults."""
    if args.model is None or args.lmdb is None:
        raise TrainError("a new run needs --model and --lmdb (or --resume --run-dir DIR)")
    if args.weights is not None and not os.path.isfile(args.weights):
        raise TrainError("--weights %s: no such file" % args.weights)
    settings = {}
    for name, default in list(FIXED_SETTINGS.items()) + list(SESSION_SETTINGS.items()):
        value = getattr(args, name)
        settings[name] = default if value is None else value
    settings["lmdb"] = os.path.abspath(args.lmdb)
    settings["weights"] = os.path.abspath(args.weights) if args.weights else None
    return settings


def settings_for_resume(args, saved):
    """The saved settings of a run, with the session settings given on the command line.

    A different value for a setting that defines the training is refused (it would not be a
    continuation); --weights makes no sense when resuming.
    """
    if args.weights is not None:
        raise TrainError("--weights and --resume exclude each other: a resumed run continues "
                         "from its own snapshot")
    # A run saved before a setting existed trained with that setting's default.
    settings = dict(FIXED_SETTINGS, **saved)
    for name in FIXED_SETTINGS:
        value = getattr(args, name)
        if name == "lmdb" and value is not None:
            value = os.path.abspath(value)
        if value is not None and value != settings[name]:
            raise TrainError("--%s %s differs from the run's %r (%s); a resumed run keeps the "
                             "settings it started with: leave it out, or start a new run"
                             % (name.replace("_", "-"), value, settings[name], PARAMS_FILE))
    for name in SESSION_SETTINGS:
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    return settings


def snapshot_iterations(directory, model):
    """{iteration: solverstate path} of the run's snapshots (with their .caffemodel)."""
    found = {}
    for path in glob.glob(os.path.join(directory, "%s_iter_*.solverstate" % model)):
        match = re.search(r"_iter_(\d+)\.solverstate$", path)
        if match and os.path.isfile(path[:-len(".solverstate")] + ".caffemodel"):
            found[int(match.group(1))] = path
    return found


# ---- devices

def query_gpu(gpu_id):
    """None when Caffe can use GPU `gpu_id`, else the reason."""
    try:
        query = subprocess.run(["caffe", "device_query", "-gpu", str(gpu_id)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True, errors="replace", timeout=300)
    except (OSError, subprocess.TimeoutExpired) as error:
        return "`caffe device_query` failed: %s" % error
    if query.returncode == 0:
        return None
    if CPU_ONLY_CAFFE in query.stdout:
        return "this Caffe is a CPU-only build"
    fatal = [line for line in query.stdout.splitlines() if re.match(r"[FE]\d{4} ", line)]
    return (fatal[0].split("] ", 1)[-1] if fatal
            else "`caffe device_query -gpu %s` exited with %d" % (gpu_id, query.returncode))


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


def run_caffe(command, cwd, log_path, echo=sys.stdout):
    """Run `command` in `cwd`, appending its output to log_path and echoing it.

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
                echo.write(line)
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
                    _signal_group(process, signal.SIGINT)
        code = process.wait()
    if divergence:
        divergence = (divergence[0], watch.last_good_iteration(divergence[1]))
    return (INTERRUPTED_EXIT if interrupted else code), divergence


# ---- one training session

@contextlib.contextmanager
def working_directory(path):
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def write_nets(run_dir, settings, gpus, first_sample):
    """The train/deploy/solver files in run_dir/<model>/, paths relative to run_dir."""
    data_param = dict(settings["data_param"])
    if settings["workers"] is not None:
        data_param["workers"] = settings["workers"]
    if first_sample:
        data_param["first_sample"] = first_sample
    net_options = NetOptions(crop_size=settings["crop"], batch_size=settings["batch"],
                             lmdb=settings["lmdb"], seed=settings["seed"], data_param=data_param,
                             wiring=settings["wiring"], fillers=settings["fillers"])
    solver_options = SolverOptions(
        solver_type=settings["solver"], weight_decay=settings["weight_decay"],
        clip_gradients=settings["clip_gradients"],
        base_lr=settings["base_lr"], max_iter=settings["iters"], iter_size=settings["iter_size"],
        display=settings["display"], snapshot_every=settings["snapshot_every"],
        snapshot_prefix=os.path.join(SNAPSHOT_DIR, settings["model"]),
        solver_mode="gpu" if gpus else "cpu", random_seed=settings["seed"])
    with working_directory(run_dir):
        try:
            paths = write_net_files(settings["model"], ".", net_options, solver_options)
        except ValueError as error:
            raise TrainError(str(error))
    return paths


def caffe_command(solver, gpus, snapshot=None, weights=None):
    if len(gpus) > 1:
        command = [sys.executable, "-m", "python_layers.train_multi_gpu", "--solver", solver,
                   "--gpus", ",".join(str(g) for g in gpus)]
    else:
        command = ["caffe", "train", "--solver", solver]
        if gpus:
            command += ["--gpu", str(gpus[0])]
    if snapshot:
        command += ["--snapshot", snapshot]
    if weights:
        command += ["--weights", weights]
    return command


def set_aside_diverged_snapshots(run_dir, model, last_good):
    """Move the snapshot files of iterations after the last finite loss (the weights of a
    snapshot give the loss of its iteration; a file may be half written) to run_dir/diverged/.
    -> the names moved."""
    moved = []
    for path in sorted(glob.glob(os.path.join(run_dir, SNAPSHOT_DIR, "%s_iter_*" % model))):
        match = re.search(r"_iter_(\d+)\.\w+$", path)
        if match and (last_good is None or int(match.group(1)) > last_good):
            os.makedirs(os.path.join(run_dir, DIVERGED_DIR), exist_ok=True)
            shutil.move(path, os.path.join(run_dir, DIVERGED_DIR, os.path.basename(path)))
            moved.append(os.path.basename(path))
    return moved


def plot_losses(run_dir, model):
    try:
        curves = plot_log.read_log(os.path.join(run_dir, LOG_FILE))
    except ValueError:
        return None                     # no loss line yet
    path = os.path.join(run_dir, PLOT_FILE)
    plot_log.plot_curves(curves, path, title="%s (%s)" % (model, os.path.basename(run_dir)))
    return path


def prepare(args, argv, now=None):
    """-> (run_dir, settings, sessions) for the command line; writes nothing yet."""
    if args.resume:
        if args.run_dir is None:
            raise TrainError("--resume needs --run-dir (the run to continue)")
        run_dir = os.path.abspath(args.run_dir)
        try:
            with open(os.path.join(run_dir, PARAMS_FILE)) as handle:
                saved = json.load(handle)
        except (OSError, ValueError) as error:
            raise TrainError("--resume: %s is not a run directory of train.sh (%s: %s)"
                             % (run_dir, PARAMS_FILE, error))
        settings = settings_for_resume(args, saved["settings"])
        snapshots = snapshot_iterations(os.path.join(run_dir, SNAPSHOT_DIR), settings["model"])
        if not snapshots:
            raise TrainError("--resume: no snapshot in %s yet, nothing to continue from; to "
                             "start again, delete %s or choose another --run-dir"
                             % (os.path.join(run_dir, SNAPSHOT_DIR), run_dir))
        start = max(snapshots)
        if settings["iters"] <= start:
            raise TrainError("--resume: the run is at iteration %d already; give --iters above "
                             "it" % start)
        history = saved.get("sessions", [])
        resume_from = os.path.relpath(snapshots[start], run_dir)
    else:
        settings = settings_for_new_run(args)
        run_dir = os.path.abspath(args.run_dir or default_run_dir(settings["model"], now))
        if os.path.exists(os.path.join(run_dir, PARAMS_FILE)):
            raise TrainError("%s already holds a run: continue it with --resume, or choose "
                             "another --run-dir" % run_dir)
        start, history, resume_from = 0, [], None
    for name in ("iters", "batch", "iter_size", "crop", "display", "snapshot_every"):
        if settings[name] < 1:
            raise TrainError("--%s must be at least 1, got %r"
                             % (name.replace("_", "-"), settings[name]))
    # lr 0 is allowed: it trains nothing, which checks a set-up (e.g. weights copied by name)
    for name, positive in (("base_lr", False), ("weight_decay", False), ("clip_gradients", True)):
        value = settings[name]
        if value is not None and not (math.isfinite(value)
                                      and (value > 0 if positive else value >= 0)):
            raise TrainError("--%s must be %s and finite, got %r"
                             % (name.replace("_", "-"), "positive" if positive else "0 or more",
                                value))
    if not os.path.isfile(os.path.join(settings["lmdb"], "data.mdb")):
        raise TrainError("--lmdb %s: not a database made by data_prep/coco_to_lmdb.py (no "
                         "data.mdb)" % settings["lmdb"])
    session = {"started": (now or datetime.datetime.now()).isoformat(timespec="seconds"),
               "command": list(argv), "start_iteration": start, "resumed_from": resume_from}
    return run_dir, settings, history + [session]


def train(args, argv, echo=sys.stdout, notices=sys.stderr):
    """One session of training as the command line `argv` asks; -> exit code."""
    run_dir, settings, sessions = prepare(args, argv)
    gpus, notice = choose_device(settings["gpu"])
    if notice:
        notices.write(notice + "\n")
    session = sessions[-1]
    session["device"] = "gpu %s" % ",".join(map(str, gpus)) if gpus else "cpu"
    # Samples the earlier sessions used: a resumed run continues the data stream.
    first_sample = (session["start_iteration"] * settings["batch"] * settings["iter_size"]
                    * max(1, len(gpus)))
    os.makedirs(os.path.join(run_dir, SNAPSHOT_DIR), exist_ok=True)
    paths = write_nets(run_dir, settings, gpus, first_sample)
    with open(os.path.join(run_dir, PARAMS_FILE), "w") as handle:
        json.dump({"settings": settings, "sessions": sessions}, handle, indent=2, sort_keys=True)
    command = caffe_command(paths["solver"], gpus, snapshot=session["resumed_from"],
                            weights=settings["weights"] if not session["resumed_from"] else None)
    with open(os.path.join(run_dir, LOG_FILE), "a") as log:
        log.write("train.py: session %d in %s: %s\n"
                  % (len(sessions), run_dir, " ".join(command)))
    code, divergence = run_caffe(command, run_dir, os.path.join(run_dir, LOG_FILE), echo)
    plot = plot_losses(run_dir, settings["model"])
    if divergence:
        reason, last_good = divergence
        moved = set_aside_diverged_snapshots(run_dir, settings["model"], last_good)
        notices.write(
            "train: stopped: %s (--base-lr %g, --solver %s). The weights have diverged: "
            "try a lower --base-lr (%g), --clip-gradients 100, or --solver adam --base-lr 1e-4 "
            "--weight-decay 0 (what trains MLN from scratch, generators/README.md); or look "
            "for a bad sample.%s Log: %s\n"
            % (reason, settings["base_lr"], settings["solver"], settings["base_lr"] / 10,
               " Snapshots taken after the last finite loss were moved to %s: %s."
               % (os.path.join(run_dir, DIVERGED_DIR), " ".join(moved)) if moved else "",
               os.path.join(run_dir, LOG_FILE)))
        return DIVERGED_EXIT
    if code == INTERRUPTED_EXIT:
        notices.write("train: interrupted; continue with: ./scripts/train.sh --resume --run-dir "
                      "%s\n" % run_dir)
        return code
    if code != 0:
        error = python_error_of_last_session(os.path.join(run_dir, LOG_FILE))
        notices.write("train: Caffe failed (exit code %d)%s; see %s\n"
                      % (code, ": %s" % error if error else "", os.path.join(run_dir, LOG_FILE)))
        return code
    notices.write("train: done; run directory %s%s\n"
                  % (run_dir, " (losses: %s)" % os.path.basename(plot) if plot else ""))
    return 0


def python_error_of_last_session(log_path):
    """The last Python exception line ("module.SomeError: message") that the current session
    wrote into Caffe's log (the data layer prints its errors there), or None."""
    with open(log_path, errors="replace") as handle:
        session = handle.read().rsplit("\ntrain.py: session ", 1)[-1]
    errors = re.findall(r"^([A-Za-z_][\w.]*(?:Error|Exception): .*)$", session, flags=re.M)
    return errors[-1] if errors else None


def main(argv=None):
    # train.sh starts us with Ctrl-C ignored (so that the sandbox around us survives it)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        return train(args, argv)
    except TrainError as error:
        sys.stderr.write("train: error: %s\n" % error)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
