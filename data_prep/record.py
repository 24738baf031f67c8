"""THE record format of the training LMDB, and its one reader.

The packer (data_prep/packer.py, command line data_prep/coco_to_lmdb.py) writes these records;
the data layer, the tools and the tests read them only through `LmdbReader` and `Record`. No
pickle anywhere: a database may come from a stranger, so every record is parsed with plain
`struct`/`json`/`zlib` and validated before use. A malformed record raises `RecordError` naming
the record, the image and the field.

Database layout (an LMDB environment directory holding `data.mdb` and `lock.mdb`)
---------------------------------------------------------------------------------
Two named databases:

- ``records``: key ``b"%010d" % i`` for record i = 0, 1, ..., N - 1 (images in the order of the
  annotation file's ``images`` list; images without a main person have no record), value = one
  record (below).
- ``meta``: JSON values (UTF-8), keys:
    ``schema``   ``{"format": "mln-coco-pose-records", "version": 1}``
    ``run``      what the database was made from: annotation file (path, size, sha256), images
                 folder, ``limit``; a restarted packer refuses a different one.
    ``progress`` ``{"next_image": k, "records": n, "counts": {...}, "examples": {...}}``: the first
                 k images of the annotation file are done; written in the same transaction as
                 their records, so it is always true.
    ``complete`` ``true`` once the packer has finished (absent before).
    ``summary``  the packing summary (counts per reason); written with ``complete``.

Record schema, version 1
------------------------
All integers little-endian::

    bytes 0..3      magic  b"MLNR"
    bytes 4..5      uint16 schema version (1)
    bytes 6..9      uint32 H, the length of the header
    bytes 10..10+H  header: a UTF-8 JSON object (below)
    then the sections, back to back, in the order and with the byte lengths that
    header["sections"] lists: [["jpeg", n1], ["mask_miss", n2], ["mask_all", n3]]

Header fields (P = number of persons, at least 1):

    image_id        int      COCO image id
    file_name       str      COCO file name
    height, width   int      image size in pixels (checked against the JPEG when packing)
    annotation_ids  [P] int  COCO annotation id of each person
    keypoints       [P][17][3] numbers: COCO keypoints (x, y, v) in COCO's order, v in {0, 1, 2},
                    unlabelled ones (0, 0, 0); `Record.parts` maps them to the 18 parts
    boxes           [P][4] numbers: COCO bbox (x, y, w, h), w > 0 and h > 0
    areas           [P] numbers: COCO segmentation area
    is_main         [P] bool: the main persons (one training sample each); at least one
    mask_encoding   "zlib-packbits": each mask is the row-major (height, width) 0/1 array packed
                    8 pixels a byte by numpy.packbits (first pixel in the high bit), then deflated
                    by zlib. Chosen by measurement on the COCO slice's 172 annotation masks:
                    ~600 bytes and 0.23 ms to encode a mask, against ~640 bytes / 0.48 ms for
                    1-bit PNG and ~2100 bytes / 1.7 ms for 8-bit PNG through OpenCV; reading it
                    needs only the standard library and numpy.

Sections: ``jpeg`` is the original image file, byte for byte (never re-encoded); ``mask_miss``
and ``mask_all`` are the two masks.

Persons are the non-crowd person annotations with at least one usable labelled keypoint, in the
order of the annotation file. Centres and scales are not stored: they are defined here, once,
from the boxes (OpenPose's definitions, see `box_centers` and `box_scales`).
"""
import json
import os
import struct
import zlib

import numpy as np

from conventions import keypoints as kp
from conventions.geometry import BOX_SIZE

FORMAT_NAME = "mln-coco-pose-records"
SCHEMA_VERSION = 1
MAGIC = b"MLNR"
_PREFIX = struct.Struct("<4sHI")          # magic, version, header length
SECTION_NAMES = ("jpeg", "mask_miss", "mask_all")
MASK_ENCODING = "zlib-packbits"
RECORDS_DB = b"records"
META_DB = b"meta"


