"""The data layer's core checks on the generated dataset (tests/conftest.py's generated_coco,
packed by generated_lmdb): these run in a fresh clone without ../shared. The same checks on the
real COCO slice are in test_data_layer.py; here they also cover crowd regions inside a packed
record."""
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from data_prep.record import LmdbReader
from python_layers import augment
from tests.caffe import test_data_layer as real
from tests.caffe.test_data_layer import NO_AUGMENTATION, TOPS, all_samples, batches, \
    cell_windows, make_net

BIG_CROP = 256


def annotations_by_image(generated_coco):
    with open(str(generated_coco / "annotations" / "person_keypoints_train.json")) as handle:
        data = json.load(handle)
    sizes = {image["id"]: (image["height"], image["width"]) for image in data["images"]}
    out = {}
    for annotation in data["annotations"]:
        out.setdefault(annotation["image_id"], []).append(annotation)
    return out, sizes


def decoded(annotation, height, width):
    """pycocotools' own rasterisation of an annotation's segmentation (polygons or RLE)."""
    segmentation = annotation["segmentation"]
    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation["counts"], list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_utils.decode(rle).astype(bool)


def crowd_only_pixels(annotations, height, width):
    """Pixels of the image's crowd regions that no individually segmented person covers."""
    crowd = np.zeros((height, width), bool)
    people = np.zeros((height, width), bool)
    for annotation in annotations:
        if annotation["iscrowd"]:
            crowd |= decoded(annotation, height, width)
        else:
            people |= decoded(annotation, height, width)
    return crowd & ~people


def test_tops_follow_the_contract(tmp_path, generated_lmdb):
    real.test_tops_follow_the_contract(tmp_path, generated_lmdb)


@pytest.mark.parametrize("flip", [False, True])
def test_labels_and_mask_sit_on_the_keypoints_and_masked_people(tmp_path, generated_lmdb, flip):
    """Every main person of the generated set in one batch, at crop 256 so that the small
    unannotated people and crowds cover whole 8x8 cells."""
    real.check_labels_and_mask(tmp_path, generated_lmdb, flip,
                               batch_size=len(all_samples(generated_lmdb)), crop=BIG_CROP)


def test_packed_records_mask_their_crowd_regions(generated_lmdb, generated_coco):
    """mask_miss is 0 on every crowd pixel that no individual person covers (pycocotools' own
    decode of the iscrowd RLE), and mask_all is 1 on the whole crowd region."""
    annotations, sizes = annotations_by_image(generated_coco)
    crowded = 0
    with LmdbReader(str(generated_lmdb)) as reader:
        for record in reader:
            height, width = sizes[record.image_id]
            region = crowd_only_pixels(annotations[record.image_id], height, width)
            if region.any():
                crowded += 1
                assert not record.mask_miss()[region].any(), record
                assert record.mask_all()[region].all(), record
    assert crowded >= 2         # seed 0: crowds in images 3, 5 and 7


def test_the_documented_samples_mask_the_crowd_in_the_loss(tmp_path, generated_lmdb,
                                                          generated_coco):
    """Epoch 0 is RandomState([seed, 0]).permutation(n) of the (record, main person) pairs and
    sample i is augmented with RandomState([seed, 0, i]) (test_data_layer.py); without random
    augmentation, loss-mask cells whose 8x8 pixels all lie on a crowd region are 0."""
    seed = 11
    samples = all_samples(generated_lmdb)
    net = make_net(tmp_path, generated_lmdb, batch=len(samples), crop=BIG_CROP, seed=seed,
                   workers=0, **NO_AUGMENTATION)
    batch = batches(net, 1)[0]
    order = np.random.RandomState([seed, 0]).permutation(len(samples))
    tasks = net.layers[0].batches.tasks(0)
    assert [(task.record, task.person) for task in tasks] == [samples[i] for i in order]
    params = augment.AugmentParams(crop_size=BIG_CROP, **NO_AUGMENTATION)
    annotations, sizes = annotations_by_image(generated_coco)
    crowd_cells = 0
    with LmdbReader(str(generated_lmdb)) as reader:
        for row, (record_index, person) in enumerate(samples[i] for i in order):
            record = reader[record_index]
            expected = augment.sample_from_record(record, person, params,
                                                  np.random.RandomState([seed, 0, row]))
            for top in TOPS:
                np.testing.assert_array_equal(batch[top][row], getattr(expected, top))
            region = crowd_only_pixels(annotations[record.image_id], *sizes[record.image_id])
            if not region.any():
                continue
            box = record.boxes[person]
            centre, scale = box[:2] + box[2:] / 2, 0.6 * BIG_CROP / box[3]
            for cell_y, cell_x, window in cell_windows(region, centre, scale, BIG_CROP, False):
                if window.all():
                    assert batch["loss_mask"][row, 0, cell_y, cell_x] == 0
                    crowd_cells += 1
    assert crowd_cells > 0
