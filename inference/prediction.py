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
import json
import pathlib

import cv2
import numpy as np

from conventions import drawing
from conventions.geometry import BOX_SIZE
from conventions.net_contract import OUTPUT_CHANNELS
from inference import backends, coco_export, grouping, scaling

MIN_IMAGE_SIDE = 8
MAX_INPUT_PIXELS = BOX_SIZE * BOX_SIZE * 8   # network input at most ~1.1 Mpx (forward's memory)


class SkipImage(Exception):
    """An input that is not processed; the message is the reason, counted in the summary."""


class CheckpointError(Exception):
    """A checkpoint file that cannot be resumed from; the message names the file."""


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
        outputs.append((output[0], resized))
    if non_finite:
        stats["images with non-finite network outputs (set to 0)"] += 1
    return outputs


def predict_image(backend, image, scales=(1.0,), smooth_sigma=None, keep_neckless=False,
                  stats=None):
    """BGR uint8 image -> People (image pixels). stats: an optional collections.Counter that
    receives the input notes and the grouping's counts (merges, people dropped, ...)."""
    stats = collections.Counter() if stats is None else stats
    outputs = run_net(backend, image, scales, stats)
    return decode_net_outputs(outputs, image.shape[:2], smooth_sigma, keep_neckless, stats)


def draw_people(image, people):
    """The skeletons of People over the image: translucent sticks, so that the image shows
    through, without the shoulder-ear limbs (they only close loops of the assembly)."""
    return drawing.draw_skeletons(image, people.keypoints, skip_limbs=grouping.LOOP_LIMBS,
                                  opacity=0.7)


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
    """The images of a COCO annotation file, with their ids and the sizes it gives them."""
    with open(str(annotation)) as handle:
        entries = json.load(handle).get("images", [])
    return [Job(pathlib.Path(images) / entry["file_name"], int(entry["id"]),
                (entry.get("height"), entry.get("width"))) for entry in entries]


# ----------------------------------------------------------------------------- resuming

class Checkpoint(object):
    """Finished images, one JSON line each, after a header line with the run's settings.

    Resuming from a file written with other settings raises CheckpointError: its results would
    be mixed with results of another configuration.
    """

    def __init__(self, path, settings, resume):
        self.path = pathlib.Path(path)
        self.done = {}
        if resume and self.path.is_file():
            with open(str(self.path)) as handle:
                lines = [json.loads(line) for line in handle if line.strip().endswith("}")]
            if not lines or lines[0].get("settings") != settings:
                raise CheckpointError("%s was written with other settings" % self.path)
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


# ----------------------------------------------------------------------------- one job

def process_job(job, backend, scales=(1.0,), smooth_sigma=None, keep_neckless=False, viz=None,
                stats=None):
    """One image -> checkpoint entry (results or the reason it was skipped).

    viz: a folder for the skeleton picture (<file stem>.jpg); stats: a collections.Counter that
    receives the image's notes and the grouping's counts.
    """
    stats = collections.Counter() if stats is None else stats
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
        people = predict_image(backend, image, scales, smooth_sigma, keep_neckless, stats)
    except SkipImage as reason:
        entry["skipped"] = str(reason)
        return entry
    results = coco_export.people_to_coco(people, job.image_id)
    if job.expected_size is None:
        for result in results:
            result["file_name"] = job.path.name
    entry["results"] = results
    if viz:
        name = pathlib.Path(viz) / (job.path.stem + ".jpg")
        cv2.imwrite(str(name), draw_people(image, people))
    return entry
