"""Smoke tests of the real Caffe this project runs on: NetSpec, Python layers, CLI and pycaffe."""
import json
import os
import re
import subprocess

import caffe
import numpy as np
import pytest
from caffe import layers as L
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from tests.caffe.smoke_layers import TRUE_WEIGHTS

ITERATIONS = 200


def write_tiny_net_and_solver(directory):
    """A linear regression fed by a Python layer, and an SGD solver that snapshots at the end."""
    net = caffe.NetSpec()
    net.x, net.y = L.Python(module="tests.caffe.smoke_layers", layer="LinearRegressionData", ntop=2,
                            param_str=json.dumps({"batch_size": 16, "seed": 0}))
    net.prediction = L.InnerProduct(net.x, num_output=1,
                                    weight_filler=dict(type="constant", value=0))
    net.loss = L.EuclideanLoss(net.prediction, net.y)
    net_path = directory / "train.prototxt"
    net_path.write_text(str(net.to_proto()))

    solver = caffe_pb2.SolverParameter()
    solver.train_net = str(net_path)
    solver.base_lr = 0.1
    solver.lr_policy = "fixed"
    solver.momentum = 0.9
    solver.display = 10
    solver.max_iter = ITERATIONS
    solver.snapshot = ITERATIONS
    solver.snapshot_prefix = str(directory / "tiny")
    solver.solver_mode = caffe_pb2.SolverParameter.CPU
    solver_path = directory / "solver.prototxt"
    solver_path.write_text(text_format.MessageToString(solver))
    return solver_path


def test_caffe_cli_trains_a_net_with_a_python_layer(tmp_path):
    solver_path = write_tiny_net_and_solver(tmp_path)
    run = subprocess.run(["caffe", "train", "--solver", str(solver_path)], cwd=str(tmp_path),
                         env=dict(os.environ, GLOG_minloglevel="0"), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True)
    assert run.returncode == 0, run.stdout[-3000:]
    losses = [float(v) for v in re.findall(r"Iteration \d+.*?, loss = ([-\d.e+]+)", run.stdout)]
    assert len(losses) >= ITERATIONS // 20, run.stdout[-3000:]
    assert losses[-1] < 0.01 * losses[0], losses
    assert (tmp_path / ("tiny_iter_%d.caffemodel" % ITERATIONS)).is_file()
    assert (tmp_path / ("tiny_iter_%d.solverstate" % ITERATIONS)).is_file()


def test_pycaffe_trains_the_same_net_and_learns_the_weights(tmp_path):
    caffe.set_mode_cpu()
    solver = caffe.SGDSolver(str(write_tiny_net_and_solver(tmp_path)))
    solver.step(1)
    first_loss = float(solver.net.blobs["loss"].data)
    solver.step(ITERATIONS - 1)
    assert float(solver.net.blobs["loss"].data) < 0.01 * first_loss
    learned = solver.net.params["prediction"][0].data.ravel()
    np.testing.assert_allclose(learned, TRUE_WEIGHTS, atol=0.05)


def test_python_layers_are_compiled_in():
    assert "Python" in list(caffe.layer_type_list())


@pytest.mark.skipif(os.environ.get("MLN_CAFFE_MODE") == "host",
                    reason="the host's own Caffe uses whatever BLAS its owner built it with")
def test_caffe_blas_is_openblas():
    # Reference BLAS makes convolutions crawl; the embedded root must resolve libblas to OpenBLAS,
    # for the caffe binary and in this very process (after pycaffe ran a convolution).
    ldd = subprocess.run(["ldd", subprocess.check_output(["which", "caffe"]).decode().strip()],
                         stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    blas = re.search(r"libblas\.so\.3 => (\S+)", ldd)
    assert blas, ldd
    assert "openblas" in os.path.realpath(blas.group(1))

    net = caffe.NetSpec()
    net.data = L.Input(shape=dict(dim=[1, 3, 16, 16]))
    net.conv = L.Convolution(net.data, num_output=4, kernel_size=3,
                             weight_filler=dict(type="gaussian", std=0.1))
    path = "/tmp/mln_blas_check.prototxt"
    with open(path, "w") as handle:
        handle.write(str(net.to_proto()))
    caffe.Net(path, caffe.TEST).forward()
    with open("/proc/self/maps") as maps:
        loaded = maps.read()
    assert "libopenblas" in loaded
