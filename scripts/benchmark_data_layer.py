"""Speed of the training data layer's sample production: samples/s by number of workers.

    python scripts/benchmark_data_layer.py --lmdb DB [--workers 0 1 2] [--crop 368]
        [--batch 28] [--batches 20] [--markdown out.md]

Drives python_layers.batch_source.BatchSource, the machinery of CocoPoseDataLayer, without a net:
each sample is read from LMDB, its JPEG decoded, augmented (all of OpenPose's augmentation: scale,
rotation, crop jitter, flip) and labelled, then copied into batch arrays as the layer copies into
its tops. One warm-up batch (the workers' start and the first prefetch) is not timed.

Columns: wall-clock samples/s; CPU ms per sample over all processes (the stable figure on a
shared machine: cores x 1000 / this is the rate a quiet machine reaches); CPU ms per sample in
the main process (what Caffe's own thread pays: the copy into the tops when workers build the
samples); the load average before the row.
"""
import argparse
import os
import sys
import time

import numpy as np

from conventions.geometry import BOX_SIZE
from python_layers.augment import AugmentParams
from python_layers.batch_source import BatchSource, top_shapes

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid):
    """user + system CPU seconds of a live process, from /proc."""
    with open("/proc/%d/stat" % pid) as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def measure(lmdb, workers, crop, batch, count, seed=0):
    params = AugmentParams(crop_size=crop)
    source = BatchSource(lmdb, batch, params, seed=seed, workers=workers, prefetch_batches=2)
    try:
        outputs = [np.empty(shape, dtype=np.float32) for shape in top_shapes(batch, params)]
        source.fill(outputs)                                   # warm-up, not timed
        pids = source.worker_pids
        load = os.getloadavg()[0]
        main_before = time.process_time()
        workers_before = sum(process_cpu_seconds(pid) for pid in pids)
        start = time.perf_counter()
        for _ in range(count):
            source.fill(outputs)
        wall = time.perf_counter() - start
        main_cpu = time.process_time() - main_before
        workers_cpu = sum(process_cpu_seconds(pid) for pid in pids) - workers_before
    finally:
        source.close()
    samples = count * batch
    return {"workers": workers, "samples": samples, "wall_s": wall, "samples_per_s": samples / wall,
            "cpu_ms": 1000 * (main_cpu + workers_cpu) / samples,
            "main_cpu_ms": 1000 * main_cpu / samples, "load": load,
            "num_samples": source.num_samples}


def markdown(rows, crop, batch):
    lines = ["| workers | crop | batch | samples | wall s | samples/s | CPU ms/sample (all) | "
             "CPU ms/sample (main) | load before |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append("| %s | %d | %d | %d | %.2f | %.0f | %.2f | %.2f | %.1f |" % (
            "0 (in-process)" if row["workers"] == 0 else row["workers"], crop, batch,
            row["samples"], row["wall_s"], row["samples_per_s"], row["cpu_ms"],
            row["main_cpu_ms"], row["load"]))
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lmdb", required=True,
                        help="a database made by data_prep/coco_to_lmdb.py (e.g. the COCO slice)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--crop", type=int, default=BOX_SIZE)
    parser.add_argument("--batch", type=int, default=28)
    parser.add_argument("--batches", type=int, default=20, help="timed batches per row")
    parser.add_argument("--markdown", help="also write the table to this file")
    args = parser.parse_args(argv)
    rows = []
    for workers in args.workers:
        row = measure(args.lmdb, workers, args.crop, args.batch, args.batches)
        rows.append(row)
        sys.stderr.write("workers %d: %.0f samples/s\n" % (workers, row["samples_per_s"]))
    table = markdown(rows, args.crop, args.batch)
    print("Data layer on %s (%d samples; %d cores)\n" % (args.lmdb, rows[0]["num_samples"],
                                                       os.cpu_count()))
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as handle:
            handle.write(table)


if __name__ == "__main__":
    main()
