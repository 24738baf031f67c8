"""One training session of MLN or the OpenPose COCO baseline with Caffe on data_prep's LMDB: the
library under ./scripts/train.sh (scripts/train.py is its command line).

    ./scripts/train.sh --model mln --lmdb coco_train2017.lmdb --weights vgg19_conv.caffemodel
    ./scripts/train.sh --resume --run-dir runs/mln-20240101-120000 --iters 200000

A run directory holds everything about one training:
    params.json          every setting, the database's metadata, the device and one entry per
                         session (command, start)
    <model>/train.prototxt, solver.prototxt, deploy.prototxt   generated for these settings
    snapshots/<model>_iter_N.caffemodel, .solverstate          every --snapshot-every and at the end
    caffe.log            Caffe's whole output, appended by each session (the terminal gets a
                         progress line per displayed iteration; --verbose: everything)
    losses.png           the losses against the iterations (scripts/plot_log.py)
    diverged/            snapshots taken after the loss became NaN/infinite (if it did)
Paths inside are relative to the run directory (Caffe runs there), so it can be moved; only the
LMDB (and --weights) are named by absolute paths. The database is checked before Caffe starts
(made by data_prep, finished, not empty; the data layer's keys); a resumed run may be given its
database's new place with --lmdb, checked to be the same database by its metadata.

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
import os
import re
import shutil
import sys

from generators.net_files import option_error, write_net_files
from generators.nets import NetOptions, train_net
from generators.solver import SolverOptions
from scripts import plot_log
from scripts.caffe_session import (INTERRUPTED_EXIT, Progress, TrainError, choose_device,
                                   run_caffe)

PARAMS_FILE = "params.json"
LOG_FILE = "caffe.log"
PLOT_FILE = "losses.png"
SNAPSHOT_DIR = "snapshots"
DIVERGED_DIR = "diverged"
DIVERGED_EXIT = 3
# The database's metadata that identifies it (data_prep/record.py): a moved database keeps it.
DATABASE_IDENTITY = ("records", "run", "summary")
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
        if name == "lmdb":
            continue                    # the database may move: locate_database
        if value is not None and value != settings[name]:
            raise TrainError("--%s %s differs from the run's %r (%s); a resumed run keeps the "
                             "settings it started with: leave it out, or start a new run"
                             % (name.replace("_", "-"), value, settings[name], PARAMS_FILE))
    for name in SESSION_SETTINGS:
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    return settings


def database_identity(path, label):
    """The metadata that identifies the packed database at `path` (DATABASE_IDENTITY); a
    TrainError naming it as `label` (--lmdb) when it is not one to train on: not data_prep's,
    not finished, or without a record."""
    from data_prep.record import LmdbReader, RecordError
    if not os.path.isdir(path):
        raise TrainError("%s %s: no such folder" % (label, path))
    try:
        with LmdbReader(path) as reader:
            metadata = reader.metadata
    except RecordError as error:
        raise TrainError("%s %s" % (label, error))           # the error names the path
    if metadata["records"] == 0:
        raise TrainError("%s %s: the database holds no record (no image had a main person); "
                         "data_prep/inspect_lmdb.py %s says why each image was left out"
                         % (label, path, path))
    return {key: metadata[key] for key in DATABASE_IDENTITY}


def locate_database(given, recorded, identity):
    """The database a resumed run trains on: `given` (--lmdb, absolute, or None) or the one
    `recorded` in params.json. -> (path, its identity). A database that moved is accepted when
    its metadata is the `identity` recorded (None for runs from before it was recorded: then
    only the recorded place is accepted, and checked)."""
    if given is None and not os.path.isdir(recorded):
        raise TrainError("the run's database %s (%s) is not there: if it moved, give its new "
                         "place with --lmdb" % (recorded, PARAMS_FILE))
    path = given or recorded
    label = "--lmdb" if given else "the run's database"
    found = database_identity(path, label)
    where = "%s %s" % (label, path)
    if identity is None:
        if path != recorded:
            raise TrainError("%s: cannot tell whether it is the run's database %s: %s predates "
                             "recording a database's metadata; resume with the database at %s"
                             % (where, recorded, PARAMS_FILE, recorded))
    elif found != identity:
        differing = ", ".join(key for key in DATABASE_IDENTITY if found[key] != identity[key])
        raise TrainError("%s is not the database this run trained on (its metadata differs "
                         "from what %s recorded, in: %s; %d records then, %d now); a resumed "
                         "run keeps its data: give that database, or start a new run"
                         % (where, PARAMS_FILE, differing, identity["records"],
                            found["records"]))
    return path, found


def snapshot_iterations(directory, model):
    """{iteration: solverstate path} of the run's snapshots (with their .caffemodel)."""
    found = {}
    for path in glob.glob(os.path.join(directory, "%s_iter_*.solverstate" % model)):
        match = re.search(r"_iter_(\d+)\.solverstate$", path)
        if match and os.path.isfile(path[:-len(".solverstate")] + ".caffemodel"):
            found[int(match.group(1))] = path
    return found


