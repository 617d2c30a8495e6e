"""wakeup(): from another thread, from a signal handler, before and after close."""

import signal
import threading
import time
from typing import Callable, List

from channels import Poller
from channels.testing import TestChannel

from .conftest import DEADLINE, poll_until, posix_only


def test_wakeup_from_another_thread_ends_a_blocking_poll(poller: Poller) -> None:
    channel = TestChannel()
    poller.register(channel)
    waker = threading.Timer(0.1, poller.wakeup)
    start = time.monotonic()
    waker.start()
    assert poller.poll(None) == []
    assert time.monotonic() - start < DEADLINE
    waker.join()
    channel.put(b"then data")
    assert poll_until(poller, lambda r: len(r) >= 1) == [(b"then data", channel)]


@posix_only
def test_wakeup_from_a_signal_handler_ends_a_blocking_poll(poller: Poller) -> None:
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: poller.wakeup())
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        start = time.monotonic()
        assert poller.poll(DEADLINE) == []
        assert time.monotonic() - start < DEADLINE / 2
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_wakeup_before_poll_makes_the_next_poll_return_at_once(poller: Poller) -> None:
    for _ in range(100_000):  # far more than the socket holds: never blocks
        poller.wakeup()
    start = time.monotonic()
    assert poller.poll(DEADLINE) == []
    assert time.monotonic() - start < DEADLINE / 2
    assert poller.poll(0.05) == []  # all wakeups were consumed at once


def test_wakeup_after_close_does_nothing(selector_cls: type) -> None:
    poller = Poller(selector=selector_cls)
    poller.close()
    poller.wakeup()


def test_wakeup_never_raises_while_another_thread_closes_the_poller(
    make_poller: Callable[..., Poller],
) -> None:
    errors: List[BaseException] = []
    for _ in range(100):
        poller = make_poller()
        stop = threading.Event()

        def hammer(target: Poller = poller, stop: threading.Event = stop) -> None:
            try:
                while not stop.is_set():
                    target.wakeup()
            except BaseException as exc:  # (what the test looks for)
                errors.append(exc)

        thread = threading.Thread(target=hammer)
        thread.start()
        poller.close()
        poller.wakeup()  # after close too
        stop.set()
        thread.join(DEADLINE)
    assert errors == []
