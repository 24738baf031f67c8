"""The generated train nets in real Caffe: the data-layer contract, one forward and backward pass
on a small crop, the masked L2 loss values, and a gradient reaching every convolution."""
import json

import caffe
import numpy as np
import pytest
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from generators import make_net, net_files
from generators.nets import NetOptions
from generators.solver import SolverOptions

from tests.conftest import REPO

CROP, BATCH = 64, 2
REPO_SOLVER = REPO / "prototxt" / "mln" / "solver.prototxt"
LOSSES = {
    "mln": ["detect_joint", "refine_joint", "detect_limb", "refine_limb"],
    "baseline": ["stage%d_L%d" % (stage, branch) for branch in (2, 1) for stage in range(1, 7)],
}


def read_proto(path, message):
    with open(path) as handle:
        return text_format.Merge(handle.read(), message)


def reinitialise_for_a_live_signal(net, rng):
    """He-scaled random weights and small random biases: with the training fillers (std 0.01) a
    random input fades to ~1e-17 over 30+ layers, which would hide a disconnected layer."""
    for blobs in net.params.values():
        weights = blobs[0].data
        fan_in = np.prod(weights.shape[1:])
        weights[...] = rng.standard_normal(weights.shape) * np.sqrt(2.0 / fan_in)
        blobs[1].data[...] = rng.uniform(-0.1, 0.1, blobs[1].data.shape)


@pytest.mark.parametrize("model, wiring", [("mln", "a"), ("mln", "b"), ("mln", "c"),
                                           ("baseline", None)])
