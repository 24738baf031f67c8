"""The baseline: OpenPose's COCO model (Cao et al. 2017), 6 stages of two branches.

Layer and blob names are OpenPose's own, so that its released COCO caffemodel loads into the
generated deploy net by name and shape: branch L1 = PAFs (38), L2 = heatmaps (19);
stage 1 = conv5_1_CPM_L<b> .. conv5_5_CPM_L<b> (ReLUs relu5_<k>_CPM_L<b>), stage t = 2..6 =
Mconv1_stage<t>_L<b> .. Mconv7_stage<t>_L<b> (ReLUs Mrelu<k>_stage<t>_L<b>) on
concat_stage<t> = concat(previous PAFs, previous heatmaps, conv4_4_CPM) = 185 channels, in that
order (the order fixes the input channels of the released Mconv1 weights).
"""
from conventions.keypoints import NUM_HEATMAPS, NUM_PAFS
from generators.backbone import backbone
from generators.blocks import concat, output_chain_specs, two_branch_stage
from generators.net_io import Outputs

STAGES = 6
OUTPUT_LAYER = "concat_stage7"      # OpenPose's name for the layer that produces net_output
PAF_BRANCH, HEATMAP_BRANCH = 1, 2   # OpenPose's L1 and L2


def first_stage_specs(branch, num_output):
    """Stage 1: three 3x3 128, a 1x1 512, a 1x1 output without ReLU."""
    return output_chain_specs([(128, 3), (128, 3), (128, 3), (512, 1), (num_output, 1)],
                              "conv5_{k}_CPM_L%d" % branch, "relu5_{k}_CPM_L%d" % branch)


def later_stage_specs(stage, branch, num_output):
    """Stages 2..6: five 7x7 128, a 1x1 128, a 1x1 output without ReLU."""
    return output_chain_specs([(128, 7)] * 5 + [(128, 1), (num_output, 1)],
                              "Mconv{k}_stage%d_L%d" % (stage, branch),
                              "Mrelu{k}_stage%d_L%d" % (stage, branch))


def build(net, image):
    """Adds the baseline on `image`; returns the Outputs of all six stages."""
    context = backbone(net, image)
    outputs = Outputs(heatmaps=[], pafs=[])
    stage_input = context
    for stage in range(1, STAGES + 1):
        if stage == 1:
            paf_specs = first_stage_specs(PAF_BRANCH, NUM_PAFS)
            heatmap_specs = first_stage_specs(HEATMAP_BRANCH, NUM_HEATMAPS)
        else:
            stage_input = concat(net, "concat_stage%d" % stage,
                                 [outputs.pafs[-1][1], outputs.heatmaps[-1][1], context])
            paf_specs = later_stage_specs(stage, PAF_BRANCH, NUM_PAFS)
            heatmap_specs = later_stage_specs(stage, HEATMAP_BRANCH, NUM_HEATMAPS)
        pafs, heatmaps = two_branch_stage(net, stage_input, paf_specs, heatmap_specs)
        outputs.pafs.append(("stage%d_L%d" % (stage, PAF_BRANCH), pafs[-1]))
        outputs.heatmaps.append(("stage%d_L%d" % (stage, HEATMAP_BRANCH), heatmaps[-1]))
    return outputs
