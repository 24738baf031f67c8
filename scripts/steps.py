"""Running a tool's steps: each command's output shown and logged, each step timed, a failing
step named with its log; the staged training of scripts/recipe.py. Shared by scripts/demo.py and
scripts/overfit.py. Standard library only (they run with the deploy venv's Python and start
every step in the environment it needs: scripts/caffe-env for Caffe, lmdb and the packer).
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

from recipe import AUGMENTATIONS, FROM_SCRATCH, SEED, train_arguments

# The environments, named once for the tools that run steps: the repository, Python inside
# scripts/caffe-env (Caffe, lmdb, the packer), the deploy venv's Python (this one: demo.sh and
# overfit.sh start it), and Caffe's state folder (scripts/setup_caffe.sh's, as caffe-env finds it).
REPO = pathlib.Path(__file__).resolve().parents[1]
CAFFE_PYTHON = [str(REPO / "scripts" / "caffe-env"), "python"]
VENV_PYTHON = [sys.executable]
CAFFE_DIR = pathlib.Path(os.environ.get("MLN_CAFFE_DIR", str(REPO / ".caffe")))


class StepFailed(Exception):
    pass


class Steps(object):
    """Runs the steps' commands, streams and logs their output, and keeps their timings."""

    def __init__(self, out):
        self.out = out
        self.logs = out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.seconds = {}

    def run(self, step, command, show=None):
        """Run one command of `step`, appending its output to logs/<step>.log and showing it
        (every byte, so progress bars work, or the lines that `show` accepts)."""
        log_path = self.logs / ("%s.log" % step)
        started = time.time()
        with open(str(log_path), "ab") as log:
            log.write(("$ %s\n" % " ".join(str(c) for c in command)).encode())
            log.flush()
            process = subprocess.Popen([str(c) for c in command], cwd=str(REPO),
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            pending = b""
            while True:
                chunk = os.read(process.stdout.fileno(), 65536)
                if not chunk:
                    break
                log.write(chunk)
                if show is None:
                    sys.stdout.buffer.write(chunk)
                    sys.stdout.flush()
                    continue
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    text = line.decode(errors="replace")
                    if show(text):
                        print("    " + text.strip(), flush=True)
            code = process.wait()
        self.seconds[step] = self.seconds.get(step, 0.0) + time.time() - started
        if code != 0:
            self.fail(step, "exit code %d" % code)
        return log_path

    def fail(self, step, reason):
        """Stop the demo: the step, why, and the end of its log."""
        log_path = self.logs / ("%s.log" % step)
        tail = log_path.read_bytes().decode(errors="replace").splitlines()[-15:]
        raise StepFailed("step '%s' failed (%s). Its log: %s\n  %s"
                         % (step, reason, log_path, "\n  ".join(tail)))

    def section(self, step, title):
        print("\n== %s: %s" % (step, title), flush=True)


def training_lines(text):
    """The lines of train.sh's output worth showing: its own ("train: iteration 20/400, loss
    ...", notices, the last word), not Caffe's (with --verbose; all are in its caffe.log)."""
    return text.startswith("train:")


# ------------------------------------------------------------------------------ the data

def losses(log_path):
    """[(iteration, total loss)] of a Caffe training log (scripts/plot_log.py's parser)."""
    from plot_log import TOTAL, parse_caffe_log
    with open(str(log_path), errors="replace") as handle:
        series = parse_caffe_log(handle).get(TOTAL)
    return list(zip(series.iterations, series.values)) if series else []


def prepare_out(out, marker, owner):
    """The output folder: one `owner` made before (it holds `marker`) is replaced; anything
    else must be empty."""
    if out.exists() and any(out.iterdir()):
        if not (out / marker).is_file():
            raise StepFailed("%s is not empty and was not made by %s: choose another --out"
                             % (out, owner))
        shutil.rmtree(str(out))
    out.mkdir(parents=True, exist_ok=True)
    (out / marker).write_text("made by %s; a rerun replaces this folder\n" % owner)


def run_steps(name, function, args):
    """function(args) with its failures as one line on stderr -> exit code."""
    try:
        function(args)
    except StepFailed as error:
        print("\n%s: %s" % (name, error), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\n%s: interrupted" % name, file=sys.stderr)
        return 130
    return 0


def snapshot_iteration(path):
    return int(path.stem.rsplit("_", 1)[1])


def train_in_stages(run, out, model, lmdb, stages, batch, snapshot_every, options,
                    initial_weights=None):
    """Train `model` through scripts/train.sh once per (augmentation preset, iterations, learning
    rate) stage, each from the previous stage's final weights (the first from `initial_weights`,
    or the generators' fillers); before each, the trivial-prediction references of its stream.
    `options`: more train.sh options (--gpu, --workers).

    -> (loss curve [(iteration, loss)] counted across the stages, [(iteration, snapshot
    caffemodel)], the last stage's references, the last stage's run directory).
    """
    curve, snapshots, references, previous, done = [], [], {}, initial_weights, 0
    for number, (preset, iterations, base_lr) in enumerate(stages, 1):
        data_param = json.dumps(AUGMENTATIONS[preset], sort_keys=True)
        stage = "stage%d-%s" % (number, preset)
        run.section("reference", "trivial predictions on the %s stream" % stage)
        reference = out / ("reference_losses_%s.json" % stage)
        run.run("reference", CAFFE_PYTHON + [
            "scripts/reference_losses.py", "--lmdb", lmdb,
            "--crop", FROM_SCRATCH["crop"], "--batch", batch, "--batches", 20,
            "--seed", SEED, "--data-param", data_param, "--json", reference])
        references = json.loads(reference.read_text())
        run.section("train", "%s: %s, %d iterations of %d samples at crop %d (%s, lr %g), "
                    "augmentation %s" % (stage, model, iterations, batch, FROM_SCRATCH["crop"],
                                         FROM_SCRATCH["solver"], base_lr, preset))
        train_dir = out / "train" / stage
        start = (["--weights", previous] if previous else [])
        run.run("train", [REPO / "scripts" / "train.sh", "--model", model, "--lmdb", lmdb,
                          "--iters", iterations, "--batch", batch, "--seed", SEED]
                + train_arguments(dict(FROM_SCRATCH, base_lr=base_lr), data_param)
                + options + start + [
                          "--display", max(1, min(10, iterations // 20)),
                          "--snapshot-every", min(snapshot_every, iterations),
                          "--run-dir", train_dir],
                show=training_lines)
        # a later stage's iteration 0 is the previous stage's last weights on the new stream
        curve += [(done + iteration, loss) for iteration, loss in losses(train_dir / "caffe.log")
                  if iteration > 0 or not done]
        found = sorted((train_dir / "snapshots").glob("%s_iter_*.caffemodel" % model),
                       key=snapshot_iteration)
        snapshots += [(done + snapshot_iteration(path), path) for path in found]
        previous, done = found[-1], done + iterations
    return curve, snapshots, references, train_dir


# ---------------------------------------------------------------------------- the report


def select_images(annotation_file, image_ids, out_path):
    """Write the COCO file restricted to image_ids (all images when None) -> image count."""
    try:
        coco = json.loads(pathlib.Path(annotation_file).read_text())
        images, annotations = coco["images"], coco["annotations"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise StepFailed("step 'data' failed: cannot read the COCO keypoint file %s: %s"
                         % (annotation_file, error))
    if image_ids is not None:
        known = {entry["id"] for entry in images}
        missing = sorted(set(image_ids) - known)
        if missing:
            raise StepFailed("step 'data' failed: image id(s) %s are not in %s"
                             % (", ".join(map(str, missing)), annotation_file))
        images = [entry for entry in images if entry["id"] in set(image_ids)]
        annotations = [a for a in annotations if a["image_id"] in set(image_ids)]
    out_path.write_text(json.dumps(dict(coco, images=images, annotations=annotations)))
    return len(images)
