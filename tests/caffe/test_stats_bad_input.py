"""generators/stats.py on what is not a countable net: one line naming the file or option and
what to give, exit code 1; never Caffe's abort (exit 134, a glog check) or a traceback."""
import subprocess
import sys

import pytest

from tests.conftest import REPO

STATS = str(REPO / "generators" / "stats.py")
DEPLOY = str(REPO / "prototxt" / "mln" / "deploy.prototxt")
SOLVER = str(REPO / "prototxt" / "mln" / "solver.prototxt")


def stats_cli(*args):
    return subprocess.run([sys.executable, STATS] + [str(a) for a in args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)


def assert_one_line(done, message):
    assert (done.returncode, done.stderr, done.stdout) == (
        1, "stats.py: error: %s\n" % message, "")


@pytest.mark.parametrize("flags, message", [
    (["--height", "0"], "--height must be at least 1 pixel, got 0"),
    (["--height", "-5"], "--height must be at least 1 pixel, got -5"),
    (["--width", "0"], "--width must be at least 1 pixel, got 0"),
])
def test_an_empty_or_negative_input_size_is_refused_before_caffe(flags, message):
    assert_one_line(stats_cli(DEPLOY, *flags), message)


def test_a_solver_is_refused_naming_the_net_to_give():
    assert_one_line(stats_cli(SOLVER), "%s is a solver prototxt, not a net: give the net it "
                                       "trains (its net: 'prototxt/mln/train.prototxt')" % SOLVER)


def test_an_image_is_refused(tmp_path):
    image = tmp_path / "person.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)))
    assert_one_line(stats_cli(image), "%s is not a text prototxt (a binary file?): give a net "
                                      "prototxt, e.g. prototxt/mln/deploy.prototxt" % image)


def test_a_text_that_is_no_net_and_an_empty_file_are_refused(tmp_path):
    notes = tmp_path / "notes.prototxt"
    notes.write_text("these are notes\n")
    done = stats_cli(notes)
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("stats.py: error: %s is not a net prototxt (1:1 : " % notes)
    assert done.stderr.endswith("): give a net prototxt, e.g. prototxt/mln/deploy.prototxt\n")
    empty = tmp_path / "empty.prototxt"
    empty.write_text("")
    assert_one_line(stats_cli(empty), "%s holds no layers: give a net prototxt, e.g. "
                                      "prototxt/mln/deploy.prototxt" % empty)


def test_a_json_file_it_cannot_write_is_one_line_after_the_table(tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("")
    done = stats_cli(DEPLOY, "--totals-only", "--json-file", taken / "stats.json")
    assert done.returncode == 1 and "21,278,912" in done.stdout
    assert done.stderr == "stats.py: error: --json-file %s: cannot write it (Not a directory)\n" % (
        taken / "stats.json")