class RecordError(ValueError):
    """A record or database that does not follow the schema; the message names where."""


def record_key(index):
    return b"%010d" % index


def box_centers(boxes):
    """Centre of each COCO box (x, y, w, h): (x + w/2, y + h/2), OpenPose's objpos."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return boxes[:, :2] + boxes[:, 2:] / 2


def box_scales(boxes):
    """OpenPose's scale_provided: box height / 368 (conventions.geometry.BOX_SIZE)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return boxes[:, 3] / float(BOX_SIZE)


def encode_mask(mask):
    """(H, W) array of 0/1 -> bytes (MASK_ENCODING)."""
    mask = np.asarray(mask)
    if mask.ndim != 2 or not np.isin(mask, (0, 1)).all():
        raise ValueError("a mask must be a 2-D array of 0 and 1")
    return zlib.compress(np.packbits(mask.astype(np.uint8).ravel()).tobytes(), 6)


def decode_mask(data, height, width):
    """bytes (MASK_ENCODING) -> (height, width) uint8 in {0, 1}; ValueError when malformed."""
    expected = (height * width + 7) // 8
    inflater = zlib.decompressobj()
    try:
        # max_length bounds the memory a hostile record can make us allocate.
        packed = inflater.decompress(data, expected + 1)
    except zlib.error as error:
        raise ValueError("not zlib data (%s)" % error)
    if len(packed) != expected or not inflater.eof or inflater.unconsumed_tail:
        raise ValueError("holds %d packed bytes and %s, expected exactly %d for %dx%d"
                         % (len(packed), "ends" if inflater.eof else "does not end",
                            expected, height, width))
    bits = np.unpackbits(np.frombuffer(packed, dtype=np.uint8))[:height * width]
    return bits.reshape(height, width)


def encode_record(image_id, file_name, height, width, jpeg, annotation_ids, keypoints, boxes,
                  areas, is_main, mask_miss, mask_all):
    """Build one record (bytes). It is parsed back before it is returned, so that nothing the
    reader would refuse is ever written."""
    header = {
        "image_id": int(image_id),
        "file_name": str(file_name),
        "height": int(height),
        "width": int(width),
        "annotation_ids": [int(a) for a in annotation_ids],
        "keypoints": [[[float(x), float(y), int(v)] for x, y, v in person]
                      for person in np.asarray(keypoints, dtype=np.float64)],
        "boxes": [[float(c) for c in box] for box in np.asarray(boxes, dtype=np.float64)],
        "areas": [float(a) for a in areas],
        "is_main": [bool(m) for m in is_main],
        "mask_encoding": MASK_ENCODING,
    }
    sections = [bytes(jpeg), encode_mask(mask_miss), encode_mask(mask_all)]
    header["sections"] = [[name, len(data)] for name, data in zip(SECTION_NAMES, sections)]
    header_bytes = json.dumps(header, sort_keys=True, separators=(",", ":"),
                              allow_nan=False).encode("utf-8")
    data = _PREFIX.pack(MAGIC, SCHEMA_VERSION, len(header_bytes)) + header_bytes + b"".join(sections)
    record = Record.from_bytes(data, where="new record")
    record.mask_miss()
    record.mask_all()
    return data


def _field_array(header, name, shape, where, dtype=np.float64):
    """header[name] as an array of `shape` (None = any size), finite, or RecordError."""
    try:
        value = np.array(header[name], dtype=dtype)
    except KeyError:
        raise RecordError("%s: field %r is missing" % (where, name))
    except (TypeError, ValueError):
        raise RecordError("%s: field %r is not an array of numbers" % (where, name))
    if value.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, value.shape)):
        raise RecordError("%s: field %r has shape %s, expected %s"
                          % (where, name, value.shape, tuple("P" if s is None else s for s in shape)))
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        raise RecordError("%s: field %r holds a non-finite number" % (where, name))
    return value


def _field_int(header, name, where, minimum):
    value = header.get(name)
    if type(value) is not int or value < minimum:
        raise RecordError("%s: field %r must be an integer >= %d, got %r" % (where, name, minimum, value))
    return value


