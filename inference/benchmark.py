"""Speed of MLN and the OpenPose baseline side by side, and of the grouping: a Markdown table.

    python inference/benchmark.py [--deploy-mln P] [--deploy-baseline P] [--repeats 5]
                                  [--json OUT] [--md OUT] [--caffe-time]
                                  [--calibrate DIR] [--calibration-images N]

Measures, each as the median of --repeats runs after a warm-up:
- network ms per image at 368x432 (the paper's size) for both deploy nets, in each environment
  that can be reached, each environment timing both nets in one process (this tool calls them
  through subprocesses): the Caffe environment (scripts/caffe-env: pycaffe's forward pass and
  its OpenCV; --caffe-time adds the `caffe time` CLI's own average forward pass) and the deploy
  venv (its OpenCV, then ONNX Runtime fp32 and int8 and OpenVINO fp32, bf16 and int8 through
  inference/onnx_backends.py), with each output's max abs difference from the environment's
  first runtime (Caffe, or the venv's OpenCV) on the same input;
- image to people for a 368x432 image with 2 people, per runtime of the deploy venv: resize,
  pad and blob, forward and upsampling timed in sequence, plus peaks and grouping (on maps
  rendered from people, since random weights give noise maps). A net's runtimes are timed
  in turns, round after round, so that a passing load touches every row alike;
- peak finding (NMS) and grouping (limb scores + assembly) ms for 2 and 10 people on maps
  rendered by python_layers.labels and upsampled as predict.py does.
The nets get random weights (inference/random_weights.py, cached under --cache, with their ONNX
exports and int8 models): speed does not depend on the values. int8 is calibrated on
--calibrate (default the COCO slice's images beside the repository; 16 of them: int8's speed
does not depend on its ranges); without images int8 is left out with a note. A precision the
CPU lacks is left out with a note. Prints the table (or writes it to --md); --json writes
{"network_ms": {model: {runtime label: ms}}, "image_to_people_total_ms": {model: {label: ms}},
"output_max_abs_diff": {model: {label: ..}}, "grouping_ms": {"2": .., "10": ..}, "nms_ms":
{..}, "image_to_maps_ms": {..}, "load_s": {..}, "machine": {..}, "environments": {..}}; a
runtime label names the runtime, its version and precision ("OpenVINO 2026.4 int8").
"""
import argparse
import hashlib
import json
import os
import pathlib
import platform
import re
import statistics
import subprocess
import sys
import time

import numpy as np

from inference import onnx_backends

REPO = pathlib.Path(__file__).resolve().parents[1]

COCO_IMAGES = pathlib.Path(os.environ.get(
    "MLN_COCO_MINI", REPO.parent / "shared" / "data" / "coco_train2017_mini")) / "images"
BENCH_CALIBRATION_IMAGES = 16      # int8 speed does not depend on its ranges: a quick calibration
MODELS = ("mln", "baseline")
INPUT_SIZE = (368, 432)
PEOPLE = (2, 10)
PAPER = {"grouping_ms": {"2": 0.2, "10": 0.6}, "network_ms_p40": 22.71, "ratio_p40": 2.07,
         "mac_ratio": 159.57 / 82.52}
TARGET_IMAGE_TO_PEOPLE_MS = 600


def median_ms(function, repeats, warmup=1):
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


# ----------------------------------------------------------------------------- worker side

def grouping_times(repeats):
    """NMS and grouping ms on rendered maps of 2 and 10 people at 368x432."""
    from inference import grouping, synthetic
    nms, assembly = {}, {}
    for count in PEOPLE:
        heatmaps, pafs = synthetic.rendered_maps(synthetic.standing_people(count, INPUT_SIZE),
                                                 INPUT_SIZE)
        peaks = grouping.find_peaks(heatmaps)
        people = grouping.assemble(peaks, grouping.score_limbs(peaks, pafs, INPUT_SIZE[0]))
        if len(people.scores) != count:
            raise RuntimeError("grouping found %d of %d rendered people"
                               % (len(people.scores), count))
        nms[str(count)] = median_ms(lambda: grouping.find_peaks(heatmaps), repeats)
        assembly[str(count)] = median_ms(
            lambda: grouping.assemble(peaks, grouping.score_limbs(peaks, pafs, INPUT_SIZE[0])),
            repeats)
    return nms, assembly


