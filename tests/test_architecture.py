"""The rooms of channels/ stay rooms: imports point one way, nothing grows too big.

The order below is the one README "Development" draws: a module may import
only modules above it, so framing never imports IO, channels never import
the Poller, and the Poller's rooms never import the Poller.
"""

import ast
import pathlib
from typing import List

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "channels"

LAYERS = [
    "_errors",
    "_checks",
    "_fds",
    "_protocols",
    "_rare",
    "_framers",
    "buffering",
    "_outbox",
    "_writing",
    "_reading",
    "_base",
    "channel",
    "testing",
    "events",
    "_frames_into",
    "_records",
    "_lifecycle",
    "_selecting",
    "_held",
    "_registry",
    "_audit",
    "_accept",
    "_closing",
    "_input",
    "_turns",
    "poller",
    "__init__",
    "__main__",
]

MAX_MODULE_LINES = 450
MAX_CLASS_LINES = 350


def _package_imports(tree: ast.AST) -> List[str]:
    names: List[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                names.append(node.module)
            else:
                names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("channels"):
            names.append((node.module or "").split(".")[-1])
    return names


def test_every_module_has_a_place_in_the_layers() -> None:
    assert sorted(path.stem for path in PACKAGE.glob("*.py")) == sorted(LAYERS)


@pytest.mark.parametrize("module", LAYERS)
def test_a_module_imports_only_the_layers_below_it(module: str) -> None:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    above = set(LAYERS[LAYERS.index(module) :])
    if module == "__main__":  # the CLI uses the public API only
        above |= set(LAYERS) - {"__init__"}
    wrong = [name for name in _package_imports(tree) if name in above and name != "channels"]
    assert not wrong, f"{module} imports {wrong}, which sit above it"


@pytest.mark.parametrize("module", [layer for layer in LAYERS if layer != "__main__"])
def test_no_module_or_class_grows_past_its_size(module: str) -> None:
    text = (PACKAGE / f"{module}.py").read_text()
    assert text.count("\n") <= MAX_MODULE_LINES, f"{module}.py: {text.count(chr(10))} lines"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ClassDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            assert length <= MAX_CLASS_LINES, f"{module}.{node.name}: {length} lines"
