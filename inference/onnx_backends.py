"""The ONNX backends: OpenVINO and ONNX Runtime on the CPU, at fp32, bf16 (OpenVINO) or int8.

They take what the other backends take, a deploy prototxt and a caffemodel (or an .onnx file
as the weights), and have the same forward(blob) -> net_output. What they need is made once
and cached:
- the fp32 ONNX model, exported by inference/export_onnx.py into the cache folder (--onnx-cache,
  default $MLN_ONNX_CACHE or ~/.cache/mln-pose/onnx), named by the digest of both Caffe files;
  an .onnx given as --weights is used as it is;
- the int8 model, beside the fp32 one (M.int8.onnx), with the settings that made it
  (M.int8.json: the fp32 model's digest, the calibration images, the quantiser's settings and
  version). It is quantised by ONNX Runtime (static, QDQ: uint8 activations with MinMax ranges,
  int8 weights per output channel), calibrated on real images (--calibrate DIR, each resized and
  padded as predict.py does at scale 1); OpenVINO and ONNX Runtime both run that same file.
  A cache made with other settings or from another fp32 model is rebuilt, never reused.
bf16 is OpenVINO's INFERENCE_PRECISION_HINT (the CPU plugin keeps the layers that need it in
fp32); on a CPU that OpenVINO says has no bf16, fp32 runs, with a notice. ONNX Runtime's CPU
provider has no bf16 mode on x86, so --backend onnxruntime --precision bf16 is refused.
"""
import hashlib
import itertools
import json
import logging
import os
import pathlib
import sys

from conventions.net_contract import DEPLOY_OUTPUT
from inference import scaling
from inference.backends import BackendError, image_to_blob
from inference.export_onnx import file_digest

NAMES = ("openvino", "onnxruntime")
PRECISIONS = ("fp32", "bf16", "int8")
DEFAULT_CALIBRATION_IMAGES = 64     # ORT's and OpenVINO's examples use 100-300; 64 keep the
                                    # one-off calibration to minutes on 2 cores
RECIPE = 1                          # bump when the quantiser's settings below change
QUANTISER = {"format": "QDQ", "calibration": "MinMax", "activations": "uint8 per tensor",
             "weights": "int8 symmetric per output channel", "input": "height 368 (scale 1), "
             "padded to a multiple of 8, pixel / 256 - 0.5, as predict.py"}


def _say(message):
    print("backend: %s" % message, file=sys.stderr)


# ----------------------------------------------------------------------------- options

def add_arguments(parser, precision=True):
    """The precision and calibration options of predict.py, fit_check.py and benchmark.py
    (which runs every precision: precision=False)."""
    if precision:
        parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                            help="openvino: fp32, bf16 or int8; onnxruntime: fp32 or int8; "
                                 "other backends fp32 (default fp32)")
    parser.add_argument("--calibrate", metavar="DIR",
                        help="int8: folder of real images to calibrate on (once; the int8 model "
                             "is cached beside the fp32 one with the settings that made it)")
    parser.add_argument("--calibration-images", type=int, default=DEFAULT_CALIBRATION_IMAGES,
                        metavar="N", help="int8: how many images of --calibrate, spread over "
                                          "its sorted listing (default %(default)s)")
    parser.add_argument("--onnx-cache", metavar="DIR",
                        help="where the ONNX exports of caffemodels go (default "
                             "$MLN_ONNX_CACHE or ~/.cache/mln-pose/onnx)")


def backend_options(args):
    """The keyword arguments of backends.make_backend from add_arguments' options."""
    return {"precision": args.precision, "calibrate": args.calibrate,
            "calibration_images": args.calibration_images, "cache": args.onnx_cache}


def runtime_setting(args):
    """The backend as a resumable run records it: "openvino int8"; plain "opencv" at fp32, as
    before precisions existed (so older checkpoints still resume)."""
    return args.backend if args.precision == "fp32" else "%s %s" % (args.backend, args.precision)


def check_precision(backend, precision):
    """Raise BackendError for a backend/precision pair that does not exist."""
    if precision not in PRECISIONS:
        raise BackendError("precision must be one of %s, got %r" % (PRECISIONS, precision))
    if backend not in NAMES and precision != "fp32":
        raise BackendError("--precision %s needs --backend openvino or onnxruntime (%s runs "
                           "fp32 only)" % (precision, backend))
    if backend == "onnxruntime" and precision == "bf16":
        raise BackendError("ONNX Runtime's CPU provider has no bf16 mode on x86: use "
                           "--backend openvino --precision bf16")


# ----------------------------------------------------------------------------- models

