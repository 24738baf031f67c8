"""The GPU pieces that need no CUDA build: the architectures setup_caffe.sh compiles for, how
caffe-env binds the host's NVIDIA driver (from a fake ldconfig cache), gpu_check.sh on a machine
without a GPU, and train's reminder to run it."""
import os
import platform
import subprocess
import sys

import pytest

from tests.conftest import REPO

SETUP = str(REPO / "scripts" / "setup_caffe.sh")
CAFFE_ENV = str(REPO / "scripts" / "caffe-env")
GPU_CHECK = str(REPO / "scripts" / "gpu_check.sh")
DRIVER_DIR = "/usr/lib/mln-host-driver"
ABI = {"x86_64": "x86-64", "aarch64": "AArch64"}.get(platform.machine())


def run(command, env=None, cwd=REPO):
    return subprocess.run([str(part) for part in command], cwd=str(cwd), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)


def tool(folder, name, script):
    """An executable `name` in `folder` that runs the shell `script`."""
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)
    return path


def host_has_gpu():
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/dev/nvidia0")


# ---- the GPU architectures of a CUDA build

def print_arch(tmp_path, nvidia_smi=None, arch=None):
    bin_dir = tmp_path / "bin"
    if nvidia_smi is None:
        tool(bin_dir, "nvidia-smi", "exit 9")                 # a driver that answers nothing
    else:
        tool(bin_dir, "nvidia-smi", "printf '%s'" % nvidia_smi)
    env = dict(os.environ, PATH="%s:%s" % (bin_dir, os.environ["PATH"]))
    env.pop("MLN_CUDA_ARCH", None)
    if arch is not None:
        env["MLN_CUDA_ARCH"] = arch
    done = run([SETUP, "--print-cuda-arch"], env=env)
    fields = dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)
    return done, fields


def test_without_a_gpu_the_portable_list_with_ptx_for_newer_gpus(tmp_path):
    done, fields = print_arch(tmp_path)
    assert done.returncode == 0, done.stderr
    assert fields["bin"] == "60 61 70 75 80 86" and fields["ptx"] == "86"
    assert "portable" in fields["why"]


@pytest.mark.parametrize("caps, bin_archs", [("8.6\n", "86"), ("6.1\n6.1\n", "61"),
                                              ("8.6\n7.5\n", "75 86")])
def test_the_host_gpus_compute_capability_is_compiled_for(tmp_path, caps, bin_archs):
    done, fields = print_arch(tmp_path, nvidia_smi=caps)
    assert done.returncode == 0, done.stderr
    assert fields["bin"] == bin_archs
    assert fields["ptx"] == bin_archs.split()[-1]


def test_a_gpu_newer_than_cuda_11_2_gets_ptx_to_jit(tmp_path):
    done, fields = print_arch(tmp_path, nvidia_smi="9.0\n")
    assert done.returncode == 0, done.stderr
    assert (fields["bin"], fields["ptx"]) == ("86", "86")
    assert "JIT" in fields["why"]


def test_a_gpu_older_than_cuda_11_2_falls_back_to_the_portable_list(tmp_path):
    done, fields = print_arch(tmp_path, nvidia_smi="3.0\n")
    assert fields["bin"] == "60 61 70 75 80 86"
    assert "older than CUDA 11.2 supports" in done.stderr


def test_the_user_can_name_the_architectures(tmp_path):
    done, fields = print_arch(tmp_path, nvidia_smi="8.6\n", arch="7.5,sm_61")
    assert done.returncode == 0, done.stderr
    assert (fields["bin"], fields["ptx"], fields["why"]) == ("61 75", "75", "MLN_CUDA_ARCH")
    done, _ = print_arch(tmp_path, arch="30")
    assert done.returncode != 0 and "not an architecture CUDA 11.2 compiles for" in done.stderr


def test_unknown_caffe_choice_names_the_cuda_one(tmp_path):
    done = run([SETUP], env=dict(os.environ, MLN_CAFFE="gpu", MLN_CAFFE_DIR=str(tmp_path)))
    assert done.returncode != 0
    assert "auto, host, embedded or embedded-cuda" in done.stderr


def test_cuda_build_with_an_unreachable_mirror_leaves_nothing(tmp_path):
    env = dict(os.environ, MLN_CAFFE_DIR=str(tmp_path), MLN_CAFFE="embedded-cuda",
               MLN_DEBIAN_MIRROR="http://127.0.0.1:9/debian")
    done = run([SETUP], env=env)
    assert done.returncode != 0
    assert "cannot reach the Debian mirror http://127.0.0.1:9/debian" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]


# ---- caffe-env and the host's driver

