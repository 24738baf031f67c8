"""Packing speed and database size on the COCO slice replicated to about 1000 images.

    python data_prep/benchmark_packing.py [--coco DIR] [--copies 13] [--workers 1 2]

The slice's images are linked under new names (symlinks, no copies) and its annotations repeated
with new image and annotation ids, then data_prep/coco_to_lmdb.py packs them, once per worker
count, end to end (interpreter start-up and JSON parsing included). Printed as Markdown rows:
images read per second of wall time; user CPU time per image (parent and workers: less sensitive
to other load on a shared machine than wall time); the database file over the JPEG bytes of the
images it holds (and over all source JPEG bytes).
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_COCO = os.path.join(os.path.dirname(REPO), "shared", "data", "coco_train2017_mini")
ANNOTATIONS = "person_keypoints_train2017.json"


def replicate(coco_dir, copies, workdir):
    """Write workdir/images (symlinks) and workdir/annotations.json; -> {file name: bytes}."""
    with open(os.path.join(coco_dir, ANNOTATIONS)) as stream:
        dataset = json.load(stream)
    images_dir = os.path.join(workdir, "images")
    os.makedirs(images_dir)
    images, annotations, sizes = [], [], {}
    next_image_id, next_annotation_id = 1, 1
    for copy in range(copies):
        new_ids = {}
        for entry in dataset["images"]:
            name = "c%03d_%s" % (copy, entry["file_name"])
            source = os.path.join(coco_dir, "images", entry["file_name"])
            os.symlink(os.path.abspath(source), os.path.join(images_dir, name))
            sizes[name] = os.path.getsize(source)
            new_ids[entry["id"]] = next_image_id
            images.append(dict(entry, id=next_image_id, file_name=name))
            next_image_id += 1
        for annotation in dataset["annotations"]:
            annotations.append(dict(annotation, id=next_annotation_id,
                                    image_id=new_ids[annotation["image_id"]]))
            next_annotation_id += 1
    ann_path = os.path.join(workdir, "annotations.json")
    with open(ann_path, "w") as stream:
        json.dump(dict(dataset, images=images, annotations=annotations), stream)
    return ann_path, images_dir, sizes


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime, usage.ru_stime


def run_once(ann_path, images_dir, out, workers):
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, os.path.join(REPO, "data_prep", "coco_to_lmdb.py"),
               "--ann", ann_path, "--images", images_dir, "--out", out,
               "--workers", str(workers), "--no-progress"]
    user0, system0 = children_cpu()
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)
    wall = time.perf_counter() - start
    user1, system1 = children_cpu()
    if done.returncode != 0:
        raise SystemExit("packer failed:\n" + done.stderr)
    return wall, user1 - user0, system1 - system0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--coco", default=os.environ.get("MLN_COCO_MINI", DEFAULT_COCO),
                        help="the COCO slice (default: $MLN_COCO_MINI or ../shared/data/"
                             "coco_train2017_mini beside the repository)")
    parser.add_argument("--copies", type=int, default=13,
                        help="copies of the slice's 80 images (default 13: 1040 images)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--workdir", help="scratch folder (default: a temporary one, removed)")
    args = parser.parse_args(argv)

    workdir = args.workdir or tempfile.mkdtemp(prefix="mln-pack-bench-")
    os.makedirs(workdir, exist_ok=True)
    try:
        sys.path.insert(0, REPO)
        from data_prep.record import LmdbReader
        ann_path, images_dir, sizes = replicate(args.coco, args.copies, workdir)
        out = os.path.join(workdir, "db")
        rows = []
        for workers in args.workers:
            load = os.getloadavg()[0]
            wall, user, system = run_once(ann_path, images_dir, out, workers)
            with LmdbReader(out) as reader:
                summary = reader.metadata["summary"]
                recorded = sum(sizes[reader[i].file_name] for i in range(len(reader)))
            data_file = os.path.join(out, "data.mdb")
            db_bytes = os.path.getsize(data_file)
            images = summary["images_read"]
            rows.append("| %d | %d | %d | %.2f | %.0f | %.0f | %.2f | %.2f | %.1f | %.3f | %.3f | %.1f |"
                        % (workers, images, summary["records"], wall, images / wall,
                           summary["records"] / wall, 1000 * user / images,
                           1000 * system / images, db_bytes / 1e6, db_bytes / float(recorded),
                           db_bytes / float(sum(sizes.values())), load))
        print("| workers | images | records | wall s | images/s | records/s | user CPU ms/image "
              "| system CPU ms/image | DB MB | DB / JPEG of records | DB / all JPEG | load before |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        print("\n".join(rows))
        print("\n%d CPU cores, Python %s" % (os.cpu_count(), sys.version.split()[0]))
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
