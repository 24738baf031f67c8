"""scripts/reference_losses.py against a real forward pass of the generated MLN train net:
with its small Gaussian initial weights the net outputs almost nothing, so on the same samples
its loss must be the all-zero reference."""
import caffe
import pytest

from python_layers import augment
from scripts.reference_losses import reference_losses
from tests.caffe.test_data_layer import close, make_net

CROP, BATCH, SEED = 128, 2, 5


def test_untrained_net_scores_the_all_zero_reference(tmp_path, coco_mini_lmdb):
    reference = reference_losses(str(coco_mini_lmdb),
                                 augment.AugmentParams.from_dict({"crop_size": CROP}),
                                 BATCH, batches=1, seed=SEED, supervised=2)
    caffe.set_random_seed(SEED)
    net = make_net(tmp_path, coco_mini_lmdb, batch=BATCH, crop=CROP, seed=SEED, workers=0)
    try:
        outputs = net.forward()
    finally:
        close(net)
    total = sum(float(outputs[name]) for name in ("loss_detect_joint", "loss_detect_limb",
                                                  "loss_refine_joint", "loss_refine_limb"))
    assert total == pytest.approx(reference["zero"], rel=0.02)
    # the background channel is most of the heatmap labels: knowing it alone halves the loss
    assert 0 < reference["background_only"] < 0.8 * reference["zero"]
