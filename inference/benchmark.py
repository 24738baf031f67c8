"""Speed of MLN and the OpenPose baseline side by side, and of the grouping: a Markdown table.

    python inference/benchmark.py [--deploy-mln P] [--deploy-baseline P] [--repeats 5]
                                  [--json OUT] [--md OUT] [--caffe-time]

Measures, each as the median of --repeats runs after a warm-up:
- network ms per image at 368x432 (the paper's size) for both deploy nets: through Caffe
  (pycaffe's forward pass; --caffe-time adds the `caffe time` CLI's own average forward pass)
  and OpenCV's DNN module, in each environment that can be reached: the Caffe environment
  (scripts/caffe-env: pycaffe and its OpenCV) and the deploy venv (its OpenCV). Each
  environment times both nets in one process; this tool calls them through subprocesses;
- image to people for a 368x432 image with MLN through the deploy venv's OpenCV: resize and pad,
  forward, upsample, peaks, grouping (the last two on maps rendered from 2 and 10 people,
  since random weights give noise maps);
- peak finding (NMS) and grouping (limb scores + assembly) ms for 2 and 10 people on maps
  rendered by python_layers.labels and upsampled as predict.py does.
The nets get random weights (inference/random_weights.py, cached under --cache): speed does not
depend on the values. Prints the table (or writes it to --md); --json writes
{"grouping_ms": {"2": .., "10": ..}, "nms_ms": {..}, "network_ms": {model: {runtime: ..}},
"image_to_people_ms": {..}, "machine": {..}}.
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

REPO = pathlib.Path(__file__).resolve().parents[1]
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


def network_times(nets, repeats, with_caffe):
    """{model: {runtime: ms}} for the deploy nets at 368x432, in this process."""
    import cv2
    from inference import backends
    blob = np.random.RandomState(0).uniform(-0.5, 0.5, (1, 3) + INPUT_SIZE).astype(np.float32)
    times = {}
    for model, (deploy, weights) in nets.items():
        times[model] = {}
        runtimes = [("OpenCV %s DNN" % cv2.__version__, backends.OpenCVBackend)]
        if with_caffe:
            runtimes.insert(0, ("Caffe 1.0, pycaffe forward", backends.CaffeBackend))
        for name, backend_class in runtimes:
            backend = backend_class(deploy, weights)
            times[model][name] = median_ms(lambda: backend.forward(blob), repeats)
            del backend
    return times


def image_to_people_times(deploy, weights, repeats, decode):
    """Stages of predict.py for one 368x432 image with OpenCV: {stage: ms}."""
    from inference import backends, scaling
    image = np.random.RandomState(1).randint(0, 256, INPUT_SIZE + (3,)).astype(np.uint8)
    backend = backends.OpenCVBackend(deploy, weights)
    padded, resized = scaling.resize_and_pad(image)
    blob = backends.image_to_blob(padded)
    output = backend.forward(blob)
    stages = {
        "resize, pad, blob": median_ms(
            lambda: backends.image_to_blob(scaling.resize_and_pad(image)[0]), repeats),
        "forward": median_ms(lambda: backend.forward(blob), repeats),
        "upsample": median_ms(lambda: scaling.upsample_maps(output[0], resized, INPUT_SIZE),
                              repeats),
    }
    for count in PEOPLE:
        stages["peaks, %d people" % count] = decode["nms"][str(count)]
        stages["grouping, %d people" % count] = decode["grouping"][str(count)]
    return stages


def worker(args):
    """Runs inside one environment; prints its measurements as one JSON line."""
    import cv2
    nets = {model: (deploy, weights) for model, deploy, weights in
            (("mln", args.deploy_mln, args.weights_mln),
             ("baseline", args.deploy_baseline, args.weights_baseline)) if weights}
    with_caffe = args.worker == "caffe"
    nms, assembly = grouping_times(args.group_repeats)
    report = {"python": platform.python_version(), "numpy": np.__version__,
              "opencv": cv2.__version__, "threads": cv2.getNumThreads(),
              "nms_ms": nms, "grouping_ms": assembly,
              "network_ms": network_times(nets, args.repeats, with_caffe)}
    if "mln" in nets:
        report["image_to_people_ms"] = image_to_people_times(
            nets["mln"][0], nets["mln"][1], args.repeats, {"nms": nms, "grouping": assembly})
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


def machine():
    """The CPU, its cores and the system, as the benchmark and the demo's report state them."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as handle:
            names = re.findall(r"model name\s*:\s*(.*)", handle.read())
        model = names[0].strip() if names else model
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "system": platform.platform()}


