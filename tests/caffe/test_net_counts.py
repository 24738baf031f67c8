"""The generated deploy nets against the paper's Table 2 and OpenPose's published layout, counted
from the real caffe.Net; the committed prototxt files against a fresh regeneration.

The expected per-layer figures come from layer tables written here from the papers' descriptions
(MLN: the paper and generators/README.md's design notes; the baseline: OpenPose's published COCO
prototxt), not from the generators: weights = out x in x k x k, biases = out, MACs = weights x
the output map's cells, MB = 4 bytes x (weights + biases) / 1e6. The tables are themselves held
to the paper's Table 2 (weights exactly; its MACs and MB as rounded there).
"""
import json
import pathlib
import subprocess
import sys

import caffe
import pytest
from google.protobuf import text_format

from generators import stats
from generators.nets import NetOptions, deploy_net

# The paper's Table 2 (weights without biases; MACs at 368x432; fp32 MB), as printed there.
MLN_WEIGHTS, BASELINE_WEIGHTS = 21278912, 52298816
PAPER_MLN_MACS, PAPER_BASELINE_MACS = 82.5e9, 159.6e9         # rounded to 0.1e9
PAPER_MLN_MB, PAPER_BASELINE_MB = 85.2, 209.3                 # rounded to 0.1
# The baseline's weights and biases (its table below) round to 209.2 MB, not the paper's 209.3:
# MB are held to the paper within 0.1.
PAPER_MB_SLACK = 0.1
DEPLOY_SIZE = (368, 432)        # the paper's input, and the deploy nets' default
STRIDE = 8
HEATMAPS, PAFS = 19, 38         # 18 parts + background; 19 limbs x (x, y)
BYTES_PER_VALUE = 4

# Facts about the published nets, written out independently of the generator.
VGG19_AND_CPM = [("conv1_1", 64, 3), ("conv1_2", 64, 64), ("conv2_1", 128, 64),
                 ("conv2_2", 128, 128), ("conv3_1", 256, 128), ("conv3_2", 256, 256),
                 ("conv3_3", 256, 256), ("conv3_4", 256, 256), ("conv4_1", 512, 256),
                 ("conv4_2", 512, 512), ("conv4_3_CPM", 256, 512), ("conv4_4_CPM", 128, 256)]


def openpose_coco_param_shapes():
    """{layer: weight shape} of OpenPose's pose_deploy_linevec.prototxt (COCO)."""
    shapes = {name: (out, into, 3, 3) for name, out, into in VGG19_AND_CPM}
    for branch, outputs in ((1, 38), (2, 19)):
        for k, (out, into, kernel) in enumerate(
                [(128, 128, 3), (128, 128, 3), (128, 128, 3), (512, 128, 1), (outputs, 512, 1)],
                start=1):
            shapes["conv5_%d_CPM_L%d" % (k, branch)] = (out, into, kernel, kernel)
        for stage in range(2, 7):
            for k, (out, into, kernel) in enumerate(
                    [(128, 185, 7)] + [(128, 128, 7)] * 4 + [(128, 128, 1), (outputs, 128, 1)],
                    start=1):
                shapes["Mconv%d_stage%d_L%d" % (k, stage, branch)] = (out, into, kernel, kernel)
    return shapes


# MLN, from the paper (and generators/README.md's design notes): every hidden convolution has
# 128 channels; detection per branch: Conv-1..3 3x3, Conv-4 1x1, Conv-5 1x1 to the outputs;
# transfer per direction: 2 blocks of three chained 3x3 convolutions whose outputs are
# concatenated (384), then a 1x1 to 128; refinement per branch: 7 such blocks, a 1x1 to 128, a
# 1x1 to the outputs. The wirings (README) fix the input widths: context = conv4_4_CPM (128).
HIDDEN, CONTEXT = 128, 128
MLN_INPUT_WIDTHS = {      # wiring: (transfer input, refinement input)
    "a": (HIDDEN * 2, HEATMAPS + PAFS + CONTEXT + HIDDEN),            # Conv-1, Conv-4 | + j2l/l2j
    "b": (HIDDEN * 3, HEATMAPS + PAFS + CONTEXT),                     # Conv-1, 3, 4 | context + t
    "c": (HIDDEN, HEATMAPS + PAFS + CONTEXT + 2 * HIDDEN),            # Conv-4 | + j2l + l2j
}
BRANCHES = {"joint": HEATMAPS, "limb": PAFS}