# The deploy venv's runtimes, in the table's order: (backend, precision). OpenCV comes first:
# every other output is compared with its.
VENV_RUNTIMES = (("opencv", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8"),
                 ("openvino", "fp32"), ("openvino", "bf16"), ("openvino", "int8"))
ONNX = onnx_backends.NAMES
# image to people, MLN, 2 people: the targets by precision (OpenCV's: the earlier 600 ms)
TARGETS_MS = {"int8": 150, "bf16": 250}


def _runtime_label(backend):
    import cv2
    if backend.name == "opencv":
        return "OpenCV %s DNN" % cv2.__version__
    if backend.name == "caffe":
        return "Caffe 1.0, pycaffe forward"
    return backend.label


def network_times(nets, repeats, runtimes, onnx_options, notes):
    """Both deploy nets, in this process, on one 368x432 image: each runtime's forward ms and
    its image to maps ms (resize, pad and blob, forward, upsample to the image: predict.py's
    steps before the decoding), medians of `repeats` rounds after a warm-up round. A net's
    runtimes are all loaded first and timed in turns, round after round, so that a load
    that comes and goes on a shared machine touches every row alike. -> (forward {model:
    {label: ms}}, image to maps {model: {label: ms}}, the process's CPU ms (all threads) for
    image to maps, {model: {label: max abs difference of its output from the first
    runtime's}}, {model: {label: s to load it, export and int8 calibration included}})."""
    from inference import backends, scaling
    image = np.random.RandomState(1).randint(0, 256, INPUT_SIZE + (3,)).astype(np.uint8)
    forward, to_maps, cpu_ms, diffs, loads = {}, {}, {}, {}, {}
    for model, (deploy, weights) in nets.items():
        loaded = []
        for name, precision in runtimes:
            start = time.perf_counter()
            try:
                backend = backends.make_backend(name, deploy, weights, precision,
                                                **(onnx_options if name in ONNX else {}))
            except backends.BackendError as error:
                notes.append("%s %s %s not measured: %s" % (model, name, precision, error))
                continue
            if getattr(backend, "precision", "fp32") != precision:    # bf16 -> fp32 fallback
                notes.append("%s %s %s not measured: this CPU has no %s"
                             % (model, name, precision, precision))
                continue
            loaded.append((_runtime_label(backend), backend, time.perf_counter() - start))
        times = {label: [] for label, _, _ in loaded}
        outputs = {}
        for round_ in range(repeats + 1):            # round 0: the warm-up
            for label, backend, _ in loaded:
                cpu, start = time.process_time(), time.perf_counter()
                padded, resized = scaling.resize_and_pad(image)
                blob = backends.image_to_blob(padded)
                before = time.perf_counter()
                output = backend.forward(blob)
                after = time.perf_counter()
                scaling.upsample_maps(output[0], resized, INPUT_SIZE)
                if round_:
                    times[label].append((after - before, time.perf_counter() - start,
                                         time.process_time() - cpu))
                else:
                    outputs[label] = output
        reference = outputs[loaded[0][0]] if loaded else None
        forward[model] = {label: 1000 * statistics.median(t[0] for t in times[label])
                          for label in times}
        to_maps[model] = {label: 1000 * statistics.median(t[1] for t in times[label])
                          for label in times}
        cpu_ms[model] = {label: 1000 * statistics.median(t[2] for t in times[label])
                         for label in times}
        diffs[model] = {label: float(np.abs(outputs[label] - reference).max())
                        for label in outputs}
        loads[model] = {label: seconds for label, _, seconds in loaded}
        loaded = None                    # free this net's runtimes before the next net's
    return forward, to_maps, cpu_ms, diffs, loads


def worker(args):
    """Runs inside one environment; prints its measurements as one JSON line."""
    import cv2
    nets = {model: (deploy, weights) for model, deploy, weights in
            (("mln", args.deploy_mln, args.weights_mln),
             ("baseline", args.deploy_baseline, args.weights_baseline)) if weights}
    if args.worker == "caffe":
        runtimes = (("caffe", "fp32"), ("opencv", "fp32"))
    else:
        runtimes = VENV_RUNTIMES
    nms, assembly = grouping_times(args.group_repeats)
    notes = []
    network, to_maps, cpu_ms, diffs, loads = network_times(nets, args.repeats, runtimes, {
        "calibrate": args.calibrate, "calibration_images": args.calibration_images,
        "cache": args.onnx_cache}, notes)
    report = {"python": platform.python_version(), "numpy": np.__version__,
              "opencv": cv2.__version__, "threads": cv2.getNumThreads(),
              "nms_ms": nms, "grouping_ms": assembly, "network_ms": network,
              "image_to_maps_ms": to_maps, "image_to_maps_cpu_ms": cpu_ms,
              "output_max_abs_diff": diffs, "load_s": loads,
              "notes": notes}
    for package in ONNX:
        try:
            report[package] = __import__(package).__version__
        except ImportError:
            pass
    print(json.dumps(report))
    return 0


# ----------------------------------------------------------------------------- main side

def caffe_env():
    return [str(REPO / "scripts" / "caffe-env")]


def venv_python():
    venv = pathlib.Path(os.environ.get("MLN_VENV", REPO / ".venv"))
    python = venv / "bin" / "python"
    return [str(python)] if python.is_file() else None


def run_json(command):
    run = subprocess.run(command, cwd=str(REPO), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True)
    if run.returncode != 0:
        lines = run.stderr.strip().splitlines() or ["no message"]
        raise RuntimeError("failed: %s" % lines[-1])
    return json.loads(run.stdout.strip().splitlines()[-1])


def random_weights(deploy, cache):
    """The cached random caffemodel of a prototxt (made through caffe-env when missing)."""
    digest = hashlib.sha256(pathlib.Path(deploy).read_bytes()).hexdigest()[:12]
    weights = pathlib.Path(cache) / ("%s_%s.caffemodel" % (pathlib.Path(deploy).parent.name,
                                                           digest))
    if not weights.is_file():
        weights.parent.mkdir(parents=True, exist_ok=True)
        run = subprocess.run(caffe_env() + ["python", str(REPO / "inference" / "random_weights.py"),
                                            "--deploy", str(deploy), "--out", str(weights)],
                             cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True)
        if run.returncode != 0:
            raise RuntimeError("cannot make random weights for %s:\n%s"
                               % (deploy, run.stderr[-2000:]))
    return weights


def caffe_cli_forward_ms(deploy, iterations):
    """`caffe time`'s own average forward pass (it runs backward passes too)."""
    run = subprocess.run(caffe_env() + ["caffe", "time", "-model", str(deploy),
                                        "-iterations", str(iterations)],
                         cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True)
    found = re.search(r"Average Forward pass: ([\d.]+) ms", run.stdout)
    if run.returncode != 0 or not found:
        raise RuntimeError("caffe time failed on %s:\n%s" % (deploy, run.stdout[-2000:]))
    return float(found.group(1))


# CPU features that decide which precisions run fast (lscpu's names)
CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16",
                "amx_int8")


