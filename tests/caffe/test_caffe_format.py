"""inference/caffe_format.py (Caffe's files read with the protobuf runtime alone) against
pycaffe on the real deploy nets: the weights it reads are the ones Caffe loads, the shapes it
derives are the ones Caffe allocates, and the layers it finds without weights are the ones
Caffe would leave at their fillers."""
import caffe
import numpy as np
import pytest

from inference import caffe_format
from inference.random_weights import fill_random
from tests.conftest import REPO

DEPLOY = {model: REPO / "prototxt" / model / "deploy.prototxt" for model in ("mln", "baseline")}


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    """{model: caffemodel of He-normal weights} for both deploy nets (biases drawn too, so that
    a weight read in place of a bias shows)."""
    folder = tmp_path_factory.mktemp("caffe_format")
    paths = {}
    for seed, model in enumerate(DEPLOY):
        net = caffe.Net(str(DEPLOY[model]), caffe.TEST)
        fill_random(net, seed)
        state = np.random.RandomState(seed + 10)
        for blobs in net.params.values():
            blobs[1].data[...] = state.normal(0, 1, blobs[1].data.shape)
        paths[model] = folder / ("%s.caffemodel" % model)
        net.save(str(paths[model]))
    return paths


def caffe_params(model, weights):
    """{layer: [blob arrays]} as pycaffe loads them."""
    net = caffe.Net(str(DEPLOY[model]), str(weights), caffe.TEST)
    return {name: [blob.data.copy() for blob in blobs] for name, blobs in net.params.items()}


@pytest.mark.parametrize("model", sorted(DEPLOY))
def test_read_weights_gives_what_caffe_loads(random_weights, model):
    expected = caffe_params(model, random_weights[model])
    layers = caffe_format.read_weights(random_weights[model])
    assert [layer.name for layer in layers] == list(expected)
    for layer in layers:
        assert layer.type == "Convolution"
        assert len(layer.blobs) == len(expected[layer.name]) == 2, layer.name
        for ours, theirs in zip(layer.blobs, expected[layer.name]):
            assert ours.dtype == np.float32
            np.testing.assert_array_equal(ours, theirs, err_msg=layer.name)
    shapes = caffe_format.read_weight_shapes(random_weights[model])
    assert {layer.name: [tuple(b.shape) for b in layer.blobs] for layer in shapes} == {
        name: [b.shape for b in blobs] for name, blobs in expected.items()}


@pytest.mark.parametrize("model", sorted(DEPLOY))
def test_the_shapes_derived_from_the_prototxt_are_caffes(model):
    net = caffe.Net(str(DEPLOY[model]), caffe.TEST)
    expected = {name: [blob.data.shape for blob in blobs] for name, blobs in net.params.items()}
    derived = caffe_format.convolution_blob_shapes(caffe_format.read_net(DEPLOY[model]))
    assert derived == expected


def test_mlns_weights_leave_the_baselines_layers_without_weights(random_weights):
    """Caffe copies by name: a baseline layer gets MLN's weights only where MLN has a layer of
    that name (VGG's conv1_1 ... conv4_2); every other one keeps its filler."""
    mln = caffe_params("mln", random_weights["mln"])
    baseline = caffe.Net(str(DEPLOY["baseline"]), caffe.TEST)
    expected = [name for name in baseline.params if name not in mln]
    shared = [name for name in baseline.params if name in mln]
    assert shared and all(mln[name][0].shape == baseline.params[name][0].data.shape
                          for name in shared)
    net = caffe_format.read_net(DEPLOY["baseline"])
    for read in (caffe_format.read_weights, caffe_format.read_weight_shapes):
        problems = caffe_format.layers_without_weights(net, read(random_weights["mln"]))
        assert [name for name, _ in problems] == expected
        assert {reason for _, reason in problems} == {"no weights of that name"}
    assert caffe_format.layers_without_weights(
        net, caffe_format.read_weight_shapes(random_weights["baseline"])) == []
