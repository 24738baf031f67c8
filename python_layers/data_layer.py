"""The Caffe training data layer: samples from data_prep's LMDB, augmented, with their labels.

    layer { name: "data" type: "Python"
            top: "data" top: "heatmap_label" top: "paf_label" top: "loss_mask"
            python_param { module: "python_layers.data_layer" layer: "CocoPoseDataLayer"
                           param_str: '{"source": "coco_train2017.lmdb", "batch_size": 28}' } }

Tops: data (N, 3, C, C) float32 BGR pixel / 256 - 0.5; heatmap_label (N, 19, C/8, C/8);
paf_label (N, 38, C/8, C/8); loss_mask (N, 1, C/8, C/8) in [0, 1].

param_str is a JSON object. Required: `source` (the LMDB) and `batch_size`. Optional, with their
defaults: the LAYER_DEFAULTS below, and every field of python_layers.augment.AugmentParams
(crop_size 368, stride 8, target_dist 0.6, scale_min 0.5, scale_max 1.1, scale_prob 1,
max_rotate_degree 40, center_perturb_max 40, flip_prob 0.5, pad_value 128, sigma 7,
paf_width_cells 1, gaussian_form "code": OpenPose's COCO training values). An unknown key is an
error naming it (a typo must not train silently with a default).

The work is done by python_layers.batch_source (the sample order, the worker processes) and
python_layers.augment (one sample); this module only parses param_str and fills the tops.
"""
import dataclasses
import functools
import json
import os
import sys
import traceback

import caffe

from python_layers.augment import AugmentParams
from python_layers.batch_source import BatchSource, top_shapes

REQUIRED_KEYS = ("source", "batch_size")
LAYER_DEFAULTS = {
    "seed": 0,                # the sample order and every augmentation follow from it
    "workers": min(4, os.cpu_count() or 1),   # processes building samples; 0 = in Caffe's
    "prefetch_batches": 2,    # batches in preparation while Caffe computes
    "first_sample": 0,        # position of the first sample in the stream (train.sh --resume)
}
AUGMENT_KEYS = tuple(field.name for field in dataclasses.fields(AugmentParams))


def parse_param_str(text):
    """param_str -> (layer options dict with every LAYER_DEFAULTS key, AugmentParams)."""
    where = "CocoPoseDataLayer param_str"
    try:
        values = json.loads(text)
    except ValueError as error:
        raise ValueError("%s is not valid JSON (%s): %r" % (where, error, text)) from None
    if not isinstance(values, dict):
        raise ValueError("%s must be a JSON object, got %r" % (where, text))
    known = set(REQUIRED_KEYS) | set(LAYER_DEFAULTS) | set(AUGMENT_KEYS)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError("%s: unknown key%s %s; known keys: %s"
                         % (where, "s" if len(unknown) > 1 else "",
                            ", ".join(repr(key) for key in unknown), ", ".join(sorted(known))))
    missing = [key for key in REQUIRED_KEYS if key not in values]
    if missing:
        raise ValueError("%s: required key%s %s missing" % (
            where, "s" if len(missing) > 1 else "", " and ".join(repr(k) for k in missing)))
    if not isinstance(values["source"], str) or not values["source"]:
        raise ValueError("%s: 'source' must be the path of the LMDB, got %r"
                         % (where, values["source"]))
    options = dict(LAYER_DEFAULTS, source=values["source"])
    for key in ("batch_size",) + tuple(LAYER_DEFAULTS):
        value = values.get(key, options.get(key))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) \
                or value < (1 if key == "batch_size" else 0):
            raise ValueError("%s: %r must be a %s integer, got %r" % (
                where, key, "positive" if key == "batch_size" else "non-negative", value))
        options[key] = int(value)
    augment_values = {key: values[key] for key in AUGMENT_KEYS if key in values}
    try:
        params = AugmentParams.from_dict(augment_values)
    except ValueError as error:
        raise ValueError("%s: %s" % (where, error)) from None
    return options, params


def report_errors(method):
    """Print a layer method's exception to stderr (Caffe's log) before it propagates: under the
    `caffe` command line boost::python ends the process on it (error_already_set) without ever
    printing the Python error, so a message naming the image or the key would be lost."""
    @functools.wraps(method)
    def reporting(self, *args):
        try:
            return method(self, *args)
        except Exception:
            sys.stderr.write("CocoPoseDataLayer: error in %s: %s"
                             % (method.__name__, traceback.format_exc()))
            sys.stderr.flush()
            raise
    return reporting


def describe_workers(pids):
    if not pids:
        return "samples built in this process (workers 0)"
    return "%d worker processes (pids %s)" % (len(pids), " ".join(str(pid) for pid in pids))


class CocoPoseDataLayer(caffe.Layer):
    """Four tops from data_prep's LMDB; see the module docstring for param_str.

    pycaffe never frees a Python layer (the layer and its C++ side keep each other alive), so
    the workers live until the process ends (they are terminated then, also when it is killed)
    or until `net.layers[0].batches.close()`.
    """

    @report_errors
    def setup(self, bottom, top):
        if bottom:
            raise ValueError("CocoPoseDataLayer takes no bottom blobs")
        if len(top) != 4:
            raise ValueError("CocoPoseDataLayer has 4 tops (data, heatmap_label, paf_label, "
                             "loss_mask), the net gives it %d" % len(top))
        options, params = parse_param_str(self.param_str)
        # Under pycaffe's multi-GPU training each solver process has its own layer: the ranks
        # take interleaved batches of one stream (python_layers/batch_source.py).
        self.batches = BatchSource(
            options["source"], options["batch_size"], params, seed=options["seed"],
            workers=options["workers"], prefetch_batches=options["prefetch_batches"],
            first_sample=options["first_sample"], rank=caffe.solver_rank(),
            ranks=caffe.solver_count())
        self.shapes = top_shapes(options["batch_size"], params)
        # Into Caffe's log: what trains, and the worker pids (to find them; tests check them).
        sys.stderr.write("CocoPoseDataLayer: %d samples (main persons) in %d records of %s; "
                         "batch %d, crop %d, seed %d, first sample %d, rank %d of %d; %s\n" % (
                             self.batches.num_samples, len(self.batches.reader),
                             options["source"], options["batch_size"], params.crop_size,
                             options["seed"], options["first_sample"], caffe.solver_rank(),
                             caffe.solver_count(), describe_workers(self.batches.worker_pids)))
        sys.stderr.flush()

    def reshape(self, bottom, top):
        for index, shape in enumerate(self.shapes):       # pycaffe's top does not iterate
            top[index].reshape(*shape)

    @report_errors
    def forward(self, bottom, top):
        self.batches.fill([top[index].data for index in range(len(self.shapes))])

    def backward(self, top, propagate_down, bottom):
        pass                  # a data layer has nothing to propagate
