"""Read Caffe's files without Caffe: a deploy prototxt (text) and a caffemodel (binary protobuf).

The deploy venv has no Caffe and so no caffe_pb2. This module declares, with the protobuf
runtime, the small subset of Caffe's message types that inference needs: the net's layers (name,
type, bottoms, tops, learned blobs) and the parameters of the layer types our deploy nets use
(Input, Convolution, ReLU, Pooling, Concat). Field numbers, types and defaults are facts of
Caffe's format (src/caffe/proto/caffe.proto of BVLC Caffe 1.0; the NetParameter.layer field 100
is the current format, NetParameter.layers field 2 the V1 format of old model-zoo files such as
VGG-19's). Every other field is skipped: unknown fields of a binary file by the protobuf parser,
unknown fields of a prototxt with allow_unknown_field.
"""
import pathlib
from collections import namedtuple

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, text_format

try:                                        # protobuf >= 4
    from google.protobuf.message_factory import GetMessageClass as _message_class
except ImportError:                         # the bullseye root's protobuf 3.12
    from google.protobuf.message_factory import MessageFactory as _Factory
    _message_class = _Factory().GetPrototype

_PACKAGE = "mln_caffe_subset"               # not "caffe": never clash with a real caffe_pb2

F = descriptor_pb2.FieldDescriptorProto
_OPTIONAL, _REPEATED = F.LABEL_OPTIONAL, F.LABEL_REPEATED
_SCALARS = {"string": F.TYPE_STRING, "float": F.TYPE_FLOAT, "double": F.TYPE_DOUBLE,
            "int32": F.TYPE_INT32, "uint32": F.TYPE_UINT32, "int64": F.TYPE_INT64,
            "bool": F.TYPE_BOOL}

# message -> [(field name, number, repeated?, type: scalar name, "enum:Name" or message name,
#              default or None)]
_MESSAGES = {
    "BlobShape": [("dim", 1, True, "int64", None)],
    "BlobProto": [("num", 1, False, "int32", "0"), ("channels", 2, False, "int32", "0"),
                  ("height", 3, False, "int32", "0"), ("width", 4, False, "int32", "0"),
                  ("data", 5, True, "float", None), ("shape", 7, False, "BlobShape", None),
                  ("double_data", 8, True, "double", None)],
    "ConvolutionParameter": [
        ("num_output", 1, False, "uint32", None), ("bias_term", 2, False, "bool", "true"),
        ("pad", 3, True, "uint32", None), ("kernel_size", 4, True, "uint32", None),
        ("group", 5, False, "uint32", "1"), ("stride", 6, True, "uint32", None),
        ("pad_h", 9, False, "uint32", "0"), ("pad_w", 10, False, "uint32", "0"),
        ("kernel_h", 11, False, "uint32", None), ("kernel_w", 12, False, "uint32", None),
        ("stride_h", 13, False, "uint32", None), ("stride_w", 14, False, "uint32", None),
        ("axis", 16, False, "int32", "1"), ("dilation", 18, True, "uint32", None)],
    "PoolingParameter": [
        ("pool", 1, False, "enum:PoolMethod", "MAX"), ("kernel_size", 2, False, "uint32", None),
        ("stride", 3, False, "uint32", "1"), ("pad", 4, False, "uint32", "0"),
        ("kernel_h", 5, False, "uint32", None), ("kernel_w", 6, False, "uint32", None),
        ("stride_h", 7, False, "uint32", None), ("stride_w", 8, False, "uint32", None),
        ("pad_h", 9, False, "uint32", "0"), ("pad_w", 10, False, "uint32", "0"),
        ("global_pooling", 12, False, "bool", "false"),
        ("round_mode", 13, False, "enum:RoundMode", "CEIL")],
    "ConcatParameter": [("concat_dim", 1, False, "uint32", "1"), ("axis", 2, False, "int32", "1")],
    "ReLUParameter": [("negative_slope", 1, False, "float", "0")],
    "InputParameter": [("shape", 1, True, "BlobShape", None)],
    "LayerParameter": [
        ("name", 1, False, "string", None), ("type", 2, False, "string", None),
        ("bottom", 3, True, "string", None), ("top", 4, True, "string", None),
        ("blobs", 7, True, "BlobProto", None),
        ("concat_param", 104, False, "ConcatParameter", None),
        ("convolution_param", 106, False, "ConvolutionParameter", None),
        ("pooling_param", 121, False, "PoolingParameter", None),
        ("relu_param", 123, False, "ReLUParameter", None),
        ("input_param", 143, False, "InputParameter", None)],
    # the V1 format (NetParameter.layers): its type is an enum; only names and blobs are read
    "V1LayerParameter": [("bottom", 2, True, "string", None), ("top", 3, True, "string", None),
                         ("name", 4, False, "string", None), ("blobs", 6, True, "BlobProto", None)],
    "NetParameter": [("name", 1, False, "string", None),
                     ("layers", 2, True, "V1LayerParameter", None),
                     ("input", 3, True, "string", None), ("input_dim", 4, True, "int32", None),
                     ("input_shape", 8, True, "BlobShape", None),
                     ("layer", 100, True, "LayerParameter", None)],
}
_ENUMS = {"PoolMethod": ["MAX", "AVE", "STOCHASTIC"], "RoundMode": ["CEIL", "FLOOR"]}
# enums nested in PoolingParameter, as in caffe.proto
_ENUM_OWNER = {"PoolMethod": "PoolingParameter", "RoundMode": "PoolingParameter"}


