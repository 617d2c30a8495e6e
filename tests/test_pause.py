"""pause_reading() / resume_reading(): backpressure on the reading side; every selector."""

from channels import (
    Poller,
)
from channels.testing import TestChannel

from .conftest import DEADLINE, poll_until


def test_pause_reading_stops_reports_until_resumed(poller: Poller) -> None:
    channel = TestChannel(buffering="line")
    poller.register(channel)
    poller.pause_reading(channel)
    poller.pause_reading(channel)  # again: nothing happens
    channel.put(b"held\n")
    assert poller.poll(0.05) == []
    poller.resume_reading(channel)
    poller.resume_reading(channel)  # again: nothing happens
    assert poll_until(poller, lambda r: len(r) >= 1) == [(b"held\n", channel)]


def test_a_paused_channel_still_gets_its_output_delivered(poller: Poller) -> None:
    channel = TestChannel()
    poller.register(channel)
    channel.throttle_writes(0)  # the first send fails: the output is queued
    channel.write(b"queued while paused")
    poller.pause_reading(channel)
    assert channel.write_buffer_size > 0
    for _ in range(50):
        if not channel.write_buffer_size:
            break
        poller.poll(0.01)
    assert channel.write_buffer_size == 0
    assert channel.get() == b"queued while paused"


def test_resume_reading_returns_frames_already_buffered_without_waiting(
    poller: Poller,
) -> None:
    channel = TestChannel(buffering="line")
    poller.register(channel)
    channel.put(b"a\nb\n")
    assert channel.read() == b"a\n"  # b\n now sits in the framer, not in the socket
    poller.pause_reading(channel)
    poller.resume_reading(channel)
    assert poller.poll(DEADLINE) == [(b"b\n", channel)]


def test_pause_of_an_unregistered_channel_does_nothing(poller: Poller) -> None:
    channel = TestChannel()
    poller.pause_reading(channel)
    poller.resume_reading(channel)
    channel.close()
