"""One training session of MLN or the OpenPose COCO baseline with Caffe on data_prep's LMDB: the
library under ./scripts/train.sh (scripts/train.py is its command line).

    ./scripts/train.sh --model mln --lmdb coco_train2017.lmdb --weights vgg19_conv.caffemodel
    ./scripts/train.sh --resume --run-dir runs/mln-20240101-120000 --iters 200000

A run directory holds everything about one training:
    params.json          every setting, the device and one entry per session (command, start)
    <model>/train.prototxt, solver.prototxt, deploy.prototxt   generated for these settings
    snapshots/<model>_iter_N.caffemodel, .solverstate          every --snapshot-every and at the end
    caffe.log            Caffe's output, appended by each session
    losses.png           the losses against the iterations (scripts/plot_log.py)
    diverged/            snapshots taken after the loss became NaN/infinite (if it did)
Paths inside are relative to the run directory (Caffe runs there), so it can be moved; only the
LMDB (and --weights) are named by absolute paths.

The nets come from the generators (generators/net_files.py write_net_files). Caffe's output is
watched line by line: a NaN or infinite loss stops Caffe at once with a message, and the exit
code is 3. Ctrl-C stops Caffe the way Caffe stops itself (it writes a snapshot), exit code 130.

Devices: --gpu ID uses that GPU when this Caffe has CUDA and the device answers `caffe
device_query`; otherwise it trains on the CPU and says so. --gpu 0,1 trains on several GPUs
through pycaffe's NCCL solver, one process per GPU (scripts/train_multi_gpu.py); Python
layers cannot run under `caffe train --gpu 0,1`, so a Caffe without NCCL is an error. The batch
is per GPU: the effective batch is batch x iter-size x GPUs.
"""
import contextlib
import datetime
import glob
import json
import math
import os
import re
import shutil
import sys

from generators.net_files import write_net_files
from generators.nets import NetOptions
from generators.solver import SolverOptions
from scripts import plot_log
from scripts.caffe_session import INTERRUPTED_EXIT, TrainError, choose_device, run_caffe

PARAMS_FILE = "params.json"
LOG_FILE = "caffe.log"
PLOT_FILE = "losses.png"
SNAPSHOT_DIR = "snapshots"
DIVERGED_DIR = "diverged"
DIVERGED_EXIT = 3
# The settings that define a training; a resumed run keeps them. Defaults: the generators' (the
# paper's batch 28, crop 368, SGD at lr 6e-5 with weight decay 5e-4, OpenPose's schedule).
_NET, _SOLVER = NetOptions(), SolverOptions()
FIXED_SETTINGS = {"model": None, "lmdb": None, "batch": _NET.batch_size,
                  "iter_size": _SOLVER.iter_size, "crop": _NET.crop_size,
                  "base_lr": _SOLVER.base_lr, "seed": _NET.seed, "wiring": _NET.wiring,
                  "data_param": {}, "solver": _SOLVER.solver_type,
                  "weight_decay": _SOLVER.weight_decay, "clip_gradients": _SOLVER.clip_gradients,
                  "fillers": _NET.fillers}
# The settings a resumed run may change.
SESSION_SETTINGS = {"iters": _SOLVER.max_iter, "gpu": "0", "workers": None,
                    "display": _SOLVER.display, "snapshot_every": _SOLVER.snapshot_every}
DEFAULTS = dict(FIXED_SETTINGS, **SESSION_SETTINGS)


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
        command = [sys.executable, "-m", "scripts.train_multi_gpu", "--solver", solver,
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