class Record(object):
    """One image with its persons and masks (see the module docstring for the schema).

    Attributes: image_id, file_name, height, width, jpeg (bytes), annotation_ids (P,) int64,
    keypoints (P, 17, 3) float32 in COCO order, parts (P, 18, 3) float32 in conventions.keypoints'
    order (neck derived), boxes (P, 4) float32 COCO xywh, areas (P,), centers (P, 2),
    scales (P,) (box height / 368), is_main (P,) bool. Methods image(), mask_miss(), mask_all().
    """

    def __init__(self, header, sections, where):
        self._where = where
        self.image_id = header["image_id"]
        self.file_name = header["file_name"]
        self.height = header["height"]
        self.width = header["width"]
        self.jpeg = sections["jpeg"]
        self._mask_data = {"mask_miss": sections["mask_miss"], "mask_all": sections["mask_all"]}
        self.annotation_ids = np.array(header["annotation_ids"], dtype=np.int64)
        self.keypoints = header["_keypoints"].astype(np.float32)
        self.parts = kp.coco_to_parts(self.keypoints)
        self.boxes = header["_boxes"].astype(np.float32)
        self.areas = header["_areas"].astype(np.float32)
        self.centers = box_centers(header["_boxes"]).astype(np.float32)
        self.scales = box_scales(header["_boxes"]).astype(np.float32)
        self.is_main = header["_is_main"]

    @property
    def num_persons(self):
        return len(self.is_main)

    def __repr__(self):
        return "Record(image_id=%d, file_name=%r, %dx%d, %d persons, %d main)" % (
            self.image_id, self.file_name, self.width, self.height, self.num_persons,
            int(self.is_main.sum()))

    @classmethod
    def from_bytes(cls, data, where="record"):
        """Parse and validate one record; RecordError names `where`, the image and the field."""
        data = bytes(data)
        if len(data) < _PREFIX.size:
            raise RecordError("%s: %d bytes, too short for a record" % (where, len(data)))
        magic, version, header_length = _PREFIX.unpack_from(data)
        if magic != MAGIC:
            raise RecordError("%s: not a record of this toolkit (magic %r)" % (where, magic))
        if version != SCHEMA_VERSION:
            raise RecordError("%s: record schema version %d; this reader reads version %d"
                              % (where, version, SCHEMA_VERSION))
        body = _PREFIX.size + header_length
        if body > len(data):
            raise RecordError("%s: header length %d runs past the end of the record"
                              % (where, header_length))
        try:
            header = json.loads(data[_PREFIX.size:body].decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as error:
            raise RecordError("%s: header is not valid JSON (%s)" % (where, error))
        if not isinstance(header, dict):
            raise RecordError("%s: header is not a JSON object" % where)
        image_id = _field_int(header, "image_id", where, 0)
        if not isinstance(header.get("file_name"), str):
            raise RecordError("%s (image %d): field 'file_name' must be a string" % (where, image_id))
        where = "%s (image %d, %s)" % (where, image_id, header["file_name"])
        _field_int(header, "height", where, 1)
        _field_int(header, "width", where, 1)
        if header.get("mask_encoding") != MASK_ENCODING:
            raise RecordError("%s: field 'mask_encoding' is %r, expected %r"
                              % (where, header.get("mask_encoding"), MASK_ENCODING))
        sections = cls._split_sections(header, data, body, where)
        is_main = header.get("is_main")
        if not isinstance(is_main, list) or not all(type(m) is bool for m in is_main):
            raise RecordError("%s: field 'is_main' must be a list of booleans" % where)
        if not any(is_main):
            raise RecordError("%s: field 'is_main': a record needs at least one main person" % where)
        persons = len(is_main)
        ids = header.get("annotation_ids")
        if not isinstance(ids, list) or len(ids) != persons or not all(type(a) is int for a in ids):
            raise RecordError("%s: field 'annotation_ids' must be %d integers" % (where, persons))
        keypoints = _field_array(header, "keypoints", (persons, kp.NUM_COCO_KEYPOINTS, 3), where)
        if not np.isin(keypoints[..., 2], (0, 1, 2)).all():
            raise RecordError("%s: field 'keypoints': visibility must be 0, 1 or 2" % where)
        if not (keypoints[..., 2] > 0).any(axis=1).all():
            raise RecordError("%s: field 'keypoints': a person without labelled keypoints" % where)
        boxes = _field_array(header, "boxes", (persons, 4), where)
        if not (boxes[:, 2:] > 0).all():
            raise RecordError("%s: field 'boxes': width and height must be positive" % where)
        areas = _field_array(header, "areas", (persons,), where)
        header.update(_keypoints=keypoints, _boxes=boxes, _areas=areas,
                      _is_main=np.array(is_main, dtype=bool))
        return cls(header, sections, where)

    @staticmethod
    def _split_sections(header, data, start, where):
        listed = header.get("sections")
        if (not isinstance(listed, list)
                or [s[0] if isinstance(s, list) and len(s) == 2 else None for s in listed]
                != list(SECTION_NAMES)
                or not all(type(s[1]) is int and s[1] >= 0 for s in listed)):
            raise RecordError("%s: field 'sections' must list %s with their byte lengths"
                              % (where, ", ".join(SECTION_NAMES)))
        total = start + sum(length for _, length in listed)
        if total != len(data):
            raise RecordError("%s: field 'sections' adds up to %d bytes, the record has %d"
                              % (where, total, len(data)))
        sections, offset = {}, start
        for name, length in listed:
            sections[name] = data[offset:offset + length]
            offset += length
        if not sections["jpeg"]:
            raise RecordError("%s: section 'jpeg' is empty" % where)
        return sections

    def _mask(self, name):
        try:
            return decode_mask(self._mask_data[name], self.height, self.width)
        except ValueError as error:
            raise RecordError("%s: section %r: %s" % (self._where, name, error))

    def mask_miss(self):
        """(H, W) uint8: 0 on persons without usable keypoints and on crowd regions, 1 elsewhere."""
        return self._mask("mask_miss")

    def mask_all(self):
        """(H, W) uint8: 1 on every annotated person and crowd region, 0 elsewhere."""
        return self._mask("mask_all")

    def image(self):
        """The JPEG decoded: (H, W, 3) uint8 BGR, in the stored pixel orientation.

        EXIF orientation is ignored on purpose: COCO's coordinates refer to the stored pixels.
        """
        import cv2    # imported here so that reading annotations alone does not need OpenCV
        flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
        pixels = cv2.imdecode(np.frombuffer(self.jpeg, dtype=np.uint8), flags)
        if pixels is None:
            raise RecordError("%s: section 'jpeg' cannot be decoded" % self._where)
        if pixels.shape[:2] != (self.height, self.width):
            raise RecordError("%s: section 'jpeg' decodes to %dx%d, the record says %dx%d"
                              % (self._where, pixels.shape[1], pixels.shape[0], self.width,
                                 self.height))
        return pixels


def _why_no_database(path):
    """Why `path` holds no database, and what to do. Inside scripts/caffe-env a folder that
    exists on the host may be out of reach: say so there, where it bites."""
    if os.path.exists(path):
        return "(no data.mdb in it): make one with data_prep/coco_to_lmdb.py"
    if os.environ.get("MLN_IN_CAFFE_ENV") == "1":
        return ("(no such folder here): inside scripts/caffe-env /tmp is private and only the "
                "paths named on its command line, the current folder and MLN_CAFFE_BIND are "
                "reachable, not a path inside a `python -c` string or a file; name it as an "
                "argument or add it to MLN_CAFFE_BIND")
    return "(no such folder)"


class LmdbReader(object):
    """Random access to the records of a packed database.

        with LmdbReader("coco_train.lmdb") as reader:
            record = reader[0]                # Record; i in 0 .. len(reader) - 1
            print(len(reader), reader.metadata["records"])

    A database whose packing has not finished is refused (a half-packed database would train
    silently on part of the data) unless allow_incomplete=True. Safe to use after os.fork(): a
    child process reopens the environment on first use (LMDB handles must not cross a fork).
    """

    def __init__(self, path, allow_incomplete=False):
        self.path = str(path)
        if not os.path.isfile(os.path.join(self.path, "data.mdb")):
            raise RecordError("%s: not a packed database %s"
                              % (self.path, _why_no_database(self.path)))
        self._env = None
        self._pid = None
        self.metadata = self._read_metadata()
        if not self.metadata["complete"] and not allow_incomplete:
            raise RecordError(
                "%s: packing has not finished (%d images done, %d records so far); rerun the "
                "packer with the same command to complete it"
                % (self.path, self.metadata["progress"].get("next_image", 0), self._length))

    def _open(self):
        import lmdb
        if self._env is None or self._pid != os.getpid():
            # lock=False: a finished database is read-only and may sit on a read-only disk
            # (so do not read a database while a packer is still writing it).
            try:
                self._env = lmdb.open(self.path, readonly=True, lock=False, max_dbs=2,
                                      readahead=False, subdir=True)
            except lmdb.Error as error:
                raise RecordError("%s: cannot open the database (%s)" % (self.path, error))
            self._pid = os.getpid()
            try:
                self._records = self._env.open_db(RECORDS_DB, create=False)
                self._meta = self._env.open_db(META_DB, create=False)
            except lmdb.Error:
                raise RecordError("%s: not a packed database (no 'records' and 'meta' tables)"
                                  % self.path)
        return self._env

    def _read_metadata(self):
        env = self._open()
        with env.begin(db=self._meta) as txn:
            meta = {}
            for key, value in txn.cursor():
                try:
                    meta[bytes(key).decode("utf-8")] = json.loads(bytes(value).decode("utf-8"))
                except (UnicodeDecodeError, ValueError):
                    raise RecordError("%s: metadata entry %r is not JSON" % (self.path, bytes(key)))
        schema = meta.get("schema")
        if not isinstance(schema, dict) or schema.get("format") != FORMAT_NAME:
            raise RecordError("%s: not a database of %s records (metadata 'schema' is %r)"
                              % (self.path, FORMAT_NAME, schema))
        if schema.get("version") != SCHEMA_VERSION:
            raise RecordError("%s: schema version %r; this reader reads version %d"
                              % (self.path, schema.get("version"), SCHEMA_VERSION))
        progress = meta.get("progress", {"next_image": 0, "records": 0})
        if not isinstance(progress, dict) or type(progress.get("records")) is not int:
            raise RecordError("%s: metadata 'progress' is malformed" % self.path)
        self._length = progress["records"]
        return {
            "format": FORMAT_NAME,
            "schema_version": SCHEMA_VERSION,
            "complete": meta.get("complete") is True,
            "records": self._length,
            "run": meta.get("run", {}),
            "progress": progress,
            "summary": meta.get("summary", {}),
        }

    def __len__(self):
        return self._length

    def raw(self, index):
        """The stored bytes of record `index` (for copying and comparing databases)."""
        if not 0 <= index < self._length:
            raise IndexError("record %r out of range 0..%d" % (index, self._length - 1))
        env = self._open()
        with env.begin(db=self._records, buffers=False) as txn:
            data = txn.get(record_key(index))
        if data is None:
            raise RecordError("%s: record %d is missing" % (self.path, index))
        return data

    def __getitem__(self, index):
        if not isinstance(index, (int, np.integer)):
            raise TypeError("record index must be an integer, got %r" % (index,))
        index = int(index)
        return Record.from_bytes(self.raw(index), where="%s record %d" % (self.path, index))

    def __iter__(self):
        for index in range(self._length):
            yield self[index]

    def close(self):
        if self._env is not None and self._pid == os.getpid():
            self._env.close()
        self._env = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