def machine():
    """The CPU, its cores, its bf16/int8 features and the system, as the benchmark and the
    demo's report state them."""
    model, flags = platform.processor() or "unknown CPU", []
    try:
        with open("/proc/cpuinfo") as handle:
            text = handle.read()
        names = re.findall(r"model name\s*:\s*(.*)", text)
        model = names[0].strip() if names else model
        found = re.search(r"^flags\s*:\s*(.*)$", text, re.M)
        flags = [f for f in CPU_FEATURES if found and f in found.group(1).split()]
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "system": platform.platform(),
            "features": flags}


def ms(value):
    return "-" if value is None else ("%.0f ms" % value if value >= 100 else "%.2f ms" % value)


def _ratio(mln, base):
    return "%.2fx" % (base / mln) if mln and base else "-"


def _runtimes(table):
    """Runtime labels of {model: {label: value}}, in first-seen order."""
    labels = []
    for model in table.values():
        labels += [label for label in model if label not in labels]
    return labels


def _target(label):
    precision = label.rsplit(" ", 1)[-1]
    return TARGETS_MS.get(precision)


def machine_line(report):
    info = report["machine"]
    return ("%s, %d cores, %s (%s)" % (info["cpu"], info["cores"],
                                       " ".join(info["features"]) or "no AVX2", info["system"]))


