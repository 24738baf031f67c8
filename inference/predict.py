"""Multi-person pose estimation with a deploy net: images -> COCO keypoint results (+ pictures).

    python inference/predict.py --deploy prototxt/mln/deploy.prototxt --weights mln.caffemodel \
        --images DIR --out results.json [--backend opencv|caffe] [--scales 1.0 ...] [--viz DIR]
    python inference/predict.py ... --ann person_keypoints_val2017.json --images val2017/ ...

Per image, as OpenPose's test code: resize so that the height is 368 x scale, pad (grey 128,
right/bottom) to a multiple of 8, forward (pixel / 256 - 0.5, BGR), read `net_output` (19
heatmaps, 38 PAFs), upsample the maps (cubic) back to the image, average over the scales, then
find peaks, score limbs and assemble people (inference/grouping.py) and write COCO results
(inference/coco_export.py). --viz draws the skeletons (limbs coloured per limb, as the MLN
paper's Fig. 3). With --ann the images are those of the annotation file (image ids from it);
otherwise every file of the folder (image id = the file name's number, as COCO names files,
else its position in the sorted listing; each result also carries its file_name).

Odd inputs are handled, never fatal: files OpenCV cannot decode and images smaller than 8 px are
skipped and counted; grayscale and 1-channel images are converted to BGR, an alpha channel is
dropped, 16-bit images are scaled to 8 bit, floating-point ones are clipped to [0, 1]; very wide
inputs are scaled down to fit MAX_INPUT_PIXELS; maps of images over 1 Mpx are decoded at 1 Mpx
and the coordinates scaled back; non-finite network outputs are counted and set to 0. EXIF
orientation is not applied (COCO's annotations refer to the stored pixels).

Resumable: finished images are appended to OUT.partial.jsonl; a second run with the same
settings continues from there (--no-resume starts over); OUT is written when all are done.
"""
import argparse
import collections
import json
import os
import pathlib
import sys

import cv2
import numpy as np

from data_prep.keypoints import LIMBS, NUM_HEATMAPS, NUM_PAFS, NUM_PARTS
from inference import backends, coco_export, grouping, scaling

MIN_IMAGE_SIDE = 8
MAX_INPUT_PIXELS = 368 * 368 * 8    # network input at most ~1.1 Mpx (memory of the forward pass)
NET_CHANNELS = NUM_HEATMAPS + NUM_PAFS


class SkipImage(Exception):
    """An input that is not processed; the message is the reason, counted in the summary."""


# ----------------------------------------------------------------------------- images