def _build_classes():
    proto = descriptor_pb2.FileDescriptorProto(name=_PACKAGE + ".proto", package=_PACKAGE,
                                               syntax="proto2")
    for message_name, fields in _MESSAGES.items():
        message = proto.message_type.add(name=message_name)
        for enum_name, owner in _ENUM_OWNER.items():
            if owner == message_name:
                enum = message.enum_type.add(name=enum_name)
                for number, value in enumerate(_ENUMS[enum_name]):
                    enum.value.add(name=value, number=number)
        for name, number, repeated, kind, default in fields:
            field = message.field.add(name=name, number=number,
                                      label=_REPEATED if repeated else _OPTIONAL)
            if kind in _SCALARS:
                field.type = _SCALARS[kind]
            elif kind.startswith("enum:"):
                field.type = F.TYPE_ENUM
                enum_name = kind[5:]
                field.type_name = ".%s.%s.%s" % (_PACKAGE, _ENUM_OWNER[enum_name], enum_name)
            else:
                field.type = F.TYPE_MESSAGE
                field.type_name = ".%s.%s" % (_PACKAGE, kind)
            if default is not None:
                field.default_value = default
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return {name: _message_class(pool.FindMessageTypeByName("%s.%s" % (_PACKAGE, name)))
            for name in _MESSAGES}


_CLASSES = _build_classes()
NetParameter = _CLASSES["NetParameter"]

# one layer's learned blobs, as numpy float32 arrays in Caffe's shapes
LayerWeights = namedtuple("LayerWeights", "name type blobs")


class CaffeFormatError(Exception):
    """A file that is not what it should be, with a message naming it."""


def read_net(prototxt):
    """A deploy (or train) prototxt -> NetParameter holding the subset above."""
    path = pathlib.Path(prototxt)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise CaffeFormatError("cannot read the prototxt %s: %s" % (path, error))
    net = NetParameter()
    try:
        text_format.Parse(text, net, allow_unknown_field=True)
    except text_format.ParseError as error:
        raise CaffeFormatError("%s is not a Caffe net prototxt: %s" % (path, error))
    if not net.layer and not net.layers:
        raise CaffeFormatError("%s is not a Caffe net prototxt: it has no layers" % path)
    return net


