"""Training labels against inference geometry, to the sub-pixel.

The chain under test, end to end: a keypoint in image pixels -> the network input (the image
resized as inference.scaling.resize_and_pad resizes it) -> the stride-8 training labels of
python_layers.labels -> inference.scaling.upsample_maps back to the image (or to the reduced map
size, then inference.scaling.keypoints_to_image) -> the peak, estimated to the sub-pixel.
tests/test_scaling.py takes the integer argmax and allows 1 px; here half a pixel anywhere in the
chain (label cell centre 8x + 3.0 or 8x + 4.0 instead of 8x + 3.5, an off-by-half resize) fails.

The truths are derived here, not read from the program:
  - image -> network input: pixel centres align, x_net + 0.5 = (x + 0.5) * w / W (OpenCV's
    resize convention, which every resize in the chain is documented to keep);
  - label cell i is centred on network input pixel 8 i + 3.5.

Estimators (each checked on exactly known maps below, before it is used):
  - heatmap peaks: the argmax, then on each axis the vertex of the parabola through the logs of
    the argmax and its two neighbours. The log of a Gaussian is a parabola, so this is exact for
    any sampled Gaussian whatever its sub-pixel centre;
  - PAF bands: the centroid of the field's component along the limb over a window around it,
    exact for any profile symmetric about its centre.

What is not a defect: an upsampled label peak is NOT on its keypoint. OpenCV's INTER_CUBIC
(Keys' kernel, a = -0.75) upsampling of the sigma-7 Gaussian sampled every 8 pixels pulls the
peak towards the nearest label cell centre by up to 0.41 network input pixels, and the second
resize (network input -> image) moves it by up to 0.14 of its source pixels more: up to 1.2
image pixels at scale 0.5 on a 480-high image. Both are odd about the cell centre, so they
average out over the sub-cell positions. Hence two checks, each of which half a pixel fails:
  - free of any model: the errors at the sub-cell positions k and 7 - k (mirror images about
    the centre 3.5) cancel, pair by pair, to within TOLERANCE;
  - keypoint by keypoint: the peak is where a model of the way back puts it (chain_model: the
    training Gaussian at the cell centres, Keys' kernel with pixel centres aligned, both
    resizes, the same estimator), to within MODEL_TOLERANCE. The model is built from the
    conventions above, not from inference.scaling; it matches to 2e-4 px.
"""
import numpy as np
import pytest

from conventions.geometry import STRIDE
from conventions.keypoints import LIMBS, NUM_PARTS
from inference import scaling
from python_layers import labels

TOLERANCE = 0.15                 # image pixels: half a pixel anywhere in the chain must fail
MODEL_TOLERANCE = 0.02           # image pixels, from the conventions' model (measured: 2e-4)
SCALES = (0.5, 1.0, 1.5)
IMAGE_SIZES = ((368, 301), (480, 640))
SUB_POSITIONS = np.arange(STRIDE)                 # 0/8 .. 7/8 of a cell, from the cell's start
CELL_CENTRE = (STRIDE - 1) / 2.0                  # 3.5: where the labels must sample a cell


# ----------------------------------------------------------------------------- geometry (truth)

def to_network(coordinate, image_length, network_length):
    """Image pixel -> network input pixel along one axis (pixel centres aligned)."""
    return (np.asarray(coordinate, np.float64) + 0.5) * network_length / float(image_length) - 0.5


def to_image(coordinate, image_length, network_length):
    return (np.asarray(coordinate, np.float64) + 0.5) * image_length / float(network_length) - 0.5


