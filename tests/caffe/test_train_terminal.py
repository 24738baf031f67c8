"""What ./scripts/train.sh shows: a screenful, not Caffe's thousands of lines. A session line
naming the log, one progress line per displayed iteration (iteration, loss, speed, time left,
last snapshot), a last word; Caffe's whole output in the run directory's caffe.log, and on the
terminal too with --verbose. A Caffe failure is one line naming its cause."""
import re

from scripts import caffe_session, training_run
from tests.caffe.test_train import losses_of, sessions_of_log, train_sh

TINY = ["--gpu", "cpu", "--batch", 1, "--crop", 64, "--workers", 0]
SCREENFUL = 25
PROGRESS = re.compile(r"^train: iteration (\d+)/(\d+), loss (\S+), (- iter/s|[\d.e+-]+ iter/s), "
                      r"ETA (-|\S+), last snapshot: (none yet|snapshots/mln_iter_\d+\.caffemodel)$")


def two_iterations(tmp_path, lmdb, *flags):
    run_dir = tmp_path / "run"
    done = train_sh("--model", "mln", "--lmdb", lmdb, "--iters", 2, "--run-dir", run_dir,
                    *(TINY + list(flags)))
    assert done.returncode == 0, done.stderr[-3000:]
    return done, run_dir


def test_a_short_run_prints_a_screenful_and_logs_everything(tmp_path, synthetic_lmdb):
    done, run_dir = two_iterations(tmp_path, synthetic_lmdb, "--display", 1)
    lines = (done.stdout + done.stderr).splitlines()
    assert len(lines) <= SCREENFUL, "\n".join(lines)
    log_path = run_dir / training_run.LOG_FILE
    assert done.stdout.splitlines()[0] == (
        "train: session 1, iterations 0 to 2 on the CPU; Caffe's whole log: %s (--verbose "
        "shows it here)" % log_path)
    progress = [PROGRESS.match(line) for line in done.stdout.splitlines()[1:]]
    assert all(progress), done.stdout
    # the losses shown are those of Caffe's log, each iteration once
    log = sessions_of_log(run_dir)[0]
    assert [(int(m.group(1)), float(m.group(3))) for m in progress] == losses_of(log)
    assert [m.group(1) for m in progress] == ["0", "1", "2"]
    assert progress[0].group(4, 5) == ("- iter/s", "-")            # no speed from one point
    assert all(m.group(4) != "- iter/s" for m in progress[1:])
    assert progress[-1].group(6) == "snapshots/mln_iter_2.caffemodel"   # --snapshot-every 2000:
    assert progress[0].group(6) == "none yet"                           # Caffe's final one
    assert done.stderr.splitlines()[-1] == (
        "train: done at iteration 2 (last snapshot: snapshots/mln_iter_2.caffemodel); run "
        "directory %s (losses: losses.png)" % run_dir)
    # the whole log is in the run directory: the solver, the net, the data layer, the end
    assert len(log.splitlines()) > 1000
    for wanted in ("Solving mln_train", "CocoPoseDataLayer: ", "Optimization Done"):
        assert wanted in log and wanted not in done.stdout + done.stderr


def test_verbose_shows_caffes_whole_output(tmp_path, synthetic_lmdb):
    done, run_dir = two_iterations(tmp_path, synthetic_lmdb, "--verbose")
    log = sessions_of_log(run_dir)[0]
    shown = done.stdout.splitlines()
    assert shown[0].endswith("Caffe's whole log: %s" % (run_dir / training_run.LOG_FILE))
    assert shown[1:] == log.splitlines()[1:]         # the log's session header is train.py's


