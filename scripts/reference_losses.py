"""Reference points for a training loss: what two trivial predictions score on the same samples.

    scripts/caffe-env python scripts/reference_losses.py --lmdb DB --crop 128 --batch 4 \
        [--batches 40] [--seed 0] [--supervised 2] [--json OUT]

A falling loss alone does not say what a net has learnt. On the samples the data layer makes
(same augmentation, same seed), with Caffe's masked EuclideanLoss (sum of squares / 2N, summed
over every supervised output, `supervised` times each of the heatmap and PAF blocks: 2 for MLN,
6 for the baseline):

- zero: every output 0 — what a net initialised with small Gaussian weights predicts;
- background_only: the background heatmap channel exact, every part and PAF channel 0 — a net
  that has learnt where people are not, but no part and no limb.

A training loss near background_only has learnt the background channel and not yet the parts;
only below it do parts and limbs start to be found.
"""
import argparse
import json
import sys

import numpy as np

from conventions.geometry import BOX_SIZE
from conventions.keypoints import BACKGROUND_CHANNEL
from python_layers.batch_source import BatchSource, top_shapes
from python_layers.data_layer import parse_param_str


def reference_losses(source, params, batch_size, batches, seed=0, supervised=2):
    """{"zero": mean loss, "background_only": mean loss} over `batches` batches of the data
    layer's stream (BatchSource with the same seed as training)."""
    batches_source = BatchSource(source, batch_size, params, seed=seed)
    zero, background_only = [], []
    try:
        for _ in range(batches):
            data, heatmaps, pafs, mask = [np.zeros(shape, np.float32)
                                          for shape in top_shapes(batch_size, params)]
            batches_source.fill([data, heatmaps, pafs, mask])
            heatmaps *= mask
            pafs *= mask
            parts = np.delete(heatmaps, BACKGROUND_CHANNEL, axis=1)
            paf_term = (pafs ** 2).sum()
            zero.append(supervised * ((heatmaps ** 2).sum() + paf_term) / (2.0 * batch_size))
            background_only.append(supervised * ((parts ** 2).sum() + paf_term)
                                   / (2.0 * batch_size))
    finally:
        batches_source.close()
    return {"zero": float(np.mean(zero)), "background_only": float(np.mean(background_only))}


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Loss of two trivial predictions (all zero; the background channel alone) "
                    "on the data layer's samples: reference points for a training curve.")
    parser.add_argument("--lmdb", required=True, help="database made by data_prep/coco_to_lmdb.py")
    parser.add_argument("--crop", type=int, default=BOX_SIZE)
    parser.add_argument("--batch", type=int, default=28)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--supervised", type=int, default=2,
                        help="times each of heatmaps and PAFs is supervised (MLN 2, baseline 6)")
    parser.add_argument("--data-param", type=json.loads, default={},
                        help="the training's extra data-layer JSON (its augmentation keys)")
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args(argv)
    try:
        extra = dict(args.data_param, source=args.lmdb, batch_size=args.batch,
                     crop_size=args.crop, seed=args.seed)
        params = parse_param_str(json.dumps(extra))[1]
    except (TypeError, ValueError) as error:
        parser.error(str(error))
    result = reference_losses(args.lmdb, params, args.batch, args.batches, args.seed,
                              args.supervised)
    print("all-zero prediction: %.1f\nbackground channel only: %.1f"
          % (result["zero"], result["background_only"]))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
