"""A small deploy net of MLN's layer types, written without Caffe, for the ONNX tests.

Two stages as MLN and OpenPose stack them: three conv3x3 + in-place ReLU + 2x2 max-pool blocks
(stride 8), 1x1 convolutions to 19 heatmaps and 38 PAFs, a Concat of the features and both
maps feeding a second stage, whose maps are concatenated into `net_output`. The weights
(He-normal, biases non-zero so that a dropped bias shows) are written as a caffemodel through
inference/caffe_format.py's messages, so the deploy venv makes the files itself.
"""
import numpy as np

from inference import caffe_format

_HEAD = 'name: "onnx_test_net"\nlayer { name: "data" type: "Input" top: "data"\n' \
        '  input_param { shape { dim: 1 dim: 3 dim: 64 dim: 64 } } }\n'


def _conv(name, bottom, outputs, kernel, pad=0):
    return ('layer { name: "%s" type: "Convolution" bottom: "%s" top: "%s"\n'
            '  convolution_param { num_output: %d kernel_size: %d pad: %d } }\n'
            % (name, bottom, name, outputs, kernel, pad))


def _relu(name, blob):
    return 'layer { name: "%s" type: "ReLU" bottom: "%s" top: "%s" }\n' % (name, blob, blob)


def _pool(name, bottom):
    return ('layer { name: "%s" type: "Pooling" bottom: "%s" top: "%s"\n'
            '  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n' % (name, bottom, name))


def _concat(name, bottoms):
    return ('layer { name: "%s" type: "Concat" bottom: %s top: "%s" concat_param { axis: 1 } }\n'
            % (name, " bottom: ".join('"%s"' % b for b in bottoms), name))


# (name, input channels, output channels, kernel) of every convolution, in order
CONVOLUTIONS = (("conv1", 3, 8, 3), ("conv2", 8, 16, 3), ("conv3", 16, 16, 3),
                ("heat1", 16, 19, 1), ("paf1", 16, 38, 1), ("stage2", 16 + 57, 16, 3),
                ("heat2", 16, 19, 1), ("paf2", 16, 38, 1))


def prototxt(extra=""):
    """The net's text; `extra` is inserted before the output Concat (a layer to be refused)."""
    text, bottom = _HEAD, "data"
    for index, (name, _, outputs, kernel) in enumerate(CONVOLUTIONS[:3], start=1):
        text += _conv(name, bottom, outputs, kernel, 1) + _relu("relu%d" % index, name)
        text += _pool("pool%d" % index, name)
        bottom = "pool%d" % index
    text += _conv("heat1", bottom, 19, 1) + _conv("paf1", bottom, 38, 1)
    text += _concat("features", [bottom, "heat1", "paf1"])
    text += _conv("stage2", "features", 16, 3, 1) + _relu("relu_stage2", "stage2")
    text += _conv("heat2", "stage2", 19, 1) + _conv("paf2", "stage2", 38, 1)
    return text + extra + _concat("net_output", ["heat2", "paf2"])


def write_weights(path, seed=0, skip=()):
    """A caffemodel of random weights for prototxt(); layers in `skip` are left out."""
    state = np.random.RandomState(seed)
    net = caffe_format.NetParameter()
    for name, inputs, outputs, kernel in CONVOLUTIONS:
        if name in skip:
            continue
        layer = net.layer.add(name=name, type="Convolution")
        weight = state.normal(0, np.sqrt(2.0 / (inputs * kernel * kernel)),
                              (outputs, inputs, kernel, kernel))
        for values in (weight, state.uniform(-0.2, 0.2, outputs)):
            _add_blob(layer, values)
    with open(str(path), "wb") as handle:
        handle.write(net.SerializeToString())
    return path


def write_random_weights(deploy, path, seed=0):
    """A caffemodel for any deploy prototxt: every convolution He-normal, biases uniform in
    +-0.1 (not 0, so that a dropped bias shows), shapes from caffe_format."""
    state = np.random.RandomState(seed)
    net = caffe_format.NetParameter()
    for name, shapes in caffe_format.convolution_blob_shapes(caffe_format.read_net(deploy)).items():
        layer = net.layer.add(name=name, type="Convolution")
        weight_shape = shapes[0]
        values = [state.normal(0, np.sqrt(2.0 / np.prod(weight_shape[1:])), weight_shape)]
        values += [state.uniform(-0.1, 0.1, shape) for shape in shapes[1:]]
        for array in values:
            _add_blob(layer, array)
    with open(str(path), "wb") as handle:
        handle.write(net.SerializeToString())
    return path


def _add_blob(layer, array):
    """Append a float32 blob to a LayerParameter. The values go in as one packed field parsed
    from bytes: through Python floats the baseline's 52 million would take minutes."""
    blob = layer.blobs.add()
    blob.shape.dim.extend(array.shape)
    data = np.ascontiguousarray(array, dtype="<f4").tobytes()
    size, length = len(data), b""
    while True:                      # the byte count as a protobuf varint
        byte, size = size & 0x7F, size >> 7
        length += bytes([byte | (0x80 if size else 0)])
        if not size:
            break
    blob.MergeFromString(b"\x2a" + length + data)     # field 5 (data), length-delimited


def write_net(folder, seed=0, extra=""):
    """(deploy prototxt, caffemodel) in folder."""
    deploy = folder / "net.prototxt"
    deploy.write_text(prototxt(extra))
    return deploy, write_weights(folder / ("net_%d.caffemodel" % seed), seed)