def markdown(report):
    lines = ["Machine: %s. Median of %d runs after a warm-up; random He-normal weights (speed "
             "does not depend on the values)." % (machine_line(report), report["repeats"])]
    for name, env in report["environments"].items():
        extra = ", Caffe 1.0 (pycaffe, CPU)" if name == "caffe env" else ""
        extra += "".join(", %s %s" % (label, env[package]) for package, label in
                         (("onnxruntime", "ONNX Runtime"), ("openvino", "OpenVINO"))
                         if package in env)
        lines.append("- %s: Python %s, numpy %s, OpenCV %s (%d threads)%s"
                     % (name, env["python"], env["numpy"], env["opencv"], env["threads"], extra))
    network, diffs = report["network_ms"], report["output_max_abs_diff"]
    if network:
        lines += ["", "Network, one 368x432 image (max |difference| of MLN's output from the "
                  "first runtime of its environment: Caffe, or the venv's OpenCV):", "",
                  "| runtime | MLN | baseline | baseline / MLN | MLN output max abs diff |",
                  "|---|---|---|---|---|"]
        for label in _runtimes(network):
            mln, base = network.get("mln", {}).get(label), network.get("baseline", {}).get(label)
            diff = diffs.get("mln", {}).get(label)
            lines.append("| %s | %s | %s | %s | %s |"
                         % (label, ms(mln), ms(base), _ratio(mln, base),
                            "-" if diff is None else "%.2g" % diff))
        lines.append("| paper (Tesla P40, Caffe) | 22.71 ms | | 2.07x (MACs: %.2fx) | |"
                     % PAPER["mac_ratio"])
    totals = report.get("image_to_people_total_ms")
    if totals:
        lines += ["", "Image to people, one 368x432 image with 2 people, deploy venv: resize, "
                  "pad, blob, forward, upsample, peaks, grouping (targets for MLN: int8 <= %d "
                  "ms, bf16 <= %d ms):" % (TARGETS_MS["int8"], TARGETS_MS["bf16"]), "",
                  "| runtime | MLN | baseline | baseline / MLN | MLN target | MLN CPU time "
                  "/ %d cores |" % report["machine"]["cores"], "|---|---|---|---|---|---|"]
        cpu = report.get("image_to_people_cpu_ms", {}).get("mln", {})
        for label in _runtimes(totals):
            mln, base = totals.get("mln", {}).get(label), totals.get("baseline", {}).get(label)
            target = _target(label)
            verdict = "-" if target is None or mln is None else "%s %d ms" % (
                "met, <=" if mln <= target else "missed, >", target)
            per_core = cpu.get(label)
            lines.append("| %s | %s | %s | %s | %s | %s |"
                         % (label, ms(mln), ms(base), _ratio(mln, base), verdict,
                            ms(per_core / report["machine"]["cores"]) if per_core else "-"))
        lines += ["", "Each row: resize, pad, blob, forward and upsampling measured in sequence "
                  "(median), plus peaks %s and grouping %s for 2 people on rendered maps "
                  "(random weights give noise maps). The last column is the CPU time the "
                  "process used (all its threads) shared over the cores: what the wall time "
                  "would be on an otherwise idle machine if the runtime kept every core busy; "
                  "on a shared machine it is the steadier figure."
                  % (ms(report["nms_ms"]["2"]), ms(report["grouping_ms"]["2"]))]
    loads = report.get("load_s", {})
    if loads:
        lines += ["", "First load of each backend, s (ONNX export and int8 calibration when not "
                  "cached yet): " + "; ".join(
                      "%s: %s" % (model, ", ".join("%s %.1f" % (k, v) for k, v in runs.items()))
                      for model, runs in loads.items())]
    lines += ["", "Peaks and grouping on maps rendered from people at 368x432:", "",
              "| people | environment | peak finding (NMS) | grouping (limb scores + assembly) "
              "| paper's grouping |", "|---|---|---|---|---|"]
    for count in PEOPLE:
        for name, env in report["environments"].items():
            lines.append("| %d | %s | %s | %s | %.1f ms |"
                         % (count, name, ms(env["nms_ms"][str(count)]),
                            ms(env["grouping_ms"][str(count)]),
                            PAPER["grouping_ms"][str(count)]))
    for note in report["notes"]:
        lines.append("")
        lines.append("Note: " + note)
    return "\n".join(lines) + "\n"


