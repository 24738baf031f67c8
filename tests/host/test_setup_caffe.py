"""scripts/setup_caffe.sh as a new user meets it: second runs, bad mirrors, broken state, no root."""
import os
import shutil
import subprocess

import pytest

from tests.conftest import REPO

SETUP = str(REPO / "scripts" / "setup_caffe.sh")
UNREACHABLE_MIRROR = "http://127.0.0.1:9/debian"   # the discard port: nothing listens
STATE = os.environ.get("MLN_CAFFE_DIR", str(REPO / ".caffe"))
# The user's own Caffe (README, MLN_CAFFE=host, or auto where setup_caffe.sh found it and recorded
# it in $MLN_CAFFE_DIR/host.env): no embedded root to keep, and perhaps none of the tools that
# building one takes (setup_caffe.sh's install_host_tools), which these tests' builds reach.
HOST_ENV = os.path.join(STATE, "host.env")
HOST_MODE = os.environ.get("MLN_CAFFE") == "host" or (
    os.environ.get("MLN_CAFFE", "auto") == "auto" and os.path.isfile(HOST_ENV))
MISSING_BUILD_TOOLS = [tool for tool in ("mmdebstrap", "bwrap", "newuidmap")
                       if shutil.which(tool) is None]
ROOT_STAMP = os.path.join(STATE, "root", ".mln-stamp")
embedded_root = pytest.mark.skipif(
    HOST_MODE, reason="the user's own Caffe (MLN_CAFFE=host, %s): setup_caffe.sh keeps no "
                      "embedded root" % HOST_ENV)
build_tools = pytest.mark.skipif(
    HOST_MODE and bool(MISSING_BUILD_TOOLS),
    reason="the user's own Caffe (MLN_CAFFE=host) and no %s here: the embedded build these "
           "tests start needs them" % ", ".join(MISSING_BUILD_TOOLS))


def setup_caffe(env_overrides, cwd=REPO, command=None):
    env = dict(os.environ, **env_overrides)
    return subprocess.run(command or [SETUP], cwd=str(cwd), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True)


@embedded_root
def test_second_run_keeps_the_root_and_says_so():
    root = os.path.join(STATE, "root")
    before = os.stat(root).st_ino
    run = setup_caffe({})
    assert run.returncode == 0, run.stderr
    assert "up to date" in run.stderr
    assert os.stat(root).st_ino == before


@build_tools
def test_unreachable_mirror_is_named_and_nothing_is_left_behind(tmp_path):
    run = setup_caffe({"MLN_CAFFE_DIR": str(tmp_path), "MLN_CAFFE": "embedded",
                       "MLN_DEBIAN_MIRROR": UNREACHABLE_MIRROR})
    assert run.returncode != 0
    assert "cannot reach the Debian mirror %s" % UNREACHABLE_MIRROR in run.stderr
    assert "MLN_DEBIAN_MIRROR" in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]


@build_tools
def test_broken_half_built_state_is_never_used(tmp_path):
    # What an interrupted or damaged build leaves: a root without its stamp, a stray build folder.
    (tmp_path / "root" / "usr" / "bin").mkdir(parents=True)
    (tmp_path / "build.abc123" / "root").mkdir(parents=True)
    env = {"MLN_CAFFE_DIR": str(tmp_path), "MLN_CAFFE": "embedded",
           "MLN_DEBIAN_MIRROR": UNREACHABLE_MIRROR}
    run = subprocess.run([str(REPO / "scripts" / "caffe-env"), "caffe", "--version"],
                         env=dict(os.environ, **env), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True)
    assert run.returncode == 125 and "run scripts/setup_caffe.sh" in run.stderr

    run = setup_caffe(env)
    assert "rebuilding it" in run.stderr
    assert run.returncode != 0 and UNREACHABLE_MIRROR in run.stderr
    assert not (tmp_path / "build.abc123").exists()


@build_tools
@pytest.mark.skipif(not os.path.isfile(ROOT_STAMP),
                    reason="no embedded root's stamp (%s) to copy%s" % (
                        ROOT_STAMP, ": the user's own Caffe (MLN_CAFFE=host)" if HOST_MODE
                        else ""))
def test_damaged_stamped_root_is_detected_and_rebuilt(tmp_path):
    # A stamped root whose caffe no longer runs (files deleted by hand, say).
    (tmp_path / "root").mkdir()
    shutil.copy(os.path.join(STATE, "root", ".mln-stamp"), str(tmp_path / "root" / ".mln-stamp"))
    run = setup_caffe({"MLN_CAFFE_DIR": str(tmp_path), "MLN_CAFFE": "embedded",
                       "MLN_DEBIAN_MIRROR": UNREACHABLE_MIRROR})
    assert "is broken" in run.stderr and "rebuilding it" in run.stderr
    assert run.returncode != 0


@build_tools
def test_no_root_and_no_user_namespaces_gets_a_clear_message(tmp_path):
    # An ordinary user (nobody) in a sandbox that forbids new user namespaces.
    state = tmp_path / "state"
    state.mkdir()
    os.chmod(str(tmp_path), 0o755)
    os.chmod(str(state), 0o777)
    script = tmp_path / "setup_caffe.sh"
    shutil.copy(SETUP, str(script))
    os.chmod(str(script), 0o755)
    sandbox = ["bwrap", "--unshare-user", "--uid", "65534", "--gid", "65534", "--disable-userns",
               "--bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
               "--bind", str(tmp_path), str(tmp_path), str(script)]
    run = setup_caffe({"MLN_CAFFE_DIR": str(state), "MLN_CAFFE": "embedded"}, command=sandbox,
                      cwd=tmp_path)
    assert run.returncode != 0
    assert "unprivileged user namespaces are not available" in run.stderr
    assert "MLN_CAFFE=host" in run.stderr
    assert not (state / "root").exists()