def read_image(path):
    """Read an image file as BGR uint8 (H, W, 3). Returns (image, conversion notes).

    Raises SkipImage for files that are not images OpenCV can decode, for unsupported pixel
    types and for images smaller than MIN_IMAGE_SIDE pixels on a side.
    """
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise SkipImage("not an image OpenCV can read")
    notes = []
    if data.dtype == np.uint16:
        data = (data >> 8).astype(np.uint8)
        notes.append("16-bit image scaled to 8 bit")
    elif data.dtype in (np.float32, np.float64):
        data = (np.clip(np.nan_to_num(data), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        notes.append("floating-point image clipped to [0, 1] and scaled to 8 bit")
    elif data.dtype != np.uint8:
        raise SkipImage("unsupported pixel type %s" % data.dtype)
    if data.ndim == 2 or data.shape[2] == 1:
        data = cv2.cvtColor(data.reshape(data.shape[:2]), cv2.COLOR_GRAY2BGR)
        notes.append("grayscale image converted to BGR")
    elif data.shape[2] == 4:
        data = np.ascontiguousarray(data[:, :, :3])
        notes.append("alpha channel dropped")
    elif data.shape[2] != 3:
        raise SkipImage("unsupported number of channels %d" % data.shape[2])
    if min(data.shape[:2]) < MIN_IMAGE_SIDE:
        raise SkipImage("smaller than %d px on a side" % MIN_IMAGE_SIDE)
    return data, notes


def fitting_scale(height, width, scale, max_input_pixels=MAX_INPUT_PIXELS):
    """`scale`, or the largest smaller one whose padded network input fits max_input_pixels."""
    h, w = scaling.padded_size(*scaling.scaled_size(height, width, scale))
    if h * w <= max_input_pixels:
        return scale
    return scale * (max_input_pixels / float(h * w)) ** 0.5 * 0.99


# ----------------------------------------------------------------------------- maps -> people

def decode_net_outputs(outputs, image_size, smooth_sigma=None, keep_neckless=False, stats=None):
    """Network outputs of one image at one or more scales -> People in image pixels.

    outputs: list of (net_maps (57, h'/8, w'/8), (h, w) of the resized image inside the input).
    Each is upsampled to the image (or to scaling.MAX_MAP_PIXELS for very large images), the
    scales are averaged, and the maps are decoded by inference.grouping.
    """
    map_shape = scaling.map_size(*image_size)
    heatmaps = pafs = None
    for net_maps, resized_size in outputs:
        heat, paf = scaling.upsample_maps(net_maps, resized_size, map_shape)
        if heatmaps is None:
            heatmaps, pafs = heat, paf
        else:
            heatmaps += heat
            pafs += paf
    if len(outputs) > 1:
        heatmaps /= len(outputs)
        pafs /= len(outputs)
    people = grouping.group_people(heatmaps, pafs, image_height=map_shape[0],
                                   smooth_sigma=smooth_sigma, keep_neckless=keep_neckless,
                                   stats=stats)
    keypoints = scaling.keypoints_to_image(people.keypoints, map_shape, image_size)
    return people._replace(keypoints=keypoints)


def run_net(backend, image, scales, stats):
    """Forward the image at each scale -> list of (net_maps, resized size)."""
    outputs, non_finite = [], False
    for scale in scales:
        fitted = fitting_scale(image.shape[0], image.shape[1], scale)
        if fitted != scale:
            stats["inputs scaled down to fit %d px" % MAX_INPUT_PIXELS] += 1
        padded, resized = scaling.resize_and_pad(image, fitted)
        output = backend.forward(backends.image_to_blob(padded))
        expected = (1, NET_CHANNELS, padded.shape[0] // scaling.STRIDE,
                    padded.shape[1] // scaling.STRIDE)
        if output.shape != expected:
            raise backends.BackendError(
                "net_output has shape %s for a %dx%d input, expected %s: is this a deploy net "
                "of this toolkit (19 heatmaps + 38 PAFs at stride 8)?"
                % (output.shape, padded.shape[0], padded.shape[1], expected))
        finite = np.isfinite(output)
        if not finite.all():
            non_finite = True
            output = np.where(finite, output, 0).astype(np.float32)
        outputs.append((output[0], resized))
    if non_finite:
        stats["images with non-finite network outputs (set to 0)"] += 1
    return outputs


def predict_image(backend, image, scales=(1.0,), smooth_sigma=None, keep_neckless=False,
                  stats=None):
    """BGR uint8 image -> People (image pixels)."""
    stats = collections.Counter() if stats is None else stats
    outputs = run_net(backend, image, scales, stats)
    return decode_net_outputs(outputs, image.shape[:2], smooth_sigma, keep_neckless)


# ----------------------------------------------------------------------------- pictures

def limb_colours(count=len(LIMBS)):
    """One BGR colour per limb, evenly spaced hues."""
    hues = np.linspace(0, 180, count, endpoint=False).astype(np.uint8)
    hsv = np.stack([hues, np.full(count, 255, np.uint8), np.full(count, 255, np.uint8)], axis=1)
    return [tuple(int(c) for c in bgr) for bgr in cv2.cvtColor(hsv[None], cv2.COLOR_HSV2BGR)[0]]


def draw_people(image, people, stick_width=4):
    """The skeletons over the image (limbs as translucent coloured sticks, parts as dots)."""
    overlay = image.copy()
    colours = limb_colours()
    thickness = max(1, int(round(stick_width * max(image.shape[:2]) / 640.0)))
    for person in people.keypoints:
        for limb, (part_a, part_b) in enumerate(LIMBS):
            if limb in grouping.LOOP_LIMBS or person[part_a, 2] <= 0 or person[part_b, 2] <= 0:
                continue
            start = tuple(int(round(v)) for v in person[part_a, :2])
            end = tuple(int(round(v)) for v in person[part_b, :2])
            cv2.line(overlay, start, end, colours[limb], 2 * thickness, cv2.LINE_AA)
    canvas = cv2.addWeighted(overlay, 0.7, image, 0.3, 0)
    for person in people.keypoints:
        for part in range(NUM_PARTS):
            if person[part, 2] > 0:
                centre = tuple(int(round(v)) for v in person[part, :2])
                cv2.circle(canvas, centre, thickness + 1, (255, 255, 255), -1, cv2.LINE_AA)
    return canvas


# ----------------------------------------------------------------------------- the image list

Job = collections.namedtuple("Job", "path image_id expected_size")


def folder_jobs(images):
    """Every file of the folder, sorted (hidden files aside). Image ids: the file names' numbers
    when every name is a distinct number (COCO's naming), else positions in the listing."""
    files = sorted(p for p in pathlib.Path(images).iterdir()
                   if p.is_file() and not p.name.startswith("."))
    numbers = [int(p.stem) if p.stem.isdigit() else None for p in files]
    if None in numbers or len(set(numbers)) < len(numbers):
        numbers = list(range(len(files)))
    return [Job(path, number, None) for path, number in zip(files, numbers)]


def annotation_jobs(annotation, images):
    with open(str(annotation)) as handle:
        entries = json.load(handle).get("images", [])
    return [Job(pathlib.Path(images) / entry["file_name"], int(entry["id"]),
                (entry.get("height"), entry.get("width"))) for entry in entries]


# ----------------------------------------------------------------------------- resuming

class Checkpoint(object):
    """Finished images, one JSON line each, after a header line with the run's settings."""

    def __init__(self, path, settings, resume):
        self.path = pathlib.Path(path)
        self.done = {}
        if resume and self.path.is_file():
            with open(str(self.path)) as handle:
                lines = [json.loads(line) for line in handle if line.strip().endswith("}")]
            if not lines or lines[0].get("settings") != settings:
                raise SystemExit("predict: %s was written with other settings; delete it or "
                                 "pass --no-resume" % self.path)
            self.done = {entry["file"]: entry for entry in lines[1:]}
        else:
            with open(str(self.path), "w") as handle:
                handle.write(json.dumps({"settings": settings}) + "\n")
        self._handle = open(str(self.path), "a")

    def add(self, entry):
        self._handle.write(json.dumps(entry) + "\n")
        self._handle.flush()
        self.done[entry["file"]] = entry

    def close(self):
        self._handle.close()


def progress(items, description):
    """tqdm when it is installed, else a line every 10% on stderr."""
    try:
        from tqdm import tqdm
        return tqdm(items, desc=description, unit="image")
    except ImportError:
        return _plain_progress(items, description)


def _plain_progress(items, description):
    step = max(1, len(items) // 10)
    for index, item in enumerate(items):
        if index % step == 0:
            print("%s: %d/%d" % (description, index, len(items)), file=sys.stderr)
        yield item


def _say(message):
    print("predict: %s" % message, file=sys.stderr)


# ----------------------------------------------------------------------------- main

def process_job(job, backend, args, stats):
    """One image -> checkpoint entry (results or the reason it was skipped)."""
    entry = {"file": job.path.name, "image_id": job.image_id}
    try:
        if not job.path.is_file():
            raise SkipImage("file missing")
        image, notes = read_image(job.path)
        if job.expected_size is not None and None not in job.expected_size \
                and tuple(image.shape[:2]) != tuple(job.expected_size):
            raise SkipImage("size differs from the annotation")
        for note in notes:
            stats[note] += 1
        people = predict_image(backend, image, args.scales, args.smooth_sigma,
                               args.keep_neckless, stats)
    except SkipImage as reason:
        entry["skipped"] = str(reason)
        return entry
    results = coco_export.people_to_coco(people, job.image_id)
    if job.expected_size is None:
        for result in results:
            result["file_name"] = job.path.name
    entry["results"] = results
    if args.viz:
        name = pathlib.Path(args.viz) / (job.path.stem + ".jpg")
        cv2.imwrite(str(name), draw_people(image, people))
    return entry


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Multi-person pose estimation with a deploy net (MLN or the OpenPose "
                    "baseline): images -> COCO keypoint results JSON, optional skeleton "
                    "pictures. Resumable.")
    parser.add_argument("--deploy", required=True, help="deploy prototxt (output net_output)")
    parser.add_argument("--weights", required=True, help="caffemodel")
    parser.add_argument("--images", required=True, help="folder of images")
    parser.add_argument("--ann", help="COCO annotation JSON: process its images (ids from it)")
    parser.add_argument("--out", required=True, help="results JSON (COCO format) to write")
    parser.add_argument("--backend", choices=backends.BACKENDS, default="opencv",
                        help="opencv: OpenCV's DNN module (no Caffe needed; default); "
                             "caffe: pycaffe")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0],
                        help="input heights as multiples of 368, averaged (OpenPose's "
                             "multi-scale test: 0.5 1 1.5 2); default 1.0")
    parser.add_argument("--viz", help="folder for pictures of the skeletons")
    parser.add_argument("--smooth-sigma", type=float, default=None,
                        help="blur heatmaps before peak finding (OpenPose's Python demo: %g); "
                             "default: no blur, as OpenPose's C++ and COCO evaluation code"
                             % grouping.DEMO_SMOOTH_SIGMA)
    parser.add_argument("--keep-neckless", action="store_true",
                        help="join neck-less partial people (see inference/README.md)")
    parser.add_argument("--no-resume", action="store_true",
                        help="start over even if OUT.partial.jsonl exists")
    args = parser.parse_args(argv)
    if any(s <= 0 for s in args.scales):
        parser.error("--scales must be positive")
    if not pathlib.Path(args.images).is_dir():
        parser.error("--images %s is not a folder" % args.images)
    if args.viz:
        pathlib.Path(args.viz).mkdir(parents=True, exist_ok=True)

    jobs = annotation_jobs(args.ann, args.images) if args.ann else folder_jobs(args.images)
    settings = {"deploy": str(args.deploy), "weights": str(args.weights),
                "backend": args.backend, "scales": args.scales, "ann": args.ann,
                "smooth_sigma": args.smooth_sigma, "keep_neckless": args.keep_neckless}
    checkpoint = Checkpoint(str(args.out) + ".partial.jsonl", settings, not args.no_resume)
    todo = [job for job in jobs if job.path.name not in checkpoint.done]
    if len(todo) < len(jobs):
        _say("resuming: %d of %d images already done" % (len(jobs) - len(todo), len(jobs)))
    try:
        backend = backends.make_backend(args.backend, args.deploy, args.weights)
        stats = collections.Counter()
        for job in progress(todo, "predict"):
            checkpoint.add(process_job(job, backend, args, stats))
    except backends.BackendError as error:
        _say("error: %s" % error)
        return 1
    except KeyboardInterrupt:
        _say("interrupted after %d of %d images; run the same command again to go on"
             % (len(checkpoint.done), len(jobs)))
        return 130
    finally:
        checkpoint.close()

    results, skipped = [], collections.Counter()
    for job in jobs:
        entry = checkpoint.done[job.path.name]
        if "skipped" in entry:
            skipped[entry["skipped"]] += 1
            _say("skipped %s: %s" % (job.path.name, entry["skipped"]))
        else:
            results.extend(entry["results"])
    temporary = str(args.out) + ".tmp"
    with open(temporary, "w") as handle:
        json.dump(results, handle)
    os.replace(temporary, str(args.out))
    os.remove(str(checkpoint.path))
    with_people = len({r["image_id"] for r in results})
    _say("%d images, %d people on %d of them -> %s"
         % (len(jobs) - sum(skipped.values()), len(results), with_people, args.out))
    for reason, count in sorted(skipped.items()):
        _say("skipped (%s): %d" % (reason, count))
    for note, count in sorted(stats.items()):
        _say("%s: %d" % (note, count))
    return 0


if __name__ == "__main__":
    sys.exit(main())