def latest_weights(run_dir, model):
    """The latest snapshot's .caffemodel, relative to run_dir (as Caffe names it), or None."""
    snapshots = snapshot_iterations(os.path.join(run_dir, SNAPSHOT_DIR), model)
    if not snapshots:
        return None
    state = os.path.relpath(snapshots[max(snapshots)], run_dir)
    return state[:-len(".solverstate")] + ".caffemodel"


# ---- one training session

@contextlib.contextmanager
def working_directory(path):
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def net_options(settings, first_sample):
    """The generators' NetOptions of a session (the data layer's extra keys included)."""
    data_param = dict(settings["data_param"])
    if settings["workers"] is not None:
        data_param["workers"] = settings["workers"]
    if first_sample:
        data_param["first_sample"] = first_sample
    return NetOptions(crop_size=settings["crop"], batch_size=settings["batch"],
                      lmdb=settings["lmdb"], seed=settings["seed"], data_param=data_param,
                      wiring=settings["wiring"], fillers=settings["fillers"])


def check_data_layer_keys(settings):
    """TrainError now, not after Caffe's set-up, when the data layer would refuse the param_str
    of the generated train net (an unknown --data-param key, a value out of range)."""
    from python_layers.data_layer import parse_param_str
    try:
        parse_param_str(train_net(settings["model"], net_options(settings, 0))
                        .layer[0].python_param.param_str)
    except ValueError as error:
        raise TrainError("--data-param %s: %s" % (
            json.dumps(settings["data_param"], sort_keys=True), error))


def write_nets(run_dir, settings, gpus, first_sample):
    """The train/deploy/solver files in run_dir/<model>/, paths relative to run_dir."""
    solver_options = SolverOptions(
        solver_type=settings["solver"], weight_decay=settings["weight_decay"],
        clip_gradients=settings["clip_gradients"],
        base_lr=settings["base_lr"], max_iter=settings["iters"], iter_size=settings["iter_size"],
        display=settings["display"], snapshot_every=settings["snapshot_every"],
        snapshot_prefix=os.path.join(SNAPSHOT_DIR, settings["model"]),
        solver_mode="gpu" if gpus else "cpu", random_seed=settings["seed"])
    with working_directory(run_dir):
        try:
            paths = write_net_files(settings["model"], ".", net_options(settings, first_sample),
                                    solver_options)
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


def check_settings(settings):
    """TrainError naming the first option whose value cannot train (net_files.option_error)."""
    for name in ("iters", "batch", "iter_size", "crop", "display", "snapshot_every", "seed",
                 "workers", "base_lr", "weight_decay", "clip_gradients"):
        error = option_error(name.replace("_", "-"), settings[name])
        if error:
            raise TrainError(error)


def prepare(args, argv, now=None):
    """-> (run_dir, settings, database identity, sessions) for the command line, everything
    checked that can be before Caffe starts; writes nothing yet."""
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
        given = os.path.abspath(args.lmdb) if args.lmdb is not None else None
        recorded = settings["lmdb"]
        settings["lmdb"], identity = locate_database(given, recorded, saved.get("database"))
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
    check_settings(settings)
    if not args.resume:
        identity = database_identity(settings["lmdb"], "--lmdb")
    check_data_layer_keys(settings)
    session = {"started": (now or datetime.datetime.now()).isoformat(timespec="seconds"),
               "command": list(argv), "start_iteration": start, "resumed_from": resume_from,
               "lmdb": settings["lmdb"]}
    if args.resume and settings["lmdb"] != recorded:
        session["lmdb_moved_from"] = recorded
    return run_dir, settings, identity, history + [session]