def blob_array(blob):
    """BlobProto -> float32 array in its shape (the 4-d num/channels/height/width of old files)."""
    values = blob.double_data if len(blob.double_data) else blob.data
    if blob.HasField("shape"):
        shape = tuple(blob.shape.dim)
    else:
        shape = tuple(d for d in (blob.num, blob.channels, blob.height, blob.width))
    array = np.asarray(values, dtype=np.float32)
    if array.size != int(np.prod(shape)):
        raise CaffeFormatError("a blob holds %d values for the shape %s" % (array.size, shape))
    return array.reshape(shape)


def read_weights(caffemodel):
    """A caffemodel -> [LayerWeights] of the layers that carry blobs, in the file's order.
    V1-format files give type None."""
    path = pathlib.Path(caffemodel)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CaffeFormatError("cannot read the weights %s: %s" % (path, error))
    net = NetParameter()
    try:
        net.ParseFromString(data)
        layers = [LayerWeights(layer.name, layer.type, [blob_array(b) for b in layer.blobs])
                  for layer in net.layer if len(layer.blobs)]
        layers += [LayerWeights(layer.name, None, [blob_array(b) for b in layer.blobs])
                   for layer in net.layers if len(layer.blobs)]
    except Exception as error:     # protobuf's DecodeError, or a blob of the wrong size
        raise CaffeFormatError("%s is not a Caffe weights file (caffemodel): %s" % (path, error))
    if not layers and data:
        raise CaffeFormatError("%s is not a Caffe weights file (caffemodel): no layer with "
                               "weights in it" % path)
    return layers


# Layer types whose blobs are learned (or, for BatchNorm, estimated) and so must come from the
# caffemodel. Caffe copies weights by layer name and silently leaves any other layer at its
# filler values: a net run with the wrong caffemodel would give confident nonsense.
PARAMETER_LAYERS = ("Convolution", "Deconvolution", "InnerProduct", "BatchNorm", "Scale",
                    "Bias", "PReLU", "Embed")


def layers_without_weights(net, weights):
    """Layers of `net` (NetParameter) that need parameters but get none or the wrong number of
    blobs from `weights` ([LayerWeights]) -> [(layer name, reason)], empty when all match."""
    by_name = {layer.name: layer for layer in weights}
    problems = []
    for layer in net.layer:
        if layer.type not in PARAMETER_LAYERS:
            continue
        found = by_name.get(layer.name)
        if found is None:
            problems.append((layer.name, "no weights of that name"))
            continue
        if layer.type == "Convolution":
            expected = 2 if layer.convolution_param.bias_term else 1
            if len(found.blobs) != expected:
                problems.append((layer.name, "%d blobs, %d expected"
                                 % (len(found.blobs), expected)))
            elif found.blobs[0].shape[0] != layer.convolution_param.num_output:
                problems.append((layer.name, "%d filters, the prototxt says %d"
                                 % (found.blobs[0].shape[0], layer.convolution_param.num_output)))
    return problems


# A blob's shape without its values: converting a caffemodel's values to numpy takes seconds
# (9 s for the baseline's 52 million in the bullseye root), checking the names and shapes does not.
BlobShapeOnly = namedtuple("BlobShapeOnly", "shape")


def read_weight_shapes(caffemodel):
    """A caffemodel -> [LayerWeights] as read_weights gives them, but each blob a BlobShapeOnly
    (its shape, no values): enough for layers_without_weights, at a fraction of the cost."""
    path = pathlib.Path(caffemodel)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CaffeFormatError("cannot read the weights %s: %s" % (path, error.strerror or error))
    if not data:
        raise CaffeFormatError("the weights file %s is empty" % path)
    net = NetParameter()
    try:
        net.ParseFromString(data)
    except Exception as error:     # protobuf's DecodeError; its type differs between runtimes
        raise CaffeFormatError("%s is not a Caffe weights file (caffemodel): %s" % (path, error))
    layers = [LayerWeights(layer.name, layer.type, [_blob_shape(path, layer.name, b)
                                                    for b in layer.blobs])
              for layer in net.layer if len(layer.blobs)]
    layers += [LayerWeights(layer.name, None, [_blob_shape(path, layer.name, b)
                                               for b in layer.blobs])
               for layer in net.layers if len(layer.blobs)]
    if not layers:
        raise CaffeFormatError("%s is not a Caffe weights file (caffemodel): no layer with "
                               "weights in it" % path)
    return layers


