"""Initial weights that let MLN learn: the fillers of the generated nets, and the init report's
measurement that the signal survives the whole depth of both nets with their default fillers."""
import subprocess

import caffe
import numpy as np
import pytest
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from generators.init_report import FLOOR, measure
from generators.nets import NetOptions, deploy_net
from tests.conftest import REPO

MLN_OUTPUTS = {"detect_joint_conv5", "detect_limb_conv5", "refine_joint_conv_out",
               "refine_limb_conv_out"}
BACKBONE = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
            "conv3_4", "conv4_1", "conv4_2")
PROBE = 96          # a small probe keeps the test quick; the README's figures use 184


def convolution_fillers(proto):
    return {layer.name: layer.convolution_param.weight_filler
            for layer in proto.layer if layer.type == "Convolution"}


def test_mln_hidden_convolutions_are_msra_and_its_outputs_small_gaussians():
    fillers = convolution_fillers(deploy_net("mln", NetOptions()))
    assert MLN_OUTPUTS <= set(fillers)
    for name, filler in fillers.items():
        if name in MLN_OUTPUTS:
            assert (filler.type, filler.std) == ("gaussian", pytest.approx(0.01)), name
        else:
            assert filler.type == "msra", name
            assert filler.variance_norm == caffe_pb2.FillerParameter.FAN_IN, name


def test_the_baseline_keeps_openposes_gaussian_and_openpose_fillers_are_available_for_mln():
    for model, fillers in (("baseline", None), ("mln", "openpose")):
        proto = deploy_net(model, NetOptions(fillers=fillers))
        for name, filler in convolution_fillers(proto).items():
            assert (filler.type, filler.std) == ("gaussian", pytest.approx(0.01)), (model, name)


def test_committed_mln_prototxt_carries_the_default_fillers():
    proto = text_format.Merge((REPO / "prototxt" / "mln" / "train.prototxt").read_text(),
                              caffe_pb2.NetParameter())
    fillers = convolution_fillers(proto)
    assert {name for name, f in fillers.items() if f.type == "gaussian"} == MLN_OUTPUTS


def test_caffe_draws_msra_with_the_fan_in_std(tmp_path):
    path = tmp_path / "deploy.prototxt"
    path.write_text(text_format.MessageToString(deploy_net("mln", NetOptions(
        deploy_height=64, deploy_width=64))))
    caffe.set_random_seed(0)
    net = caffe.Net(str(path), caffe.TEST)
    weights = net.params["refine_joint_block1_conv1"][0].data       # fan-in 313 x 3 x 3
    assert weights.std() == pytest.approx(np.sqrt(2.0 / (313 * 9)), rel=0.05)
    assert net.params["refine_joint_conv_out"][0].data.std() == pytest.approx(0.01, rel=0.05)


def test_unknown_fillers_are_refused(tmp_path):
    run = subprocess.run([str(REPO / "scripts" / "caffe-env"), "python",
                          "generators/make_net.py", "--fillers", "xavier", "--out", tmp_path],
                         cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True)
    assert run.returncode == 2
    assert "--fillers: invalid choice: 'xavier'" in run.stdout
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="unknown fillers 'xavier'"):
        deploy_net("mln", NetOptions(fillers="xavier"))


@pytest.fixture(scope="module")
def vgg_scale_backbone(tmp_path_factory):
    """A caffemodel holding only conv1_1..conv4_2, He-scaled like trained VGG-19 features."""
    folder = tmp_path_factory.mktemp("backbone")
    path = folder / "deploy.prototxt"
    path.write_text(text_format.MessageToString(deploy_net("mln", NetOptions(
        deploy_height=PROBE, deploy_width=PROBE))))
    net = caffe.Net(str(path), caffe.TEST)
    rng = np.random.RandomState(1)
    proto = caffe_pb2.NetParameter()
    for name in BACKBONE:
        weights, biases = net.params[name][0].data, net.params[name][1].data
        layer = proto.layer.add(name=name, type="Convolution")
        fan_in = int(np.prod(weights.shape[1:]))
        for values in (rng.normal(0, np.sqrt(2.0 / fan_in), weights.shape), np.zeros_like(biases)):
            blob = layer.blobs.add()
            blob.shape.dim.extend(values.shape)
            blob.data.extend(values.astype(np.float32).ravel().tolist())
    weights_path = folder / "vgg_scale.caffemodel"
    weights_path.write_bytes(proto.SerializeToString())
    return str(weights_path)


@pytest.mark.parametrize("backbone", [False, True], ids=["from-scratch", "vgg-scale-backbone"])
def test_mln_default_keeps_every_layer_above_the_floor(backbone, vgg_scale_backbone):
    report = measure("mln", weights=vgg_scale_backbone if backbone else None, size=PROBE)
    assert report["fillers"] == "msra"
    assert report["flagged"] == []
    ratios = [entry["output_std_ratio"] for entry in report["layers"]]
    assert min(ratios) > FLOOR and report["net_output_std_ratio"] > FLOOR
    # the gradient reaches the first convolution with a usable size
    first = report["layers"][0]
    assert first["layer"] == "conv1_1" and first["weight_gradient_std"] > 1e-3
    if backbone:       # the caffemodel was copied over the fillers
        assert report["weights"] == vgg_scale_backbone


def test_openpose_fillers_starve_mln_and_the_report_flags_it():
    report = measure("mln", fillers="openpose", size=PROBE)
    assert "refine_joint_conv_out" in report["flagged"]
    assert report["net_output_std_ratio"] < 1e-9


def test_baseline_default_and_with_msra():
    default = measure("baseline", size=PROBE)
    assert default["fillers"] == "openpose"
    assert "Mconv7_stage6_L2" in default["flagged"]         # OpenPose's own start, far down
    msra = measure("baseline", fillers="msra", size=PROBE)
    assert msra["flagged"] == []
