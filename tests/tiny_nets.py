"""Tiny deploy nets for the inference tests, made with pycaffe's NetSpec.

    scripts/caffe-env python -m tests.tiny_nets OUTDIR     (from the repository root: run as
    a file, tests/caffe/ would shadow the caffe package)

writes into OUTDIR (the prototxts have the deploy nets' interface: Input `data`, `net_output`
= 19 heatmaps + 38 PAFs at stride 8):
- random.prototxt/.caffemodel: three conv3x3+ReLU+max-pool stages (stride 8), then 1x1
  convolutions to 19 and 38 channels, concatenated; random weights. With random_input.npy and
  random_output.npy: Caffe's own net_output for a fixed input, for comparing other backends.
- codec.prototxt/.caffemodel: one 8x8 stride-8 convolution that reads back the 57 map values
  that encode_maps stored in each 8x8 block of an image: a "perfect network" for such images,
  so that predict.py can be tested end to end on people whose positions are known.
- nan.caffemodel: the codec net with a NaN bias in heatmap channel 0.

encode_maps is pure numpy (no Caffe) and imported by the tests in both environments.
"""
import pathlib
import sys

import numpy as np

STRIDE = 8
CHANNELS = 57
LOW, HIGH = -1.5, 1.5       # range of map values the codec carries (cubic overshoot included)


def encode_maps(net_maps):
    """(57, h, w) maps -> uint8 BGR image (8h, 8w, 3) whose 8x8 blocks hold the 57 values.

    Value k of cell (y, x) is pixel (8y + r, 8x + c), colour channel ch, with
    k = (r * 8 + c) * 3 + ch; unused pixels are 128.
    """
    channels, height, width = net_maps.shape
    codes = np.clip(np.round((net_maps - LOW) / (HIGH - LOW) * 255.0), 0, 255).astype(np.uint8)
    block = np.full((height, width, STRIDE * STRIDE * 3), 128, dtype=np.uint8)
    block[:, :, :channels] = codes.transpose(1, 2, 0)
    block = block.reshape(height, width, STRIDE, STRIDE, 3)
    return np.ascontiguousarray(block.transpose(0, 2, 1, 3, 4).reshape(height * STRIDE,
                                                                       width * STRIDE, 3))


def _deploy(body, height, width):
    """A NetSpec with the deploy interface; body(net, data) returns the heatmap and PAF tops."""
    import caffe
    from caffe import layers as L
    net = caffe.NetSpec()
    net.data = L.Input(shape=dict(dim=[1, 3, height, width]))
    heatmaps, pafs = body(net, net.data)
    net.net_output = L.Concat(heatmaps, pafs)
    return net.to_proto()


def _random_body(net, data):
    from caffe import layers as L
    from caffe import params as P
    top = data
    for stage, channels in enumerate((8, 16, 16), start=1):
        conv = L.Convolution(top, num_output=channels, kernel_size=3, pad=1)
        setattr(net, "conv%d" % stage, conv)
        setattr(net, "relu%d" % stage, L.ReLU(conv, in_place=True))
        top = L.Pooling(conv, pool=P.Pooling.MAX, kernel_size=2, stride=2)
        setattr(net, "pool%d" % stage, top)
    net.heatmaps = L.Convolution(top, num_output=19, kernel_size=1)
    net.pafs = L.Convolution(top, num_output=38, kernel_size=1)
    return net.heatmaps, net.pafs


def _codec_body(net, data):
    from caffe import layers as L
    net.heatmaps = L.Convolution(data, num_output=19, kernel_size=STRIDE, stride=STRIDE)
    net.pafs = L.Convolution(data, num_output=38, kernel_size=STRIDE, stride=STRIDE)
    return net.heatmaps, net.pafs


def _set_codec_weights(net):
    """Output k = value stored at its pixel: input p / 256 - 0.5 -> LOW + p / 255 (HIGH - LOW)."""
    gain = (HIGH - LOW) * 256.0 / 255.0
    offset = (HIGH - LOW) * 128.0 / 255.0 + LOW
    for layer, first in (("heatmaps", 0), ("pafs", 19)):
        weights, biases = net.params[layer][0].data, net.params[layer][1].data
        weights[...] = 0
        biases[...] = offset
        for out in range(weights.shape[0]):
            row, rest = divmod(first + out, STRIDE * 3)
            column, colour = divmod(rest, 3)
            weights[out, colour, row, column] = gain


def write_tiny_nets(out):
    import caffe
    from inference.random_weights import fill_random
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    caffe.set_mode_cpu()
    (out / "random.prototxt").write_text(str(_deploy(_random_body, 64, 80)))
    net = caffe.Net(str(out / "random.prototxt"), caffe.TEST)
    fill_random(net, seed=0)
    net.save(str(out / "random.caffemodel"))
    blob = np.random.RandomState(1).uniform(-0.5, 0.5, (1, 3, 64, 80)).astype(np.float32)
    net.blobs["data"].data[...] = blob
    net.forward()
    np.save(str(out / "random_input.npy"), blob)
    np.save(str(out / "random_output.npy"), net.blobs["net_output"].data)

    (out / "codec.prototxt").write_text(str(_deploy(_codec_body, 368, 432)))
    net = caffe.Net(str(out / "codec.prototxt"), caffe.TEST)
    _set_codec_weights(net)
    net.save(str(out / "codec.caffemodel"))
    net.params["heatmaps"][1].data[0] = np.nan
    net.save(str(out / "nan.caffemodel"))


if __name__ == "__main__":
    import os
    os.environ.setdefault("GLOG_minloglevel", "2")
    write_tiny_nets(sys.argv[1])


def write_codec_images(folder, counts=(1, 2, 10), image_size=(368, 432)):
    """Images of synthetic standing people for the codec net (PNG, lossless), named
    <count>.png, and their COCO ground truth: returns the annotation file's path."""
    import json

    import cv2

    from conventions.keypoints import COCO_KEYPOINT_NAMES, parts_to_coco
    from inference import oracle, synthetic
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for count in counts:
        parts = synthetic.standing_people(count, image_size)
        (net_maps, _), = oracle.rendered_outputs(parts, image_size)
        cv2.imwrite(str(folder / ("%d.png" % count)), encode_maps(net_maps))
        images.append({"id": count, "file_name": "%d.png" % count,
                       "height": image_size[0], "width": image_size[1]})
        for person in parts_to_coco(parts):
            x, y = person[:, 0], person[:, 1]
            box = [float(x.min()), float(y.min()), float(np.ptp(x)), float(np.ptp(y))]
            annotations.append({"id": len(annotations) + 1, "image_id": count,
                                "category_id": 1, "iscrowd": 0, "bbox": box,
                                "area": box[2] * box[3], "num_keypoints": 17,
                                "keypoints": person.astype(float).ravel().tolist()})
    annotation = folder.parent / (folder.name + "_annotations.json")
    annotation.write_text(json.dumps({
        "images": images, "annotations": annotations,
        "categories": [{"id": 1, "name": "person", "supercategory": "person",
                        "keypoints": list(COCO_KEYPOINT_NAMES), "skeleton": []}]}))
    return annotation
