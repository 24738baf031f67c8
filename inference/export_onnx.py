"""A Caffe deploy net + caffemodel -> an ONNX model, without Caffe.

    python inference/export_onnx.py --deploy prototxt/mln/deploy.prototxt \
        --weights mln.caffemodel --out mln.onnx

One ONNX node per Caffe layer: Convolution -> Conv (pad, stride, dilation, group, bias),
ReLU -> Relu (LeakyRelu with a negative_slope), Pooling MAX -> MaxPool (ceil_mode as Caffe's
round_mode: CEIL unless the prototxt says FLOOR), Concat -> Concat, Input -> the graph's input.
Any other layer type is refused by name. The files are read by inference/caffe_format.py; the
weights are checked against the prototxt (by name, blob count and filter count) before export.

The model has one input, the deploy input (`data`, float32 (batch, 3, height, width), batch,
height and width dynamic), and one output, `net_output` (conventions/net_contract.py). Opset 17
and IR version 8: what ONNX Runtime, OpenVINO and TensorRT 8.6 and later all read. Only the
layers that lead to net_output are exported. The SHA-256 of both Caffe files is stored in the
model's metadata (the backends' caches key on the model's own bytes).
"""
import argparse
import hashlib
import importlib.util
import pathlib
import sys

import numpy as np

from conventions.net_contract import DEPLOY_OUTPUT
from inference import caffe_format

OPSET = 17
IR_VERSION = 8
SUPPORTED = ("Input", "Convolution", "ReLU", "Pooling", "Concat")


class ExportError(Exception):
    """A net or weights file the exporter cannot convert; the message names the file and layer."""


def _pair(repeated, single_h, single_w, has_h, default):
    """Caffe's (h, w) of a spatial parameter: the _h/_w fields, else the repeated field (one
    value for both, or one per axis), else the default."""
    if has_h:
        return [int(single_h), int(single_w)]
    values = [int(v) for v in repeated]
    if not values:
        return [default, default]
    return values * 2 if len(values) == 1 else values[:2]


def _convolution(layer, blobs, inputs, output, where):
    p = layer.convolution_param
    kernel = _pair(p.kernel_size, p.kernel_h, p.kernel_w, p.HasField("kernel_h"), None)
    pad = _pair(p.pad, p.pad_h, p.pad_w, p.HasField("pad_h"), 0)
    stride = _pair(p.stride, p.stride_h, p.stride_w, p.HasField("stride_h"), 1)
    dilation = _pair(p.dilation, 0, 0, False, 1)
    if p.axis != 1:
        raise ExportError("%s: Convolution with axis %d; only axis 1 (channels) is supported"
                          % (where, p.axis))
    weight = blobs[0]
    if weight.ndim != 4 or list(weight.shape[2:]) != kernel:
        raise ExportError("%s: weight blob of shape %s does not fit kernel %s in the prototxt"
                          % (where, weight.shape, kernel))
    names = [inputs[0], layer.name + "/weight"]
    initializers = [(names[1], weight)]
    if p.bias_term:
        names.append(layer.name + "/bias")
        initializers.append((names[2], blobs[1].reshape(-1)))
    from onnx import helper
    node = helper.make_node("Conv", names, [output], name=layer.name, kernel_shape=kernel,
                            pads=pad + pad, strides=stride, dilations=dilation, group=p.group)
    return [node], initializers


def _enum_name(message, field):
    return message.DESCRIPTOR.fields_by_name[field].enum_type.values_by_number[
        getattr(message, field)].name


def _pooling(layer, inputs, output, where):
    from onnx import helper
    p = layer.pooling_param
    method = _enum_name(p, "pool")
    if method != "MAX":
        raise ExportError("%s: Pooling %s is not supported (MAX only: Caffe's average pooling "
                          "divides by a border window size no ONNX AveragePool mode matches)"
                          % (where, method))
    if p.global_pooling:
        raise ExportError("%s: global pooling is not supported" % where)
    kernel = _pair([p.kernel_size] if p.HasField("kernel_size") else [], p.kernel_h, p.kernel_w,
                   p.HasField("kernel_h"), None)
    if None in kernel:
        raise ExportError("%s: Pooling without kernel_size" % where)
    pad = _pair([p.pad], p.pad_h, p.pad_w, p.HasField("pad_h"), 0)
    stride = _pair([p.stride], p.stride_h, p.stride_w, p.HasField("stride_h"), 1)
    ceil = _enum_name(p, "round_mode") == "CEIL"
    if ceil and any(pad):
        # Caffe drops a last window that starts in the padding; ONNX Runtime does too, OpenVINO
        # does not (measured): the nets would differ at the border on some input sizes.
        raise ExportError("%s: max pooling with pad %s and CEIL rounding: runtimes disagree on "
                          "the last window; use pad 0 (as MLN and OpenPose do) or FLOOR"
                          % (where, pad))
    node = helper.make_node("MaxPool", inputs[:1], [output], name=layer.name,
                            kernel_shape=kernel, pads=pad + pad, strides=stride,
                            ceil_mode=int(ceil))
    return [node]


def _input_shape(net, deploy):
    """The deploy input's name and channels, from an Input layer or the legacy net.input."""
    for layer in net.layer:
        if layer.type == "Input":
            shape = list(layer.input_param.shape[0].dim) if layer.input_param.shape else []
            return layer.top[0], (shape[1] if len(shape) == 4 else 3)
    if net.input:
        if net.input_shape:
            dims = list(net.input_shape[0].dim)
        else:
            dims = list(net.input_dim[:4])
        return net.input[0], (dims[1] if len(dims) == 4 else 3)
    raise ExportError("%s has no Input layer (and no net-level input)" % deploy)