def cache_folder(cache=None):
    return pathlib.Path(cache or os.environ.get("MLN_ONNX_CACHE")
                        or pathlib.Path.home() / ".cache" / "mln-pose" / "onnx")


def fp32_model(deploy, weights, cache=None):
    """The fp32 ONNX file of a deploy net: `weights` itself when it is .onnx, else the export
    in the cache folder (made when missing)."""
    from inference import caffe_format, export_onnx
    if str(weights).endswith(".onnx"):
        if not pathlib.Path(weights).is_file():
            raise BackendError("ONNX model not found: %s" % weights)
        return pathlib.Path(weights)
    for kind, path in (("deploy prototxt", deploy), ("weights", weights)):
        if not pathlib.Path(path).is_file():
            raise BackendError("%s not found: %s" % (kind, path))
    key = hashlib.sha256((file_digest(deploy) + file_digest(weights)).encode()).hexdigest()
    out = cache_folder(cache) / ("%s-%s.onnx" % (pathlib.Path(weights).stem, key[:16]))
    if not out.is_file():
        _say("exporting %s to ONNX: %s" % (weights, out))
        try:
            export_onnx.export(deploy, weights, out)
        except (export_onnx.ExportError, caffe_format.CaffeFormatError) as error:
            raise BackendError(str(error))
        except OSError as error:
            raise BackendError("cannot write the ONNX export %s: %s (choose another folder "
                               "with --onnx-cache)" % (out, error))
    return out


def calibration_files(folder, count):
    """Up to `count` images of `folder`, spread evenly over its sorted listing. As predict.py,
    OpenCV decides what an image is (by the file's header), not the file's name."""
    import cv2
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise BackendError("--calibrate %s is not a folder" % folder)
    listed = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    files = [p for p in listed if cv2.haveImageReader(str(p))]
    if not files:
        raise BackendError("--calibrate %s holds no image OpenCV can read (of its %d files): "
                           "int8 needs real images, ideally ~100 like those you will run on"
                           % (folder, len(listed)))
    if count < 1:
        raise BackendError("--calibration-images must be at least 1, got %d" % count)
    step = max(1.0, len(files) / float(count))
    return [files[int(i * step)] for i in range(min(count, len(files)))]


def calibration_blobs(files):
    """The network inputs of the calibration images, as predict.py makes them at scale 1."""
    from inference.prediction import SkipImage, read_image
    for path in files:
        try:
            image, _ = read_image(path)
        except SkipImage:
            continue
        yield image_to_blob(scaling.resize_and_pad(image)[0])


def int8_settings(fp32_path, files):
    import onnxruntime
    return {"fp32_model_sha256": file_digest(fp32_path),
            "calibration_folder": str(files[0].parent.resolve()),
            "calibration_images": [[p.name, p.stat().st_size] for p in files],
            "quantiser": dict(QUANTISER, recipe=RECIPE,
                              onnxruntime=onnxruntime.__version__)}


def int8_model(fp32_path, calibrate=None, count=DEFAULT_CALIBRATION_IMAGES):
    """The int8 QDQ model beside fp32_path: reused when its settings file matches, else made
    (calibrating on `calibrate`, or on the folder the old cache was made from)."""
    fp32_path = pathlib.Path(fp32_path)
    out = fp32_path.with_name(fp32_path.name[:-len(".onnx")] + ".int8.onnx")
    record = out.with_suffix(".json")
    old = json.loads(record.read_text()) if record.is_file() and out.is_file() else None
    if calibrate is None:
        if old is None:
            raise BackendError("--precision int8 needs --calibrate DIR (a folder of real images) "
                               "the first time; the int8 model of %s is then cached" % fp32_path)
        if old["fp32_model_sha256"] == file_digest(fp32_path):
            return out
        calibrate, count = old["calibration_folder"], len(old["calibration_images"])
        if not pathlib.Path(calibrate).is_dir():
            raise BackendError("the int8 cache %s was made from other weights, and the folder it "
                               "was calibrated on (%s) is gone: pass --calibrate DIR"
                               % (out, calibrate))
    files = calibration_files(calibrate, count)
    settings = int8_settings(fp32_path, files)
    if old == settings:
        return out
    if old is not None:
        why = ("other weights" if old["fp32_model_sha256"] != settings["fp32_model_sha256"]
               else "other settings")
        _say("the int8 cache %s was made from %s: rebuilding it" % (out, why))
    _quantise(fp32_path, files, out)
    record.write_text(json.dumps(settings, indent=1))
    return out


