"""Check a JPEG file without keeping its pixels: its size, that it is whole, that it decodes.

The packer stores JPEG files byte for byte, so it must know, without trusting the file name or
the annotation file, that the bytes are a complete JPEG of the announced size:

- the marker segments are walked from the start of image (SOI) to the first start of scan (SOS);
  the frame header (SOFn) gives the height and width;
- the end-of-image marker (FF D9) must follow the scan data. Inside entropy-coded data a 0xFF
  byte is always followed by 0x00 or a restart marker, so FF D9 there is the real end; a file cut
  short has none (libjpeg only warns about it and fills the rest with grey, so decoding alone
  would not notice);
- the image is decoded at 1/8 scale (libjpeg still reads every coefficient, so fatal errors in the
  scan data show, at a third of the cost of a full decode).
"""
import numpy as np

# SOF markers: C0..CF except DHT (C4), JPG (C8) and DAC (CC).
_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE_MARKERS = frozenset([0x01]) | frozenset(range(0xD0, 0xD8))   # TEM, RST0..7
_SOS, _EOI = 0xDA, 0xD9


class JpegProblem(ValueError):
    """reason is 'image_not_jpeg', 'image_truncated' or 'image_corrupt'."""

    def __init__(self, reason, detail):
        ValueError.__init__(self, detail)
        self.reason = reason


def jpeg_size(data):
    """(height, width) from the frame header; JpegProblem when the file is not a whole JPEG."""
    if data[:2] != b"\xff\xd8":
        raise JpegProblem("image_not_jpeg", "does not start with a JPEG start-of-image marker")
    size, position = None, 2
    while True:
        # Markers may be preceded by any number of 0xFF fill bytes.
        while position < len(data) and data[position] == 0xFF and position + 1 < len(data) \
                and data[position + 1] == 0xFF:
            position += 1
        if position + 2 > len(data):
            raise JpegProblem("image_truncated", "ends inside the headers, before any scan")
        if data[position] != 0xFF:
            raise JpegProblem("image_corrupt", "no marker at byte %d of the headers" % position)
        marker = data[position + 1]
        if marker in _STANDALONE_MARKERS:
            position += 2
            continue
        if marker == _EOI:
            raise JpegProblem("image_corrupt", "end-of-image marker before any scan")
        if position + 4 > len(data):
            raise JpegProblem("image_truncated", "ends inside the headers, before any scan")
        length = (data[position + 2] << 8) | data[position + 3]
        if length < 2:
            raise JpegProblem("image_corrupt", "marker segment of length %d at byte %d"
                              % (length, position))
        end = position + 2 + length
        if end > len(data):
            raise JpegProblem("image_truncated", "ends inside a marker segment at byte %d"
                              % position)
        if marker in _FRAME_MARKERS:
            if length < 8:
                raise JpegProblem("image_corrupt", "frame header too short")
            height = (data[position + 5] << 8) | data[position + 6]
            width = (data[position + 7] << 8) | data[position + 8]
            size = (height, width)
        if marker == _SOS:
            break
        position = end
    if size is None or size[0] == 0 or size[1] == 0:
        raise JpegProblem("image_corrupt", "no frame header with a size before the first scan")
    if data.find(b"\xff\xd9", end) < 0:
        raise JpegProblem("image_truncated", "no end-of-image marker after the scan data "
                          "(the file was cut short)")
    return size


def check_decodes(data):
    """JpegProblem('image_corrupt') unless OpenCV can decode the file (at 1/8 scale)."""
    import cv2
    flags = cv2.IMREAD_REDUCED_GRAYSCALE_8 | cv2.IMREAD_IGNORE_ORIENTATION
    if cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags) is None:
        raise JpegProblem("image_corrupt", "OpenCV cannot decode it")
