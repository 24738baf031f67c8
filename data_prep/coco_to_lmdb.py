"""Pack COCO person keypoints into the training LMDB: one record per image with a main person.

    python data_prep/coco_to_lmdb.py --ann person_keypoints_train2017.json \\
        --images train2017/ --out coco_train2017.lmdb [--workers N] [--limit N] [--strict]

This is the command line; the packer itself is a library: data_prep/packer.py (the run, resuming,
the worker processes), data_prep/lmdb_writer.py (the database, its lock, commits, map growth),
data_prep/packing.py (the selection rule, the masks and what happens to bad input). The record
format and its reader: data_prep/record.py. Every reason something is left out:
data_prep/skip_reasons.py. Usage and numbers: data_prep/README.md.

Interrupted (Ctrl-C, kill -9, a full disk), the packer keeps what it committed; rerun with the
same command, it continues and ends with the same database as an uninterrupted run.
"""
import argparse
import sys

from data_prep import skip_reasons
from data_prep.coco_json import AnnotationFileError
from data_prep.lmdb_writer import PackError
from data_prep.packer import DEFAULT_COMMIT_EVERY, pack


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Pack COCO person keypoints into an LMDB of training records: one record per "
                    "image with at least one main person, holding the original JPEG, every "
                    "person's keypoints, boxes, areas, the main persons and the loss masks "
                    "(mask_miss, mask_all). Resumable: rerun the same command after an "
                    "interruption. Prints a summary of everything left out and why.")
    parser.add_argument("--ann", required=True,
                        help="COCO keypoint annotation file, e.g. person_keypoints_train2017.json")
    parser.add_argument("--images", required=True,
                        help="folder holding the images named by the file's 'file_name' fields")
    parser.add_argument("--out", required=True, help="output LMDB directory (created)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes checking images and rasterising masks in parallel "
                             "(default: one per CPU core; 0 = all in this process; the writer "
                             "is always this process)")
    parser.add_argument("--limit", type=int, default=None,
                        help="pack only the first N images of the annotation file")
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first problem in the input (not at normal exclusions "
                             "such as images without people), naming the file and id")
    parser.add_argument("--commit-every", type=int, default=DEFAULT_COMMIT_EVERY, metavar="N",
                        help="images per transaction: at most this much work is redone after a "
                             "crash (default %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    for name in ("workers", "limit", "commit_every"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "workers" else 1):
            parser.error("--%s must be %s" % (name.replace("_", "-"),
                                              "0 or more" if name == "workers" else "positive"))
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        summary = pack(args.ann, args.images, args.out, workers=args.workers, limit=args.limit,
                       strict=args.strict, commit_every=args.commit_every,
                       progress_bar=not args.no_progress)
    except AnnotationFileError as error:
        print("error: %s" % error, file=sys.stderr)
        return 2
    except PackError as error:
        print("error: %s" % error, file=sys.stderr)
        return error.exit_code
    print(skip_reasons.format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
