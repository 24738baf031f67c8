"""Time one training sample (augmentation + labels) on real COCO images, on one core.

    python scripts/benchmark_augment.py --lmdb DB [--crop 368] [--repeat 5]

DB is a database packed by data_prep/coco_to_lmdb.py (e.g. from the COCO slice). Prints a table
of milliseconds per sample: the JPEG decode, the augmentation and labels (augment.make_sample),
and both, for every main person of every record in turn (the data layer's samples). The data
layer's own benchmark (worker processes, batches): scripts/benchmark_data_layer.py.
"""
import argparse
import time

import cv2
import numpy as np

from conventions.geometry import BOX_SIZE
from data_prep.record import LmdbReader
from python_layers import augment


def load_cases(lmdb):
    """[(jpeg bytes, mask, record)] of every record of the database."""
    with LmdbReader(lmdb) as reader:
        return [(record.jpeg, record.mask_miss(), record) for record in reader]


def time_per_sample(function, cases, repeat):
    """Mean milliseconds of function(jpeg, mask, record, person) over every (image, person)."""
    calls, start = 0, time.perf_counter()
    for _ in range(repeat):
        for jpeg, mask, record in cases:
            for person in np.nonzero(record.is_main)[0]:
                function(jpeg, mask, record, person)
                calls += 1
    return 1000.0 * (time.perf_counter() - start) / calls, calls


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lmdb", required=True, help="database made by data_prep/coco_to_lmdb.py")
    parser.add_argument("--crop", type=int, default=BOX_SIZE, help="crop size")
    parser.add_argument("--repeat", type=int, default=5, help="passes over the images")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)                               # one core, as one data worker has
    params = augment.AugmentParams(crop_size=args.crop)
    rng = np.random.RandomState(0)
    cases = load_cases(args.lmdb)
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
    people = sum(int(record.is_main.sum()) for _, _, record in cases)
    print("%d images, %d main people, crop %d, one core (cv2 threads 1)"
          % (len(cases), people, args.crop))
    print("| step | ms / sample | samples |")
    print("|---|---|---|")
    for name, milliseconds, calls in rows:
        print("| %s | %.2f | %d |" % (name, milliseconds, calls))


if __name__ == "__main__":
    main()
