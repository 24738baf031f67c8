"""The record format (data_prep/record.py) without LMDB: round trip, and hostile or broken
records refused with the record, image and field named. Runs on numpy 1.19 and 2.x."""
import json
import struct
import zlib

import cv2
import numpy as np
import pytest

from data_prep import record
from data_prep.record import Record, RecordError

HEIGHT, WIDTH = 37, 53            # odd sizes: the packed masks end mid-byte


def sample():
    random = np.random.RandomState(0)
    pixels = random.randint(0, 256, (HEIGHT, WIDTH, 3)).astype(np.uint8)
    jpeg = cv2.imencode(".jpg", pixels)[1].tobytes()
    keypoints = np.zeros((2, 17, 3))
    keypoints[0, :, 0] = np.arange(17) + 3
    keypoints[0, :, 1] = np.arange(17) * 2 + 1
    keypoints[0, :, 2] = 2
    keypoints[0, 6, 2] = 1              # an occluded right shoulder
    keypoints[1, 0] = [10, 12, 2]       # a person with its nose only
    fields = dict(image_id=42, file_name="000000000042.jpg", height=HEIGHT, width=WIDTH,
                  jpeg=jpeg, annotation_ids=[7, 9], keypoints=keypoints,
                  boxes=[[1.5, 2.0, 30.0, 34.5], [5.0, 6.0, 10.0, 12.0]], areas=[800.25, 60.0],
                  is_main=[True, False], mask_miss=random.rand(HEIGHT, WIDTH) < 0.9,
                  mask_all=random.rand(HEIGHT, WIDTH) < 0.3)
    return fields


def split(data):
    """-> (header dict, sections bytes), read with struct/json directly."""
    magic, version, length = struct.unpack_from("<4sHI", data)
    return json.loads(data[10:10 + length].decode("utf-8")), data[10 + length:]


def join(header, sections, magic=b"MLNR", version=1):
    text = json.dumps(header).encode("utf-8")
    return struct.pack("<4sHI", magic, version, len(text)) + text + sections


def test_round_trip_keeps_every_field():
    fields = sample()
    item = Record.from_bytes(record.encode_record(**fields))
    assert (item.image_id, item.file_name, item.height, item.width) == (
        42, "000000000042.jpg", HEIGHT, WIDTH)
    assert item.jpeg == fields["jpeg"]
    np.testing.assert_array_equal(item.keypoints, fields["keypoints"])
    assert item.parts.shape == (2, 18, 3) and item.parts.dtype == np.float32
    # neck = midpoint of the shoulders (COCO 5 left, 6 right), v = the lower of theirs
    np.testing.assert_allclose(item.parts[0, 1], [(8 + 9) / 2.0, (11 + 13) / 2.0, 1])
    assert (item.parts[1, 1] == 0).all()
    np.testing.assert_allclose(item.centers, [[16.5, 19.25], [10.0, 12.0]])
    np.testing.assert_allclose(item.scales, [34.5 / 368, 12.0 / 368])
    np.testing.assert_allclose(item.areas, [800.25, 60.0])
    assert item.is_main.tolist() == [True, False] and item.annotation_ids.tolist() == [7, 9]
    np.testing.assert_array_equal(item.mask_miss(), fields["mask_miss"])
    np.testing.assert_array_equal(item.mask_all(), fields["mask_all"])
    assert item.image().shape == (HEIGHT, WIDTH, 3)


def test_masks_of_any_size_round_trip():
    random = np.random.RandomState(1)
    for height, width in ((1, 1), (1, 9), (7, 3), (64, 65)):
        mask = (random.rand(height, width) < 0.5).astype(np.uint8)
        np.testing.assert_array_equal(
            record.decode_mask(record.encode_mask(mask), height, width), mask)


def mutate_header(change):
    def mutation(data):
        header, sections = split(data)
        change(header)
        return join(header, sections)
    return mutation