def _quantise(fp32_path, files, out):
    from onnxruntime import quantization as q

    class Reader(q.CalibrationDataReader):
        def __init__(self, blobs):
            self.blobs = blobs

        def get_next(self):
            blob = next(self.blobs, None)
            return None if blob is None else {input_name: blob}

    import onnx
    input_name = onnx.load(str(fp32_path), load_external_data=False).graph.input[0].name
    blobs = calibration_blobs(files)
    first = next(blobs, None)
    if first is None:
        raise BackendError("--calibrate %s: none of its %d image files could be read"
                           % (files[0].parent, len(files)))
    _say("calibrating int8 on %d images of %s (once) ..." % (len(files), files[0].parent))
    partial = out.with_name(out.name + ".partial")
    # ORT advises its pre-processing (shape inference, graph fusions) on every call; a net of
    # plain Conv/Relu/MaxPool/Concat gains nothing from it, so the advice is kept off stderr.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        q.quantize_static(str(fp32_path), str(partial), Reader(itertools.chain([first], blobs)),
                          quant_format=q.QuantFormat.QDQ, per_channel=True,
                          activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                          calibrate_method=q.CalibrationMethod.MinMax,
                          extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})
        partial.replace(out)
    except OSError as error:
        raise BackendError("cannot write the int8 model beside %s: %s" % (fp32_path, error))
    finally:
        root.setLevel(level)
        if partial.exists():              # interrupted or failed: never left half-made
            partial.unlink()


# ----------------------------------------------------------------------------- runtimes

def _bf16_supported(capabilities):
    return "BF16" in capabilities


class OpenVINOBackend(object):
    """OpenVINO's CPU plugin on the ONNX model; one compiled model for every input size.
    capabilities: the CPU's OPTIMIZATION_CAPABILITIES (default: asked of OpenVINO)."""

    name = "openvino"

    def __init__(self, model_path, precision, capabilities=None):
        import openvino as ov
        core = ov.Core()
        if capabilities is None:
            capabilities = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if precision == "bf16" and not _bf16_supported(capabilities):
            _say("OpenVINO says this CPU (%s) has no bf16 (capabilities: %s): running fp32"
                 % (core.get_property("CPU", "FULL_DEVICE_NAME"), ", ".join(capabilities)))
            precision = "fp32"
        self.precision = precision
        # The hint is explicit for fp32 and int8 too: on CPUs with bf16 OpenVINO's default
        # would silently run the fp32 layers in bf16.
        hint = "bf16" if precision == "bf16" else "f32"
        try:
            self.compiled = core.compile_model(core.read_model(str(model_path)), "CPU",
                                               {"INFERENCE_PRECISION_HINT": hint,
                                                "PERFORMANCE_HINT": "LATENCY"})
        except RuntimeError as error:
            raise BackendError("OpenVINO cannot load %s: %s" % (model_path, str(error)[:300]))
        self.request = self.compiled.create_infer_request()
        self.output = self.compiled.output(DEPLOY_OUTPUT)
        self.label = "OpenVINO %s %s" % (".".join(ov.__version__.split(".")[:2]), precision)

    def forward(self, blob):
        return self.request.infer({0: blob})[self.output].copy()


class OnnxRuntimeBackend(object):
    """ONNX Runtime's CPU execution provider, one intra-op thread per core, not spinning."""

    name = "onnxruntime"

    def __init__(self, model_path, precision):
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = len(os.sched_getaffinity(0))   # the cores we may use
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle threads that spin after a forward pass take the cores from the upsampling and
        # grouping that follow it (measured: upsampling 2x slower, on 2 cores).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(model_path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as error:        # ORT raises its own Fail/InvalidGraph classes
            raise BackendError("ONNX Runtime cannot load %s: %s" % (model_path, str(error)[:300]))
        self.input = self.session.get_inputs()[0].name
        self.precision = precision
        self.label = "ONNX Runtime %s %s" % (".".join(ort.__version__.split(".")[:2]), precision)

    def forward(self, blob):
        return self.session.run([DEPLOY_OUTPUT], {self.input: blob})[0]


def make(name, deploy, weights, precision="fp32", calibrate=None, calibration_images=None,
         cache=None, capabilities=None):
    """An OpenVINO or ONNX Runtime backend for a deploy net at a precision."""
    check_precision(name, precision)
    try:
        __import__(name)                  # the backends are named as their packages
    except ImportError:
        raise BackendError("--backend %s needs the %s package: pip install -e .[deploy]"
                           % (name, name))
    model = fp32_model(deploy, weights, cache)
    if precision == "int8":
        model = int8_model(model, calibrate, calibration_images or DEFAULT_CALIBRATION_IMAGES)
    if name == "openvino":
        return OpenVINOBackend(model, precision, capabilities)
    return OnnxRuntimeBackend(model, precision)