def test_a_caffe_failure_is_one_line_naming_its_cause(tmp_path, synthetic_lmdb):
    """Initial weights whose conv1_1 has another shape: Caffe stops with a glog check (no
    Python error to repeat), and the terminal gets that check's message, not its stack."""
    import caffe
    from caffe import layers as L
    spec = caffe.NetSpec()
    spec.data = L.Input(shape=dict(dim=[1, 3, 8, 8]))
    spec.conv1_1 = L.Convolution(spec.data, num_output=2, kernel_size=3, pad=1)
    (tmp_path / "other.prototxt").write_text(str(spec.to_proto()))
    caffe.Net(str(tmp_path / "other.prototxt"), caffe.TEST).save(str(tmp_path / "other.caffemodel"))
    run_dir = tmp_path / "run"
    done = train_sh("--model", "mln", "--lmdb", synthetic_lmdb, "--iters", 2, "--run-dir",
                    run_dir, "--weights", tmp_path / "other.caffemodel", *TINY)
    assert done.returncode != 0
    lines = (done.stdout + done.stderr).splitlines()
    assert len(lines) <= SCREENFUL and "Check failure stack trace" not in done.stderr
    assert re.match(r"train: Caffe failed \(exit code -?\d+\): Cannot copy param 0 weights from "
                    r"layer 'conv1_1'; shape mismatch\..*rename the layer\.; see %s$"
                    % re.escape(str(run_dir / training_run.LOG_FILE)), lines[-1]), lines[-1]


# ---- the pieces

def test_progress_lines_from_caffes_output():
    times = iter([100.0, 110.0, 130.0])
    progress = caffe_session.Progress(1000, clock=lambda: next(times))
    lines = ["I1 solver.cpp:239] Iteration 200 (0 iter/s, 1s/20 iters), loss = 274.4",
             "I1 solver.cpp:258]     Train net output #0: loss_a = 123.4 (* 1 = 123.4 loss)",
             "I1 solver.cpp:464] Snapshotting to binary proto file "
             "snapshots/mln_iter_200.caffemodel",
             "I1 sgd_solver.cpp:284] Snapshotting solver state to binary proto file "
             "snapshots/mln_iter_200.solverstate",
             "I1 solver.cpp:239] Iteration 220 (2 iter/s, 10s/20 iters), loss = 250",
             "I1 solver.cpp:239] Iteration 240 (1 iter/s, 20s/20 iters), loss = nan"]
    shown = [progress.line(line) for line in lines]
    # 20 iterations in 10 s: 2 iter/s, 780 to go; then 40 in 30 s: 760 at 4/3 a second
    assert shown == [
        "train: iteration 200/1000, loss 274.4, - iter/s, ETA -, last snapshot: none yet",
        None, None, None,
        "train: iteration 220/1000, loss 250, 2 iter/s, ETA 6m30s, last snapshot: "
        "snapshots/mln_iter_200.caffemodel",
        "train: iteration 240/1000, loss nan, 1.33 iter/s, ETA 9m30s, last snapshot: "
        "snapshots/mln_iter_200.caffemodel"]


def test_durations_read_as_hours_minutes_seconds():
    assert [caffe_session.format_duration(s) for s in (0, 59.4, 61, 3599, 3600, 90061)] == [
        "0s", "59s", "1m01s", "59m59s", "1h00m", "25h01m"]


def test_the_cause_of_a_failed_session_is_its_python_error_or_caffes_first_check(tmp_path):
    log = tmp_path / "caffe.log"
    log.write_text("train.py: session 1 in R: caffe train\n"
                   "ValueError: an error of an earlier session\n"
                   "train.py: session 2 in R: caffe train\n"
                   "I1202 14:47:11.5 5671 net.cpp:100] Creating layer conv1_1\n"
                   "F1202 14:47:11.6 5671 net.cpp:757] Cannot copy param 0 weights\n"
                   "F1202 14:47:11.7 5671 x.cpp:1] a later check\n"
                   "*** Check failure stack trace: ***\n")
    assert training_run.error_of_last_session(str(log)) == "Cannot copy param 0 weights"
    with open(str(log), "a") as handle:
        handle.write("CocoPoseDataLayer: error in forward: Traceback ...\n"
                     "python_layers.batch_source.SampleError: record 3: image 7 cannot be "
                     "decoded\n")
    assert training_run.error_of_last_session(str(log)) == (
        "python_layers.batch_source.SampleError: record 3: image 7 cannot be decoded")