def network_geometry(image_size, scale):
    """(resized (h, w), label grid (h'/8, w'/8)) of inference at this scale."""
    resized = scaling.scaled_size(image_size[0], image_size[1], scale)
    padded = scaling.padded_size(*resized)
    return resized, (padded[0] // STRIDE, padded[1] // STRIDE)


def upsampled(parts_in_network, image_size, resized, grid, output_size=None):
    """Labels of these parts rendered at the network's stride by the training code, brought
    back by inference's upsampling: (heatmaps (H, W, 18), PAFs (H, W, 38))."""
    heatmaps, pafs = labels.render_labels(parts_in_network, grid, stride=STRIDE, form="code")
    return scaling.upsample_maps(np.concatenate([heatmaps, pafs]), resized,
                                 output_size or image_size)


# ----------------------------------------------------------------------------- estimators

def gaussian_peak(values, x, y, radius=4):
    """Sub-pixel peak of a 2-D map near (x, y): the argmax within `radius`, refined on each axis
    by the vertex of the parabola through log(values) at the argmax and its two neighbours."""
    x0, y0 = int(round(x)), int(round(y))
    window = values[y0 - radius:y0 + radius + 1, x0 - radius:x0 + radius + 1]
    dy, dx = np.unravel_index(int(np.argmax(window)), window.shape)
    px, py = x0 - radius + dx, y0 - radius + dy
    assert 0 < dx < 2 * radius and 0 < dy < 2 * radius, "peak on the window's edge"

    def vertex(left, centre, right):
        left, centre, right = np.log(np.array([left, centre, right], np.float64))
        return 0.5 * (left - right) / (left - 2.0 * centre + right)

    return (px + vertex(values[py, px - 1], values[py, px], values[py, px + 1]),
            py + vertex(values[py - 1, px], values[py, px], values[py + 1, px]))


def centroid(values, x_range, y_range):
    """(x, y) centroid of values over the window [x0, x1) x [y0, y1)."""
    window = values[y_range[0]:y_range[1], x_range[0]:x_range[1]].astype(np.float64)
    ys, xs = np.mgrid[y_range[0]:y_range[1], x_range[0]:x_range[1]]
    return (window * xs).sum() / window.sum(), (window * ys).sum() / window.sum()


def keys_kernel(t, a=-0.75):
    """The cubic convolution kernel of OpenCV's INTER_CUBIC (Keys, a = -0.75)."""
    t = np.abs(t)
    return np.where(t <= 1, ((a + 2) * t - (a + 3)) * t * t + 1,
                    np.where(t < 2, ((t - 5) * t + 8) * t * a - 4 * a, 0.0))


def chain_model(cells, cell_values, resized_length, output_length, pixels):
    """One axis of inference's way back, modelled from its conventions alone: label values at
    `cells` (cell i centred on network input pixel 8 i + 3.5), resized by the stride with the
    Keys kernel (pixel centres aligned), then from resized_length to output_length pixels the
    same way; returns the values at the output `pixels`. Exact where the cells given cover the
    kernels' reach (2 source pixels either side)."""
    network = np.arange(STRIDE * cells.min(), STRIDE * (cells.max() + 1))
    source = (network + 0.5) / STRIDE - 0.5                        # in cells
    values = keys_kernel(source[:, None] - cells[None, :]).dot(cell_values)
    if output_length == resized_length:
        assert network[0] <= pixels.min() and pixels.max() <= network[-1]
        return values[np.searchsorted(network, pixels)]
    source = (pixels + 0.5) * resized_length / float(output_length) - 0.5
    return keys_kernel(source[:, None] - network[None, :]).dot(values)


def modelled_peak(position, resized_length, output_length, sigma=labels.SIGMA):
    """Where the peak estimator finds a label keypoint at network input `position` after the
    way back (chain_model), in output pixels: the training Gaussian, cut off as the labels cut
    it, on the keypoint's axis (the Gaussian and every resize are separable)."""
    cells = np.floor(position / STRIDE) + np.arange(-6, 7)
    exponent = (STRIDE * cells + CELL_CENTRE - position) ** 2 / (2.0 * sigma * sigma)
    samples = np.where(exponent > labels.GAUSSIAN_CUTOFF, 0.0, np.exp(-exponent))
    centre = int(round(to_image(position, output_length, resized_length)))
    pixels = np.arange(centre - 4, centre + 5)
    values = chain_model(cells, samples, resized_length, output_length, pixels)
    peak = int(np.argmax(values))
    assert 0 < peak < len(pixels) - 1
    left, middle, right = np.log(values[peak - 1:peak + 2])
    return pixels[peak] + 0.5 * (left - right) / (left - 2.0 * middle + right)


def test_the_peak_estimator_is_exact_on_sampled_gaussians():
    ys, xs = np.mgrid[:64, :64]
    for sigma in (2.0, labels.SIGMA, 14.0):
        for fx in np.arange(8) / 8.0:
            cx, cy = 30 + fx, 33 - 0.75 * fx
            gaussian = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma ** 2))
            x, y = gaussian_peak(gaussian.astype(np.float32), cx, cy)
            assert abs(x - cx) < 2e-3 and abs(y - cy) < 2e-3, (sigma, cx, cy, x, y)


