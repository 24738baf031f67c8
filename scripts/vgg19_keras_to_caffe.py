"""Convert Keras's VGG19 HDF5 weights to a caffemodel with VGG-19's Caffe layer names.

    python scripts/vgg19_keras_to_caffe.py \
        --h5 vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 \
        --out VGG_ILSVRC_19_layers_conv.caffemodel [--last-layer conv4_2]

The result holds convolution layers conv1_1 ... conv5_4 (or up to --last-layer) and nothing else,
so `caffe train --weights FILE` and `net.copy_from(FILE)` initialise the backbone by layer name
(layers the net does not have are ignored; shapes must match). It replaces the 548 MB
VGG_ILSVRC_19_layers.caffemodel, whose convolutions Keras's file holds (about 80 MB).

Facts the conversion relies on (each checked by tests/caffe/test_vgg_converter.py on a synthetic
file of the same layout):
- Layout of Keras's file: one HDF5 group per layer ("block1_conv1" ... "block5_conv4"), whose
  attribute `weight_names` lists its datasets, kernel first: "block1_conv1_W_1:0" and
  "block1_conv1_b_1:0" in the original release (Keras 1 names), "block1_conv1/kernel:0" and
  "block1_conv1/bias:0" (a nested group) in files written by Keras 2's save_weights. Both are
  read; a whole-model file's "model_weights" group too. Without `weight_names`, the group's only
  4-D dataset is the kernel and its only 1-D dataset the bias.
- Kernels: Keras "tf" ordering is (kh, kw, in, out); Caffe's is (out, in, kh, kw): a transpose.
  Both frameworks compute cross-correlation (no kernel flip); only the Theano-ordered files
  ("th_kernels") hold flipped kernels, and they are refused.
- Channels: Keras's VGG19 weights were converted from the original Caffe model and expect BGR
  input (keras.applications.vgg19.preprocess_input turns RGB into BGR before subtracting the
  ImageNet mean), which is Caffe's and this toolkit's order: the first layer needs no swap.
  The toolkit feeds pixel / 256 - 0.5 rather than pixel - mean, as OpenPose did with the same
  weights; fine-tuning absorbs the scale.
"""
import argparse
import sys

import numpy as np

# Keras layer name -> Caffe (VGG_ILSVRC_19_layers) layer name, in network order.
KERAS_TO_CAFFE = tuple(
    ("block%d_conv%d" % (block, conv), "conv%d_%d" % (block, conv))
    for block, convs in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4))
    for conv in range(1, convs + 1))
CAFFE_LAYERS = tuple(caffe for _, caffe in KERAS_TO_CAFFE)


class LayoutError(ValueError):
    """The HDF5 file does not hold Keras VGG19 weights in a layout this converter knows."""


def _as_text(name):
    return name.decode("utf8") if isinstance(name, bytes) else str(name)


def _weights_root(h5file):
    """The group holding the layer groups: the file itself, or "model_weights" of a model file."""
    if "block1_conv1" not in h5file and "model_weights" in h5file:
        return h5file["model_weights"]
    return h5file


def _datasets_under(group):
    import h5py
    found = []
    group.visititems(lambda name, item: found.append(name) if isinstance(item, h5py.Dataset)
                     else None)
    return found


def read_keras_layer(h5file, layer, path):
    """(kernel (kh, kw, in, out), bias (out,)) float32 of Keras layer `layer` in an open file."""
    root = _weights_root(h5file)
    if layer not in root:
        present = sorted(root.keys())
        raise LayoutError("%s has no layer group %r (Keras VGG19 layers block1_conv1 .. "
                          "block5_conv4 expected; the file has: %s)"
                          % (path, layer, ", ".join(present[:20]) or "nothing"))
    group = root[layer]
    if "weight_names" in group.attrs:
        names = [_as_text(n) for n in group.attrs["weight_names"]]
        missing = [n for n in names if n not in group]
        if missing:
            raise LayoutError("%s, group %s: dataset %s listed in weight_names is missing"
                              % (path, layer, ", ".join(missing)))
        if len(names) != 2:
            raise LayoutError("%s, group %s: expected 2 weights (kernel, bias), weight_names "
                              "lists %s" % (path, layer, names))
        kernel, bias = (np.asarray(group[n], dtype=np.float32) for n in names)
    else:
        datasets = {name: np.asarray(group[name], dtype=np.float32)
                    for name in _datasets_under(group)}
        kernels = [a for a in datasets.values() if a.ndim == 4]
        biases = [a for a in datasets.values() if a.ndim == 1]
        if len(kernels) != 1 or len(biases) != 1:
            raise LayoutError(
                "%s, group %s: expected one kernel dataset (%s_W_1:0 or %s/kernel:0) and one "
                "bias (%s_b_1:0 or %s/bias:0), found %s"
                % (path, layer, layer, layer, layer, layer, sorted(datasets) or "none"))
        kernel, bias = kernels[0], biases[0]
    if kernel.ndim != 4 or bias.ndim != 1:
        raise LayoutError("%s, group %s: kernel %s and bias %s are not 4-D and 1-D"
                          % (path, layer, kernel.shape, bias.shape))
    if kernel.shape[3] != bias.shape[0]:
        hint = (" (this looks like a Theano-ordered file, (out, in, kh, kw) with flipped kernels:"
                " use the *_tf_dim_ordering_tf_kernels* file)"
                if kernel.shape[0] == bias.shape[0] else "")
        raise LayoutError("%s, group %s: kernel %s does not end in the bias's %d output channels"
                          "%s" % (path, layer, kernel.shape, bias.shape[0], hint))
    return kernel, bias


