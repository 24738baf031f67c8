"""The training data layer in the generators' real MLN train net, on the COCO slice packed by
data_prep's packer: the tops, labels against the keypoints, the documented sample order and
seeds, independence from the worker count, worker shutdown, and errors."""
import json
import os
import shutil
import struct
import subprocess
import sys
import time

import caffe
import numpy as np
import pytest

from data_prep.record import LmdbReader
from generators.net_files import write_net_files
from generators.nets import NetOptions
from generators.solver import SolverOptions
from python_layers import augment
from python_layers.batch_source import SampleError
from tests.caffe.process_helpers import alive

TOPS = ("data", "heatmap_label", "paf_label", "loss_mask")
CROP, BATCH = 96, 4
NO_AUGMENTATION = {"scale_min": 1, "scale_max": 1, "max_rotate_degree": 0,
                   "center_perturb_max": 0, "flip_prob": 0}


def make_net(directory, lmdb, batch=BATCH, crop=CROP, seed=0, **data_param):
    """The generated MLN train net with the real data layer (TRAIN phase)."""
    options = NetOptions(crop_size=crop, batch_size=batch, lmdb=str(lmdb), seed=seed,
                         data_param=data_param)
    name = "net-%d" % len(os.listdir(str(directory)))
    paths = write_net_files("mln", str(directory / name), options,
                            SolverOptions(snapshot_prefix=str(directory / "snap")))
    caffe.set_mode_cpu()
    return caffe.Net(paths["train"], caffe.TRAIN)


def batches(net, count):
    """`count` forward passes of the data layer alone: [{top: array}]."""
    out = []
    for _ in range(count):
        net.forward(end="data")
        out.append({top: net.blobs[top].data.copy() for top in TOPS})
    return out


def close(net):
    net.layers[0].batches.close()       # pycaffe never frees Python layers (see data_layer.py)


def all_samples(lmdb):
    """(record, main person) pairs in record order, read from the database directly."""
    with LmdbReader(str(lmdb)) as reader:
        return [(index, int(person)) for index in range(len(reader))
                for person in np.nonzero(reader[index].is_main)[0]]


def test_tops_follow_the_contract(tmp_path, coco_mini_lmdb):
    net = make_net(tmp_path, coco_mini_lmdb, workers=0)
    grid = CROP // 8
    assert [net.blobs[top].data.shape for top in TOPS] == [
        (BATCH, 3, CROP, CROP), (BATCH, 19, grid, grid), (BATCH, 38, grid, grid),
        (BATCH, 1, grid, grid)]
    for batch in batches(net, 2):
        for top in TOPS:
            assert np.isfinite(batch[top]).all(), top
        data = batch["data"]
        assert data.min() >= -0.5 and data.max() <= 255 / 256 - 0.5     # pixel / 256 - 0.5
        assert data.std() > 0.05                                          # a picture
        heat = batch["heatmap_label"]
        assert heat.min() >= 0 and heat.max() <= 1
        assert (heat[:, :18].reshape(BATCH, -1).max(axis=1) > 0.5).all()  # a person in each
        np.testing.assert_allclose(heat[:, 18], np.maximum(0, 1 - heat[:, :18].max(axis=1)),
                                   atol=1e-6)
        paf = batch["paf_label"].reshape(BATCH, 19, 2, grid, grid)
        norms = np.sqrt((paf ** 2).sum(axis=2))
        assert norms.max() <= 1 + 1e-5 and norms.max() > 0.9
        mask = batch["loss_mask"]
        assert mask.min() >= 0 and mask.max() <= 1


def test_a_batch_is_the_documented_samples_with_their_own_seeds(tmp_path, coco_mini_lmdb):
    """Epoch 0 is RandomState([seed, 0]).permutation(n) of the (record, main person) pairs;
    sample i of it is augmented with RandomState([seed, 0, i])."""
    seed = 11
    net = make_net(tmp_path, coco_mini_lmdb, seed=seed, workers=0)
    first, second = batches(net, 2)
    samples = all_samples(coco_mini_lmdb)
    assert len(samples) == 65
    order = np.random.RandomState([seed, 0]).permutation(len(samples))
    params = augment.AugmentParams(crop_size=CROP)
    with LmdbReader(str(coco_mini_lmdb)) as reader:
        for batch, positions in ((first, range(BATCH)), (second, range(BATCH, 2 * BATCH))):
            for row, position in enumerate(positions):
                record, person = samples[order[position]]
                expected = augment.sample_from_record(
                    reader[record], person, params, np.random.RandomState([seed, 0, position]))
                np.testing.assert_array_equal(batch["data"][row], expected.data)
                np.testing.assert_array_equal(batch["heatmap_label"][row], expected.heatmap_label)
                np.testing.assert_array_equal(batch["paf_label"][row], expected.paf_label)
                np.testing.assert_array_equal(batch["loss_mask"][row], expected.loss_mask)


