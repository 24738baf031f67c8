"""Test-time flip: the network also sees the mirrored image, and its maps are mapped back.

A net answers for the mirrored picture with its own anatomy: where the original shows a right
wrist, the mirror shows (and the net reports) a left wrist. So the mirrored image's maps are
mirrored back along x, their part channels swapped left <-> right, their limb channels
remapped the same way and the PAFs' x component negated (a mirrored vector points the other way
along x). The permutations are conventions.keypoints' (derived from the part names). Averaged
with the plain maps, they cancel some of the network's left/right asymmetric errors, which is
what OpenPose-style evaluation protocols mean by "flip".

The maps handled here are the upsampled ones (channels last, at the image's or the decoding's
size, padding already cut): mirroring there is exact, pixel centre x -> W - 1 - x, whereas the
stride-8 network maps of a padded input are not symmetric (the padding is on the right).
"""
import numpy as np

from conventions.keypoints import FLIP_LIMB_PERMUTATION, FLIP_LIMB_SIGN, FLIP_PERMUTATION

_PAF_CHANNELS = np.array([2 * limb + component for limb in FLIP_LIMB_PERMUTATION
                          for component in (0, 1)])
_PAF_SIGNS = np.array([sign * factor for sign in FLIP_LIMB_SIGN for factor in (-1.0, 1.0)],
                      dtype=np.float32)


def mirror_image(image):
    """(H, W, ...) -> the same image mirrored left-right (a contiguous copy)."""
    return np.ascontiguousarray(image[:, ::-1])


def unflip_maps(heatmaps, pafs):
    """Maps of the mirrored image -> maps of the original.

    heatmaps: (H, W, 18) part heatmaps; pafs: (H, W, 38) PAFs, channels 2l (x), 2l+1 (y) of
    limb l; both as inference.scaling.upsample_maps returns them. Returns new contiguous arrays.
    """
    heat = heatmaps[:, ::-1][:, :, list(FLIP_PERMUTATION)]
    paf = pafs[:, ::-1][:, :, _PAF_CHANNELS] * _PAF_SIGNS
    return np.ascontiguousarray(heat), np.ascontiguousarray(paf, dtype=np.float32)