def test_the_centroid_is_exact_on_a_symmetric_band():
    ys, xs = np.mgrid[:60, :90]
    for shift in np.arange(8) / 8.0:
        cx, cy = 44.3 + shift, 29 - shift
        # a smooth-edged 30 x 12 box with ringing beside it, symmetric about (cx, cy)
        box = (1 / (1 + np.exp((np.abs(xs - cx) - 15) / 2.0))
               * (1 / (1 + np.exp((np.abs(ys - cy) - 6) / 2.0))
                  - 0.05 * np.exp(-((np.abs(ys - cy) - 10) / 2.0) ** 2)))
        x, y = centroid(box, (0, 90), (0, 60))
        assert abs(x - cx) < 1e-3 and abs(y - cy) < 1e-3, (cx, cy, x, y)


def test_the_model_pulls_peaks_towards_the_cell_centre_oddly_about_it():
    """At scale 1 (no second resize) the model's pull is odd about the cell centre, zero on it
    and midway between two centres, and 0.41 network input pixels at most."""
    cell = 10 * STRIDE
    positions = cell + SUB_POSITIONS
    pulls = np.array([modelled_peak(p, 400, 400) for p in positions]) - positions
    assert np.allclose(pulls, -pulls[::-1], atol=1e-3)
    for on_centre in (cell + CELL_CENTRE, cell + CELL_CENTRE + STRIDE / 2.0):
        assert abs(modelled_peak(on_centre, 400, 400) - on_centre) < 1e-3
    assert np.all(pulls[:4] > 0) and 0.3 < np.abs(pulls).max() < 0.45


# ----------------------------------------------------------------------------- the chain

@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("image_size", IMAGE_SIZES)
def test_resize_and_pad_moves_image_content_where_the_truths_assume(image_size, scale):
    """Gaussian blobs at sub-pixel image positions land, in the network input, where
    to_network puts them: the forward half of the chain has the assumed convention. (A float
    image, not inference's uint8, so that rounding does not blur the sub-pixel; the Keys
    kernel's own peak shift, not modelled here, is 0.07 image px at most.)"""
    height, width = image_size
    sigma = 4.0 / min(scale, 1.0)             # image pixels: 4 or more in the network input
    centres = [(60 + 60 * (k % 4) + k / 8.0, 70 + 120 * (k // 4) + ((5 * k) % 8) / 8.0)
               for k in range(8)]
    ys, xs = np.mgrid[:height, :width]
    image = np.zeros((height, width), np.float64)
    for cx, cy in centres:
        image = np.maximum(image, np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma ** 2)))
    image = np.repeat((200 * image).astype(np.float32)[:, :, None], 3, axis=2)
    padded, resized = scaling.resize_and_pad(image, scale)
    assert resized == network_geometry(image_size, scale)[0]
    errors = []
    for cx, cy in centres:
        nx, ny = to_network(cx, width, resized[1]), to_network(cy, height, resized[0])
        x, y = gaussian_peak(padded[:, :, 1], nx, ny, radius=3)
        # back to image pixels, to compare with TOLERANCE
        errors.append((to_image(x, width, resized[1]) - cx, to_image(y, height, resized[0]) - cy))
    errors = np.abs(errors)
    assert errors.max() < TOLERANCE, errors.max(axis=0)


def heatmap_errors(image_size, scale, output_size=None, to_output=None):
    """Render a keypoint at each of the 8 x 8 sub-cell positions, bring the maps back, estimate
    the peaks. Returns (errors, modelled errors), each (8, 8, 2) in image pixels, indexed by
    (y sub-position, x sub-position, axis). output_size: the maps' size (default the image's);
    to_output: (x, y) in the maps -> image pixels (default pixel centres aligned)."""
    height, width = image_size
    resized, grid = network_geometry(image_size, scale)
    out_h, out_w = output_size or image_size
    to_output = to_output or (lambda x, y: (to_image(x, width, out_w), to_image(y, height, out_h)))
    sites = [(cx, cy) for cy in (3, 8) for cx in (3, 8)]       # cells, 5 apart: no overlap
    assert len(sites) * NUM_PARTS >= STRIDE * STRIDE
    truth = np.zeros((len(sites), NUM_PARTS, 3))
    slots = {}
    for k in range(STRIDE * STRIDE):
        site, part = divmod(k, NUM_PARTS)
        ky, kx = divmod(k, STRIDE)
        # the keypoint in the network input: sub-cell position (kx, ky) of the site's cell
        nx, ny = STRIDE * sites[site][0] + kx, STRIDE * sites[site][1] + ky
        truth[site, part] = (to_image(nx, width, resized[1]), to_image(ny, height, resized[0]), 2)
        slots[ky, kx] = (site, part)
    in_network = truth.copy()       # what inference's resize makes of the image's keypoints
    in_network[..., 0] = to_network(truth[..., 0], width, resized[1])
    in_network[..., 1] = to_network(truth[..., 1], height, resized[0])
    heatmaps, _ = upsampled(in_network.astype(np.float32), image_size, resized, grid,
                            (out_h, out_w))
    errors, modelled = np.zeros((STRIDE, STRIDE, 2)), np.zeros((STRIDE, STRIDE, 2))
    for (ky, kx), (site, part) in slots.items():
        tx, ty = truth[site, part, :2]
        nx, ny = in_network[site, part, :2]
        x, y = gaussian_peak(heatmaps[:, :, part], to_network(tx, width, out_w),
                             to_network(ty, height, out_h))
        errors[ky, kx] = np.subtract(to_output(x, y), (tx, ty))
        model = to_output(modelled_peak(nx, resized[1], out_w),
                          modelled_peak(ny, resized[0], out_h))
        modelled[ky, kx] = np.subtract(model, (tx, ty))
    return errors, modelled


