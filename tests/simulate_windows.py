"""Run the fast test suite as if on Windows, on this POSIX machine.

What it changes before the tests import ``channels``: ``sys.platform`` reads
``"win32"`` (so every platform branch of the package takes its Windows side),
``import fcntl`` fails, and ``selectors`` offers only ``SelectSelector`` (so
``DefaultSelector`` is it, as on Windows). POSIX-only tests skip themselves.

What it proves: the package imports without POSIX-only modules; its Windows
branches (no faucet for PipeChannel, blocking sinks, send() instead of
sendmsg, select() to wait for writability, no fstat checks, the 512-socket
limit) are consistent; the socket path works on select().

What it cannot prove: Winsock itself — WSAE* error codes and how CPython maps
them, select() on real SOCKET handles, socketpair() emulated over loopback
TCP. The GitHub Actions Windows job covers those.

Usage: python tests/simulate_windows.py [pytest arguments]
"""

import os
import selectors
import sys

# What the tests use, imported on the real platform first: a library that
# looks at sys.platform while it imports would otherwise half-initialise.
import hypothesis
import hypothesis.strategies  # noqa: F401
import pytest


def main() -> int:
    sys.modules["fcntl"] = None  # type: ignore[assignment]  # import fcntl -> ImportError
    for name in list(sys.modules):
        if name == "channels" or name.startswith("channels."):
            del sys.modules[name]
    for name in ("PollSelector", "EpollSelector", "DevpollSelector", "KqueueSelector"):
        if hasattr(selectors, name):
            delattr(selectors, name)
    selectors.DefaultSelector = selectors.SelectSelector  # type: ignore[misc]
    sys.platform = "win32"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return pytest.main(
        [
            "-m",
            "not stress and not fault",
            "-p",
            "no:cacheprovider",
            "--capture=sys",  # fd capture has a Windows-only console workaround
            "-W",
            "ignore::pytest.PytestAssertRewriteWarning",  # hypothesis, imported above
            "--rootdir",
            root,
            os.path.join(root, "tests"),
            *sys.argv[1:],
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