def backbone_table():
    """{layer: (out, in, kernel, map stride)}: VGG-19's conv1_1..conv4_2 and OpenPose's two CPM
    layers, 3x3; conv<g>_* run at stride 2^(g-1) (a 2x2 pool after each group but the last)."""
    return {name: (out, into, 3, 2 ** (int(name[4]) - 1)) for name, out, into in VGG19_AND_CPM}


def mln_table(wiring):
    transfer_in, refine_in = MLN_INPUT_WIDTHS[wiring]
    table = backbone_table()
    for branch, outputs in BRANCHES.items():
        for k, (out, into, kernel) in enumerate(
                [(HIDDEN, CONTEXT, 3), (HIDDEN, HIDDEN, 3), (HIDDEN, HIDDEN, 3),
                 (HIDDEN, HIDDEN, 1), (outputs, HIDDEN, 1)], start=1):
            table["detect_%s_conv%d" % (branch, k)] = (out, into, kernel, STRIDE)
    for prefix, blocks, first_in in [("transfer_j2l", 2, transfer_in),
                                     ("transfer_l2j", 2, transfer_in),
                                     ("refine_joint", 7, refine_in),
                                     ("refine_limb", 7, refine_in)]:
        for block in range(1, blocks + 1):
            for k in (1, 2, 3):
                into = (first_in if block == 1 else 3 * HIDDEN) if k == 1 else HIDDEN
                table["%s_block%d_conv%d" % (prefix, block, k)] = (HIDDEN, into, 3, STRIDE)
    for direction in ("j2l", "l2j"):
        table["transfer_%s_conv_out" % direction] = (HIDDEN, 3 * HIDDEN, 1, STRIDE)
    for branch, outputs in BRANCHES.items():
        table["refine_%s_conv_mid" % branch] = (HIDDEN, 3 * HIDDEN, 1, STRIDE)
        table["refine_%s_conv_out" % branch] = (outputs, HIDDEN, 1, STRIDE)
    return table


def baseline_table():
    table = backbone_table()
    for name, (out, into, kernel, _) in openpose_coco_param_shapes().items():
        table.setdefault(name, (out, into, kernel, STRIDE))
    return table