def _needed_layers(layers, output, deploy):
    """The layers on the way to `output` (Caffe order kept): others are not exported, so a
    deploy net's side branches need no support."""
    producers = {}
    for index, layer in enumerate(layers):
        for top in layer.top:
            producers.setdefault(top, []).append(index)
    if output not in producers:
        raise ExportError("%s has no blob %r (the deploy output the backends read)"
                          % (deploy, output))
    needed, wanted = set(), [(output, len(layers))]
    while wanted:
        blob, before = wanted.pop()
        for index in reversed(producers.get(blob, [])):
            if index < before:          # the last writer before the reader (in-place ReLUs)
                if index not in needed:
                    needed.add(index)
                    wanted += [(bottom, index) for bottom in layers[index].bottom]
                break
    return [layer for index, layer in enumerate(layers) if index in needed]


def caffe_to_onnx(deploy, weights, output=DEPLOY_OUTPUT):
    """-> onnx.ModelProto. Raises ExportError (or caffe_format.CaffeFormatError) naming the
    file and the layer for anything it cannot convert."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    net = caffe_format.read_net(deploy)
    if net.layers and not net.layer:
        raise ExportError("%s is in Caffe's old V1 format (layers {...}); upgrade it with "
                          "Caffe's upgrade_net_proto_text first" % deploy)
    blobs = caffe_format.read_weights(weights)
    missing = (caffe_format.layers_without_weights(net, blobs)
               + caffe_format.layers_with_other_shapes(net, blobs))
    input_name, channels = _input_shape(net, deploy)
    layers = _needed_layers(list(net.layer), output, deploy)
    unknown = [(l.name, l.type) for l in layers if l.type not in SUPPORTED]
    if unknown:
        raise ExportError("%s: layer %r of type %s is not supported by the exporter (it converts "
                          "%s)" % (deploy, unknown[0][0], unknown[0][1], ", ".join(SUPPORTED)))
    missing = [(n, r) for n, r in missing if n in {l.name for l in layers}]
    if missing:
        raise ExportError("weights %s do not fit %s: layer %r: %s (%d layers in all): pass the "
                          "caffemodel trained with this prototxt"
                          % (weights, deploy, missing[0][0], missing[0][1], len(missing)))
    by_name = {w.name: w.blobs for w in blobs}
    current = {input_name: input_name}  # Caffe blob -> the ONNX value now holding it (in-place
                                         # layers write new values)
    nodes, initializers = [], []
    for layer in layers:
        where = "%s: layer %r (%s)" % (deploy, layer.name, layer.type)
        if layer.type == "Input":
            current[layer.top[0]] = layer.top[0]
            continue
        try:
            inputs = [current[b] for b in layer.bottom]
        except KeyError as error:
            raise ExportError("%s reads blob %s that no earlier layer makes" % (where, error))
        if len(layer.top) != 1:
            raise ExportError("%s has %d tops; one expected" % (where, len(layer.top)))
        top = layer.top[0]
        value = top if top not in current else "%s/%s" % (top, layer.name)
        if layer.type == "Convolution":
            made, weights_of = _convolution(layer, by_name[layer.name], inputs, value, where)
            nodes += made
            initializers += weights_of
        elif layer.type == "ReLU":
            slope = layer.relu_param.negative_slope
            nodes.append(helper.make_node("LeakyRelu", inputs, [value], name=layer.name,
                                          alpha=slope) if slope else
                         helper.make_node("Relu", inputs, [value], name=layer.name))
        elif layer.type == "Pooling":
            nodes += _pooling(layer, inputs, value, where)
        elif layer.type == "Concat":
            p = layer.concat_param
            axis = p.axis if p.HasField("axis") or not p.HasField("concat_dim") else p.concat_dim
            nodes.append(helper.make_node("Concat", inputs, [value], name=layer.name, axis=axis))
        current[top] = value
    if current[output] != output:       # the output keeps its Caffe name for every runtime
        nodes.append(helper.make_node("Identity", [current[output]], [output]))
    graph = helper.make_graph(
        nodes, pathlib.Path(deploy).stem,
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT,
                                       ["batch", channels, "height", "width"])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT,
                                       ["batch", None, None, None])],
        [numpy_helper.from_array(np.ascontiguousarray(a, dtype=np.float32), name)
         for name, a in initializers])
    model = helper.make_model(graph, producer_name="mln-pose inference/export_onnx.py",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    for key, path in (("caffe_prototxt_sha256", deploy), ("caffemodel_sha256", weights)):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, file_digest(path)
    onnx.checker.check_model(model)
    return model


def file_digest(path):
    digest = hashlib.sha256()
    with open(str(path), "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def export(deploy, weights, out):
    """Write the ONNX model of a deploy net to `out` (atomically: a partial file never stays)."""
    import onnx
    model = caffe_to_onnx(deploy, weights)
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    onnx.save(model, str(partial))
    partial.replace(out)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Convert a Caffe deploy net (Input, Convolution, ReLU, max Pooling, Concat) "
                    "and its caffemodel to ONNX, without Caffe. Height and width stay dynamic.")
    parser.add_argument("--deploy", required=True, help="deploy prototxt")
    parser.add_argument("--weights", required=True, help="caffemodel")
    parser.add_argument("--out", required=True, help="ONNX file to write")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("onnx") is None:
        sys.exit("export_onnx: the onnx package is missing: pip install -e .[deploy]")
    try:
        export(args.deploy, args.weights, args.out)
    except (ExportError, caffe_format.CaffeFormatError) as error:
        sys.exit("export_onnx: %s" % error)
    except OSError as error:
        sys.exit("export_onnx: cannot write --out %s: %s" % (args.out, error.strerror or error))
    print("export_onnx: %s -> %s" % (args.weights, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
