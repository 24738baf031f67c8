"""Statistics of a packed database, and a picture of one record for eyeballing.

    python data_prep/inspect_lmdb.py DB                          # statistics
    python data_prep/inspect_lmdb.py DB --index 3 --out rec3.png # ... and record 3 drawn

The picture: the image; mask_all (every annotated person and crowd region) tinted blue; where
mask_miss is 0 (no loss: people without keypoints, crowds) tinted red on top; every person's
keypoints (filled: visible, ring: occluded) and limbs in conventions/drawing.py's colours (one
per limb, right side warm, left side cool); main persons' boxes in yellow with their centre, the
others' in grey.
"""
import argparse
import json
import os
import sys

import numpy as np

from data_prep.record import LmdbReader, Record, RecordError
from data_prep.skip_reasons import format_summary

MASK_SAMPLE = 500     # records whose masks are decoded for the coverage statistics


def statistics(reader):
    """Counts and sizes over all records (masks over an even sample of them)."""
    persons, mains, heights, widths, jpeg_bytes, record_bytes = [], [], [], [], 0, 0
    for index in range(len(reader)):
        data = reader.raw(index)
        item = Record.from_bytes(data, where="record %d" % index)
        persons.append(item.num_persons)
        mains.append(int(item.is_main.sum()))
        heights.append(item.height)
        widths.append(item.width)
        jpeg_bytes += len(item.jpeg)
        record_bytes += len(data)
    sample = sorted(set(np.linspace(0, len(reader) - 1, min(MASK_SAMPLE, len(reader)))
                        .astype(int).tolist())) if len(reader) else []
    missing = [1 - reader[i].mask_miss().mean() for i in sample]
    covered = [reader[i].mask_all().mean() for i in sample]
    return {
        "records": len(reader),
        "persons": int(np.sum(persons)),
        "main_persons": int(np.sum(mains)),
        "persons_per_record_max": int(np.max(persons)) if persons else 0,
        "image_height_range": (int(np.min(heights)), int(np.max(heights))) if heights else None,
        "image_width_range": (int(np.min(widths)), int(np.max(widths))) if widths else None,
        "jpeg_bytes": jpeg_bytes,
        "record_bytes": record_bytes,
        "database_file_bytes": os.path.getsize(os.path.join(reader.path, "data.mdb")),
        "mask_sample": len(sample),
        "mask_miss_zero_fraction_mean": float(np.mean(missing)) if missing else 0.0,
        "mask_all_fraction_mean": float(np.mean(covered)) if covered else 0.0,
    }


def format_statistics(metadata, stats):
    run = metadata["run"]
    lines = ["format          %s version %d (%s)" % (metadata["format"], metadata["schema_version"],
                                                     "complete" if metadata["complete"]
                                                     else "PACKING NOT FINISHED"),
             "annotation file %s" % run.get("annotation_file", {}).get("path"),
             "images folder   %s" % run.get("images_dir"),
             "limit           %s" % run.get("limit")]
    if metadata["summary"]:
        lines += ["-- packing summary", format_summary(metadata["summary"])]
    lines += ["-- records"]
    for key, value in stats.items():
        lines.append("%-30s %s" % (key, value))
    if stats["jpeg_bytes"]:
        lines.append("%-30s %.3f" % ("database_file / jpeg bytes",
                                     stats["database_file_bytes"] / float(stats["jpeg_bytes"])))
    return "\n".join(lines)


def draw_record(item):
    """The picture described in the module docstring, (H, W, 3) uint8 BGR."""
    import cv2
    from conventions import drawing
    picture = item.image().astype(np.float32)
    mask_all = item.mask_all().astype(bool)
    no_loss = item.mask_miss() == 0
    picture[mask_all] = 0.65 * picture[mask_all] + 0.35 * np.array([255, 0, 0])
    picture[no_loss] = 0.5 * picture[no_loss] + 0.5 * np.array([0, 0, 255])
    picture = picture.astype(np.uint8)
    thickness = drawing.stick_width(picture.shape) // 2     # boxes: half a limb's width
    for person in range(item.num_persons):
        x, y, w, h = item.boxes[person]
        main = bool(item.is_main[person])
        cv2.rectangle(picture, (int(round(x)), int(round(y))), (int(round(x + w)), int(round(y + h))),
                      (0, 255, 255) if main else (160, 160, 160), 2 * thickness if main else thickness)
        if main:
            cx, cy = item.centers[person]
            cv2.drawMarker(picture, (int(round(cx)), int(round(cy))), (0, 255, 255),
                           cv2.MARKER_CROSS, 12 * thickness, thickness)
    picture = drawing.draw_skeletons(picture, item.parts, occluded_rings=True)
    label = "image %d  %s  %d persons, %d main" % (item.image_id, item.file_name, item.num_persons,
                                                   int(item.is_main.sum()))
    scale = item.width / 1400.0            # the label spans about half the width
    cv2.putText(picture, label, (5, int(5 + 30 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (255, 255, 255), max(1, int(round(2 * scale))), cv2.LINE_AA)
    return picture


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Print the metadata, packing summary and statistics of a packed database; "
                    "with --out, draw one record (image, keypoints, limbs, both masks).")
    parser.add_argument("db", help="database directory made by data_prep/coco_to_lmdb.py")
    parser.add_argument("--index", type=int, default=0, help="record to draw (default 0)")
    parser.add_argument("--out", help="PNG file to write the picture of record --index to")
    parser.add_argument("--json", help="also write the metadata (with the packing summary) to "
                                       "this JSON file, for tools that report on a database")
    args = parser.parse_args(argv)
    try:
        with LmdbReader(args.db, allow_incomplete=True) as reader:
            print(format_statistics(reader.metadata, statistics(reader)))
            if args.json:
                with open(args.json, "w") as handle:
                    json.dump(reader.metadata, handle, indent=1, sort_keys=True)
            if args.out:
                import cv2
                if not 0 <= args.index < len(reader):
                    parser.error("--index %d: the database has records 0..%d"
                                 % (args.index, len(reader) - 1))
                item = reader[args.index]
                if not cv2.imwrite(args.out, draw_record(item)):
                    print("error: cannot write %s" % args.out, file=sys.stderr)
                    return 1
                print("record %d (%r) drawn to %s" % (args.index, item, args.out))
    except RecordError as error:
        print("error: %s" % error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
