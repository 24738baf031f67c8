"""The Python commands of the READMEs name the environment that has their modules: a bare
`python` is whichever the host has (often without cv2, lmdb or Caffe), so a reader copying it
gets an ImportError. Each example's environment has every module its tool imports."""
import ast
import re
import subprocess

import pytest

from tests.conftest import REPO

DOCS = ("README.md", "BENCHMARKS.md", "conventions/README.md", "data_prep/README.md",
        "data_prep/SYNTHETIC.md", "generators/README.md", "inference/README.md",
        "python_layers/README.md", "scripts/README.md")
ENVIRONMENTS = {".venv/bin/python": [str(REPO / ".venv" / "bin" / "python")],
                "scripts/caffe-env": [str(REPO / "scripts" / "caffe-env"), "python"]}


def shell_commands(doc):
    """The commands of the ```sh blocks of `doc`, continuation lines joined, comments cut."""
    text = (REPO / doc).read_text()
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            command = line.split("#")[0].split()
            if command:
                yield command


def python_tools():
    """{(environment, tool script)} of the examples that run a Python file."""
    tools = set()
    for doc in DOCS:
        for command in shell_commands(doc):
            if command[0] == ".venv/bin/python" and command[1].endswith(".py"):
                tools.add((command[0], command[1]))
            elif command[:2] == ["scripts/caffe-env", "python"] and command[2].endswith(".py"):
                tools.add((command[0], command[2]))
    return sorted(tools)


def test_no_example_runs_a_bare_python():
    bare = ["%s: %s" % (doc, " ".join(command)) for doc in DOCS
            for command in shell_commands(doc) if re.match(r"python[\d.]*$", command[0])]
    assert bare == []


def imported_modules(tool):
    """The top-level modules `tool` imports anywhere (also inside functions), but its own
    folder's: what the environment must have for every option of the tool to work."""
    tree = ast.parse((REPO / tool).read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    names |= {node.module for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.module and not node.level}
    local = {path.stem for path in (REPO / tool).parent.glob("*.py")}
    return sorted({name.split(".")[0] for name in names} - local)


FIND_MISSING = ("import importlib.util, sys; print(' '.join(m for m in sys.argv[1:] "
                "if importlib.util.find_spec(m) is None))")


@pytest.mark.parametrize("environment, tool", python_tools())
def test_each_python_example_has_its_modules_in_the_environment_it_names(environment, tool):
    done = subprocess.run(ENVIRONMENTS[environment] + ["-c", FIND_MISSING]
                          + imported_modules(tool), cwd=str(REPO), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True)
    assert (done.returncode, done.stdout.strip()) == (0, ""), (
        "%s %s lacks: %s" % (environment, tool, done.stdout[-2000:]))
