"""Run a deploy net: real Caffe (pycaffe) or OpenCV's DNN module, on the same prototxt+caffemodel.

Both backends have forward(blob) -> net_output: blob (1, 3, h, w) float32 as image_to_blob makes
it, net_output (1, 57, h/8, w/8) float32 (19 heatmaps, then 38 PAFs). Caffe is imported only
when a CaffeBackend is made, so the OpenCV backend runs where there is no Caffe (the deploy venv).
"""
import os
import pathlib

import numpy as np

from conventions.geometry import normalise
from conventions.net_contract import DEPLOY_OUTPUT
from inference import caffe_format

BACKENDS = ("opencv", "caffe", "openvino", "onnxruntime")   # the last two: onnx_backends.py


class BackendError(Exception):
    """A net that cannot be loaded or run, with a message naming the files."""


def image_to_blob(image_bgr):
    """Padded BGR uint8 image (h, w, 3) -> network input (1, 3, h, w) float32: pixel / 256 - 0.5."""
    return np.ascontiguousarray(normalise(image_bgr)[None])


def _check_files(deploy, weights):
    for kind, path in (("deploy prototxt", deploy), ("weights", weights)):
        if not pathlib.Path(path).is_file():
            raise BackendError("%s not found: %s" % (kind, path))


def check_weights_fit(deploy, weights, shown=3):
    """Refuse a caffemodel that leaves layers of the prototxt without their weights, before a
    backend loads the pair. Caffe copies weights by layer name and leaves every other layer at
    its filler values (MLN's weights in the baseline's net run, and find nobody); OpenCV fails
    with a bare `!blobs.empty()`. Weights of other shapes are refused too (Caffe aborts, OpenCV
    fails at the first image). Reads names and shapes only (caffe_format, no values)."""
    try:
        net = caffe_format.read_net(deploy)
        layers = caffe_format.read_weight_shapes(weights)
    except caffe_format.CaffeFormatError as error:
        raise BackendError(str(error))
    problems = (caffe_format.layers_without_weights(net, layers)
                + caffe_format.layers_with_other_shapes(net, layers))
    if problems:
        needing = sum(1 for layer in net.layer if layer.type in caffe_format.PARAMETER_LAYERS)
        named = "; ".join("%s: %s" % problem for problem in problems[:shown])
        if len(problems) > shown:
            named += "; and %d more" % (len(problems) - shown)
        raise BackendError("weights %s do not fit %s: %d of its %d layers with parameters get "
                           "none or the wrong ones (%s): pass the caffemodel trained with this "
                           "prototxt" % (weights, deploy, len(problems), needing, named))


def import_caffe_quietly():
    """pycaffe with glog's INFO and WARNING lines off (glog reads GLOG_minloglevel when Caffe is
    first loaded). The variable is restored afterwards: child processes, such as a training
    run's `caffe train`, must keep their own logging."""
    previous = os.environ.get("GLOG_minloglevel")
    os.environ.setdefault("GLOG_minloglevel", "2")
    try:
        import caffe
    finally:
        if previous is None:
            del os.environ["GLOG_minloglevel"]
    return caffe


class CaffeBackend(object):
    """pycaffe in CPU mode; the input blob is reshaped to each image's padded size."""

    name = "caffe"

    def __init__(self, deploy, weights, output=DEPLOY_OUTPUT):
        _check_files(deploy, weights)
        check_weights_fit(deploy, weights)
        try:
            caffe = import_caffe_quietly()
        except ImportError as error:
            raise BackendError("--backend caffe needs pycaffe, which this Python cannot import "
                               "(%s): run through scripts/caffe-env, or use --backend opencv"
                               % error)
        caffe.set_mode_cpu()
        self.net = caffe.Net(str(deploy), str(weights), caffe.TEST)
        if output not in self.net.blobs:
            raise BackendError("%s has no blob %r (its outputs: %s)"
                               % (deploy, output, list(self.net.outputs)))
        self.input = self.net.inputs[0]
        self.output = output

    def forward(self, blob):
        data = self.net.blobs[self.input]
        if data.data.shape != blob.shape:
            data.reshape(*blob.shape)
            self.net.reshape()
        data.data[...] = blob
        self.net.forward()
        return self.net.blobs[self.output].data.copy()


class OpenCVBackend(object):
    """OpenCV's DNN module reading the Caffe files (cv2.dnn.readNetFromCaffe); any input size."""

    name = "opencv"

    def __init__(self, deploy, weights, output=DEPLOY_OUTPUT):
        _check_files(deploy, weights)
        check_weights_fit(deploy, weights)
        import cv2
        if not hasattr(cv2, "dnn") or not hasattr(cv2.dnn, "readNetFromCaffe"):
            raise BackendError("this OpenCV (%s) has no Caffe importer (OpenCV 5 removed it; "
                               "use opencv-python-headless<5)" % cv2.__version__)
        try:
            self.net = cv2.dnn.readNetFromCaffe(str(deploy), str(weights))
        except cv2.error as error:
            raise BackendError("OpenCV cannot load %s with %s: %s" % (deploy, weights, error))
        self.output = self._output_layer(deploy, output)
        self._cv2 = cv2

    def _output_layer(self, deploy, output):
        """OpenCV names outputs by layer, Caffe by top: OpenPose's deploy nets (and our baseline)
        make `net_output` in a layer called concat_stage7. Take the layer of that name if there
        is one, else the net's only final layer."""
        if output in self.net.getLayerNames():
            return output
        finals = list(self.net.getUnconnectedOutLayersNames())
        if len(finals) != 1:
            raise BackendError("%s: no layer %r and %d final layers (%s); cannot tell which one "
                               "gives %r" % (deploy, output, len(finals), ", ".join(finals), output))
        return finals[0]

    def forward(self, blob):
        self.net.setInput(blob)
        try:
            return self.net.forward(self.output)
        except self._cv2.error as error:
            raise BackendError("OpenCV forward to %r failed: %s" % (self.output, error))


def make_backend(name, deploy, weights, precision="fp32", **onnx_options):
    """onnx_options: calibrate, calibration_images, cache (inference/onnx_backends.py)."""
    from inference import onnx_backends
    onnx_backends.check_precision(name, precision)
    if name in onnx_backends.NAMES:
        return onnx_backends.make(name, deploy, weights, precision, **onnx_options)
    if name == "caffe":
        return CaffeBackend(deploy, weights)
    if name == "opencv":
        return OpenCVBackend(deploy, weights)
    raise ValueError("backend must be one of %s, got %r" % (BACKENDS, name))