def ms(value):
    return "-" if value is None else ("%.0f ms" % value if value >= 100 else "%.2f ms" % value)


def markdown(report):
    lines = []
    info = report["machine"]
    lines.append("Machine: %s, %d cores (%s). Median of %d runs after a warm-up; random "
                 "weights." % (info["cpu"], info["cores"], info["system"], report["repeats"]))
    for name, env in report["environments"].items():
        lines.append("- %s: Python %s, numpy %s, OpenCV %s (%d threads)%s"
                     % (name, env["python"], env["numpy"], env["opencv"], env["threads"],
                        ", Caffe 1.0 (pycaffe, CPU)" if name == "caffe env" else ""))
    network = report["network_ms"]
    if network:
        lines += ["", "Network, one 368x432 image:", "",
                  "| runtime | MLN | baseline | baseline / MLN |", "|---|---|---|---|"]
        runtimes = []
        for model in network.values():
            runtimes += [r for r in model if r not in runtimes]
        for runtime in runtimes:
            mln, base = network.get("mln", {}).get(runtime), \
                network.get("baseline", {}).get(runtime)
            ratio = "%.2fx" % (base / mln) if mln and base else "-"
            lines.append("| %s | %s | %s | %s |" % (runtime, ms(mln), ms(base), ratio))
        lines.append("| paper (Tesla P40, Caffe) | 22.71 ms | | 2.07x (MACs: %.2fx) |"
                     % PAPER["mac_ratio"])
    stages = report.get("image_to_people_ms")
    if stages:
        lines += ["", "Image to people, 368x432, MLN, deploy venv's OpenCV (target <= %d ms):"
                  % TARGET_IMAGE_TO_PEOPLE_MS, "", "| stage | ms |", "|---|---|"]
        lines += ["| %s | %s |" % (stage, ms(value)) for stage, value in stages.items()]
        for count in PEOPLE:
            total = sum(v for k, v in stages.items() if "people" not in k) + \
                stages["peaks, %d people" % count] + stages["grouping, %d people" % count]
            lines.append("| **total, %d people** | **%s** |" % (count, ms(total)))
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


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Speed of MLN and the OpenPose baseline (network through Caffe and "
                    "OpenCV's DNN module, image to people) and of the grouping; writes a "
                    "Markdown table.")
    parser.add_argument("--deploy-mln", default=str(REPO / "prototxt" / "mln" / "deploy.prototxt"))
    parser.add_argument("--deploy-baseline",
                        default=str(REPO / "prototxt" / "baseline" / "deploy.prototxt"))
    parser.add_argument("--cache", default=str(REPO / "runs" / "bench"),
                        help="folder for the random caffemodels (default runs/bench)")
    parser.add_argument("--repeats", type=int, default=5, help="network runs (median)")
    parser.add_argument("--group-repeats", type=int, default=200,
                        help="grouping and NMS runs (median)")
    parser.add_argument("--caffe-time", action="store_true",
                        help="also run `caffe time` (its average forward pass, at the "
                             "prototxt's own input size; it runs backward passes too: slow)")
    parser.add_argument("--json", help="write the measurements to this JSON file")
    parser.add_argument("--md", help="write the Markdown table to this file (default: print)")
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
                            "--group-repeats", str(args.group_repeats)]
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
    for env in environments.values():
        for model, runtimes in env["network_ms"].items():
            network[model].update(runtimes)
    if args.caffe_time:
        for model, (deploy, _) in nets.items():
            network[model]["caffe time (CLI)"] = caffe_cli_forward_ms(deploy, args.repeats)
    deploy_env = environments.get("deploy venv") or next(iter(environments.values()))
    report = {
        "machine": machine(), "repeats": args.repeats, "environments": environments,
        "network_ms": network, "notes": notes,
        "image_to_people_ms": deploy_env.get("image_to_people_ms"),
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