def keras_kernel_to_caffe(kernel):
    """(kh, kw, in, out) -> Caffe's (out, in, kh, kw); the same cross-correlation, no flip."""
    return np.ascontiguousarray(np.transpose(kernel, (3, 2, 0, 1)))


def read_vgg19(h5_path, last_layer=CAFFE_LAYERS[-1]):
    """[(caffe name, caffe kernel (out, in, kh, kw), bias)] for conv1_1 .. last_layer."""
    import h5py
    if last_layer not in CAFFE_LAYERS:
        raise ValueError("unknown last layer %r; one of %s" % (last_layer, ", ".join(CAFFE_LAYERS)))
    wanted = KERAS_TO_CAFFE[:CAFFE_LAYERS.index(last_layer) + 1]
    try:
        h5file = h5py.File(h5_path, "r")
    except OSError as error:
        raise ValueError("cannot open HDF5 file %s: %s" % (h5_path, error)) from error
    layers, previous_out = [], None
    with h5file:
        for keras_name, caffe_name in wanted:
            kernel, bias = read_keras_layer(h5file, keras_name, h5_path)
            if previous_out is not None and kernel.shape[2] != previous_out:
                raise LayoutError("%s, group %s: %d input channels after %d outputs"
                                  % (h5_path, keras_name, kernel.shape[2], previous_out))
            previous_out = kernel.shape[3]
            layers.append((caffe_name, keras_kernel_to_caffe(kernel), bias))
    return layers


def net_parameter(layers, name="VGG_ILSVRC_19_layers_conv"):
    """A caffe_pb2.NetParameter holding Convolution layers with their two blobs each."""
    from caffe.proto import caffe_pb2
    net = caffe_pb2.NetParameter()
    net.name = name
    for layer_name, kernel, bias in layers:
        layer = net.layer.add()
        layer.name = layer_name
        layer.type = "Convolution"
        layer.convolution_param.num_output = kernel.shape[0]
        layer.convolution_param.kernel_size.append(kernel.shape[2])
        layer.convolution_param.pad.append(kernel.shape[2] // 2)
        for array in (kernel, bias):
            blob = layer.blobs.add()
            blob.shape.dim.extend(array.shape)
            blob.data.extend(array.ravel().astype(np.float32))
    return net


def convert(h5_path, out_path, last_layer=CAFFE_LAYERS[-1]):
    """Read the Keras file, write the caffemodel; returns the layer names written."""
    layers = read_vgg19(h5_path, last_layer)
    with open(out_path, "wb") as handle:
        handle.write(net_parameter(layers).SerializeToString())
    return [name for name, _, _ in layers]


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Convert Keras's VGG19 HDF5 weights (tf kernel ordering) into a caffemodel "
                    "with VGG-19's Caffe layer names, to initialise the backbone by name.",
        epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--h5", required=True,
                        help="vgg19_weights_tf_dim_ordering_tf_kernels[_notop].h5")
    parser.add_argument("--out", required=True, help="caffemodel to write")
    parser.add_argument("--last-layer", default=CAFFE_LAYERS[-1], choices=CAFFE_LAYERS,
                        help="last convolution to keep (the MLN/OpenPose backbone needs conv4_2)")
    args = parser.parse_args(argv)
    try:
        names = convert(args.h5, args.out, args.last_layer)
    except ValueError as error:
        sys.exit("vgg19_keras_to_caffe: error: %s" % error)
    print("wrote %s: %s" % (args.out, " ".join(names)))


if __name__ == "__main__":
    main()
