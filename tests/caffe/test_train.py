"""./scripts/train.sh on the COCO slice, on the CPU: MLN learns (fixed seed, the paper's lr),
snapshots, resumes from the latest snapshot, stops on a NaN loss; device choice and refusals."""
import json
import os
import re
import shutil
import signal
import subprocess

import cv2
import numpy as np
import pytest
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from scripts import caffe_session, plot_log, training_run
from tests.caffe.test_data_layer import break_every_jpeg
from tests.caffe.process_helpers import alive
from tests.conftest import REPO

TRAIN_SH = str(REPO / "scripts" / "train.sh")
SMALL = ["--gpu", "cpu", "--batch", "2", "--crop", "128", "--display", "1"]


def train_sh(*args, timeout=600, env=None):
    return subprocess.run([TRAIN_SH] + [str(a) for a in args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout,
                          env=env)


def sessions_of_log(run_dir):
    """The log split at the session headers that train.py writes: [text of session 1, ...]."""
    text = (run_dir / "caffe.log").read_text()
    return re.split(r"^train\.py: session \d+ in .*$", text, flags=re.M)[1:]


def losses_of(text):
    """[(iteration, total loss)] of the display lines of a log text."""
    return [(int(i), float(v)) for i, v in plot_log.ITERATION_LOSS.findall(text)]


def worker_pids(text):
    match = re.search(r"CocoPoseDataLayer: .* worker processes \(pids ([\d ]+)\)", text)
    assert match, "the data layer did not report its workers"
    return [int(pid) for pid in match.group(1).split()]


def snapshots(run_dir):
    return sorted(training_run.snapshot_iterations(str(run_dir / "snapshots"), "mln"))


def copy_of_run(run_dir, to):
    """A copy of a run directory to resume, so that the module's run stays as its one session
    left it and every test passes in any order. The snapshots are hard links where the file
    system allows (Caffe only adds new ones); what a session rewrites or appends to is copied."""
    def copy(source, target):
        if os.path.basename(os.path.dirname(source)) == training_run.SNAPSHOT_DIR:
            try:
                os.link(source, target)
                return target
            except OSError:
                pass
        return shutil.copy2(source, target)
    shutil.copytree(str(run_dir), str(to), copy_function=copy)
    return to


@pytest.fixture(scope="module")
def trained(tmp_path_factory, coco_mini_lmdb):
    """60 iterations of MLN at crop 128, batch 2, lr 6e-5 (the default), seed 0, 2 workers."""
    run_dir = tmp_path_factory.mktemp("train") / "run"
    done = train_sh("--model", "mln", "--lmdb", coco_mini_lmdb, "--iters", 60, "--run-dir",
                    run_dir, "--snapshot-every", 30, "--workers", 2, *SMALL)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    return run_dir


def test_the_run_directory_holds_nets_settings_snapshots_log_and_plot(trained,
                                                                      coco_mini_lmdb):
    settings = json.loads((trained / "params.json").read_text())["settings"]
    assert (settings["model"], settings["batch"], settings["crop"], settings["iters"],
            settings["base_lr"], settings["lmdb"]) == ("mln", 2, 128, 60, 6e-5,
                                                       str(coco_mini_lmdb))
    solver = text_format.Merge((trained / "mln" / "solver.prototxt").read_text(),
                               caffe_pb2.SolverParameter())
    assert (solver.base_lr, solver.max_iter, solver.snapshot, solver.snapshot_prefix,
            solver.solver_mode, solver.net) == (
        pytest.approx(6e-5), 60, 30, "snapshots/mln", caffe_pb2.SolverParameter.CPU,
        "./mln/train.prototxt")
    net = text_format.Merge((trained / "mln" / "train.prototxt").read_text(),
                            caffe_pb2.NetParameter())
    assert json.loads(net.layer[0].python_param.param_str) == {
        "source": str(coco_mini_lmdb), "batch_size": 2, "crop_size": 128, "stride": 8,
        "seed": 0, "workers": 2}
    assert (trained / "mln" / "deploy.prototxt").is_file()
    assert snapshots(trained) == [30, 60]
    log = sessions_of_log(trained)[0]
    assert "Optimization Done" in log
    plot = cv2.imread(str(trained / "losses.png"))
    assert plot is not None and plot.shape[0] > 100


def test_the_loss_falls(trained):
    """Batches of 2 make single losses noisy (0 to 3 people); the means of the first and last
    ten iterations, with the fixed seed, are 240 and 133 on the development machine."""
    losses = dict(losses_of(sessions_of_log(trained)[0]))
    values = np.array([losses[i] for i in range(60)])           # display 1: every iteration
    assert np.isfinite(values).all()
    first, last = values[:10].mean(), values[-10:].mean()
    print("total loss: first 10 iterations %.1f, last 10 %.1f" % (first, last))
    assert last < 0.7 * first
    heatmaps = plot_log.read_log(str(trained / "caffe.log"))["loss_refine_joint"].values
    assert np.mean(heatmaps[-10:]) < 0.6 * np.mean(heatmaps[:10])


def test_the_data_workers_ended_with_caffe(trained):
    pids = worker_pids(sessions_of_log(trained)[0])
    assert len(pids) == 2 and not any(alive(pid) for pid in pids)


def test_resume_refuses_changed_settings_and_weights(trained, tmp_path):
    refused = train_sh("--resume", "--run-dir", trained, "--batch", 4, "--iters", 70)
    assert refused.returncode == 1
    assert "--batch 4 differs from the run's 2" in refused.stderr
    weights = tmp_path / "w.caffemodel"
    weights.write_bytes(b"")
    refused = train_sh("--resume", "--run-dir", trained, "--weights", weights, "--iters", 70)
    assert refused.returncode == 1 and "exclude each other" in refused.stderr
    refused = train_sh("--resume", "--run-dir", trained, "--iters", 60)
    assert refused.returncode == 1 and "at iteration 60 already" in refused.stderr
    refused = train_sh("--model", "mln", "--lmdb", tmp_path, "--run-dir", trained, *SMALL)
    assert refused.returncode == 1 and "already holds a run" in refused.stderr
    assert len(sessions_of_log(trained)) == 1                   # nothing ran


def test_resume_continues_from_the_latest_snapshot(trained, tmp_path):
    resumed = copy_of_run(trained, tmp_path / "run")
    done = train_sh("--resume", "--run-dir", resumed, "--iters", 62)
    assert done.returncode == 0, done.stderr[-3000:]
    second = sessions_of_log(resumed)[1]
    assert "Resuming from snapshots/mln_iter_60.solverstate" in second
    assert [i for i, _ in losses_of(second)][:3] == [60, 61, 62]
    assert "first sample 120" in second            # the data stream goes on: 60 x batch 2
    assert snapshots(resumed) == [30, 60, 62]
    assert snapshots(trained) == [30, 60]                       # the module's run is untouched
    sessions = json.loads((resumed / "params.json").read_text())["sessions"]
    assert [(s["start_iteration"], s["resumed_from"]) for s in sessions] == [
        (0, None), (60, "snapshots/mln_iter_60.solverstate")]
    curves = plot_log.read_log(str(resumed / "caffe.log"))
    # both sessions in the plot: the first ends and the second starts at 60
    assert curves[plot_log.TOTAL].iterations[-5:] == [59, 60, 60, 61, 62]


def test_weights_are_copied_by_layer_name(tmp_path, coco_mini_lmdb):
    """A caffemodel holding VGG-19's first two layers (and a layer MLN lacks) initialises a run;
    with lr 0 the snapshot after one update still holds them."""
    import caffe
    from caffe import layers as L
    spec = caffe.NetSpec()
    spec.data = L.Input(shape=dict(dim=[1, 3, 8, 8]))
    spec.conv1_1 = L.Convolution(spec.data, num_output=64, kernel_size=3, pad=1)
    spec.conv1_2 = L.Convolution(spec.conv1_1, num_output=64, kernel_size=3, pad=1)
    spec.not_in_mln = L.Convolution(spec.conv1_2, num_output=2, kernel_size=1)
    (tmp_path / "vgg.prototxt").write_text(str(spec.to_proto()))
    net = caffe.Net(str(tmp_path / "vgg.prototxt"), caffe.TEST)
    rng = np.random.RandomState(0)
    for name in net.params:
        for blob in net.params[name]:
            blob.data[...] = rng.standard_normal(blob.data.shape)
    net.save(str(tmp_path / "vgg.caffemodel"))
    run_dir = tmp_path / "finetune"
    done = train_sh("--model", "mln", "--lmdb", coco_mini_lmdb, "--iters", 1, "--run-dir",
                    run_dir, "--weights", tmp_path / "vgg.caffemodel", "--base-lr", 0,
                    "--gpu", "cpu", "--batch", 1, "--iter-size", 2, "--crop", 64)
    assert done.returncode == 0, done.stderr[-3000:]
    log = sessions_of_log(run_dir)[0]
    assert "Ignoring source layer not_in_mln" in log
    solver = text_format.Merge((run_dir / "mln" / "solver.prototxt").read_text(),
                               caffe_pb2.SolverParameter())
    assert solver.iter_size == 2
    snapshot = caffe_pb2.NetParameter()
    snapshot.ParseFromString((run_dir / "snapshots" / "mln_iter_1.caffemodel").read_bytes())
    stored = {layer.name: [np.array(blob.data) for blob in layer.blobs]
              for layer in snapshot.layer if layer.blobs}
    for name in ("conv1_1", "conv1_2"):
        for given, kept in zip(net.params[name], stored[name]):
            np.testing.assert_array_equal(kept.reshape(given.data.shape), given.data)
    # the filler's: MSRA, std sqrt(2 / fan-in), fan-in 64 x 3 x 3
    assert stored["conv2_1"][0].std() == pytest.approx(np.sqrt(2.0 / (64 * 9)), rel=0.1)


def test_a_nan_loss_stops_training_with_a_clear_message(tmp_path, coco_mini_lmdb):
    run_dir = tmp_path / "nan"
    # no --gpu: the default asks for GPU 0, which the CPU-only embedded Caffe lacks. A caller
    # whose environment silences glog (as tools that load pycaffe quietly do) must not blind
    # the loss watch, which reads Caffe's INFO lines.
    done = train_sh("--model", "mln", "--lmdb", coco_mini_lmdb, "--iters", 30, "--run-dir",
                    run_dir, "--snapshot-every", 1, "--base-lr", 1000, "--workers", 2,
                    "--batch", 2, "--crop", 128, "--display", 1,
                    env=dict(os.environ, GLOG_minloglevel="2"))
    assert done.returncode == training_run.DIVERGED_EXIT, done.stderr[-3000:]
    if os.environ.get("MLN_CAFFE_MODE") == "embedded":
        assert "this Caffe is a CPU-only build" in done.stderr
        assert "training on the CPU" in done.stderr
    message = re.search(r"train: stopped: the loss is (\S+) at iteration (\d+)", done.stderr)
    assert message, done.stderr[-2000:]
    assert not np.isfinite(float(message.group(1)))
    # the message names the rate and what to try instead
    assert "(--base-lr 1000, --solver sgd)" in done.stderr
    assert "try a lower --base-lr (100)" in done.stderr and "--solver adam" in done.stderr
    bad = int(message.group(2))
    log = sessions_of_log(run_dir)[0]
    losses = losses_of(log)
    assert losses[-1] == (bad, pytest.approx(float(message.group(1)), nan_ok=True))
    assert bad < 30 and "Optimization Done" not in log                   # stopped early
    assert all(np.isfinite(v) for _, v in losses[:-1])
    # the weights of snapshot k give the loss of iteration k: the snapshots from the bad
    # iteration on are set aside, so that --resume never picks them
    assert snapshots(run_dir) == list(range(1, bad))
    diverged = os.listdir(str(run_dir / "diverged"))
    assert {"mln_iter_%d.caffemodel" % bad, "mln_iter_%d.solverstate" % bad} <= set(diverged)
    assert all(int(re.search(r"_iter_(\d+)", name).group(1)) >= bad for name in diverged)
    assert not any(alive(pid) for pid in worker_pids(log))


def test_ctrl_c_stops_caffe_after_a_snapshot(tmp_path, coco_mini_lmdb):
    run_dir = tmp_path / "interrupted"
    process = subprocess.Popen(
        [TRAIN_SH, "--model", "mln", "--lmdb", str(coco_mini_lmdb), "--iters", "1000",
         "--run-dir", str(run_dir), "--gpu", "cpu", "--batch", "1", "--crop", "64",
         "--display", "1", "--workers", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
        start_new_session=True)
    for line in process.stdout:                          # train.sh's progress lines
        if line.startswith("train: iteration 1/1000, loss "):
            break
    os.killpg(process.pid, signal.SIGINT)                # what Ctrl-C in a terminal does
    _, err = process.communicate(timeout=300)
    assert process.returncode == 130, err[-2000:]
    assert "--resume --run-dir %s" % run_dir in err
    stopped_at = re.search(r"train: interrupted \(last snapshot: snapshots/mln_iter_(\d+)"
                           r"\.caffemodel\)", err)
    log = sessions_of_log(run_dir)[0]
    assert "Optimization stopped early" in log
    stopped = snapshots(run_dir)
    assert len(stopped) == 1 and 1 <= stopped[0] < 1000
    assert stopped_at and int(stopped_at.group(1)) == stopped[0], err[-2000:]
    assert not any(alive(pid) for pid in worker_pids(log))


def test_several_gpus_without_nccl_is_a_clear_error(tmp_path, coco_mini_lmdb):
    import caffe
    if caffe.has_nccl():
        pytest.skip("this Caffe has NCCL")
    done = train_sh("--model", "mln", "--lmdb", coco_mini_lmdb, "--gpu", "0,1", "--run-dir",
                    tmp_path / "run")
    assert done.returncode == 1
    assert "NCCL" in done.stderr and "caffe train --gpu 0,1" in done.stderr
    assert "Python layers" in done.stderr
    assert not (tmp_path / "run").exists()


def test_unknown_fillers_and_a_negative_learning_rate_are_refused(tmp_path, coco_mini_lmdb):
    done = train_sh("--model", "mln", "--lmdb", coco_mini_lmdb, "--fillers", "xavier",
                    "--run-dir", tmp_path / "run")
    assert done.returncode == 2
    assert "--fillers: invalid choice: 'xavier'" in done.stderr
    done = train_sh("--model", "mln", "--lmdb", coco_mini_lmdb, "--base-lr", -1, "--gpu", "cpu",
                    "--run-dir", tmp_path / "run")
    assert done.returncode == 1
    assert "train: error: --base-lr must be 0 or more and finite, got -1.0" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "run").exists()


# ---- the pieces, without Caffe runs

def test_the_loss_watch_names_the_first_non_finite_loss():
    watch = caffe_session.LossWatch()
    lines = ["I1 solver.cpp:239] Iteration 0 (0 iter/s, 1s/1 iters), loss = 274.4",
             "I1 solver.cpp:258]     Train net output #0: loss_a = 123.4 (* 1 = 123.4 loss)",
             "I1 solver.cpp:239] Iteration 5 (0.3 iter/s, 3s/5 iters), loss = 3.5e+12",
             "I1 solver.cpp:258]     Train net output #0: loss_a = inf (* 1 = inf loss)"]
    assert [watch.check(line) for line in lines] == [
        None, None, None, "loss_a is inf at iteration 5"]
    assert watch.last_good_iteration(5) == 0
    assert caffe_session.LossWatch().check("I1 x] Iteration 7, loss = -nan") == \
        "the loss is -nan at iteration 7"


def test_device_choice():
    def cpu_only(gpu):
        return "this Caffe is a CPU-only build"
    assert caffe_session.choose_device("cpu", query=cpu_only) == ([], None)
    gpus, notice = caffe_session.choose_device("0", query=cpu_only)
    assert gpus == [] and "CPU-only build" in notice and "training on the CPU" in notice
    assert caffe_session.choose_device("1", query=lambda gpu: None) == ([1], None)
    assert caffe_session.choose_device("0,1", query=lambda gpu: None, has_nccl=lambda: True) == (
        [0, 1], None)
    with pytest.raises(caffe_session.TrainError, match="no NCCL"):
        caffe_session.choose_device("0,1", query=lambda gpu: None, has_nccl=lambda: False)
    with pytest.raises(caffe_session.TrainError, match="GPU 1 cannot be used: no device"):
        caffe_session.choose_device("0,1", query=lambda gpu: "no device" if gpu else None,
                            has_nccl=lambda: True)
    with pytest.raises(caffe_session.TrainError, match="--gpu must be"):
        caffe_session.choose_device("first")


def test_a_data_layer_error_reaches_the_user_through_caffes_command_line(tmp_path,
                                                                         synthetic_lmdb):
    # `caffe train` itself never prints a Python layer's exception (boost::python ends the
    # process on it): the layer writes it into the log, and train.sh repeats it. Undecodable
    # JPEGs pass every check made before Caffe starts (the records' headers are intact).
    broken = break_every_jpeg(synthetic_lmdb, tmp_path / "broken")
    done = train_sh("--model", "mln", "--lmdb", broken, "--iters", 2, "--run-dir",
                    tmp_path / "run", "--gpu", "cpu", "--batch", 2, "--crop", 64, "--workers", 0)
    assert done.returncode != 0
    assert re.search(r"^train: Caffe failed \(exit code -?\d+\): \S*SampleError: .*image .*"
                     r"\.jpg.*cannot be decoded; see %s$" % (tmp_path / "run" / "caffe.log"),
                     done.stderr, flags=re.M), done.stderr[-2000:]
    assert "CocoPoseDataLayer: error in forward" in (tmp_path / "run" / "caffe.log").read_text()
    assert len((done.stdout + done.stderr).splitlines()) <= 25