def train(args, argv, echo=sys.stdout, notices=sys.stderr):
    """One session of training as the command line `argv` asks; -> exit code. `echo` gets a
    progress line per displayed iteration (args.verbose: Caffe's whole output), `notices` the
    messages; Caffe's whole output always goes to the run directory's caffe.log."""
    run_dir, settings, identity, sessions = prepare(args, argv)
    gpus, notice = choose_device(settings["gpu"])
    if notice:
        notices.write(notice + "\n")
    session = sessions[-1]
    session["device"] = "gpu %s" % ",".join(map(str, gpus)) if gpus else "cpu"
    if session.get("lmdb_moved_from"):
        notices.write("train: the run's database moved from %s to %s (the same metadata); %s "
                      "now names the new place\n" % (session["lmdb_moved_from"],
                                                      settings["lmdb"], PARAMS_FILE))
    # Samples the earlier sessions used: a resumed run continues the data stream.
    first_sample = (session["start_iteration"] * settings["batch"] * settings["iter_size"]
                    * max(1, len(gpus)))
    os.makedirs(os.path.join(run_dir, SNAPSHOT_DIR), exist_ok=True)
    paths = write_nets(run_dir, settings, gpus, first_sample)
    with open(os.path.join(run_dir, PARAMS_FILE), "w") as handle:
        json.dump({"settings": settings, "database": identity, "sessions": sessions}, handle,
                  indent=2, sort_keys=True)
    command = caffe_command(paths["solver"], gpus, snapshot=session["resumed_from"],
                            weights=settings["weights"] if not session["resumed_from"] else None)
    log_path = os.path.join(run_dir, LOG_FILE)
    with open(log_path, "a") as log:
        log.write("train.py: session %d in %s: %s\n"
                  % (len(sessions), run_dir, " ".join(command)))
    echo.write("train: session %d, iterations %d to %d on the %s; Caffe's whole log: %s%s\n"
               % (len(sessions), session["start_iteration"], settings["iters"],
                  session["device"].upper(), log_path,
                  "" if args.verbose else " (--verbose shows it here)"))
    echo.flush()
    progress = Progress(settings["iters"])
    code, divergence = run_caffe(command, run_dir, log_path, echo,
                                 show=None if args.verbose else progress.line)
    return report_end(run_dir, settings, code, divergence, notices)


def report_end(run_dir, settings, code, divergence, notices):
    """The session's last word (what happened, the last snapshot, what to do) -> exit code."""
    log_path = os.path.join(run_dir, LOG_FILE)
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
               log_path))
        return DIVERGED_EXIT
    latest = latest_weights(run_dir, settings["model"])
    last = "last snapshot: %s" % latest if latest else "no snapshot"
    if code == INTERRUPTED_EXIT:
        notices.write("train: interrupted (%s); continue with: ./scripts/train.sh --resume "
                      "--run-dir %s\n" % (last, run_dir))
        return code
    if code != 0:
        error = error_of_last_session(log_path)
        notices.write("train: Caffe failed (exit code %d)%s; see %s\n"
                      % (code, ": %s" % error if error else "", log_path))
        return code
    notices.write("train: done at iteration %d (%s); run directory %s%s\n"
                  % (settings["iters"], last, run_dir,
                     " (losses: %s)" % os.path.basename(plot) if plot else ""))
    return 0


def error_of_last_session(log_path):
    """What stopped the current session, from Caffe's log: the last Python exception line
    ("module.SomeError: message"; the data layer prints its errors there), else Caffe's first
    fatal glog line ("Check failed: ..."), or None."""
    with open(log_path, errors="replace") as handle:
        session = handle.read().rsplit("\ntrain.py: session ", 1)[-1]
    errors = re.findall(r"^([A-Za-z_][\w.]*(?:Error|Exception): .*)$", session, flags=re.M)
    if errors:
        return errors[-1]
    fatal = re.search(r"^F\d{4} [^\]]*\] (.*)$", session, flags=re.M)
    return fatal.group(1).strip() if fatal else None
