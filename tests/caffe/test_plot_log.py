"""plot_log on the log of a real `caffe train` run of a tiny net with two weighted losses."""
import json
import math
import subprocess

import caffe
import cv2
import numpy as np
import pytest
from caffe import layers as L
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from scripts import plot_log

ITERATIONS, DISPLAY = 30, 5


@pytest.fixture(scope="module")
def caffe_log(tmp_path_factory):
    """Train two linear regressions on one Python data layer; loss_b has weight 0.5."""
    directory = tmp_path_factory.mktemp("plot_log")
    net = caffe.NetSpec()
    net.x, net.y = L.Python(module="tests.caffe.smoke_layers", layer="LinearRegressionData",
                            ntop=2, param_str=json.dumps({"batch_size": 8, "seed": 0}))
    for name in ("a", "b"):
        prediction = L.InnerProduct(net.x, num_output=1,
                                    weight_filler=dict(type="constant", value=0))
        setattr(net, "prediction_" + name, prediction)
        setattr(net, "loss_" + name,
                L.EuclideanLoss(prediction, net.y, loss_weight=1.0 if name == "a" else 0.5))
    (directory / "train.prototxt").write_text(str(net.to_proto()))
    solver = caffe_pb2.SolverParameter(
        train_net=str(directory / "train.prototxt"), base_lr=0.05, lr_policy="fixed",
        momentum=0.9, display=DISPLAY, max_iter=ITERATIONS, snapshot_after_train=False,
        solver_mode=caffe_pb2.SolverParameter.CPU)
    (directory / "solver.prototxt").write_text(text_format.MessageToString(solver))
    run = subprocess.run(["caffe", "train", "--solver", str(directory / "solver.prototxt")],
                         cwd=str(directory), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True)
    assert run.returncode == 0, run.stdout[-3000:]
    (directory / "train.log").write_text(run.stdout)
    return directory / "train.log"


def test_the_log_gives_one_series_per_loss_and_the_total(caffe_log):
    curves = plot_log.read_log(str(caffe_log))
    assert list(curves) == [plot_log.TOTAL, "loss_a", "loss_b"]
    displays = list(range(0, ITERATIONS, DISPLAY))
    assert curves["loss_a"].iterations == curves["loss_b"].iterations == displays
    assert curves[plot_log.TOTAL].iterations[:len(displays)] == displays
    assert curves["loss_a"].weight == 1.0 and curves["loss_b"].weight == 0.5
    # the solver's loss (average_loss 1) is the weighted sum of the outputs
    for k in range(len(displays)):
        weighted = curves["loss_a"].values[k] + 0.5 * curves["loss_b"].values[k]
        assert curves[plot_log.TOTAL].values[k] == pytest.approx(weighted, rel=1e-4)
    assert curves["loss_a"].values[-1] < 0.5 * curves["loss_a"].values[0]   # it trained


def test_plot_log_writes_a_png(caffe_log, tmp_path):
    out = tmp_path / "plots" / "losses.png"
    plot_log.main([str(caffe_log), "--out", str(out), "--logy"])
    picture = cv2.imread(str(out))
    assert picture.shape == (600, 1000, 3)
    assert len(np.unique(picture.reshape(-1, 3), axis=0)) > 10       # curves, not a blank page


def test_test_outputs_nan_and_older_caffe_lines_are_parsed():
    lines = ["I0101 solver.cpp:218] Iteration 10, loss = nan",
             "I0101 solver.cpp:237]     Train net output #0: loss = nan (* 1 = nan loss)",
             "I0101 solver.cpp:330] Iteration 10, Testing net (#0)",
             "I0101 solver.cpp:397]     Test net output #0: accuracy = 0.25"]
    curves = plot_log.parse_caffe_log(lines)
    assert math.isnan(curves["loss"].values[0]) and curves["loss"].iterations == [10]
    assert curves["test accuracy"] == plot_log.Series([10], [0.25], None)


def test_a_file_that_is_not_a_caffe_log_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    with pytest.raises(SystemExit, match="notes.txt"):
        plot_log.main([str(path), "--out", str(tmp_path / "x.png")])


def test_trainings_run_one_after_the_other_are_joined(caffe_log):
    curves = plot_log.read_log(str(caffe_log))
    last = curves[plot_log.TOTAL].iterations[-1]
    joined = plot_log.concatenate([curves, curves])
    total = joined[plot_log.TOTAL]
    first = curves[plot_log.TOTAL]
    # the second training continues at the first's last iteration; its iteration 0 (the first
    # training's final weights, before any update) is left out
    assert total.iterations == first.iterations + [last + i for i in first.iterations[1:]]
    assert total.values == first.values + first.values[1:]
    assert joined["loss_b"].weight == 0.5
