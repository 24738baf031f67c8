"""MLN (Huang, Zhuang, Qin): detection, feature transfer and refinement on the shared backbone.

The layout is the one pinned down by the paper's Table 2 (see the design notes in
generators/README.md). Two branches everywhere: "joint" (heatmaps, 19) and "limb" (PAFs, 38);
transfer directions "j2l" (joint to limb) and "l2j". Layer names:

  detection   detect_<branch>_conv1..conv5 (ReLUs detect_<branch>_relu1..4); conv1..3 are
              3x3 128, conv4 1x1 128, conv5 1x1 to the outputs (the paper's Conv-1..Conv-5).
  transfer    transfer_<dir>_input (concat of the source branch's features),
              transfer_<dir>_block1..2 (conv1..3, relu1..3, concat), transfer_<dir>_conv_out
              (1x1 384 -> 128, no ReLU).
  refinement  refine_<branch>_input, refine_<branch>_block1..7 (conv1..3, relu1..3, concat),
              refine_<branch>_conv_mid (1x1 384 -> 128, ReLU refine_<branch>_relu_mid),
              refine_<branch>_conv_out (1x1 -> outputs, no ReLU): the net's final outputs.

The paper's weight count fixes only the sum of the four input widths; the three wirings below
give identical weights, biases and MACs (WIRINGS):
  a  transfer input = concat(conv1, conv4) of the source branch (256); refinement input =
     concat(heatmaps, PAFs, conv4_4_CPM, features transferred into this branch) (313).
  b  transfer input = concat(conv1, conv3, conv4) of the source branch (384); the transferred
     features are added (Eltwise SUM) to conv4_4_CPM: refinement input =
     concat(heatmaps, PAFs, conv4_4_CPM + transferred) (185).
  c  transfer input = conv4 of the source branch (128); both directions' outputs enter both
     refinement branches: concat(heatmaps, PAFs, conv4_4_CPM, j2l, l2j) (441).
"""
from caffe import layers as L
from caffe import params as P

from conventions.keypoints import NUM_HEATMAPS, NUM_PAFS
from generators.backbone import backbone
from generators.blocks import (ConvSpec, concat, conv, output_chain_specs, three_conv_block,
                               two_branch_stage)
from generators.net_io import Outputs
from conventions.net_contract import DEPLOY_OUTPUT

WIRINGS = ("a", "b", "c")
HIDDEN = 128                # channels of every hidden convolution
TRANSFER_BLOCKS = 2         # per direction: the paper's "4 transfer blocks" in all
REFINEMENT_BLOCKS = 7       # per branch
OUTPUT_LAYER = DEPLOY_OUTPUT      # MLN names the final concat after the blob it produces
BRANCH_OUTPUTS = {"joint": NUM_HEATMAPS, "limb": NUM_PAFS}
TRANSFER_INTO = {"joint": "l2j", "limb": "j2l"}     # branch -> the direction that feeds it

# Which detection convolutions (1-based, the paper's Conv-k) feed a transfer direction.
_TRANSFER_SOURCES = {"a": (1, 4), "b": (1, 3, 4), "c": (4,)}


def detection_specs(branch, num_output):
    """The paper's Conv-1..Conv-5 of one detection branch."""
    return output_chain_specs([(HIDDEN, 3)] * 3 + [(HIDDEN, 1), (num_output, 1)],
                              "detect_%s_conv{k}" % branch, "detect_%s_relu{k}" % branch)


def transfer(net, direction, source_convs, wiring):
    """One transfer direction: TRANSFER_BLOCKS blocks on the source branch's features, then a
    1x1 convolution without ReLU; returns its Top (128 channels)."""
    sources = [source_convs[k - 1] for k in _TRANSFER_SOURCES[wiring]]
    top = sources[0] if len(sources) == 1 else concat(net, "transfer_%s_input" % direction,
                                                      sources)
    for block in range(1, TRANSFER_BLOCKS + 1):
        top = three_conv_block(net, "transfer_%s_block%d" % (direction, block), top, HIDDEN)
    return conv(net, ConvSpec("transfer_%s_conv_out" % direction, None, HIDDEN, 1), top)


def refinement(net, branch, bottom, num_output):
    """One refinement branch: REFINEMENT_BLOCKS blocks, a 1x1 128 (ReLU), a 1x1 output."""
    top = bottom
    for block in range(1, REFINEMENT_BLOCKS + 1):
        top = three_conv_block(net, "refine_%s_block%d" % (branch, block), top, HIDDEN)
    top = conv(net, ConvSpec("refine_%s_conv_mid" % branch, "refine_%s_relu_mid" % branch,
                             HIDDEN, 1), top)
    return conv(net, ConvSpec("refine_%s_conv_out" % branch, None, num_output, 1), top)


def refinement_input(net, branch, detected, context, transferred, wiring):
    """The refinement branch's input for the wiring; `detected` = [heatmaps, PAFs] Tops,
    `transferred` = {direction: Top}."""
    into_branch = transferred[TRANSFER_INTO[branch]]
    name = "refine_%s_input" % branch
    if wiring == "a":
        return concat(net, name, detected + [context, into_branch])
    if wiring == "b":
        context_name = "refine_%s_context" % branch
        net[context_name] = L.Eltwise(context, into_branch, operation=P.Eltwise.SUM)
        return concat(net, name, detected + [net[context_name]])
    return concat(net, name, detected + [context, transferred["j2l"], transferred["l2j"]])


def build(net, image, wiring="a"):
    """Adds MLN on `image`; returns the Outputs (detection, then refinement)."""
    if wiring not in WIRINGS:
        raise ValueError("MLN wiring must be one of %s, not %r" % (WIRINGS, wiring))
    context = backbone(net, image)
    joint_convs, limb_convs = two_branch_stage(
        net, context, detection_specs("joint", NUM_HEATMAPS), detection_specs("limb", NUM_PAFS))
    transferred = {"j2l": transfer(net, "j2l", joint_convs, wiring),
                   "l2j": transfer(net, "l2j", limb_convs, wiring)}
    detected = [joint_convs[-1], limb_convs[-1]]
    refined = {branch: refinement(net, branch,
                                  refinement_input(net, branch, detected, context, transferred,
                                                   wiring),
                                  num_output)
               for branch, num_output in BRANCH_OUTPUTS.items()}
    return Outputs(heatmaps=[("detect_joint", joint_convs[-1]), ("refine_joint", refined["joint"])],
                   pafs=[("detect_limb", limb_convs[-1]), ("refine_limb", refined["limb"])])
