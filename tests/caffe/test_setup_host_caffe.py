"""setup_caffe.sh on a host that has its own pycaffe: inside the embedded root, which is such a host.

A user's Caffe must be recorded and used as it is, with nothing built or installed.
"""
import os
import subprocess


def run(command, env, cwd):
    return subprocess.run(command, env=env, cwd=str(cwd), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True)


def test_host_caffe_is_detected_recorded_and_used(repo, tmp_path):
    env = dict(os.environ, MLN_CAFFE_DIR=str(tmp_path / "state"))
    env.pop("MLN_IN_CAFFE_ENV")   # behave like a fresh shell on that host
    env.pop("MLN_CAFFE", None)

    setup = run([str(repo / "scripts" / "setup_caffe.sh")], env, repo)
    assert setup.returncode == 0, setup.stderr
    assert "using the host's Caffe" in setup.stderr
    assert (tmp_path / "state" / "host.env").is_file()
    assert not (tmp_path / "state" / "root").exists(), "nothing may be built for a host Caffe"

    probe = ("import sys, caffe, python_layers, os;"
             "print(sys.executable, os.environ['MLN_CAFFE_MODE'], os.getcwd())")
    used = run([str(repo / "scripts" / "caffe-env"), "python", "-c", probe], env, tmp_path)
    assert used.returncode == 0, used.stderr
    executable, mode, cwd = used.stdout.split()
    assert os.path.realpath(executable) == os.path.realpath(subprocess.check_output(
        ["python3", "-c", "import sys; print(sys.executable)"], universal_newlines=True).strip())
    assert (mode, cwd) == ("host", str(tmp_path))


def test_forcing_host_mode_without_a_working_pycaffe_fails_clearly(repo, tmp_path):
    # A real Python without site-packages: `caffe` is on PATH but this Python cannot import it.
    python = tmp_path / "python-without-pycaffe"
    python.write_text("#!/bin/sh\nexec /usr/bin/python3 -S \"$@\"\n")
    python.chmod(0o755)
    env = dict(os.environ, MLN_CAFFE_DIR=str(tmp_path / "state"), MLN_CAFFE="host",
               MLN_PYTHON=str(python))
    env.pop("MLN_IN_CAFFE_ENV")
    setup = run([str(repo / "scripts" / "setup_caffe.sh")], env, repo)
    assert setup.returncode != 0
    assert "no working host Caffe" in setup.stderr
    assert not (tmp_path / "state" / "host.env").exists()
