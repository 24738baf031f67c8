"""Multi-person pose estimation with a deploy net, as a library: image -> People, and the
per-image work of inference/predict.py (its command line) and inference/fit_check.py.

Per image, as OpenPose's test code: resize so that the height is 368 x scale, pad (grey 128,
right/bottom) to a multiple of 8, forward (pixel / 256 - 0.5, BGR), read `net_output` (19
heatmaps, 38 PAFs), upsample the maps (cubic) back to the image, average over the scales, then
find peaks, score limbs and assemble people (inference/grouping.py) and write COCO results
(inference/coco_export.py). draw_people draws the skeletons (conventions/drawing.py's colours,
one per limb, as the MLN paper's Fig. 3).

Odd inputs are handled, never fatal: files OpenCV cannot decode and images smaller than 8 px are
skipped (SkipImage, with the reason); grayscale and 1-channel images are converted to BGR, an
alpha channel is dropped, 16-bit images are scaled to 8 bit, floating-point ones are clipped to
[0, 1]; very wide inputs are scaled down to fit MAX_INPUT_PIXELS; maps of images over 1 Mpx are
decoded at 1 Mpx and the coordinates scaled back; non-finite network outputs are counted and set
to 0. EXIF orientation is not applied (COCO's annotations refer to the stored pixels).
"""
import collections
import hashlib
import json
import os
import pathlib
import re

import cv2
import numpy as np

from conventions import drawing
from conventions.geometry import BOX_SIZE
from conventions.net_contract import OUTPUT_CHANNELS
from inference import backends, coco_export, flip, grouping, scaling

MIN_IMAGE_SIDE = 8
MAX_INPUT_PIXELS = BOX_SIZE * BOX_SIZE * 8   # network input at most ~1.1 Mpx (forward's memory)


class SkipImage(Exception):
    """An input that is not processed; the message is the reason, counted in the summary."""


class CheckpointError(Exception):
    """A checkpoint file that cannot be resumed from; the message names the file."""


class InputError(Exception):
    """An input that stops the run before anything is written (a file, a folder, an entry of
    the annotation file); the message names it and says what to do."""


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

# One forward's answer: maps (57, h'/8, w'/8), (h, w) of the resized image inside the input,
# and whether the input was the mirrored image (test-time flip).
NetOutput = collections.namedtuple("NetOutput", "maps resized_size flipped", defaults=(False,))


def decode_net_outputs(outputs, image_size, smooth_sigma=None, keep_neckless=False, stats=None):
    """Network outputs of one image at one or more scales -> People in image pixels.

    outputs: list of NetOutput (or (maps, resized size) pairs). Each is upsampled to the image
    (or to scaling.MAX_MAP_PIXELS for very large images), mapped back when it answers the
    mirrored image (inference.flip), the answers are averaged, and the maps are decoded by
    inference.grouping.
    """
    map_shape = scaling.map_size(*image_size)
    heatmaps = pafs = None
    for output in outputs:
        output = NetOutput(*output)
        heat, paf = scaling.upsample_maps(output.maps, output.resized_size, map_shape)
        if output.flipped:
            heat, paf = flip.unflip_maps(heat, paf)
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