def fake_cuda_state(tmp_path):
    """A state folder whose CUDA root exists as far as caffe-env's dry run looks."""
    state = tmp_path / "state"
    (state / "root-cuda").mkdir(parents=True)
    (state / "root-cuda" / ".mln-stamp").write_text("stamp123\n")
    (state / "root-cuda" / ".mln-cuda-arch").write_text("bin=86\nptx=86")
    (state / "cuda.env").write_text("MLN_CAFFE_ROOT=root-cuda\n")
    return state


def fake_driver(tmp_path, with_libcuda=True):
    """Driver libraries in tmp_path/driver and a fake ldconfig listing them (a 32-bit libcuda
    and an unrelated library too) -> PATH for caffe-env."""
    lib64, lib32 = tmp_path / "driver" / "lib64", tmp_path / "driver" / "lib32"
    lib64.mkdir(parents=True)
    lib32.mkdir(parents=True)
    names = ["libnvidia-ml.so.1", "libnvidia-ptxjitcompiler.so.1", "libnvidia-gpucomp.so.550.54",
             "libfoo.so.1"] + (["libcuda.so.1"] if with_libcuda else [])
    lines = []
    for name in names:
        real = lib64 / (name.split(".so")[0] + ".so.550.54")
        real.write_text("elf")
        if name != real.name:
            (lib64 / name).symlink_to(real.name)
        lines.append("\t%s (libc6,%s) => %s" % (name, ABI, lib64 / name))
    (lib32 / "libcuda.so.1").write_text("elf32")
    lines.append("\tlibcuda.so.1 (libc6) => %s" % (lib32 / "libcuda.so.1"))
    listing = tmp_path / "ldconfig.txt"
    listing.write_text("%d libs found in cache `/etc/ld.so.cache'\n%s\n" % (len(lines),
                                                                          "\n".join(lines)))
    tool(tmp_path / "bin", "ldconfig", 'cat "%s"' % listing)
    return "%s:%s" % (tmp_path / "bin", os.environ["PATH"])


def dry_run(state, path, extra_env=(), sandbox=()):
    env = dict(os.environ, MLN_CAFFE_DIR=str(state), MLN_CAFFE_ENV_DRY_RUN="1", PATH=path)
    env.pop("MLN_CAFFE", None)
    env.pop("MLN_IN_CAFFE_ENV", None)
    env.update(extra_env)
    return run(list(sandbox) + [CAFFE_ENV, "caffe", "device_query", "-gpu", "0"], env=env)


def pairs(argv):
    return list(zip(argv, argv[1:], argv[2:]))


@pytest.mark.skipif(ABI is None, reason="the fake ldconfig cache is written for x86-64/AArch64")
def test_driver_libraries_and_devices_are_bound_never_copied(tmp_path):
    state = fake_cuda_state(tmp_path)
    path = fake_driver(tmp_path)
    # A sandbox in which /dev has NVIDIA device nodes (stand-ins, bound from /dev/null).
    sandbox = ["bwrap", "--bind", "/", "/", "--dev", "/dev", "--dev-bind", "/dev/null",
               "/dev/nvidia0", "--dev-bind", "/dev/null", "/dev/nvidiactl", "--proc", "/proc"]
    done = dry_run(state, path, sandbox=sandbox)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    argv = done.stdout.splitlines()
    lib64 = tmp_path / "driver" / "lib64"
    binds = [(source, target) for flag, source, target in pairs(argv) if flag == "--ro-bind"]
    assert (str(lib64 / "libcuda.so.550.54"), DRIVER_DIR + "/libcuda.so.1") in binds
    assert (str(lib64 / "libnvidia-ml.so.550.54"), DRIVER_DIR + "/libnvidia-ml.so.1") in binds
    assert (str(lib64 / "libnvidia-ptxjitcompiler.so.550.54"),
            DRIVER_DIR + "/libnvidia-ptxjitcompiler.so.1") in binds
    assert (str(lib64 / "libnvidia-gpucomp.so.550.54"),
            DRIVER_DIR + "/libnvidia-gpucomp.so.550.54") in binds
    assert not any("libfoo" in source or "lib32" in source for source, _ in binds)
    assert ("--tmpfs", DRIVER_DIR) in list(zip(argv, argv[1:]))
    assert ("--dev-bind", "/dev/nvidia0", "/dev/nvidia0") in pairs(argv)
    assert ("--dev-bind", "/dev/nvidiactl", "/dev/nvidiactl") in pairs(argv)
    assert ("--setenv", "LD_LIBRARY_PATH", DRIVER_DIR) in pairs(argv)
    assert ("--setenv", "MLN_CAFFE_MODE", "embedded-cuda") in pairs(argv)
    assert ("--setenv", "MLN_GPU_CHECK", "not-run") in pairs(argv)
    assert argv[:4] == ["bwrap", "--bind", str(state / "root-cuda"), "/"]
    # LD_LIBRARY_PATH is set after the host's is removed, and the command comes last
    assert max(i for i, a in enumerate(argv) if a == "LD_LIBRARY_PATH") > \
        argv.index("--unsetenv")
    assert argv[-4:] == ["caffe", "device_query", "-gpu", "0"]