def check_heatmap_errors(errors, modelled):
    # Free of any model: the pull is odd about the cell centre, so the errors at the sub-cell
    # positions k and 7 - k cancel; what is left is a shift of the whole chain.
    x_by_position = errors[:, :, 0].mean(axis=0)
    y_by_position = errors[:, :, 1].mean(axis=1)
    bias = np.concatenate([(x_by_position + x_by_position[::-1]) / 2,
                           (y_by_position + y_by_position[::-1]) / 2])
    assert np.abs(bias).max() < TOLERANCE, ("systematic shift (px), pairs k / 7-k, x then y",
                                            np.round(bias, 3))
    # Each keypoint: where the conventions put its peak (truth + the modelled pull).
    residual = np.abs(errors - modelled)
    assert residual.max() < MODEL_TOLERANCE, ("peak - (truth + modelled pull) (px), worst x / y",
                                        np.round(residual.max(axis=(0, 1)), 3))


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("image_size", IMAGE_SIZES)
def test_upsampled_label_peaks_land_on_the_keypoints_to_the_subpixel(image_size, scale):
    check_heatmap_errors(*heatmap_errors(image_size, scale))


def test_maps_decoded_at_a_reduced_size_scale_back_to_the_keypoints():
    """Large images are decoded at map_size and the peaks scaled back (keypoints_to_image)."""
    image_size = (480, 640)
    map_shape = scaling.map_size(*image_size, max_pixels=image_size[0] * image_size[1] // 4)
    assert map_shape == (240, 320)

    def back_to_image(x, y):
        keypoints = np.zeros((1, NUM_PARTS, 3), np.float32)
        keypoints[0, 0] = (x, y, 1)
        return tuple(scaling.keypoints_to_image(keypoints, map_shape, image_size)[0, 0, :2])

    check_heatmap_errors(*heatmap_errors(image_size, 1.0, output_size=map_shape,
                                         to_output=back_to_image))


# ----------------------------------------------------------------------------- PAFs

def limb_layout(grid):
    """(limb id, start cell, end cell, symmetric) in label cells: horizontal and vertical limbs,
    both directions.
    symmetric: the parts lie midway between cell centres. The cells within a cell's width of
    the limb then lie symmetrically about its centre, so the band's centre must be the limb's
    centre, free of any model. (On a row of centres the rows beside it would lie exactly one
    cell away, on the band's edge, where float rounding decides.) A binary band only moves when
    a cell enters or leaves it, so these limbs do not see half a pixel in the labels' cell
    centres; the others do:
    not symmetric: the limb lies a quarter pixel off a row (column) of centres, so that the
    row beside it on one side is 7.75 px away (in the band) and on the other 8.25 px (out):
    half a pixel in the cell centres moves a row in or out. Checked against the model."""
    rows, columns = grid
    assert rows >= 23 and columns >= 19
    quarter = 0.25 / STRIDE                 # a quarter of a network input pixel, in cells
    return [
        (0, (2.5, 3.5), (8.5, 3.5), True),
        (1, (13.5, 5.5), (7.5, 5.5), True),
        (3, (3.5, 9.5), (3.5, 15.5), True),
        (4, (9.5, 17.5), (9.5, 11.5), True),
        (6, (11.5, 8 + quarter), (14.5, 8 + quarter), False),
        (7, (6.5, 19 - quarter), (1.5, 19 - quarter), False),
        (9, (13 - quarter, 11.5), (13 - quarter, 16.5), False),
        (10, (6 + quarter, 10.5), (6 + quarter, 14.5), False),
    ]


def band_model(start, end, x_pixels, y_pixels, resized, output_size):
    """The field along a limb (network input pixels start -> end) after the way back, at the
    output pixels x_pixels x y_pixels: the label cells within one cell of the segment (its
    ends rounded: python_layers.labels' band) hold 1, brought back by chain_model on each
    axis (separable)."""
    axes = []
    for axis, pixels in ((0, x_pixels), (1, y_pixels)):
        low, high = sorted((start[axis], end[axis]))
        cells = np.arange(np.floor(low / STRIDE) - 4, np.floor(high / STRIDE) + 5)
        axes.append((cells, chain_model(cells, np.eye(len(cells)), resized[1 - axis],
                                        output_size[1 - axis], pixels)))
    (x_cells, across_x), (y_cells, across_y) = axes
    px, py = STRIDE * x_cells + CELL_CENTRE, STRIDE * y_cells + CELL_CENTRE
    length = np.hypot(*np.subtract(end, start))
    unit = np.subtract(end, start) / length
    gx, gy = px[None, :] - start[0], py[:, None] - start[1]
    along = unit[0] * gx + unit[1] * gy
    across = unit[0] * gy - unit[1] * gx
    beyond = np.maximum(np.maximum(-along, along - length), 0)
    on_limb = (beyond ** 2 + across ** 2 <= STRIDE ** 2).astype(np.float64)
    return across_y.dot(on_limb).dot(across_x.T)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("image_size", IMAGE_SIZES)
def test_limb_fields_are_centred_on_their_limbs(image_size, scale):
    height, width = image_size
    resized, grid = network_geometry(image_size, scale)
    layout = limb_layout(grid)
    truth = np.zeros((len(layout), NUM_PARTS, 3))
    for person, (limb, start, end, _) in enumerate(layout):
        for part, cell in zip(LIMBS[limb], (start, end)):
            nx, ny = (STRIDE * c + CELL_CENTRE for c in cell)
            truth[person, part] = (to_image(nx, width, resized[1]),
                                   to_image(ny, height, resized[0]), 2)
    in_network = truth.copy()
    in_network[..., 0] = to_network(truth[..., 0], width, resized[1])
    in_network[..., 1] = to_network(truth[..., 1], height, resized[0])
    _, pafs = upsampled(in_network.astype(np.float32), image_size, resized, grid)
    # a cell's width and the kernels' reach (2 cells), in image pixels
    reach = 3 * STRIDE * max(width / float(resized[1]), height / float(resized[0]))
    offsets, residuals = [], []
    for person, (limb, _, _, symmetric) in enumerate(layout):
        a, b = (truth[person, part, :2] for part in LIMBS[limb])
        unit = (b - a) / np.hypot(*(b - a))
        along = pafs[:, :, 2 * limb] * unit[0] + pafs[:, :, 2 * limb + 1] * unit[1]
        low, high = np.minimum(a, b) - reach, np.maximum(a, b) + reach
        x_range = (max(0, int(low[0])), min(width, int(high[0]) + 2))
        y_range = (max(0, int(low[1])), min(height, int(high[1]) + 2))
        centre = np.array(centroid(along, x_range, y_range))
        # the field points from the limb's first part to its second, at full strength there
        middle = np.round((a + b) / 2).astype(int)
        assert along[middle[1], middle[0]] > 0.9, (limb, along[middle[1], middle[0]])
        model = band_model(in_network[person, LIMBS[limb][0], :2],
                           in_network[person, LIMBS[limb][1], :2],
                           np.arange(*x_range), np.arange(*y_range), resized, image_size)
        modelled = centroid(np.pad(model, ((y_range[0], 0), (x_range[0], 0))), x_range, y_range)
        if symmetric:
            offsets.append(centre - (a + b) / 2)
        residuals.append(centre - modelled)
    # A symmetric band's centre is its limb's centre (free of any model); every band's centre is
    # where the model of the way back puts it.
    offsets, residuals = np.abs(offsets), np.abs(residuals)
    assert offsets.max() < TOLERANCE, ("band centre - limb centre (px), worst x / y",
                                       np.round(offsets.max(axis=0), 3))
    assert residuals.max() < MODEL_TOLERANCE, ("band centre - modelled (px), worst x / y",
                                               np.round(residuals.max(axis=0), 4))
