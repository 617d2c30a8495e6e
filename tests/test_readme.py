"""The README's quick start is examples/quickstart.py, and it runs."""

import pathlib
import subprocess
import sys
import textwrap

ROOT = pathlib.Path(__file__).resolve().parent.parent


def quickstart_block() -> str:
    readme = (ROOT / "README.rst").read_text()
    start = readme.index("it runs as pasted::\n\n") + len("it runs as pasted::\n\n")
    end = readme.index("\nDevelopment\n")
    return textwrap.dedent(readme[start:end]).strip() + "\n"


def test_readme_quick_start_is_the_example_file() -> None:
    example = (ROOT / "examples" / "quickstart.py").read_text()
    assert example.endswith(quickstart_block())


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