@pytest.mark.skipif(ABI is None, reason="the fake ldconfig cache is written for x86-64/AArch64")
@pytest.mark.skipif(host_has_gpu(), reason="this host has NVIDIA devices")
def test_without_a_driver_one_line_says_so_and_nothing_is_bound(tmp_path):
    state = fake_cuda_state(tmp_path)
    done = dry_run(state, fake_driver(tmp_path, with_libcuda=False))
    assert done.returncode == 0
    assert done.stderr.count("\n") == 1
    assert "no NVIDIA driver on this host" in done.stderr and "CPU only" in done.stderr
    assert DRIVER_DIR not in done.stdout and "/dev/nvidia" not in done.stdout
    assert "LD_LIBRARY_PATH\n/" not in done.stdout

    # libcuda without device nodes: the kernel module is named
    done = dry_run(state, fake_driver(tmp_path / "second"))
    assert done.stderr.count("\n") == 1 and "kernel module" in done.stderr
    assert DRIVER_DIR not in done.stdout


def test_a_passed_gpu_check_on_this_build_is_told_to_the_command(tmp_path):
    state = fake_cuda_state(tmp_path)
    path = os.environ["PATH"]
    argv = dry_run(state, path).stdout.splitlines()
    build = argv[argv.index("MLN_CAFFE_BUILD") + 1]
    assert build.startswith("root-cuda stamp123")
    (state / "gpu-check.ok").write_text(build + "\n{}\n")
    check = ("--setenv", "MLN_GPU_CHECK", "passed")
    assert check in pairs(dry_run(state, path).stdout.splitlines())
    # a rebuilt root is another build: not checked yet
    (state / "root-cuda" / ".mln-stamp").write_text("stamp456\n")
    check = ("--setenv", "MLN_GPU_CHECK", "not-run")
    assert check in pairs(dry_run(state, path).stdout.splitlines())


def test_which_root_caffe_env_uses(tmp_path):
    state = fake_cuda_state(tmp_path)
    (state / "root").mkdir()
    (state / "root" / ".mln-stamp").write_text("cpu\n")
    path = os.environ["PATH"]
    # auto (MLN_CAFFE unset): the root the last set-up chose
    assert dry_run(state, path).stdout.splitlines()[2] == str(state / "root-cuda")
    cpu = dry_run(state, path, {"MLN_CAFFE": "embedded"}).stdout.splitlines()
    assert cpu[2] == str(state / "root")
    assert DRIVER_DIR not in cpu and "MLN_GPU_CHECK" not in cpu
    (state / "cuda.env").unlink()
    assert dry_run(state, path).stdout.splitlines()[2] == str(state / "root")
    assert dry_run(state, path, {"MLN_CAFFE": "embedded-cuda"}).stdout.splitlines()[2] == \
        str(state / "root-cuda")
    # asked for the CUDA root where there is none
    done = dry_run(tmp_path / "empty", path, {"MLN_CAFFE": "embedded-cuda"})
    assert done.returncode == 125 and "run scripts/setup_caffe.sh first" in done.stderr
    assert "MLN_CAFFE=embedded-cuda" in done.stderr


# ---- gpu_check.sh and the reminder in train

@pytest.mark.skipif(host_has_gpu(), reason="this host has an NVIDIA GPU")
def test_gpu_check_without_a_gpu_says_so_in_one_line(tmp_path):
    done = run([GPU_CHECK, "--json", tmp_path / "out.json"], cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("gpu_check: no NVIDIA GPU on this machine")
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []            # no core file, no half-written JSON


def test_gpu_check_help_names_its_options():
    done = run([GPU_CHECK, "--help"])
    assert done.returncode == 0
    assert "--gpu" in done.stdout and "--json" in done.stdout


def test_train_reminds_once_to_run_the_gpu_check(tmp_path, monkeypatch):
    from scripts import caffe_session
    tool(tmp_path / "bin", "caffe", 'echo "I1 device_query] Name: Fake GPU"; exit 0')
    monkeypatch.setenv("PATH", "%s:%s" % (tmp_path / "bin", os.environ["PATH"]))
    monkeypatch.setenv("MLN_GPU_CHECK", "not-run")
    captured = []
    monkeypatch.setattr(sys, "stderr", type("E", (), {"write": lambda self, t: captured.append(t),
                                                      "flush": lambda self: None})())
    assert caffe_session.choose_device("0,1", has_nccl=lambda: True) == ([0, 1], None)
    assert len(captured) == 1 and "./scripts/gpu_check.sh" in captured[0]
    monkeypatch.setenv("MLN_GPU_CHECK", "passed")
    assert caffe_session.choose_device("0") == ([0], None)
    assert len(captured) == 1