def test_one_training_pass_reaches_every_convolution(tmp_path, model, wiring):
    options = NetOptions(crop_size=CROP, batch_size=BATCH, wiring=wiring or "a",
                         data_source="input")
    paths = net_files.write_net_files(model, str(tmp_path), options,
                                     SolverOptions(snapshot_prefix=str(tmp_path / "snap")))
    caffe.set_mode_cpu()
    solver = caffe.get_solver(paths["solver"])      # the real solver builds the train net
    net = solver.net
    rng = np.random.RandomState(0)
    reinitialise_for_a_live_signal(net, rng)
    net.blobs["data"].data[...] = rng.uniform(-0.5, 0.5, net.blobs["data"].shape)
    net.blobs["heatmap_label"].data[...] = rng.uniform(0, 1, net.blobs["heatmap_label"].shape)
    net.blobs["paf_label"].data[...] = rng.uniform(-1, 1, net.blobs["paf_label"].shape)
    mask = (rng.uniform(size=net.blobs["loss_mask"].shape) < 0.7).astype(np.float32)
    net.blobs["loss_mask"].data[...] = mask

    losses = net.forward()
    assert sorted(losses) == sorted("loss_" + name for name in LOSSES[model])
    for name in LOSSES[model]:
        # Eq. 3/4: masked prediction vs masked label; EuclideanLoss is sum / (2N).
        prediction = net.blobs[net.bottom_names["masked_" + name][0]].data
        label = net.blobs["heatmap_label" if prediction.shape[1] == 19 else "paf_label"].data
        expected = np.sum(((prediction - label) * mask) ** 2) / (2 * BATCH)
        assert float(losses["loss_" + name]) == pytest.approx(expected, rel=1e-4), name
        assert prediction.shape[2:] == (CROP // 8, CROP // 8)

    net.backward()
    convolutions = [name for name, layer in zip(net._layer_names, net.layers)
                    if layer.type == "Convolution"]
    assert len(convolutions) == len(net.params)
    without_gradient = [name for name in convolutions if not np.any(net.params[name][0].diff)]
    assert without_gradient == []


@pytest.mark.parametrize("model", ["mln", "baseline"])
def test_committed_train_net_follows_the_data_layer_contract(repo, model):
    proto = read_proto(str(repo / "prototxt" / model / "train.prototxt"), caffe_pb2.NetParameter())
    data = proto.layer[0]
    assert (data.type, data.python_param.module, data.python_param.layer) == (
        "Python", "python_layers.data_layer", "CocoPoseDataLayer")
    assert list(data.top) == ["data", "heatmap_label", "paf_label", "loss_mask"]
    assert json.loads(data.python_param.param_str) == {
        "source": "data/coco_train2017.lmdb", "batch_size": 28, "crop_size": 368, "stride": 8,
        "seed": 0}
    # The contract's loss: mask tiled once per label kind, labels masked once, EuclideanLoss.
    types = [layer.type for layer in proto.layer]
    assert types.count("Tile") == 2
    assert types.count("EuclideanLoss") == len(LOSSES[model])
    assert types.count("Eltwise") == 2 + len(LOSSES[model])
    assert all(list(layer.loss_weight) == [1] for layer in proto.layer
               if layer.type == "EuclideanLoss")


@pytest.mark.parametrize("model", ["mln", "baseline"])
def test_committed_solver_has_the_paper_settings(repo, model):
    solver = read_proto(str(repo / "prototxt" / model / "solver.prototxt"),
                        caffe_pb2.SolverParameter())
    assert solver.net == "prototxt/%s/train.prototxt" % model
    assert (repo / solver.net).is_file()
    assert (solver.type, solver.base_lr, solver.momentum, solver.weight_decay) == (
        "SGD", pytest.approx(6e-5), pytest.approx(0.9), pytest.approx(5e-4))
    assert (solver.lr_policy, solver.gamma, solver.stepsize, solver.max_iter) == (
        "step", pytest.approx(0.333), 136106, 600000)
    assert solver.snapshot_prefix.startswith("runs/%s/" % model)


def test_extra_data_params_pass_through_and_clashes_are_refused(tmp_path, capsys):
    make_net.main(["--model", "mln", "--out", str(tmp_path), "--lmdb", "/data/train.lmdb",
                   "--batch", "10", "--crop", "96", "--seed", "7",
                   "--data-param", '{"workers": 3, "flip_prob": 0.25}'])
    proto = read_proto(str(tmp_path / "mln" / "train.prototxt"), caffe_pb2.NetParameter())
    assert json.loads(proto.layer[0].python_param.param_str) == {
        "source": "/data/train.lmdb", "batch_size": 10, "crop_size": 96, "stride": 8,
        "seed": 7, "workers": 3, "flip_prob": 0.25}
    with pytest.raises(SystemExit) as clash:
        make_net.main(["--out", str(tmp_path), "--data-param", '{"batch_size": 3}'])
    assert "batch_size" in str(clash.value)
    with pytest.raises(SystemExit) as bad_crop:
        make_net.main(["--out", str(tmp_path), "--crop", "100"])
    assert "multiple of the stride" in str(bad_crop.value)


def test_adam_and_gradient_clipping_reach_the_solver_and_caffe_accepts_them(tmp_path):
    make_net.main(["--model", "mln", "--out", str(tmp_path), "--data-source", "input",
                   "--crop", "32", "--batch", "1", "--solver", "adam", "--base-lr", "1e-4",
                   "--weight-decay", "0", "--clip-gradients", "50",
                   "--snapshot-prefix", str(tmp_path / "snap")])
    path = str(tmp_path / "mln" / "solver.prototxt")
    solver = read_proto(path, caffe_pb2.SolverParameter())
    assert (solver.type, solver.base_lr, solver.momentum, solver.momentum2, solver.delta) == (
        "Adam", pytest.approx(1e-4), pytest.approx(0.9), pytest.approx(0.999),
        pytest.approx(1e-8))
    assert (solver.weight_decay, solver.clip_gradients) == (0, pytest.approx(50))
    caffe.set_mode_cpu()
    assert type(caffe.get_solver(path)).__name__ == "AdamSolver"
    sgd = read_proto(str(REPO_SOLVER), caffe_pb2.SolverParameter())
    assert not sgd.HasField("clip_gradients") and not sgd.HasField("momentum2")


@pytest.mark.parametrize("flags, message", [
    (["--base-lr", "nan"], "--base-lr must be 0 or more and finite, got nan"),
    (["--base-lr", "-1"], "--base-lr must be 0 or more and finite, got -1.0"),
    (["--clip-gradients", "0"], "--clip-gradients must be positive and finite, got 0.0"),
])
def test_a_learning_rate_or_clip_that_cannot_train_is_refused(tmp_path, flags, message):
    with pytest.raises(SystemExit) as refused:
        make_net.main(["--model", "mln", "--out", str(tmp_path)] + flags)
    assert message in str(refused.value)
