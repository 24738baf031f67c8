"""The generated deploy nets against the paper's Table 2 and OpenPose's published layout, counted
from the real caffe.Net; the committed prototxt files against a fresh regeneration."""
import json
import subprocess
import sys

import caffe
import pytest
from google.protobuf import text_format

from generators import stats
from generators.nets import NetOptions, deploy_net

# The paper's numbers (weights without biases; MACs at 368x432) and their fp32 sizes.
MLN_WEIGHTS, BASELINE_WEIGHTS = 21278912, 52298816
MLN_MACS, BASELINE_MACS = 82.52e9, 159.57e9
MLN_MB, BASELINE_MB = 85.16, 209.25
BACKBONE_WEIGHTS = 7337664
MLN_PARTS = {"detect_": 924800, "transfer_": 2752512, "refine_": 10263936}

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
    (("mln", "a"), MLN_WEIGHTS, MLN_MACS, MLN_MB),
    (("mln", "b"), MLN_WEIGHTS, MLN_MACS, MLN_MB),
    (("mln", "c"), MLN_WEIGHTS, MLN_MACS, MLN_MB),
    (("baseline", None), BASELINE_WEIGHTS, BASELINE_MACS, BASELINE_MB),
])
def test_deploy_nets_reproduce_table_2(deploy_nets, key, weights, macs, megabytes):
    total = stats.totals(stats.count_layers(deploy_nets[key]))
    assert total["weights"] == weights
    assert total["macs"] == pytest.approx(macs, rel=1e-3)
    assert total["megabytes"] == pytest.approx(megabytes, abs=0.01)


def test_mln_wirings_differ_in_layout_but_not_in_counts(deploy_nets):
    counts = {wiring: stats.count_layers(deploy_nets[("mln", wiring)]) for wiring in "abc"}
    assert stats.totals(counts["a"]) == stats.totals(counts["b"]) == stats.totals(counts["c"])
    in_channels = {wiring: (deploy_nets[("mln", wiring)].params["transfer_j2l_block1_conv1"][0]
                            .shape[1],
                            deploy_nets[("mln", wiring)].blobs["refine_joint_input"].shape[1])
                   for wiring in "abc"}
    assert in_channels == {"a": (256, 313), "b": (384, 185), "c": (128, 441)}


def test_mln_breakdown_matches_the_design(deploy_nets):
    counts = stats.count_layers(deploy_nets[("mln", "a")])
    backbone = [c for c in counts if c.name in dict((n, 0) for n, _, _ in VGG19_AND_CPM)]
    assert stats.totals(backbone)["weights"] == BACKBONE_WEIGHTS
    for prefix, weights in MLN_PARTS.items():
        part = [c for c in counts if c.name.startswith(prefix)]
        assert stats.totals(part)["weights"] == weights, prefix
    assert len(backbone) + sum(
        len([c for c in counts if c.name.startswith(p)]) for p in MLN_PARTS) == len(counts)


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
    assert net.inputs == ["data"] and tuple(net.blobs["data"].shape) == (1, 3, 368, 432)
    assert net.outputs == ["net_output"]
    assert tuple(net.blobs["net_output"].shape) == (1, 57, 46, 54)
    output_layer = [name for name, tops in net.top_names.items() if tops == ["net_output"]]
    assert net.bottom_names[output_layer[0]] == [final_heatmaps, final_pafs]
    assert net.blobs[final_heatmaps].shape[1] == 19 and net.blobs[final_pafs].shape[1] == 38


def test_committed_prototxt_files_equal_a_fresh_generation(repo, tmp_path):
    # Run from an empty folder with the default relative --out, as a user would from the root.
    subprocess.run([sys.executable, str(repo / "generators" / "make_net.py")], cwd=tmp_path,
                   check=True, stdout=subprocess.PIPE)
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.prototxt"))
    committed = sorted(p.relative_to(repo) for p in (repo / "prototxt").rglob("*.prototxt"))
    assert generated == committed
    assert len(generated) == 6
    for path in generated:
        assert (tmp_path / path).read_text() == (repo / path).read_text(), (
            "%s differs from the generator's output: rerun python generators/make_net.py" % path)


@pytest.mark.parametrize("model", ["mln", "baseline"])
def test_committed_train_nets_load_in_caffe(repo, model):
    # The Python data layer needs an LMDB; stats.load_net stands Input layers in for it.
    net = stats.load_net(str(repo / "prototxt" / model / "train.prototxt"))
    assert tuple(net.blobs["paf_label"].shape) == (1, 38, 46, 46)
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
    # Every map halves exactly, so the MACs are a quarter of those at 368x432.
    assert 4 * report["total"]["macs"] == pytest.approx(MLN_MACS, rel=1e-3)
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
    assert any(line.startswith("Mconv7_stage6_L2 ") and "2,432" in line for line in lines)
    ours = [line for line in lines if line.startswith("this net")]
    assert ours and "52,298,816" in ours[0] and "159.57e9" in ours[0] and "209.25" in ours[0]
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
    report = stats.net_stats(str(path), height=368, width=432)
    assert report["input_shape"] == [1, 3, 368, 432]
    assert report["total"]["weights"] == BASELINE_WEIGHTS
    assert report["total"]["macs"] == pytest.approx(BASELINE_MACS, rel=1e-3)