def _blob_shape(path, layer_name, blob):
    """BlobShapeOnly of a BlobProto, checked against the number of values it holds."""
    if blob.HasField("shape"):
        shape = tuple(blob.shape.dim)
    else:
        shape = (blob.num, blob.channels, blob.height, blob.width)
    values = len(blob.double_data) or len(blob.data)
    if values != int(np.prod(shape)):
        raise CaffeFormatError("%s: layer %s has a blob of %d values for the shape %s: the file "
                               "is damaged" % (path, layer_name, values, shape))
    return BlobShapeOnly(shape)


# Layer types that keep their input's channels (so the channels of a convolution's input can be
# followed through the net); any other type leaves its tops' channels unknown.
_CHANNELS_KEPT = ("ReLU", "Pooling", "Dropout", "LRN", "BatchNorm", "Scale", "Bias", "Sigmoid",
                  "TanH", "PReLU", "ELU", "Power", "AbsVal")


def _input_channels(net):
    """{blob: channels} of the net's inputs (Input layers, or the old input/input_shape/
    input_dim fields)."""
    channels = {}
    for index, name in enumerate(net.input):
        if len(net.input_shape) > index and len(net.input_shape[index].dim) > 1:
            channels[name] = net.input_shape[index].dim[1]
        elif len(net.input_dim) >= 4 * (index + 1):
            channels[name] = net.input_dim[4 * index + 1]
    return channels


def _kernel(param):
    if param.HasField("kernel_h") or param.HasField("kernel_w"):
        return param.kernel_h, param.kernel_w
    sizes = list(param.kernel_size)
    return (sizes[0], sizes[-1]) if sizes else None


def convolution_blob_shapes(net):
    """{layer name: [weight shape, bias shape]} that Caffe allocates for the Convolution layers
    of `net` (NetParameter) whose input channels follow from the net; others are left out."""
    channels, shapes = _input_channels(net), {}
    for layer in net.layer:
        known = [channels.get(bottom) for bottom in layer.bottom]
        if layer.type == "Input":
            dims = [list(shape.dim) for shape in layer.input_param.shape]
            for index, top in enumerate(layer.top):
                shape = dims[min(index, len(dims) - 1)] if dims else []
                channels[top] = shape[1] if len(shape) > 1 else None
        elif layer.type == "Convolution":
            param = layer.convolution_param
            kernel = _kernel(param)
            if known and known[0] is not None and kernel is not None and param.group:
                shapes[layer.name] = [(param.num_output, known[0] // param.group) + kernel]
                if param.bias_term:
                    shapes[layer.name].append((param.num_output,))
            channels.update({top: param.num_output for top in layer.top})
        elif layer.type in _CHANNELS_KEPT and known:
            channels.update({top: known[0] for top in layer.top})
        elif layer.type == "Concat" and layer.concat_param.axis == 1 and None not in known:
            channels.update({top: sum(known) for top in layer.top})
        else:
            channels.update({top: None for top in layer.top})
    return shapes


def layers_with_other_shapes(net, weights):
    """Convolution layers of `net` whose blobs in `weights` ([LayerWeights]) have other shapes
    than the prototxt gives them (Caffe aborts on them, OpenCV fails at the first forward) ->
    [(layer name, reason)]. Layers without weights are layers_without_weights' to report."""
    by_name = {layer.name: layer for layer in weights}
    problems = []
    for name, expected in convolution_blob_shapes(net).items():
        found = by_name.get(name)
        if found is None or len(found.blobs) != len(expected):
            continue
        shapes = [tuple(blob.shape) for blob in found.blobs]
        if shapes != expected:
            problems.append((name, "blobs of shape %s, the prototxt makes %s"
                             % (_shapes_text(shapes), _shapes_text(expected))))
    return problems


def _shapes_text(shapes):
    return " + ".join("x".join(str(d) for d in shape) for shape in shapes)
