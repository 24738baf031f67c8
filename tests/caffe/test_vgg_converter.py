"""The Keras VGG19 -> caffemodel converter on synthetic HDF5 files of Keras's layouts (narrow layers,
random weights): Caffe loads the result by name, and its convolutions equal cross-correlations
computed straight from the Keras-layout kernels, so the transposition is proven, not assumed."""
import subprocess
import sys

import caffe
import h5py
import numpy as np
import pytest
from caffe import layers as L
from caffe import params as P

from scripts import vgg19_keras_to_caffe as converter

WIDTHS = {1: 4, 2: 6, 3: 5, 4: 7, 5: 3}          # narrow stand-ins for 64, 128, 256, 512, 512
CONVS = {1: 2, 2: 2, 3: 4, 4: 4, 5: 4}
BACKBONE = converter.CAFFE_LAYERS[:converter.CAFFE_LAYERS.index("conv4_2") + 1]


def keras_weights(seed=0):
    """{keras layer: (kernel (3, 3, in, out), bias)} with random, asymmetric kernels."""
    rng = np.random.RandomState(seed)
    weights, inputs = {}, 3
    for block in range(1, 6):
        for conv in range(1, CONVS[block] + 1):
            outputs = WIDTHS[block]
            weights["block%d_conv%d" % (block, conv)] = (
                rng.standard_normal((3, 3, inputs, outputs)).astype(np.float32),
                rng.standard_normal(outputs).astype(np.float32))
            inputs = outputs
    return weights


def write_keras_file(path, weights, layout="keras1"):
    """Keras's layout: keras1 = the released file (block1_conv1_W_1:0), keras2 = save_weights
    (block1_conv1/kernel:0 in a nested group); both list their datasets in `weight_names`."""
    with h5py.File(str(path), "w") as h5file:
        names = [b"input_1"]
        h5file.create_group("input_1").attrs["weight_names"] = np.zeros(0, dtype="S1")
        for layer, (kernel, bias) in weights.items():
            names.append(layer.encode())
            group = h5file.create_group(layer)
            if layout == "keras1":
                kernel_name, bias_name = layer + "_W_1:0", layer + "_b_1:0"
            else:
                kernel_name, bias_name = layer + "/kernel:0", layer + "/bias:0"
            group.attrs["weight_names"] = np.array([kernel_name.encode(), bias_name.encode()])
            group[kernel_name], group[bias_name] = kernel, bias
        h5file.attrs["layer_names"] = np.array(names)


def backbone_prototxt(path, size=20):
    """VGG-19's first ten convolutions (our backbone), narrow, with VGG-19's layer names."""
    net = caffe.NetSpec()
    net.data = L.Input(shape=dict(dim=[1, 3, size, size]))
    bottom = net.data
    for name in BACKBONE:
        block = int(name[4])
        conv = L.Convolution(bottom, num_output=WIDTHS[block], kernel_size=3, pad=1)
        setattr(net, name, conv)
        bottom = L.ReLU(conv)                  # not in place: the conv outputs stay readable
        setattr(net, "relu" + name[4:], bottom)
        if name in ("conv1_2", "conv2_2", "conv3_4"):
            bottom = L.Pooling(bottom, pool=P.Pooling.MAX, kernel_size=2, stride=2)
            setattr(net, "pool%d" % block, bottom)
    path.write_text(str(net.to_proto()))
    return str(path)


def cross_correlation(inputs, kernel, bias):
    """Caffe-free reference: inputs (in, H, W), Keras kernel (3, 3, in, out), pad 1."""
    padded = np.pad(inputs.astype(np.float64), ((0, 0), (1, 1), (1, 1)))
    height, width = inputs.shape[1:]
    out = np.tile(bias.astype(np.float64)[:, None, None], (1, height, width))
    for dy in range(3):
        for dx in range(3):
            window = padded[:, dy:dy + height, dx:dx + width]            # (in, H, W)
            out += np.einsum("io,ihw->ohw", kernel[dy, dx].astype(np.float64), window)
    return out