def run_net(backend, image, scales, stats, flip_too=False):
    """Forward the image at each scale, and its mirror image too with flip_too -> [NetOutput]."""
    outputs, non_finite = [], False
    views = [(image, False)] + ([(flip.mirror_image(image), True)] if flip_too else [])
    for scale, (view, flipped) in ((s, v) for s in scales for v in views):
        fitted = fitting_scale(image.shape[0], image.shape[1], scale)
        if fitted != scale and not flipped:
            stats["inputs scaled down to fit %d px" % MAX_INPUT_PIXELS] += 1
        padded, resized = scaling.resize_and_pad(view, fitted)
        output = backend.forward(backends.image_to_blob(padded))
        expected = (1, OUTPUT_CHANNELS, padded.shape[0] // scaling.STRIDE,
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
        outputs.append(NetOutput(output[0], resized, flipped))
    if non_finite:
        stats["images with non-finite network outputs (set to 0)"] += 1
    return outputs


def predict_image(backend, image, scales=(1.0,), smooth_sigma=None, keep_neckless=False,
                  stats=None, mirror=False):
    """BGR uint8 image -> People (image pixels). stats: an optional collections.Counter that
    receives the input notes and the grouping's counts (merges, people dropped, ...); mirror:
    average in the mirrored image's maps too (test-time flip, inference/flip.py)."""
    stats = collections.Counter() if stats is None else stats
    outputs = run_net(backend, image, scales, stats, flip_too=mirror)
    return decode_net_outputs(outputs, image.shape[:2], smooth_sigma, keep_neckless, stats)


def draw_people(image, people):
    """The skeletons of People over the image: translucent sticks, so that the image shows
    through, without the shoulder-ear limbs (they only close loops of the assembly)."""
    return drawing.draw_skeletons(image, people.keypoints, skip_limbs=grouping.LOOP_LIMBS,
                                  opacity=0.7)


# ----------------------------------------------------------------------------- the image list

# key: the image's path relative to the images folder, as the annotation's file_name gives it;
# it names the image in the checkpoint and in the messages (base names can repeat in subfolders)
Job = collections.namedtuple("Job", "path image_id expected_size key", defaults=(None,))


def job_key(job):
    return job.key if job.key is not None else job.path.name


_COCO_NUMBER = re.compile(r"[0-9]+")


def folder_jobs(images):
    """Every file of the folder, sorted (hidden files aside).

    Image ids: a file's id is its name's number (COCO's naming: 000000000139.jpg -> 139) and
    depends on no other file. Names that are not numbers, or numbers two files share (1.jpg,
    001.png), give no id: such files get -1, -2, ... in the listing's order, ids that no COCO
    ground truth has, so that their results are never scored against another image; their
    results carry file_name, as every folder-mode result does."""
    folder = pathlib.Path(images)
    try:
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    except OSError as error:
        raise InputError("cannot list --images %s: %s" % (images, error.strerror or error))
    if not files:
        raise InputError("--images %s holds no files: pass the folder of the images" % images)
    numbers = [int(p.stem) if _COCO_NUMBER.fullmatch(p.stem) else None for p in files]
    shared = {n for n, count in collections.Counter(numbers).items() if count > 1}
    jobs, unnumbered = [], 0
    for path, number in zip(files, numbers):
        if number is None or number in shared:
            unnumbered += 1
            number = -unnumbered
        jobs.append(Job(path, number, None, path.name))
    return jobs


def annotation_jobs(annotation, images):
    """The images of a COCO annotation file, with their ids and the sizes it gives them; the
    file is checked first (InputError naming the entry and the field)."""
    from inference import evaluate
    what = "--ann %s" % annotation
    try:
        entries = evaluate.check_images(evaluate.read_json(annotation, what), what)
    except evaluate.EvaluationError as error:
        raise InputError(str(error))
    jobs, owners = [], {}
    for index, entry in enumerate(entries):
        name = entry.get("file_name")
        if not isinstance(name, str) or not name.strip():
            raise InputError("%s: images[%d] (id %d) has no file_name: it names the image in "
                             "--images" % (what, index, entry["id"]))
        relative = pathlib.PurePath(name)
        if relative.is_absolute() or ".." in relative.parts:
            raise InputError("%s: images[%d] (id %d) has file_name %s: it must be a path inside "
                             "--images" % (what, index, entry["id"], name))
        key = relative.as_posix()
        if key in owners:
            raise InputError("%s: images %d and %d have the same file_name %s: one file cannot "
                             "be two images" % (what, owners[key], entry["id"], name))
        owners[key] = entry["id"]
        jobs.append(Job(pathlib.Path(images) / relative, entry["id"],
                        (entry.get("height"), entry.get("width")), key))
    return jobs


def check_jobs_present(jobs, images, annotation):
    """Refuse a run none of whose annotation images is in the folder (a wrong --images): it
    would write an empty result after one "file missing" line per image. -> the missing jobs."""
    missing = [job for job in jobs if not job.path.is_file()]
    if missing and len(missing) == len(jobs):
        raise InputError("none of the %d images of --ann %s is in --images %s (e.g. %s): pass "
                         "the folder that holds them" % (len(jobs), annotation, images,
                                                         missing[0].path))
    return missing


# ----------------------------------------------------------------------------- resuming

# Settings that change the results: finished images made with others are never mixed in. Files
# are compared by their contents, so that the same file named another way (./prototxt/...) or
# moved is the same setting.
RESULT_SETTINGS = ("deploy", "weights", "images", "precision", "calibration", "scales",
                   "flip", "smooth_sigma", "keep_neckless")
# Settings that do not: the same net at the same precision through another library differs
# only in rounding.
NON_RESULT_SETTINGS = ("backend",)
# "ann" is recorded for information only: it gives each image its id, checked image by image.
SETTING_FLAGS = {"deploy": "--deploy", "weights": "--weights", "images": "--images",
                 "precision": "--precision", "calibration": "--calibrate",
                 "scales": "--scales", "flip": "--flip", "smooth_sigma": "--smooth-sigma",
                 "keep_neckless": "--keep-neckless", "backend": "--backend"}


def file_setting(path):
    """A file as a setting: its absolute path (for the messages) and its contents' sha256."""
    digest = hashlib.sha256()
    with open(str(path), "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"path": os.path.abspath(str(path)), "sha256": digest.hexdigest()}


def _setting_value(value):
    """What is compared: a file's contents, any other setting as it is."""
    return value.get("sha256") if isinstance(value, dict) else value


def _describe_setting(value):
    if isinstance(value, dict):
        return "%s (sha256 %s...)" % (value.get("path"), str(value.get("sha256"))[:12])
    return "(not recorded)" if value is _MISSING else json.dumps(value)


_MISSING = object()


def setting_differences(old, new, keys):
    """-> ["--flag: OLD there, NEW now", ...] for the keys whose values differ."""
    differences = []
    for key in keys:
        before, after = old.get(key, _MISSING), new.get(key, _MISSING)
        if _setting_value(before) != _setting_value(after):
            differences.append("%s: %s there, %s now" % (
                SETTING_FLAGS.get(key, key), _describe_setting(before), _describe_setting(after)))
    return differences


class Checkpoint(object):
    """Finished images, one JSON line each, after a header line with the run's settings.

    Resuming keeps the finished images (entries with results) when the result settings are the
    same; images skipped before are tried again (a file missing then may be there now). A file
    without finished images is started over: nothing is lost. Other result settings raise
    CheckpointError naming them; other non-result settings too, unless keep_finished.
    """

    def __init__(self, path, settings, resume=True, keep_finished=False):
        self.path = pathlib.Path(path)
        self.done = {}
        finished = {}
        if resume and self.path.is_file():
            old_settings, entries = read_checkpoint(self.path)
            finished = {key: entry for key, entry in entries.items() if "results" in entry}
        if finished:
            check_resumable(self.path, old_settings, settings, len(finished), keep_finished)
            self.done = finished
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

    def remove_if_unfinished(self):
        """Delete the file when it holds no finished image (every image skipped, or the net
        failed at the first one): nothing is lost, and no stray file is left behind."""
        if not any("results" in entry for entry in self.done.values()):
            os.remove(str(self.path))


def read_checkpoint(path):
    """-> (settings, {image key: its last entry}). A last line cut short (the run was stopped
    while writing it) is left out."""
    with open(str(path)) as handle:
        lines = [line for line in handle.read().splitlines() if line.strip()]
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            records.append(json.loads(line))
        except ValueError:
            if number < len(lines):
                raise CheckpointError("%s: line %d is damaged: delete the file or pass "
                                      "--no-resume" % (path, number))
    if not records or not isinstance(records[0], dict) \
            or not isinstance(records[0].get("settings"), dict) \
            or not all(isinstance(entry, dict) and "file" in entry for entry in records[1:]):
        raise CheckpointError("%s is not a checkpoint of predict.py: delete it or pass "
                              "--no-resume" % path)
    return records[0]["settings"], {entry["file"]: entry for entry in records[1:]}


def check_resumable(path, old, new, finished, keep_finished):
    """Raise CheckpointError when the finished images of `path` must not be mixed with this
    run's: naming the settings that differ and what to do."""
    results = setting_differences(old, new, RESULT_SETTINGS)
    if results:
        raise CheckpointError(
            "%s holds %d finished images written with other settings (%s): their results would "
            "be mixed with another configuration's; run with those settings to finish them, or "
            "pass --no-resume to start over" % (path, finished, "; ".join(results)))
    others = setting_differences(old, new, NON_RESULT_SETTINGS)
    if others and not keep_finished:
        raise CheckpointError(
            "%s holds %d finished images written with other settings (%s) that do not change "
            "the results beyond rounding: pass --keep-finished to go on from them, or run with "
            "those settings" % (path, finished, "; ".join(others)))


# ----------------------------------------------------------------------------- one job

def process_job(job, backend, scales=(1.0,), smooth_sigma=None, keep_neckless=False, viz=None,
                stats=None, mirror=False):
    """One image -> checkpoint entry (results or the reason it was skipped).

    viz: a folder for the skeleton picture (the image's key, with .jpg); stats: a
    collections.Counter that receives the image's notes and the grouping's counts.
    """
    stats = collections.Counter() if stats is None else stats
    entry = {"file": job_key(job), "image_id": job.image_id}
    try:
        if not job.path.is_file():
            raise SkipImage("file missing")
        image, notes = read_image(job.path)
        if job.expected_size is not None and None not in job.expected_size \
                and tuple(image.shape[:2]) != tuple(job.expected_size):
            raise SkipImage("size differs from the annotation")
        for note in notes:
            stats[note] += 1
        people = predict_image(backend, image, scales, smooth_sigma, keep_neckless, stats,
                               mirror)
    except SkipImage as reason:
        entry["skipped"] = str(reason)
        return entry
    results = coco_export.people_to_coco(people, job.image_id)
    if job.expected_size is None:
        for result in results:
            result["file_name"] = job_key(job)
    entry["results"] = results
    if viz:
        # the image's own subfolder: a/x.jpg and b/x.jpg are two pictures
        name = pathlib.Path(viz) / pathlib.PurePath(job_key(job)).with_suffix(".jpg")
        name.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(name), draw_people(image, people))
    return entry