def image_to_people_totals(env, key="image_to_maps_ms"):
    """{model: {label: ms}}: each runtime's image to maps (measured; key: wall or CPU ms) plus
    the peaks and the grouping of 2 people (measured on rendered maps, random weights giving
    noise maps; single-threaded, so wall = CPU)."""
    decoding = env["nms_ms"]["2"] + env["grouping_ms"]["2"]
    return {model: {label: ms + decoding for label, ms in runs.items()}
            for model, runs in env[key].items()}


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Speed of MLN and the OpenPose baseline (network through Caffe, OpenCV's "
                    "DNN module, ONNX Runtime and OpenVINO at every precision; image to people) "
                    "and of the grouping; writes a Markdown table.")
    parser.add_argument("--deploy-mln", default=str(REPO / "prototxt" / "mln" / "deploy.prototxt"))
    parser.add_argument("--deploy-baseline",
                        default=str(REPO / "prototxt" / "baseline" / "deploy.prototxt"))
    parser.add_argument("--cache", default=str(REPO / "runs" / "bench"),
                        help="folder for the random caffemodels and their ONNX and int8 "
                             "models (default runs/bench)")
    parser.add_argument("--repeats", type=int, default=5, help="network runs (median)")
    parser.add_argument("--group-repeats", type=int, default=200,
                        help="grouping and NMS runs (median)")
    parser.add_argument("--caffe-time", action="store_true",
                        help="also run `caffe time` (its average forward pass, at the "
                             "prototxt's own input size; it runs backward passes too: slow)")
    parser.add_argument("--json", help="write the measurements to this JSON file")
    parser.add_argument("--md", help="write the Markdown table to this file (default: print)")
    onnx_backends.add_arguments(parser, precision=False)
    parser.set_defaults(calibrate=str(COCO_IMAGES) if COCO_IMAGES.is_dir() else None,
                        calibration_images=BENCH_CALIBRATION_IMAGES)
    parser.add_argument("--worker", choices=("caffe", "opencv"), help=argparse.SUPPRESS)
    parser.add_argument("--weights-mln", help=argparse.SUPPRESS)
    parser.add_argument("--weights-baseline", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)

    notes, nets = [], {}
    for model, deploy in (("mln", args.deploy_mln), ("baseline", args.deploy_baseline)):
        if not pathlib.Path(deploy).is_file():
            notes.append("%s deploy net not found at %s: its network rows are missing"
                         % (model, deploy))
            continue
        try:
            nets[model] = (str(pathlib.Path(deploy).resolve()),
                           str(random_weights(deploy, args.cache).resolve()))
        except RuntimeError as error:
            notes.append(str(error).splitlines()[0])
    environments = {}
    workers = [("caffe env", caffe_env() + ["python"], "caffe"),
               ("deploy venv", venv_python(), "opencv")]
    for name, python, kind in workers:
        if python is None:
            notes.append("%s not found: not measured" % name)
            continue
        command = python + [str(REPO / "inference" / "benchmark.py"), "--worker", kind,
                            "--repeats", str(args.repeats),
                            "--group-repeats", str(args.group_repeats),
                            "--calibration-images", str(args.calibration_images),
                            "--onnx-cache",
                            str(pathlib.Path(args.onnx_cache or args.cache).resolve())]
        if args.calibrate:
            command += ["--calibrate", str(pathlib.Path(args.calibrate).resolve())]
        for model, (deploy, weights) in nets.items():    # separate arguments: caffe-env
            command += ["--deploy-" + model, deploy, "--weights-" + model, weights]  # binds them
        print("benchmark: measuring in the %s ..." % name, file=sys.stderr)
        try:
            environments[name] = run_json(command)
        except RuntimeError as error:
            notes.append("%s: %s" % (name, error))
    if not environments:
        print("benchmark: error: no environment could be measured:\n%s" % "\n".join(notes),
              file=sys.stderr)
        return 1
    network = {model: {} for model in nets}
    diffs = {model: {} for model in nets}
    for env in environments.values():
        notes += env["notes"]
        for model, runtimes in env["network_ms"].items():
            network[model].update(runtimes)
            diffs[model].update(env["output_max_abs_diff"][model])
    if args.caffe_time:
        for model, (deploy, _) in nets.items():
            network[model]["caffe time (CLI)"] = caffe_cli_forward_ms(deploy, args.repeats)
    deploy_env = environments.get("deploy venv") or next(iter(environments.values()))
    report = {
        "machine": machine(), "repeats": args.repeats, "environments": environments,
        "network_ms": network, "output_max_abs_diff": diffs, "notes": notes,
        "image_to_people_total_ms": image_to_people_totals(deploy_env),
        "image_to_maps_ms": deploy_env["image_to_maps_ms"], "load_s": deploy_env["load_s"],
        "image_to_people_cpu_ms": image_to_people_totals(deploy_env, "image_to_maps_cpu_ms"),
        "grouping_ms": deploy_env["grouping_ms"], "nms_ms": deploy_env["nms_ms"],
    }
    table = markdown(report)
    if args.md:
        pathlib.Path(args.md).write_text(table)
    else:
        print(table)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