@pytest.mark.parametrize("layout", ["keras1", "keras2"])
def test_converted_weights_load_by_name_and_convolve_like_keras(tmp_path, layout):
    weights = keras_weights()
    write_keras_file(tmp_path / "vgg.h5", weights, layout)
    model = tmp_path / "vgg.caffemodel"
    assert converter.convert(str(tmp_path / "vgg.h5"), str(model)) == list(converter.CAFFE_LAYERS)

    caffe.set_mode_cpu()
    net = caffe.Net(backbone_prototxt(tmp_path / "backbone.prototxt"), caffe.TEST)
    net.copy_from(str(model))
    for keras_name, caffe_name in converter.KERAS_TO_CAFFE[:len(BACKBONE)]:
        kernel, bias = weights[keras_name]
        np.testing.assert_array_equal(net.params[caffe_name][1].data, bias)
        assert net.params[caffe_name][0].data.shape == (kernel.shape[3], kernel.shape[2], 3, 3)

    net.blobs["data"].data[...] = np.random.RandomState(1).standard_normal((1, 3, 20, 20))
    net.forward()
    # the first layer (BGR input as both frameworks see it) and one with in != out channels
    for layer, bottom in (("conv1_1", "data"), ("conv2_1", "pool1"), ("conv4_2", "relu4_1")):
        keras_name = dict((c, k) for k, c in converter.KERAS_TO_CAFFE)[layer]
        expected = cross_correlation(net.blobs[bottom].data[0], *weights[keras_name])
        np.testing.assert_allclose(net.blobs[layer].data[0], expected, rtol=1e-4, atol=1e-3)


def test_the_command_line_writes_the_backbone_only(tmp_path, repo):
    write_keras_file(tmp_path / "vgg.h5", keras_weights())
    model = tmp_path / "backbone.caffemodel"
    run = subprocess.run([sys.executable, "scripts/vgg19_keras_to_caffe.py",
                          "--h5", str(tmp_path / "vgg.h5"), "--out", str(model),
                          "--last-layer", "conv4_2"],
                         cwd=str(repo), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True)
    assert run.returncode == 0, run.stdout
    from caffe.proto import caffe_pb2
    written = caffe_pb2.NetParameter()
    written.ParseFromString(model.read_bytes())
    assert [layer.name for layer in written.layer] == list(BACKBONE)
    assert [layer.type for layer in written.layer] == ["Convolution"] * len(BACKBONE)


def test_a_missing_dataset_is_named(tmp_path):
    path = tmp_path / "broken.h5"
    write_keras_file(path, keras_weights())
    with h5py.File(str(path), "a") as h5file:
        del h5file["block3_conv2"]["block3_conv2_W_1:0"]
    with pytest.raises(converter.LayoutError) as error:
        converter.read_vgg19(str(path))
    assert str(path) in str(error.value) and "block3_conv2_W_1:0" in str(error.value)


def test_a_missing_layer_and_a_theano_file_are_named(tmp_path):
    weights = keras_weights()
    del weights["block4_conv1"]
    write_keras_file(tmp_path / "short.h5", weights)
    with pytest.raises(converter.LayoutError, match="short.h5 has no layer group 'block4_conv1'"):
        converter.read_vgg19(str(tmp_path / "short.h5"))

    theano = {name: (np.transpose(kernel, (3, 2, 0, 1)).copy(), bias)
              for name, (kernel, bias) in keras_weights().items()}
    write_keras_file(tmp_path / "th.h5", theano)
    with pytest.raises(converter.LayoutError, match="Theano"):
        converter.read_vgg19(str(tmp_path / "th.h5"))


def test_groups_without_weight_names_are_read_by_shape(tmp_path):
    weights = keras_weights()
    write_keras_file(tmp_path / "plain.h5", weights)
    with h5py.File(str(tmp_path / "plain.h5"), "a") as h5file:
        for layer in weights:
            del h5file[layer].attrs["weight_names"]
    layers = converter.read_vgg19(str(tmp_path / "plain.h5"), last_layer="conv1_2")
    kernel, bias = weights["block1_conv2"]
    np.testing.assert_array_equal(layers[1][1], np.transpose(kernel, (3, 2, 0, 1)))
    np.testing.assert_array_equal(layers[1][2], bias)
