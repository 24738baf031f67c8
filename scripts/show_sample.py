"""Write one augmented training sample as a PNG, to check the labels by eye.

    python scripts/show_sample.py --lmdb DB --index I [--person K] --out sample.png
    python scripts/show_sample.py --lmdb DB --position P --seed S --out sample.png
    python scripts/show_sample.py --ann person_keypoints.json --image IMG.jpg \
        [--image-id ID] [--person K] --out sample.png
    options: [--seed S] [--flip random|yes|no] [--crop C]

Four panels, each the augmented crop (crop_size x crop_size):
  top left     keypoints and skeleton of every person (conventions/drawing.py's colours: right
               side warm, left side cool, middle green) as the labels see them after the
               transform; the main person's centre is a white cross;
  top right    the 18 part heatmaps, each in its part's colour;
  bottom left  the PAFs: hue = direction (red to the right, green down, cyan to the left,
               violet up), brightness = length, and an arrow every second label cell;
  bottom right the loss mask: red where the loss is ignored (mask 0), with the label grid.
The header gives the image id, the person and the random choices.

Sources, all giving a data_prep Record (persons, main persons, loss mask), augmented by
python_layers.augment as the data layer does:
  --lmdb DB --index I     record I of a packed database; --person K is an index into its persons
                          (default: its first main person);
  --lmdb DB --position P  the P-th sample of the data layer's stream for --seed: the same record,
                          main person and augmentation that training gets (batch b of size N holds
                          positions b*N .. b*N+N-1);
  --ann JSON --image IMG  one image packed on the fly by data_prep's own code: the record the
                          packer would write (reading a big annotation file takes a while).
After a flip a person facing the camera still has its right side (warm) on the image's left.
"""
import argparse
import os
import sys

import cv2
import numpy as np

from conventions import drawing, keypoints
from python_layers import augment

HEADER_PIXELS = 28


# ----------------------------------------------------------------------------- the sources

def record_from_coco(annotation_path, image_path, image_id=None):
    """The Record that data_prep's packer makes of one image (data_prep.coco_json, packing).

    The image is found by `image_id`, else by its file name; ValueError when the image is not
    in the file or makes no record (the packer's reasons are given).
    """
    from data_prep import packing, skip_reasons
    from data_prep.coco_json import AnnotationFile, AnnotationFileError, plan_images
    from data_prep.record import Record
    try:
        tasks, _ = plan_images(AnnotationFile(annotation_path))
    except AnnotationFileError as error:
        raise ValueError(str(error)) from None
    name = os.path.basename(image_path)
    wanted = [task for task in tasks if isinstance(task.entry, dict) and (
        task.entry.get("id") == image_id if image_id is not None
        else task.entry.get("file_name") == name)]
    if not wanted:
        raise ValueError("%s: no image %s in the annotation file%s" % (
            annotation_path, "id %d" % image_id if image_id is not None else "named " + name,
            "" if image_id is not None else "; give --image-id"))
    entry = wanted[0].entry
    if entry.get("file_name") != name:
        raise ValueError("%s: image id %s is %s, not %s" % (annotation_path, entry.get("id"),
                                                            entry.get("file_name"), name))
    outcome = packing.process_image(wanted[0], os.path.dirname(os.path.abspath(image_path)))
    if outcome.record is None:
        reasons = [skip_reasons.describe(problem) for problem in outcome.problems] or [
            "%s (%s)" % (reason, skip_reasons.REASONS[reason][2])
            for reason in outcome.counts if reason in skip_reasons.REASONS]
        raise ValueError("%s: image id %d makes no training record: %s"
                         % (annotation_path, entry["id"], "; ".join(reasons)))
    return Record.from_bytes(outcome.record, where="%s image %d" % (annotation_path, entry["id"]))


def sample_from_stream(lmdb, position, seed):
    """(record, person, rng) of the data layer's sample at `position` for `seed`."""
    from data_prep.record import LmdbReader
    from python_layers.batch_source import SampleOrder, list_samples
    with LmdbReader(lmdb) as reader:
        order = SampleOrder(list_samples(reader), seed)
        task = order.task(position)
        return reader[task.record], task.person, order.rng(task)


