"""generators/make_net.py on values that cannot make a net: one line naming the option, exit
code 1, no traceback, nothing written; an --out it cannot write to; its help's warning."""
import subprocess
import sys

import pytest

from generators import make_net, net_files
from tests.conftest import REPO

MAKE_NET = str(REPO / "generators" / "make_net.py")


def make_net_cli(*args):
    return subprocess.run([sys.executable, MAKE_NET, "--model", "mln"] + [str(a) for a in args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)


@pytest.mark.parametrize("flags, message", [
    (["--crop", "0"], "--crop must be a multiple of 8 and at least 8 (one label cell), got 0"),
    (["--crop", "-8"], "--crop must be a multiple of 8 and at least 8 (one label cell), got -8"),
    (["--batch", "0"], "--batch must be at least 1, got 0"),
    (["--iter-size", "0"], "--iter-size must be at least 1, got 0"),
    (["--max-iter", "-1"], "--max-iter must be at least 1, got -1"),
    (["--base-lr", "nan"], "--base-lr must be 0 or more and finite, got nan"),
    (["--deploy-size", "0x0"],
     "--deploy-size must be HEIGHTxWIDTH of at least 1 pixel each, got 0x0"),
    (["--seed", "-1"], "--seed must be in 0 .. 4294967295, got -1"),
])
def test_a_value_that_cannot_make_a_net_is_one_line_and_writes_nothing(tmp_path, flags,
                                                                       message):
    out = tmp_path / "nets"
    done = make_net_cli("--out", out, *flags)
    assert (done.returncode, done.stderr) == (1, "make_net.py: error: %s\n" % message)
    assert not out.exists()


@pytest.mark.parametrize("below", ["", "sub"])
def test_an_out_that_is_a_file_is_one_line(tmp_path, below):
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    out = taken / below if below else taken
    done = make_net_cli("--out", out)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("make_net.py: error: --out %s: cannot write " % out)
    assert "(Not a directory): give a folder you can write to" in done.stderr
    assert taken.read_text() == "not a folder"


def test_an_out_it_cannot_write_keeps_the_old_files(tmp_path, monkeypatch):
    """A write that fails on the third file (read-only, full) leaves the earlier set whole:
    a new train net beside an old solver would train something nobody asked for. (Simulated:
    the tests run as root, whom a read-only folder does not stop.)"""
    make_net.main(["--model", "mln", "--out", str(tmp_path), "--crop", "64"])
    old = {path: path.read_text() for path in (tmp_path / "mln").iterdir()}
    real_open, opened = open, []

    def open_failing_third(path, *args, **kwargs):
        opened.append(path)
        if len(opened) == 3:
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr(net_files, "open", open_failing_third, raising=False)
    with pytest.raises(SystemExit) as refused:
        make_net.main(["--model", "mln", "--out", str(tmp_path), "--crop", "96"])
    assert str(refused.value) == (
        "make_net.py: error: --out %s: cannot write %s (Permission denied): give a folder you "
        "can write to" % (tmp_path, opened[2]))
    assert {path: path.read_text() for path in (tmp_path / "mln").iterdir()} == old


def test_the_help_says_the_default_out_overwrites_the_committed_files():
    shown = subprocess.run([sys.executable, MAKE_NET, "--help"], stdout=subprocess.PIPE,
                           universal_newlines=True, check=True).stdout
    assert "overwrites the committed prototxt/<model>/ files" in " ".join(shown.split())
