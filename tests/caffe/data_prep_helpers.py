"""Helpers of the data_prep tests: running the packer, reading a database byte for byte, and
small synthetic COCO inputs (real JPEG files written by OpenCV) for the bad-input cases."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np

from tests.conftest import REPO

PACKER = str(REPO / "data_prep" / "coco_to_lmdb.py")


def run_packer(ann, images, out, *options, env_extra=None, preexec_fn=None, timeout=120):
    """Run the command line packer; -> CompletedProcess (text stdout/stderr)."""
    env = dict(os.environ)
    env.update(env_extra or {})
    command = [sys.executable, PACKER, "--ann", str(ann), "--images", str(images),
               "--out", str(out), "--no-progress"] + [str(o) for o in options]
    return subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, env=env, preexec_fn=preexec_fn,
                          timeout=timeout)


def database_content(path):
    """Every key and value of both tables, read with lmdb directly (not through the reader)."""
    import lmdb
    env = lmdb.open(str(path), readonly=True, lock=False, max_dbs=2)
    try:
        content = {}
        for name in (b"records", b"meta"):
            table = env.open_db(name, create=False)
            with env.begin(db=table) as txn:
                content[name] = {bytes(k): bytes(v) for k, v in txn.cursor()}
        return content
    finally:
        env.close()


def write_jpeg(path, width, height, seed=0):
    """A real JPEG of noise (noise keeps the scan data large, so cutting it leaves the headers)."""
    pixels = np.random.RandomState(seed).randint(0, 256, (height, width, 3)).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    data = data.tobytes()
    with open(str(path), "wb") as stream:
        stream.write(data)
    return data


def square(x, y, size):
    """A square polygon segmentation (COCO form)."""
    return [[x, y, x + size, y, x + size, y + size, x, y + size]]


def person(annotation_id, image_id, box, labelled=17, segmentation=None, keypoints=None,
           area=None):
    """A non-crowd person annotation: `labelled` keypoints placed inside its box."""
    x, y, w, h = box
    if keypoints is None:
        keypoints = []
        for k in range(17):
            keypoints += ([x + 1 + (k % 4) * (w - 2) / 3.0, y + 1 + (k // 4) * (h - 2) / 4.0, 2]
                          if k < labelled else [0, 0, 0])
    return {"id": annotation_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
            "bbox": list(box), "area": float(w * h) if area is None else area,
            "num_keypoints": labelled, "keypoints": keypoints,
            "segmentation": segmentation if segmentation is not None else square(x, y, min(w, h))}


def write_annotations(path, images, annotations):
    dataset = {"images": images, "annotations": annotations,
               "categories": [{"id": 1, "name": "person", "supercategory": "person"}]}
    with open(str(path), "w") as stream:
        json.dump(dataset, stream)
    return path