def test_an_epoch_shows_every_main_person_once(coco_mini_lmdb):
    from python_layers.batch_source import BatchSource
    source = BatchSource(str(coco_mini_lmdb), 5, augment.AugmentParams(), seed=3)
    epoch = [(task.record, task.person) for batch in range(13) for task in source.tasks(batch)]
    assert sorted(epoch) == all_samples(coco_mini_lmdb)
    next_epoch = [(task.record, task.person) for task in source.tasks(13)]
    assert [task.epoch for task in source.tasks(13)] == [1] * 5
    assert next_epoch != epoch[:5]                                        # shuffled anew


@pytest.mark.parametrize("flip", [False, True])
def test_labels_and_mask_sit_on_the_keypoints_and_masked_people(tmp_path, coco_mini_lmdb, flip):
    """Without random augmentation the crop is the image scaled by 0.6 C / box height about the
    main person's box centre, moved to the crop centre (and mirrored with a left/right swap):
    worked out here from the record alone."""
    check_labels_and_mask(tmp_path, coco_mini_lmdb, flip)


def check_labels_and_mask(tmp_path, lmdb, flip, batch_size=8, seed=2, crop=CROP):
    """The test above on any database: its first batch (batch_size samples, seed, crop)."""
    grid = crop // 8
    net = make_net(tmp_path, lmdb, batch=batch_size, crop=crop, seed=seed, workers=0,
                   **dict(NO_AUGMENTATION, flip_prob=1 if flip else 0))
    batch = batches(net, 1)[0]
    tasks = net.layers[0].batches.tasks(0)
    swap = {2: 5, 3: 6, 4: 7, 8: 11, 9: 12, 10: 13, 14: 15, 16: 17}
    swap.update({b: a for a, b in swap.items()})
    checked_parts = checked_cells = 0
    with LmdbReader(str(lmdb)) as reader:
        for row, task in enumerate(tasks):
            record = reader[task.record]
            box = record.boxes[task.person]
            centre = box[:2] + box[2:] / 2
            scale = 0.6 * crop / box[3]

            def to_crop(x, y):
                cx = (x - centre[0]) * scale + (crop - 1) / 2
                cy = (y - centre[1]) * scale + (crop - 1) / 2
                return (crop - 1 - cx if flip else cx), cy

            for person in record.parts:
                for part in np.nonzero(person[:, 2] > 0)[0]:
                    x, y = to_crop(*person[part, :2])
                    col, row_cell = int(round((x - 3.5) / 8)), int(round((y - 3.5) / 8))
                    if 0 <= col < grid and 0 <= row_cell < grid:
                        channel = swap.get(part, part) if flip else part
                        assert batch["heatmap_label"][row, channel, row_cell, col] > 0.7
                        checked_parts += 1
            # the loss mask: cells whose 8x8 pixels all map onto ignored (or kept) image pixels
            mask_miss = record.mask_miss()
            for cell_y, cell_x, window in cell_windows(mask_miss, centre, scale, crop, flip):
                value = batch["loss_mask"][row, 0, cell_y, cell_x]
                if not window.any():
                    assert value == 0
                    checked_cells += 1
                elif window.all():
                    assert value == 1
    assert checked_parts > 100 and checked_cells > 0


def to_crop_inverse(x, y, centre, scale, crop, flip):
    """Crop pixel -> image pixel for the no-augmentation map of the test above."""
    if flip:
        x = crop - 1 - x
    return ((x - (crop - 1) / 2) / scale + centre[0], (y - (crop - 1) / 2) / scale + centre[1])


