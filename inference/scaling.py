"""Image <-> network geometry, as OpenPose's test code does it (numpy and OpenCV, no Caffe).

Forward: the image is resized (cubic) so that its height is 368 * scale, then padded with grey
128 on the right and at the bottom to a multiple of the stride 8. Back: the network's stride-8
maps are resized by 8 (cubic), the padding is cut off, and they are resized (cubic) to the
image's size. Every resize is given its exact output size, so that OpenCV maps pixel centres to
pixel centres (x_out + 0.5 = (x_in + 0.5) * out_size / in_size) both ways; the training labels
(python_layers.labels) sample label cell x at input pixel 8x + 3.5, which is where this
upsampling puts it.
"""
import cv2
import numpy as np

from conventions.geometry import BOX_SIZE, PAD_VALUE, STRIDE
from conventions.keypoints import NUM_HEATMAPS, NUM_PARTS

MAX_MAP_PIXELS = 1000000   # maps of larger images are decoded at a reduced size (memory: 57 ch)


def scaled_size(height, width, scale=1.0, box_size=BOX_SIZE):
    """(h, w) of the image resized so that its height is box_size * scale (at least 1 x 1)."""
    factor = box_size * scale / float(height)
    return max(1, int(round(height * factor))), max(1, int(round(width * factor)))


def padded_size(height, width, stride=STRIDE):
    """(h, w) rounded up to multiples of the stride."""
    return -(-height // stride) * stride, -(-width // stride) * stride


def map_size(height, width, max_pixels=MAX_MAP_PIXELS):
    """Size at which an image's maps are decoded: the image's own, or smaller if it has more
    than max_pixels pixels (then peak coordinates are scaled back to the image)."""
    if height * width <= max_pixels:
        return height, width
    shrink = (max_pixels / float(height * width)) ** 0.5
    return max(1, int(height * shrink)), max(1, int(width * shrink))


def resize_and_pad(image, scale=1.0, box_size=BOX_SIZE, stride=STRIDE, pad_value=PAD_VALUE):
    """Image (H, W, 3) uint8 -> (padded (h', w', 3), (h, w) of the resized image inside it)."""
    height, width = image.shape[:2]
    size = scaled_size(height, width, scale, box_size)
    resized = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
    full = padded_size(size[0], size[1], stride)
    padded = np.full(full + image.shape[2:], pad_value, dtype=image.dtype)
    padded[:size[0], :size[1]] = resized
    return padded, size


def upsample_maps(net_maps, resized_size, output_size, stride=STRIDE):
    """The network's (57, h'/8, w'/8) maps -> (part heatmaps (H, W, 18), PAFs (H, W, 38)),
    float32, channels last, each contiguous (the grouping reads them through flat indices).
    The background heatmap (channel 18) is left out: nothing downstream reads it.

    resized_size: (h, w) of the resized image inside the padded input; output_size: (H, W).
    Resize by the stride (cubic), cut the padding, resize to output_size (cubic) unless it
    already has that size.
    """
    net_maps = np.asarray(net_maps, dtype=np.float32)
    grid_h, grid_w = net_maps.shape[1:]
    blocks = []
    for block in (net_maps[:NUM_PARTS], net_maps[NUM_HEATMAPS:]):
        maps = _resize(np.ascontiguousarray(block.transpose(1, 2, 0)),
                       (grid_h * stride, grid_w * stride))
        maps = maps[:resized_size[0], :resized_size[1]]
        if maps.shape[:2] != tuple(output_size):
            maps = _resize(np.ascontiguousarray(maps), output_size)
        blocks.append(np.ascontiguousarray(maps))
    return tuple(blocks)


def _resize(maps, size):
    """cv2.resize for any number of channels (OpenCV takes at most 512 at once)."""
    height, width = size
    channels = maps.shape[2]
    if channels <= 512:
        out = cv2.resize(maps, (width, height), interpolation=cv2.INTER_CUBIC)
        return out.reshape(height, width, channels)
    return np.concatenate([_resize(maps[:, :, i:i + 512], size) for i in range(0, channels, 512)],
                          axis=2)


def rescale_coordinates(coordinate, from_length, to_length):
    """A pixel coordinate along an axis of from_length pixels -> along the same axis resized to
    to_length pixels (pixel centres align, as cv2.resize maps them)."""
    return (np.asarray(coordinate, dtype=np.float64) + 0.5) * (to_length / float(from_length)) - 0.5


def keypoints_to_image(keypoints, map_shape, image_shape):
    """(P, 18, 3) keypoints found in maps of map_shape (h, w) -> image_shape (H, W) pixels.

    Parts not found ((0, 0, 0)) stay so."""
    keypoints = np.array(keypoints, dtype=np.float32, copy=True)
    if tuple(map_shape) == tuple(image_shape):
        return keypoints
    found = keypoints[..., 2] > 0
    for axis in (0, 1):    # x follows the width, y the height
        length_from, length_to = map_shape[1 - axis], image_shape[1 - axis]
        moved = rescale_coordinates(keypoints[..., axis], length_from, length_to)
        keypoints[..., axis] = np.where(found, moved, 0)
    return keypoints
