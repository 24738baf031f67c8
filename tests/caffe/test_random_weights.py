"""inference/random_weights.py on the real MLN deploy net: He weights for speed runs, and the
prototxt's own fillers (where `caffe train` starts) for the untrained network."""
import caffe
import numpy as np
import pytest

from inference.random_weights import write_random_weights
from tests.conftest import REPO

DEPLOY = str(REPO / "prototxt" / "mln" / "deploy.prototxt")


def load(weights):
    return caffe.Net(DEPLOY, str(weights), caffe.TEST)


@pytest.fixture(scope="module")
def filler_nets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("random_weights")
    paths = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        paths[name] = folder / ("%s.caffemodel" % name)
        write_random_weights(DEPLOY, paths[name], seed=seed, init="fillers")
    return paths


def test_fillers_are_the_generators_msra_and_output_gaussian_with_zero_biases(filler_nets):
    net = load(filler_nets["a"])
    for name in ("conv1_1", "detect_joint_conv1", "refine_limb_block7_conv3",
                 "detect_limb_conv5", "refine_joint_conv_out"):
        weights, biases = net.params[name][0].data, net.params[name][1].data
        fan_in = np.prod(weights.shape[1:])
        is_output = name.endswith(("conv5", "conv_out"))
        expected = 0.01 if is_output else np.sqrt(2.0 / fan_in)   # Gaussian / He (MSRA)
        assert weights.std() == pytest.approx(expected, rel=0.05), name
        assert abs(weights.mean()) < 0.1 * expected and not biases.any()


def test_fillers_depend_on_the_seed_only(filler_nets):
    a, b, c = (load(filler_nets[k]) for k in "abc")
    np.testing.assert_array_equal(a.params["conv4_2"][0].data, b.params["conv4_2"][0].data)
    assert not np.array_equal(a.params["conv4_2"][0].data, c.params["conv4_2"][0].data)


def test_he_weights_keep_the_scale_per_fan_in(tmp_path):
    write_random_weights(DEPLOY, tmp_path / "he.caffemodel", seed=0, init="he")
    net = load(tmp_path / "he.caffemodel")
    weights = net.params["refine_joint_block1_conv1"][0].data      # fan-in 313 x 3 x 3
    assert weights.std() == pytest.approx(np.sqrt(2.0 / (313 * 9)), rel=0.05)


def test_unknown_init_is_refused(tmp_path):
    with pytest.raises(ValueError, match="init"):
        write_random_weights(DEPLOY, tmp_path / "x.caffemodel", init="xavier")