def table_counts(table, size=DEPLOY_SIZE):
    """{layer: (weights, biases, MACs)} of a layer table at an input size."""
    counts = {}
    for name, (out, into, kernel, stride) in table.items():
        assert size[0] % stride == 0 and size[1] % stride == 0
        weights = out * into * kernel * kernel
        counts[name] = (weights, out, weights * (size[0] // stride) * (size[1] // stride))
    return counts


def table_totals(counts):
    weights = sum(c[0] for c in counts.values())
    biases = sum(c[1] for c in counts.values())
    return dict(weights=weights, biases=biases, macs=sum(c[2] for c in counts.values()),
                megabytes=BYTES_PER_VALUE * (weights + biases) / 1e6)


TABLES = {("mln", "a"): mln_table("a"), ("mln", "b"): mln_table("b"),
          ("mln", "c"): mln_table("c"), ("baseline", None): baseline_table()}
MLN_TOTALS = table_totals(table_counts(TABLES[("mln", "a")]))
BASELINE_TOTALS = table_totals(table_counts(TABLES[("baseline", None)]))


def load(proto, directory, name):
    path = directory / (name + ".prototxt")
    path.write_text(text_format.MessageToString(proto))
    return caffe.Net(str(path), caffe.TEST)


@pytest.fixture(scope="module")
def deploy_nets(tmp_path_factory):
    """Real caffe.Nets of the deploy nets at 368x432: (model, wiring) -> caffe.Net."""
    directory = tmp_path_factory.mktemp("deploy")
    nets = {("baseline", None): load(deploy_net("baseline", NetOptions()), directory, "baseline")}
    for wiring in ("a", "b", "c"):
        nets[("mln", wiring)] = load(deploy_net("mln", NetOptions(wiring=wiring)), directory,
                                     "mln_" + wiring)
    return nets


@pytest.mark.parametrize("key, weights, macs, megabytes", [
    (("mln", "a"), MLN_WEIGHTS, PAPER_MLN_MACS, PAPER_MLN_MB),
    (("mln", "b"), MLN_WEIGHTS, PAPER_MLN_MACS, PAPER_MLN_MB),
    (("mln", "c"), MLN_WEIGHTS, PAPER_MLN_MACS, PAPER_MLN_MB),
    (("baseline", None), BASELINE_WEIGHTS, PAPER_BASELINE_MACS, PAPER_BASELINE_MB),
], ids=["mln-a", "mln-b", "mln-c", "baseline"])
def test_the_layer_tables_give_table_2(key, weights, macs, megabytes):
    total = table_totals(table_counts(TABLES[key]))
    assert total["weights"] == weights
    assert abs(total["macs"] - macs) <= 0.05e9
    assert abs(total["megabytes"] - megabytes) <= PAPER_MB_SLACK


@pytest.mark.parametrize("key", [("mln", "a"), ("mln", "b"), ("mln", "c"), ("baseline", None)],
                         ids=["mln-a", "mln-b", "mln-c", "baseline"])
def test_deploy_nets_count_as_their_layer_table(deploy_nets, key):
    counts = stats.count_layers(deploy_nets[key])
    assert all(count.type == "Convolution" for count in counts)
    assert {c.name: (c.weights, c.biases, c.macs) for c in counts} == table_counts(TABLES[key])
    total = stats.totals(counts)
    expected = table_totals(table_counts(TABLES[key]))
    assert total["weights"] == {"mln": MLN_WEIGHTS, "baseline": BASELINE_WEIGHTS}[key[0]]
    assert {k: total[k] for k in ("weights", "biases", "macs")} == {
        k: expected[k] for k in ("weights", "biases", "macs")}
    assert total["megabytes"] == pytest.approx(expected["megabytes"], rel=1e-12)


def test_mln_wirings_differ_in_layout_but_not_in_counts(deploy_nets):
    counts = {wiring: stats.count_layers(deploy_nets[("mln", wiring)]) for wiring in "abc"}
    assert stats.totals(counts["a"]) == stats.totals(counts["b"]) == stats.totals(counts["c"])
    in_channels = {wiring: (deploy_nets[("mln", wiring)].params["transfer_j2l_block1_conv1"][0]
                            .shape[1],
                            deploy_nets[("mln", wiring)].blobs["refine_joint_input"].shape[1])
                   for wiring in "abc"}
    assert in_channels == MLN_INPUT_WIDTHS


def test_mln_breakdown_matches_the_design(deploy_nets):
    counts = stats.count_layers(deploy_nets[("mln", "a")])
    expected = table_counts(TABLES[("mln", "a")])
    parts = {"backbone": tuple(name for name, _, _ in VGG19_AND_CPM),
             "detect_": None, "transfer_": None, "refine_": None}
    sizes = 0
    for part, names in parts.items():
        member = (lambda name: name in names) if names else (lambda name: name.startswith(part))
        got = [c for c in counts if member(c.name)]
        want = [value for name, value in expected.items() if member(name)]
        assert stats.totals(got)["weights"] == sum(w for w, _, _ in want), part
        assert stats.totals(got)["macs"] == sum(m for _, _, m in want), part
        sizes += len(got)
    assert sizes == len(counts)


@pytest.mark.parametrize("key", [("mln", "a"), ("baseline", None)])
def test_backbone_has_vgg19_names_and_shapes(deploy_nets, key):
    params = deploy_nets[key].params
    for name, out, into in VGG19_AND_CPM:
        assert tuple(params[name][0].shape) == (out, into, 3, 3), name
        assert tuple(params[name][1].shape) == (out,), name


def test_baseline_has_openpose_coco_names_and_shapes(deploy_nets):
    net = deploy_nets[("baseline", None)]
    expected = openpose_coco_param_shapes()
    assert {name: tuple(blobs[0].shape) for name, blobs in net.params.items()} == expected
    assert all(tuple(net.params[name][1].shape) == (shape[0],) for name, shape in expected.items())
    assert "Mrelu6_stage6_L2" in net.top_names and "relu5_4_CPM_L1" in net.top_names
    # Stage inputs are concat(PAFs, heatmaps, conv4_4_CPM), which fixes Mconv1's input channels.
    # (Read from the prototxt: caffe.Net renames the bottoms of shared blobs to split copies.)
    layers = {layer.name: layer for layer in deploy_net("baseline", NetOptions()).layer}
    assert list(layers["concat_stage2"].bottom) == [
        "conv5_5_CPM_L1", "conv5_5_CPM_L2", "conv4_4_CPM"]
    assert list(layers["concat_stage6"].bottom) == [
        "Mconv7_stage5_L1", "Mconv7_stage5_L2", "conv4_4_CPM"]
    assert list(layers["concat_stage7"].bottom) == ["Mconv7_stage6_L2", "Mconv7_stage6_L1"]
    assert list(layers["concat_stage7"].top) == ["net_output"]


@pytest.mark.parametrize("key, final_heatmaps, final_pafs", [
    (("mln", "a"), "refine_joint_conv_out", "refine_limb_conv_out"),
    (("baseline", None), "Mconv7_stage6_L2", "Mconv7_stage6_L1"),
])
def test_deploy_output_is_heatmaps_then_pafs(deploy_nets, key, final_heatmaps, final_pafs):
    net = deploy_nets[key]
    assert net.inputs == ["data"] and tuple(net.blobs["data"].shape) == (1, 3) + DEPLOY_SIZE
    assert net.outputs == ["net_output"]
    cells = (DEPLOY_SIZE[0] // STRIDE, DEPLOY_SIZE[1] // STRIDE)
    assert tuple(net.blobs["net_output"].shape) == (1, HEATMAPS + PAFS) + cells
    output_layer = [name for name, tops in net.top_names.items() if tops == ["net_output"]]
    assert net.bottom_names[output_layer[0]] == [final_heatmaps, final_pafs]
    assert net.blobs[final_heatmaps].shape[1] == HEATMAPS
    assert net.blobs[final_pafs].shape[1] == PAFS


def test_committed_prototxt_files_equal_a_fresh_generation(repo, tmp_path):
    # Run from an empty folder with the default relative --out, as a user would from the root.
    subprocess.run([sys.executable, str(repo / "generators" / "make_net.py")], cwd=tmp_path,
                   check=True, stdout=subprocess.PIPE)
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.prototxt"))
    committed = sorted(p.relative_to(repo) for p in (repo / "prototxt").rglob("*.prototxt"))
    assert generated == committed
    assert generated == sorted(pathlib.Path("prototxt", model, kind + ".prototxt")
                               for model in ("mln", "baseline")
                               for kind in ("train", "deploy", "solver"))
    for path in generated:
        assert (tmp_path / path).read_text() == (repo / path).read_text(), (
            "%s differs from the generator's output: rerun python generators/make_net.py" % path)


@pytest.mark.parametrize("model", ["mln", "baseline"])
def test_committed_train_nets_load_in_caffe(repo, model):
    # The Python data layer needs an LMDB; stats.load_net stands Input layers in for it.
    net = stats.load_net(str(repo / "prototxt" / model / "train.prototxt"))
    crop = 368                  # the paper's training crop (make_net.py's default)
    assert tuple(net.blobs["paf_label"].shape) == (1, PAFS, crop // STRIDE, crop // STRIDE)
    weights = stats.totals(stats.count_layers(net))["weights"]
    assert weights == {"mln": MLN_WEIGHTS, "baseline": BASELINE_WEIGHTS}[model]


def test_stats_cli_reshapes_and_reports_json(repo):
    run = subprocess.run(
        [sys.executable, str(repo / "generators" / "stats.py"),
         str(repo / "prototxt" / "mln" / "deploy.prototxt"), "--height", "184", "--width", "216",
         "--json", "--compare-paper", "--totals-only"],
        check=True, stdout=subprocess.PIPE, universal_newlines=True)
    report = json.loads(run.stdout)
    assert report["input_shape"] == [1, 3, 184, 216]
    assert report["total"]["weights"] == MLN_WEIGHTS
    assert report["total"]["macs"] == table_totals(table_counts(TABLES[("mln", "a")],
                                                                (184, 216)))["macs"]
    # Every map halves exactly, so the MACs are a quarter of those at 368x432.
    assert 4 * report["total"]["macs"] == MLN_TOTALS["macs"]
    assert report["paper_table_2"]["OpenPose"]["weights"] == BASELINE_WEIGHTS


def test_stats_cli_table_compares_with_the_paper(repo, tmp_path):
    run = subprocess.run(
        [sys.executable, str(repo / "generators" / "stats.py"),
         str(repo / "prototxt" / "baseline" / "deploy.prototxt"), "--compare-paper",
         "--json-file", str(tmp_path / "counts.json")],
        check=True, stdout=subprocess.PIPE, universal_newlines=True)
    saved = json.loads((tmp_path / "counts.json").read_text())   # the table and the JSON at once
    assert saved["total"]["weights"] == BASELINE_WEIGHTS and "paper_table_2" in saved
    lines = run.stdout.splitlines()
    weights, biases, macs = table_counts(TABLES[("baseline", None)])["Mconv7_stage6_L2"]
    assert any(line.split()[:5] == ["Mconv7_stage6_L2", "Convolution", "{:,}".format(weights),
                                    "{:,}".format(biases), "{:,}".format(macs)]
               for line in lines)
    ours = [line for line in lines if line.startswith("this net")]
    assert ours and ours[0].split()[2:] == ["52,298,816",
                                            "%.2fe9" % (BASELINE_TOTALS["macs"] / 1e9),
                                            "%.2f" % BASELINE_TOTALS["megabytes"]]
    assert any(line.startswith("paper Table 2: MLN") and "21,278,912" in line for line in lines)


def test_stats_counts_a_prototxt_with_the_legacy_input_header(tmp_path):
    # OpenPose's own deploy prototxt declares its input as `input:` + `input_dim:` (1x3x1x1,
    # "defined at runtime"); --height/--width then set the size.
    proto = deploy_net("baseline", NetOptions())
    del proto.layer[0]                              # our Input layer
    proto.input.append("data")
    proto.input_dim.extend([1, 3, 1, 1])
    path = tmp_path / "legacy.prototxt"
    path.write_text(text_format.MessageToString(proto))
    report = stats.net_stats(str(path), height=DEPLOY_SIZE[0], width=DEPLOY_SIZE[1])
    assert report["input_shape"] == [1, 3] + list(DEPLOY_SIZE)
    assert report["total"]["weights"] == BASELINE_WEIGHTS
    assert report["total"]["macs"] == BASELINE_TOTALS["macs"]
