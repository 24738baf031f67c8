"""Write one augmented training sample as a PNG, to check the labels by eye.

    python python_layers/show_sample.py --image IMG.jpg --ann person_keypoints.json \
        --out sample.png [--image-id ID] [--person K] [--seed S] [--flip random|yes|no]

Four panels, each the augmented crop (crop_size x crop_size):
  top left     keypoints and skeleton of every person (right side warm colours, left side cool,
               middle green) as the labels see them after the transform; the main person's
               centre is a white cross;
  top right    the 18 part heatmaps, each in its part's colour;
  bottom left  the PAFs: hue = direction (red to the right, green down, cyan to the left,
               violet up), brightness = length, and an arrow every second label cell;
  bottom right the loss mask: red where the loss is ignored (mask 0), with the label grid.
The header gives the image id, the person and the random choices.

Source: a COCO keypoint JSON and its image (the keypoints through data_prep.keypoints, the loss
mask made with pycocotools: 0 on crowd regions and on people without keypoints). After a flip a
person facing the camera still has its right side (warm) on the image's left.
"""
import argparse
import os
import sys

import cv2
import numpy as np

from data_prep import keypoints
from python_layers import augment

HEADER_PIXELS = 28


# ----------------------------------------------------------------------------- the source

class CocoImageRecord:
    """One COCO image with the fields of data_prep's Record that augment.sample_from_record uses.

    A viewer's stand-in built straight from the JSON; training reads data_prep's LMDB records.
    People = non-crowd annotations with keypoints; centre = bounding-box centre and scale =
    box height / 368 (OpenPose's objpos and scale_provided).
    """

    def __init__(self, coco, image_id, image_path):
        from pycocotools import mask as mask_utils   # only this source needs pycocotools
        self._mask_utils = mask_utils
        info = coco.get("images_by_id", {}).get(image_id)
        if info is None:
            raise ValueError("image id %d is not in the annotation file" % image_id)
        self.image_id, self.file_name = image_id, info["file_name"]
        self.height, self.width = info["height"], info["width"]
        self._image_path = image_path
        annotations = coco["annotations_by_image"].get(image_id, [])
        people = [a for a in annotations if not a.get("iscrowd") and a.get("num_keypoints", 0) > 0]
        self._ignored = [a for a in annotations
                         if a.get("iscrowd") or a.get("num_keypoints", 0) == 0]
        coco_keypoints = np.array([a["keypoints"] for a in people], dtype=np.float32)
        self.parts = keypoints.coco_to_parts(coco_keypoints.reshape(-1, 17, 3))
        boxes = np.array([a["bbox"] for a in people], dtype=np.float32).reshape(-1, 4)
        self.boxes = boxes
        self.centers = boxes[:, :2] + boxes[:, 2:] / 2
        self.scales = boxes[:, 3] / augment.SCALE_REFERENCE_PIXELS

    def image(self):
        image = cv2.imread(self._image_path, cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError("cannot read image %s" % self._image_path)
        if image.shape[:2] != (self.height, self.width):
            raise ValueError("image %s is %dx%d but the annotations say %dx%d"
                             % (self._image_path, image.shape[1], image.shape[0],
                                self.width, self.height))
        return image

    def mask_miss(self):
        """(H, W) uint8: 0 on crowd regions and on people without keypoints, 1 elsewhere."""
        mask = np.ones((self.height, self.width), dtype=np.uint8)
        for annotation in self._ignored:
            segmentation = annotation["segmentation"]
            if isinstance(segmentation, list):                      # polygons
                rles = self._mask_utils.frPyObjects(segmentation, self.height, self.width)
                rle = self._mask_utils.merge(rles)
            elif isinstance(segmentation.get("counts"), list):      # uncompressed RLE
                rle = self._mask_utils.frPyObjects(segmentation, self.height, self.width)
            else:
                rle = segmentation
            mask[self._mask_utils.decode(rle) > 0] = 0
        return mask


def load_coco(path):
    """The COCO JSON with images and annotations indexed by image id."""
    import json
    try:
        with open(path) as handle:
            coco = json.load(handle)
    except (OSError, ValueError) as error:
        raise ValueError("cannot read COCO annotations %s: %s" % (path, error)) from error
    coco["images_by_id"] = {info["id"]: info for info in coco.get("images", [])}
    by_image = {}
    for annotation in coco.get("annotations", []):
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    coco["annotations_by_image"] = by_image
    return coco


def image_id_from_name(coco, image_path):
    name = os.path.basename(image_path)
    for info in coco["images"]:
        if info["file_name"] == name:
            return info["id"]
    raise ValueError("no image named %s in the annotations; give --image-id" % name)


# ----------------------------------------------------------------------------- the picture

def part_colours():
    """BGR colour per part: right side warm, left side cool, middle (nose, neck) green."""
    warm = [(0, 0, 255), (0, 96, 255), (0, 176, 255), (0, 230, 230), (64, 0, 200),
            (128, 64, 255), (0, 140, 180), (96, 96, 255)]
    cool = [(255, 0, 0), (255, 128, 0), (255, 200, 0), (230, 230, 0), (200, 0, 96),
            (255, 64, 160), (180, 140, 0), (255, 128, 128)]
    colours, right, left = [], iter(warm), iter(cool)
    for name in keypoints.PART_NAMES:
        if name.startswith("right_"):
            colours.append(next(right))
        elif name.startswith("left_"):
            colours.append(next(left))
        else:
            colours.append((0, 220, 0))
    return np.array(colours, dtype=np.float32)


def upsample(maps, crop_size):
    """(..., G, G) label maps -> (..., C, C): cell (x, y) lands on pixel 8x + 3.5 as in labels."""
    maps = np.asarray(maps, dtype=np.float32)
    flat = maps.reshape(-1, maps.shape[-2], maps.shape[-1]).transpose(1, 2, 0)
    big = cv2.resize(flat, (crop_size, crop_size), interpolation=cv2.INTER_LINEAR)
    return big.reshape(crop_size, crop_size, -1).transpose(2, 0, 1).reshape(
        maps.shape[:-2] + (crop_size, crop_size))


def keypoint_panel(sample, colours):
    panel = sample.crop.copy()
    for first, second in keypoints.LIMBS:
        for person in sample.parts:
            if person[first, 2] > 0 and person[second, 2] > 0:
                a = tuple(int(round(v)) for v in person[first, :2])
                b = tuple(int(round(v)) for v in person[second, :2])
                colour = tuple(float(c) for c in (colours[first] + colours[second]) / 2)
                cv2.line(panel, a, b, colour, 2, cv2.LINE_AA)
    for person in sample.parts:
        for part in np.nonzero(person[:, 2] > 0)[0]:
            centre = tuple(int(round(v)) for v in person[part, :2])
            cv2.circle(panel, centre, 4, tuple(float(c) for c in colours[part]), -1, cv2.LINE_AA)
    return panel


def heatmap_panel(sample, colours):
    crop_size = sample.crop.shape[0]
    heat = upsample(sample.heatmap_label[:keypoints.NUM_PARTS], crop_size)   # (18, C, C)
    strongest = heat.argmax(axis=0)
    value = heat.max(axis=0)[..., None]
    colour = colours[strongest] * value
    grey = sample.crop.astype(np.float32) * 0.4
    return np.clip(grey * (1 - value) + colour, 0, 255).astype(np.uint8)


def paf_panel(sample, stride):
    crop_size = sample.crop.shape[0]
    vectors = sample.paf_label.reshape(keypoints.NUM_LIMBS, 2, *sample.paf_label.shape[1:])
    x, y = vectors[:, 0].sum(axis=0), vectors[:, 1].sum(axis=0)      # limbs rarely overlap
    length = np.sqrt(x ** 2 + y ** 2)
    hue = (np.degrees(np.arctan2(y, x)) % 360 / 2).astype(np.uint8)   # OpenCV hue is 0..179
    hsv = np.stack([hue, np.full_like(hue, 255),
                    (np.clip(length, 0, 1) * 255).astype(np.uint8)], axis=-1)
    colour = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    colour = cv2.resize(colour, (crop_size, crop_size), interpolation=cv2.INTER_NEAREST)
    panel = cv2.addWeighted(sample.crop, 0.35, colour, 0.9, 0)
    for row in range(0, length.shape[0], 2):
        for col in range(0, length.shape[1], 2):
            if length[row, col] > 0.3:
                start = np.array([col, row]) * stride + (stride - 1) / 2.0
                end = start + np.array([x[row, col], y[row, col]]) / length[row, col] * stride * 1.5
                cv2.arrowedLine(panel, tuple(int(round(v)) for v in start),
                                tuple(int(round(v)) for v in end), (255, 255, 255), 1,
                                cv2.LINE_AA, tipLength=0.4)
    return panel


def mask_panel(sample, stride):
    crop_size = sample.crop.shape[0]
    ignored = 1 - cv2.resize(sample.loss_mask[0], (crop_size, crop_size),
                             interpolation=cv2.INTER_NEAREST)[..., None]
    red = np.array([0, 0, 255], dtype=np.float32)
    panel = sample.crop.astype(np.float32) * (1 - 0.6 * ignored) + red * 0.6 * ignored
    panel = np.clip(panel, 0, 255).astype(np.uint8)
    panel[::stride, :] = panel[::stride, :] // 2 + 64
    panel[:, ::stride] = panel[:, ::stride] // 2 + 64
    return panel


def sample_picture(sample, params, title, main_centre):
    """The four panels of one Sample under a header line: (2C + header, 2C, 3) uint8.

    main_centre: the main person's centre in the original image, marked with a cross.
    """
    colours = part_colours()
    keypoint_view = keypoint_panel(sample, colours)
    cx, cy = (int(round(v)) for v in sample.matrix @ (main_centre[0], main_centre[1], 1.0))
    cv2.drawMarker(keypoint_view, (cx, cy), (255, 255, 255), cv2.MARKER_CROSS, 12, 2)
    top = np.concatenate([keypoint_view, heatmap_panel(sample, colours)], axis=1)
    bottom = np.concatenate([paf_panel(sample, params.stride), mask_panel(sample, params.stride)],
                            axis=1)
    header = np.zeros((HEADER_PIXELS, 2 * params.crop_size, 3), dtype=np.uint8)
    cv2.putText(header, title, (6, HEADER_PIXELS - 9), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([header, top, bottom], axis=0)


def describe(record, person, augmentation):
    return ("image %d person %d: scale x%.2f, rotate %.1f deg, offset (%.0f, %.0f), %s"
            % (record.image_id, person, augmentation.scale_multiplier, augmentation.rotate_degree,
               augmentation.center_offset[0], augmentation.center_offset[1],
               "flipped" if augmentation.flip else "not flipped"))


def write_sample_picture(record, person, params, rng, out_path, flip="random"):
    """Augment person `person` of `record`, render the picture to out_path; returns the Sample."""
    if not 0 <= person < len(record.parts):
        raise ValueError("image %d has %d annotated people; person %d does not exist"
                         % (record.image_id, len(record.parts), person))
    augmentation = augment.draw_augmentation(params, rng)
    if flip != "random":
        augmentation = augmentation._replace(flip=(flip == "yes"))
    sample = augment.sample_from_record(record, person, params, rng, augmentation=augmentation)
    picture = sample_picture(sample, params, describe(record, person, augmentation),
                             record.centers[person])
    directory = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(directory, exist_ok=True)
    if not cv2.imwrite(out_path, picture):
        raise ValueError("cannot write %s (use a .png name)" % out_path)
    return sample


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] + " Panels: keypoints, heatmaps, PAFs, loss mask.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--image", required=True, help="the COCO image file")
    parser.add_argument("--ann", required=True, help="COCO person keypoints JSON")
    parser.add_argument("--image-id", type=int,
                        help="COCO image id (default: looked up by the image's file name)")
    parser.add_argument("--person", type=int, default=0,
                        help="main person: index among the image's people with keypoints")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the augmentation")
    parser.add_argument("--flip", choices=("random", "yes", "no"), default="random",
                        help="force the flip on or off (the other choices stay random)")
    parser.add_argument("--crop", type=int, default=augment.AugmentParams.crop_size,
                        help="crop size (multiple of 8)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        coco = load_coco(args.ann)
        image_id = args.image_id if args.image_id is not None else image_id_from_name(coco,
                                                                                      args.image)
        try:
            record = CocoImageRecord(coco, image_id, args.image)
        except ValueError as error:
            raise ValueError("%s: %s" % (args.ann, error)) from error
        params = augment.AugmentParams(crop_size=args.crop)
        write_sample_picture(record, args.person, params, np.random.RandomState(args.seed),
                             args.out, flip=args.flip)
    except ValueError as error:
        sys.exit("show_sample: error: %s" % error)
    print("wrote %s" % args.out)


if __name__ == "__main__":
    main()
