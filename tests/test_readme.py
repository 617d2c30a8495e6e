"""The README's quick start is examples/quickstart.py, and it runs."""

import pathlib
import subprocess
import sys
import textwrap

from .conftest import posix_only

ROOT = pathlib.Path(__file__).resolve().parent.parent


def block_after(marker: str) -> str:
    """The literal block (``::``) that follows the README line ending with marker."""
    readme = (ROOT / "README.rst").read_text()
    start = readme.index(marker + "::\n\n") + len(marker + "::\n\n")
    lines = []
    for line in readme[start:].splitlines():
        if line and not line.startswith("    "):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines)).strip() + "\n"


def quickstart_block() -> str:
    return block_after("it runs as pasted")


def test_readme_quick_start_is_the_example_file() -> None:
    example = (ROOT / "examples" / "quickstart.py").read_text()
    assert example.endswith(quickstart_block())


@posix_only
def test_quick_start_runs_and_prints_the_replies() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=15,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["accepted a client", "[b'HELLO\\n', b'WORLD\\n']"]


def test_testing_your_application_example_runs() -> None:
    code = block_after("``EAGAIN``, resets")
    assert "reset_peer()" in code
    exec(compile(code, "README.rst", "exec"), {})
