"""scripts/caffe-env seen from the host: the command runs where Caffe is, as if it ran here."""
import os
import subprocess
import uuid

import pytest

from tests.conftest import REPO

CAFFE_ENV = str(REPO / "scripts" / "caffe-env")
CAFFE_DIR = os.environ.get("MLN_CAFFE_DIR", str(REPO / ".caffe"))
HOST_ENV = os.path.join(CAFFE_DIR, "host.env")
# The user's own Caffe (README, MLN_CAFFE=host): scripts/setup_caffe.sh recorded it in
# $MLN_CAFFE_DIR/host.env, and caffe-env runs commands directly with it, with no sandbox (unless
# MLN_CAFFE=embedded-cuda asks for the CUDA root).
HOST_MODE = os.environ.get("MLN_CAFFE") != "embedded-cuda" and os.path.isfile(HOST_ENV)
sandbox_only = pytest.mark.skipif(
    HOST_MODE, reason="the user's own Caffe (%s): caffe-env runs commands directly, without "
                      "the embedded root's sandbox" % HOST_ENV)


def caffe_env(*args, cwd=REPO, env=None):
    return subprocess.run([CAFFE_ENV] + [str(a) for a in args], cwd=str(cwd), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)


def test_caffe_version_is_1_0_0():
    run = caffe_env("caffe", "--version")
    assert run.returncode == 0, run.stderr
    if HOST_MODE:               # the user's build: any version of Caffe's command line
        assert run.stdout.startswith("caffe version "), run.stdout
    else:
        assert run.stdout.strip() == "caffe version 1.0.0"


def test_python_is_the_one_with_pycaffe_and_every_toolkit_dependency():
    run = caffe_env("python", "-c", "import caffe, cv2, lmdb, h5py, pycocotools, google.protobuf, "
                    "tqdm, matplotlib; import generators, data_prep, python_layers, inference; "
                    "print(caffe.__file__)")
    assert run.returncode == 0, run.stderr
    assert "caffe" in run.stdout


@pytest.mark.parametrize("code", [0, 3, 7, 42])
def test_exit_code_is_preserved(code):
    assert caffe_env("sh", "-c", "exit %d" % code).returncode == code


def test_current_directory_is_kept(tmp_path):
    assert caffe_env("pwd", cwd=REPO / "tests").stdout.strip() == str(REPO / "tests")
    assert caffe_env("pwd", cwd=tmp_path).stdout.strip() == str(tmp_path)


def test_relative_paths_resolve_from_the_current_directory():
    run = caffe_env("cat", "host/__init__.py", cwd=REPO / "tests")
    assert run.returncode == 0, run.stderr


def test_repository_is_on_pythonpath_from_anywhere(tmp_path):
    run = caffe_env("python", "-c", "import python_layers; print(python_layers.__file__)",
                    cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == str(REPO / "python_layers" / "__init__.py")


def test_data_folder_outside_the_repository_is_reachable(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "annotations.json").write_text('{"images": []}')
    run = caffe_env("python", "-c", "import sys; print(open(sys.argv[1]).read())",
                    data / "annotations.json")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == '{"images": []}'


def test_output_path_yet_to_exist_is_written_on_the_host(tmp_path):
    out = tmp_path / "results" / "out.txt"
    out.parent.mkdir()
    run = caffe_env("sh", "-c", 'echo written > "$1"', "sh", out)
    assert run.returncode == 0, run.stderr
    assert out.read_text() == "written\n"


def test_option_equals_path_form_is_reachable(tmp_path):
    (tmp_path / "x.txt").write_text("x")
    run = caffe_env("python", "-c", "import sys; print(open(sys.argv[1].split('=', 1)[1]).read())",
                    "--input=%s" % (tmp_path / "x.txt"))
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "x"


@sandbox_only
def test_extra_binds_from_the_environment(tmp_path):
    (tmp_path / "y.txt").write_text("y")
    env = dict(os.environ, MLN_CAFFE_BIND=str(tmp_path))
    run = caffe_env("cat", tmp_path / "y.txt", cwd=REPO, env=env)
    assert run.returncode == 0, run.stderr
    # without the bind, the folder is not there
    assert caffe_env("sh", "-c", "cat %s" % (tmp_path / "y.txt")).returncode != 0


@sandbox_only
def test_tmp_is_private():
    name = "/tmp/mln-private-%s" % uuid.uuid4().hex
    assert caffe_env("sh", "-c", "echo inside > %s && cat %s" % (name, name)).returncode == 0
    assert not os.path.exists(name)


@sandbox_only
def test_environment_of_a_host_virtualenv_does_not_leak_in():
    env = dict(os.environ, PYTHONPATH="/nonexistent/site-packages", VIRTUAL_ENV=str(REPO / ".venv"),
               PATH=str(REPO / ".venv" / "bin") + ":" + os.environ["PATH"])
    run = caffe_env("python", "-c", "import sys, caffe; print(sys.version_info[:2])", env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "(3, 9)"


def test_missing_setup_is_reported(tmp_path):
    env = dict(os.environ, MLN_CAFFE_DIR=str(tmp_path / "nothing"))
    run = caffe_env("caffe", "--version", env=env)
    assert run.returncode == 125
    assert "run scripts/setup_caffe.sh" in run.stderr


def test_the_deploy_venv_is_not_made_inside_caffe_env(tmp_path):
    """Inside caffe-env python3 is the embedded root's: a venv made with it would replace the
    host's with one the host cannot run (a test that ran evaluate.sh in the Caffe suite did)."""
    venv = tmp_path / "venv"
    run = caffe_env("bash", REPO / "scripts" / "setup_venv.sh",
                    env=dict(os.environ, MLN_VENV=str(venv)))
    assert run.returncode == 1, run.stderr
    assert "run scripts/setup_venv.sh outside scripts/caffe-env" in run.stderr
    assert not venv.exists()