# ----------------------------------------------------------------------------- the picture

def heatmap_panel(sample):
    crop_size = sample.crop.shape[0]
    heat = drawing.upsample(sample.heatmap_label[:keypoints.NUM_PARTS],
                            (crop_size, crop_size))                          # (18, C, C)
    strongest = heat.argmax(axis=0)
    value = heat.max(axis=0)[..., None]
    colour = np.array(drawing.PART_COLOURS, dtype=np.float32)[strongest] * value
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
    colour = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR).transpose(2, 0, 1)     # one per label cell
    colour = drawing.upsample(colour, (crop_size, crop_size), cv2.INTER_NEAREST)
    colour = colour.transpose(1, 2, 0).astype(np.uint8)
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
    ignored = 1 - drawing.upsample(sample.loss_mask[0], (crop_size, crop_size),
                                   cv2.INTER_NEAREST)[..., None]
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
    keypoint_view = drawing.draw_skeletons(sample.crop, sample.parts)
    cx, cy = (int(round(v)) for v in sample.matrix @ (main_centre[0], main_centre[1], 1.0))
    cv2.drawMarker(keypoint_view, (cx, cy), (255, 255, 255), cv2.MARKER_CROSS, 12, 2)
    top = np.concatenate([keypoint_view, heatmap_panel(sample)], axis=1)
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
        raise ValueError("image %d has %d persons with keypoints; person %d does not exist"
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
    parser.add_argument("--lmdb", help="a database packed by data_prep/coco_to_lmdb.py")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--index", type=int, help="with --lmdb: the record's index")
    which.add_argument("--position", type=int,
                       help="with --lmdb: the data layer's sample at this position for --seed")
    parser.add_argument("--ann", help="COCO person keypoints JSON (with --image)")
    parser.add_argument("--image", help="the COCO image file (with --ann)")
    parser.add_argument("--image-id", type=int,
                        help="COCO image id (default: looked up by the image's file name)")
    parser.add_argument("--person", type=int,
                        help="the person to centre on: index among the record's persons "
                             "(default: its first main person)")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the augmentation")
    parser.add_argument("--flip", choices=("random", "yes", "no"), default="random",
                        help="force the flip on or off (the other choices stay random)")
    parser.add_argument("--crop", type=int, default=augment.AugmentParams.crop_size,
                        help="crop size (multiple of 8)")
    args = parser.parse_args(argv)
    if args.lmdb is not None:
        if args.index is None and args.position is None:
            parser.error("--lmdb needs --index I or --position P")
        if args.ann or args.image or args.image_id is not None:
            parser.error("choose one source: --lmdb, or --ann with --image")
        if args.position is not None and args.person is not None:
            parser.error("--position chooses the person itself; leave out --person")
    elif args.ann is None or args.image is None:
        parser.error("give a source: --lmdb DB --index I, --lmdb DB --position P, or "
                     "--ann JSON --image IMG")
    elif args.index is not None or args.position is not None:
        parser.error("--index and --position go with --lmdb")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        rng = np.random.RandomState(args.seed)
        if args.position is not None:
            record, person, rng = sample_from_stream(args.lmdb, args.position, args.seed)
        elif args.lmdb is not None:
            from data_prep.record import LmdbReader
            with LmdbReader(args.lmdb) as reader:
                if not 0 <= args.index < len(reader):
                    raise ValueError("%s holds records 0 .. %d; there is no record %d"
                                     % (args.lmdb, len(reader) - 1, args.index))
                record, person = reader[args.index], args.person
        else:
            record, person = record_from_coco(args.ann, args.image, args.image_id), args.person
        if person is None:
            person = int(np.nonzero(record.is_main)[0][0])
        params = augment.AugmentParams(crop_size=args.crop)
        write_sample_picture(record, person, params, rng, args.out, flip=args.flip)
    except ValueError as error:          # RecordError and the packer's reasons included
        sys.exit("show_sample: error: %s" % error)
    print("wrote %s" % args.out)


if __name__ == "__main__":
    main()
