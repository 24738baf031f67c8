"""show_sample.py's LMDB sources: a record by index, the data layer's sample at a stream
position, and the JSON source giving the very record the packer stored."""
import cv2
import numpy as np
import pytest

from data_prep.record import LmdbReader
from python_layers import augment
from scripts import show_sample
from python_layers.batch_source import BatchSource, top_shapes


def test_a_record_by_index(coco_mini_lmdb, tmp_path):
    out = tmp_path / "record.png"
    show_sample.main(["--lmdb", str(coco_mini_lmdb), "--index", "3", "--crop", "96",
                      "--out", str(out)])
    assert cv2.imread(str(out)).shape == (show_sample.HEADER_PIXELS + 2 * 96, 2 * 96, 3)
    with pytest.raises(SystemExit) as exit_info:
        show_sample.main(["--lmdb", str(coco_mini_lmdb), "--index", "25", "--out", str(out)])
    assert "holds records 0 .. 24; there is no record 25" in str(exit_info.value)


def test_a_stream_position_is_the_data_layers_sample(coco_mini_lmdb, tmp_path):
    seed, batch, params = 7, 4, augment.AugmentParams(crop_size=96)
    source = BatchSource(str(coco_mini_lmdb), batch, params, seed=seed)
    outputs = [np.empty(shape, np.float32) for shape in top_shapes(batch, params)]
    source.fill(outputs)
    source.fill(outputs)                                  # positions 4 .. 7
    record, person, rng = show_sample.sample_from_stream(str(coco_mini_lmdb), 6, seed)
    sample = show_sample.write_sample_picture(record, person, params, rng,
                                              str(tmp_path / "p.png"))
    np.testing.assert_array_equal(sample.data, outputs[0][2])
    np.testing.assert_array_equal(sample.paf_label, outputs[2][2])


def test_the_json_source_is_the_record_the_packer_stored(coco_mini_lmdb, coco_mini):
    with LmdbReader(str(coco_mini_lmdb)) as reader:
        stored = reader[5]
    made = show_sample.record_from_coco(str(coco_mini / "person_keypoints_train2017.json"),
                                        str(coco_mini / "images" / stored.file_name))
    assert made.image_id == stored.image_id and made.jpeg == stored.jpeg
    for field in ("parts", "boxes", "areas", "is_main", "annotation_ids"):
        np.testing.assert_array_equal(getattr(made, field), getattr(stored, field))
    np.testing.assert_array_equal(made.mask_miss(), stored.mask_miss())