def set_field(name, value):
    return mutate_header(lambda header: header.__setitem__(name, value))


def breaks_keypoints(header):
    header["keypoints"][0][3][2] = 3


@pytest.mark.parametrize("mutation, message", [
    (lambda d: b"XXXX" + d[4:], "not a record of this toolkit"),
    (lambda d: d[:4] + struct.pack("<H", 2) + d[6:], "schema version 2"),
    (lambda d: d[:-10], "adds up to"),
    (lambda d: d[:12], "runs past the end"),
    (lambda d: d[:10] + b"!" + d[11:], "header is not valid JSON"),
    (set_field("keypoints", [[[0, 0, 0]] * 17]), "field 'keypoints' has shape"),
    (mutate_header(breaks_keypoints), "visibility must be 0, 1 or 2"),
    (set_field("boxes", [[1, 2, float("nan"), 4], [5, 6, 10, 12]]), "field 'boxes' holds a non-finite"),
    (set_field("boxes", [[1, 2, 0, 4], [5, 6, 10, 12]]), "field 'boxes': width and height"),
    (set_field("is_main", [False, False]), "field 'is_main'"),
    (set_field("annotation_ids", [7]), "field 'annotation_ids'"),
    (set_field("height", -3), "field 'height'"),
    (set_field("mask_encoding", "pickle"), "field 'mask_encoding'"),
    (mutate_header(lambda h: h["sections"].reverse()), "field 'sections'"),
])
def test_malformed_records_are_refused_naming_the_field(mutation, message):
    data = mutation(record.encode_record(**sample()))
    with pytest.raises(RecordError, match=message) as raised:
        Record.from_bytes(data, where="db record 5")
    assert "db record 5" in str(raised.value)


def test_errors_name_the_image():
    data = set_field("areas", [1.0])(record.encode_record(**sample()))
    with pytest.raises(RecordError) as raised:
        Record.from_bytes(data, where="db record 5")
    assert "db record 5 (image 42, 000000000042.jpg): field 'areas'" in str(raised.value)


def replace_section(data, name, new):
    header, sections = split(data)
    parts, offset = {}, 0
    for section, length in header["sections"]:
        parts[section] = sections[offset:offset + length]
        offset += length
    parts[name] = new
    header["sections"] = [[section, len(parts[section])] for section, _ in header["sections"]]
    return join(header, b"".join(parts[section] for section, _ in header["sections"]))


@pytest.mark.parametrize("name, payload, call, message", [
    ("mask_miss", b"not zlib", "mask_miss", "section 'mask_miss': not zlib data"),
    # a decompression bomb: far more bytes than the image's mask needs are refused unread
    ("mask_all", zlib.compress(b"\x00" * (50 << 20)), "mask_all", "section 'mask_all': holds"),
    ("mask_all", zlib.compress(b"\x00" * 10), "mask_all", "expected exactly"),
    ("jpeg", b"\xff\xd8garbage", "image", "section 'jpeg' cannot be decoded"),
])
def test_broken_sections_are_refused_when_used(name, payload, call, message):
    data = replace_section(record.encode_record(**sample()), name, payload)
    item = Record.from_bytes(data, where="db record 5")
    with pytest.raises(RecordError, match=message) as raised:
        getattr(item, call)()
    assert "image 42" in str(raised.value)


def test_a_jpeg_of_another_size_is_refused():
    fields = sample()
    fields["jpeg"] = cv2.imencode(".jpg", np.zeros((HEIGHT + 1, WIDTH, 3), np.uint8))[1].tobytes()
    item = Record.from_bytes(record.encode_record(**fields))
    with pytest.raises(RecordError, match="decodes to 53x38, the record says 53x37"):
        item.image()


def test_readme_documents_every_skip_reason(repo):
    from data_prep.skip_reasons import REASONS
    text = (repo / "data_prep" / "README.md").read_text()
    assert [reason for reason in REASONS if "| `%s` |" % reason not in text] == []