def cell_windows(image_map, centre, scale, crop, flip):
    """(cell_y, cell_x, the pixels of image_map under the cell's 8x8 crop pixels) for every label
    cell that falls wholly inside the image, under the no-augmentation map of the test above."""
    height, width = image_map.shape[:2]
    for cell_y in range(crop // 8):
        for cell_x in range(crop // 8):
            corners = [to_crop_inverse(px, py, centre, scale, crop, flip)
                       for px in (cell_x * 8 - 1, cell_x * 8 + 8)
                       for py in (cell_y * 8 - 1, cell_y * 8 + 8)]
            xs = [int(round(x)) for x, _ in corners]
            ys = [int(round(y)) for _, y in corners]
            if min(xs) < 0 or min(ys) < 0 or max(xs) >= width or max(ys) >= height:
                continue
            yield cell_y, cell_x, image_map[min(ys):max(ys) + 1, min(xs):max(xs) + 1]


def test_batches_depend_on_the_seed_only_not_on_the_workers(tmp_path, coco_mini_lmdb):
    runs = {}
    for workers, seed in ((0, 5), (1, 5), (2, 5), (2, 6)):
        net = make_net(tmp_path, coco_mini_lmdb, seed=seed, workers=workers, prefetch_batches=2)
        runs[workers, seed] = batches(net, 4)
        close(net)
    for workers in (1, 2):
        for reference, other in zip(runs[0, 5], runs[workers, 5]):
            for top in TOPS:
                np.testing.assert_array_equal(reference[top], other[top])
    assert not np.array_equal(runs[2, 5][0]["data"], runs[2, 6][0]["data"])


def test_first_sample_continues_the_stream(tmp_path, coco_mini_lmdb):
    whole = batches(make_net(tmp_path, coco_mini_lmdb, seed=4, workers=0), 3)
    resumed = batches(make_net(tmp_path, coco_mini_lmdb, seed=4, workers=0,
                               first_sample=2 * BATCH), 1)
    for top in TOPS:
        np.testing.assert_array_equal(resumed[0][top], whole[2][top])


def test_workers_run_ahead_and_are_reaped(tmp_path, coco_mini_lmdb):
    net = make_net(tmp_path, coco_mini_lmdb, workers=2, prefetch_batches=2)
    source = net.layers[0].batches
    pids = source.worker_pids
    assert len(pids) == 2 and all(alive(pid) for pid in pids)
    assert source.wait_until_prefetched() == 2     # built before the first forward pass
    batches(net, 3)
    close(net)
    assert not any(alive(pid) for pid in pids)        # gone, not zombies


def test_workers_end_with_the_process(tmp_path, coco_mini_lmdb):
    """A pycaffe script that just exits, and one that is killed: no worker stays behind."""
    script = tmp_path / "script.py"
    prototxt = tmp_path / "data.prototxt"
    param_str = json.dumps({"source": str(coco_mini_lmdb), "batch_size": 2, "crop_size": 64,
                            "workers": 2})
    prototxt.write_text(
        'layer { name: "data" type: "Python" top: "data" top: "heatmap_label" '
        'top: "paf_label" top: "loss_mask" python_param { module: "python_layers.data_layer" '
        'layer: "CocoPoseDataLayer" param_str: %s } }' % json.dumps(param_str))
    script.write_text(
        "import sys, caffe\n"
        "net = caffe.Net(%r, caffe.TRAIN)\n"
        "net.forward()\n"
        "print(*net.layers[0].batches.worker_pids, flush=True)\n"
        "if sys.argv[1] == 'wait':\n"
        "    sys.stdin.read()\n" % str(prototxt))
    exited = subprocess.run([sys.executable, str(script), "exit"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    assert exited.returncode == 0, exited.stderr
    pids = [int(pid) for pid in exited.stdout.split()]
    assert len(pids) == 2 and not any(alive(pid) for pid in pids)

    waiting = subprocess.Popen([sys.executable, str(script), "wait"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               universal_newlines=True)
    pids = [int(pid) for pid in waiting.stdout.readline().split()]
    assert len(pids) == 2 and all(alive(pid) for pid in pids)
    waiting.kill()                                    # SIGKILL: no Python clean-up at all
    waiting.wait()
    deadline = time.time() + 10
    while any(alive(pid) for pid in pids) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in pids)


def test_an_unknown_param_str_key_is_refused_by_name(tmp_path, coco_mini_lmdb):
    with pytest.raises(ValueError, match=r"unknown key 'flip_probability'.*known keys: .*"
                                         r"flip_prob"):
        make_net(tmp_path, coco_mini_lmdb, workers=0, flip_probability=0.5)
    with pytest.raises(ValueError, match=r"'workers' must be a non-negative integer, got -1"):
        make_net(tmp_path, coco_mini_lmdb, workers=-1)


def break_every_jpeg(source, target):
    """A copy of the database whose records keep their headers but hold undecodable JPEGs."""
    import lmdb
    shutil.copytree(str(source), str(target))
    env = lmdb.open(str(target), max_dbs=2, lock=False)
    records = env.open_db(b"records", create=False)
    with env.begin(write=True, db=records) as txn:
        for key, value in list(txn.cursor()):
            value = bytearray(value)
            header_length = struct.unpack_from("<I", value, 6)[0]
            jpeg = 10 + header_length                  # the first section
            value[jpeg + 2:jpeg + 200] = b"\0" * 198   # keep the SOI marker, wreck the rest
            txn.put(key, bytes(value))
    env.close()
    return target


@pytest.mark.parametrize("workers", [0, 2])
def test_a_failing_sample_names_its_image(tmp_path, coco_mini_lmdb, workers):
    broken = break_every_jpeg(coco_mini_lmdb, tmp_path / "broken")
    net = make_net(tmp_path, broken, workers=workers, seed=1)
    task = net.layers[0].batches.tasks(0)[0]
    with LmdbReader(str(broken)) as reader:
        record = reader[task.record]
    with pytest.raises(SampleError) as error:
        net.forward(end="data")
    message = str(error.value)
    assert "record %d" % task.record in message or workers   # a worker may fail first on another
    assert "image" in message and ".jpg" in message and "cannot be decoded" in message
    if workers:
        assert "data worker pid" in message and "Traceback" in message
        pids = net.layers[0].batches.worker_pids
        assert pids == []                                     # closed after the error
    else:
        assert "image %d" % record.image_id in message and record.file_name in message
