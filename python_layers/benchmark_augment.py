"""Time one training sample (augmentation + labels) on real COCO images, on one core.

    python python_layers/benchmark_augment.py --ann person_keypoints_train2017.json \
        --images IMAGE_DIR [--crop 368] [--repeat 5]

Prints a table of milliseconds per sample: the JPEG decode, the mask, the augmentation and
labels (augment.make_sample), and the whole sample as the data layer will produce it. Every
person with keypoints of every image with one is a main person in turn (as in the LMDB). The
data layer's own benchmark (worker processes, batches) belongs to the data layer.
"""
import argparse
import os
import time

import cv2
import numpy as np
from python_layers import augment, show_sample


def load_cases(ann_path, image_dir):
    """[(jpeg bytes, mask, record)] for the images that have people with keypoints."""
    coco = show_sample.load_coco(ann_path)
    cases = []
    for image_id, info in sorted(coco["images_by_id"].items()):
        path = os.path.join(image_dir, info["file_name"])
        record = show_sample.CocoImageRecord(coco, image_id, path)
        if len(record.parts):
            with open(path, "rb") as handle:
                cases.append((handle.read(), record.mask_miss(), record))
    return cases


def time_per_sample(function, cases, repeat):
    """Mean milliseconds of function(jpeg, mask, record, person) over every (image, person)."""
    calls, start = 0, time.perf_counter()
    for _ in range(repeat):
        for jpeg, mask, record in cases:
            for person in range(len(record.parts)):
                function(jpeg, mask, record, person)
                calls += 1
    return 1000.0 * (time.perf_counter() - start) / calls, calls


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ann", required=True, help="COCO person keypoints JSON")
    parser.add_argument("--images", required=True, help="folder of its images")
    parser.add_argument("--crop", type=int, default=368, help="crop size")
    parser.add_argument("--repeat", type=int, default=5, help="passes over the images")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)                               # one core, as one data worker has
    params = augment.AugmentParams(crop_size=args.crop)
    rng = np.random.RandomState(0)
    cases = load_cases(args.ann, args.images)
    images = {id(record): cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
              for jpeg, _, record in cases}

    def decode(jpeg, mask, record, person):
        cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)

    def sample(jpeg, mask, record, person):
        augment.make_sample(images[id(record)], mask, record.parts, record.centers[person],
                            record.scales[person], params, rng)

    def decode_and_sample(jpeg, mask, record, person):
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        augment.make_sample(image, mask, record.parts, record.centers[person],
                            record.scales[person], params, rng)

    rows = []
    for name, function in [("JPEG decode", decode), ("augmentation + labels", sample),
                           ("decode + augmentation + labels", decode_and_sample)]:
        rows.append((name,) + time_per_sample(function, cases, args.repeat))
    people = sum(len(record.parts) for _, _, record in cases)
    print("%d images, %d main people, crop %d, one core (cv2 threads 1)"
          % (len(cases), people, args.crop))
    print("| step | ms / sample | samples |")
    print("|---|---|---|")
    for name, milliseconds, calls in rows:
        print("| %s | %.2f | %d |" % (name, milliseconds, calls))


if __name__ == "__main__":
    main()
