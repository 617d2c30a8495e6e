"""Framing on plain bytes: no fds here."""

from typing import List, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels import (
    Buffering,
    BulkFramer,
    BytesBuffering,
    EndpointClosedException,
    Framer,
    LineBuffering,
    LineTooLong,
)
from channels.buffering import DEFAULT_MAX_LINE_LENGTH, as_buffering


def frames_of(framer: Framer) -> List[bytes]:
    frames = []
    while True:
        frame = framer.next_frame()
        if frame is None:
            return frames
        frames.append(frame)


def test_line_framer_returns_lines_with_their_delimiter() -> None:
    framer = LineBuffering().new_framer()
    framer.feed(b"one\ntwo\nthr")
    assert frames_of(framer) == [b"one\n", b"two\n"]
    framer.feed(b"ee\n")
    assert frames_of(framer) == [b"three\n"]


def test_line_framer_keeps_a_partial_line_until_eof() -> None:
    framer = LineBuffering().new_framer()
    framer.feed(b"partial")
    assert framer.next_frame() is None
    framer.feed_eof()
    assert framer.next_frame() == b"partial"
    assert framer.next_frame() is None


def test_line_framer_at_eof_with_nothing_buffered_has_no_frame() -> None:
    framer = LineBuffering().new_framer()
    framer.feed(b"whole\n")
    framer.feed_eof()
    framer.feed_eof()
    assert frames_of(framer) == [b"whole\n"]


def test_line_framer_finds_a_delimiter_split_across_feeds() -> None:
    framer = LineBuffering(b"\r\n").new_framer()
    framer.feed(b"abc\r")
    assert framer.next_frame() is None
    framer.feed(b"\nrest")
    assert framer.next_frame() == b"abc\r\n"
    assert framer.next_frame() is None


def test_line_framer_with_a_long_delimiter_split_three_ways() -> None:
    framer = LineBuffering(b"<END>").new_framer()
    for piece in (b"x<E", b"N", b"D>y"):
        framer.feed(piece)
        if piece != b"D>y":
            assert framer.next_frame() is None
    assert framer.next_frame() == b"x<END>"


def test_line_framer_handles_empty_lines() -> None:
    framer = LineBuffering().new_framer()
    framer.feed(b"\n\n\n")
    assert frames_of(framer) == [b"\n", b"\n", b"\n"]


def test_bytes_framer_returns_everything_buffered_in_one_frame() -> None:
    framer = BytesBuffering().new_framer()
    assert framer.next_frame() is None
    framer.feed(b"a\n")
    framer.feed(b"b")
    assert framer.next_frame() == b"a\nb"
    assert framer.next_frame() is None
    framer.feed_eof()
    assert framer.next_frame() is None


def test_each_framer_has_its_own_state() -> None:
    strategy = LineBuffering()
    first, second = strategy.new_framer(), strategy.new_framer()
    first.feed(b"from first ")
    second.feed(b"from second\n")
    assert first.next_frame() is None
    assert second.next_frame() == b"from second\n"


@pytest.mark.parametrize("delimiter", [b"", bytearray(b"\n"), "\n", None])
def test_line_buffering_rejects_a_bad_delimiter(delimiter: object) -> None:
    error = ValueError if delimiter == b"" else TypeError
    with pytest.raises(error, match="delimiter"):
        LineBuffering(delimiter)  # type: ignore[arg-type]


def test_strategies_compare_and_print_as_their_configuration() -> None:
    assert LineBuffering() == LineBuffering(b"\n")
    assert LineBuffering(b"\0") != LineBuffering()
    assert BytesBuffering() == BytesBuffering()
    assert LineBuffering() != BytesBuffering()
    assert len({LineBuffering(), LineBuffering(b"\n"), BytesBuffering()}) == 2
    assert repr(LineBuffering(b"\0")) == "LineBuffering(delimiter=b'\\x00', max_length=1048576)"
    assert LineBuffering(max_length=None) != LineBuffering()
    assert repr(BytesBuffering()) == "BytesBuffering()"
    assert LineBuffering(b"\r\n").delimiter == b"\r\n"


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("line", LineBuffering()),
        ("bytes", BytesBuffering()),
        (None, BytesBuffering()),
        ("", BytesBuffering()),
        ("LINE", BytesBuffering()),
        (b"line", BytesBuffering()),
        (0, BytesBuffering()),
    ],
)
def test_as_buffering_treats_every_value_but_line_as_bytes(
    argument: object, expected: Buffering
) -> None:
    assert as_buffering(argument) == expected


def test_as_buffering_passes_a_strategy_through() -> None:
    strategy = LineBuffering(b"\0")
    assert as_buffering(strategy) is strategy


class Netstring:
    """A user's own strategy: length-prefixed frames, b'5:hello,'."""

    name = "netstring"

    def new_framer(self) -> Framer:
        return _NetstringFramer()


class _NetstringFramer:
    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> None:
        self.buffer += data

    def feed_eof(self) -> None:
        pass

    def next_frame(self) -> Optional[bytes]:
        head, colon, rest = self.buffer.partition(b":")
        if not colon or len(rest) <= int(head):
            return None
        size = int(head)
        self.buffer = rest[size + 1 :]
        return rest[:size]


def test_a_custom_strategy_satisfies_the_protocol() -> None:
    strategy = Netstring()
    assert isinstance(strategy, Buffering)
    assert as_buffering(strategy) is strategy
    framer = strategy.new_framer()
    framer.feed(b"5:hello,3:a")
    assert frames_of(framer) == [b"hello"]


# -- properties: any stream, cut anywhere -----------------------------------


def cut(stream: bytes, points: List[int]) -> List[bytes]:
    bounds = sorted({0, len(stream), *(p % (len(stream) + 1) for p in points)})
    return [stream[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


def frame_chunks(framer: Framer, chunks: List[bytes], pull_between: bool) -> List[bytes]:
    """Feed the chunks then EOF; take frames after each chunk or only at the end."""
    frames: List[bytes] = []
    for chunk in chunks:
        framer.feed(chunk)
        if pull_between:
            frames.extend(frames_of(framer))
    framer.feed_eof()
    frames.extend(frames_of(framer))
    return frames


def expected_lines(stream: bytes, delimiter: bytes) -> List[bytes]:
    parts = stream.split(delimiter)
    lines = [part + delimiter for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


streams = st.lists(st.sampled_from([b"a", b"b", b"\n", b"\r", b"\r\n", b"\0", b"xyz"])).map(
    b"".join
)


@settings(max_examples=500)
@given(
    stream=streams,
    points=st.lists(st.integers(min_value=0), max_size=20),
    delimiter=st.sampled_from([b"\n", b"\r\n", b"\0", b"\n\n"]),
    pull_between=st.booleans(),
)
def test_line_framing_yields_exactly_the_lines_of_any_chunking(
    stream: bytes, points: List[int], delimiter: bytes, pull_between: bool
) -> None:
    frames = frame_chunks(LineBuffering(delimiter).new_framer(), cut(stream, points), pull_between)
    assert frames == expected_lines(stream, delimiter)
    assert all(frame.endswith(delimiter) for frame in frames[:-1])


@given(
    stream=streams,
    points=st.lists(st.integers(min_value=0), max_size=20),
    pull_between=st.booleans(),
)
def test_bytes_framing_yields_exactly_the_stream(
    stream: bytes, points: List[int], pull_between: bool
) -> None:
    frames = frame_chunks(BytesBuffering().new_framer(), cut(stream, points), pull_between)
    assert b"".join(frames) == stream
    assert all(frames)


def _too_long(line: bytes, limit: int) -> bool:
    return len(line) - line.endswith(b"\n") > limit


@settings(max_examples=500)
@given(
    stream=streams,
    points=st.lists(st.integers(min_value=0), max_size=20),
    limit=st.integers(min_value=1, max_value=9),
    pull_between=st.booleans(),
    bulk=st.booleans(),
)
def test_bounded_line_framing_gives_every_line_before_the_first_too_long_one(
    stream: bytes, points: List[int], limit: int, pull_between: bool, bulk: bool
) -> None:
    """With ``b'\\n'``, a chunk is cut as it is while no line of it (with the
    partial line before it) can pass the limit, and searched otherwise: on
    either side of that bound, any chunking gives the lines up to the first
    too long, in order, then ``LineTooLong``."""
    framer = LineBuffering(b"\n", max_length=limit).new_framer()
    assert isinstance(framer, BulkFramer)
    frames: List[bytes] = []

    def pull() -> None:
        if bulk:
            frames.extend(framer.take_frames())
            return
        while (frame := framer.next_frame()) is not None:
            frames.append(frame)

    raised: Optional[LineTooLong] = None
    try:
        for chunk in cut(stream, points):
            framer.feed(chunk)
            if pull_between:
                pull()
        framer.feed_eof()
        pull()
        pull()  # (an error found with frames is raised by the next take)
    except LineTooLong as exc:
        raised = exc
    lines = expected_lines(stream, b"\n")
    good = 0
    while good < len(lines) and not _too_long(lines[good], limit):
        good += 1
    assert frames == lines[:good]
    assert (raised is not None) == (good < len(lines))
    if raised is not None:
        assert raised.max_length == limit


# -- bounded lines ----------------------------------------------------------


def test_line_of_exactly_max_length_is_accepted() -> None:
    framer = LineBuffering(max_length=5).new_framer()
    framer.feed(b"12345\n123456\n")
    assert framer.next_frame() == b"12345\n"
    with pytest.raises(LineTooLong) as info:
        framer.next_frame()
    assert (info.value.max_length, info.value.length) == (5, 6)
    assert "max_length=5" in str(info.value)


def test_data_past_max_length_without_a_delimiter_raises_and_frees_the_buffer() -> None:
    framer = LineBuffering(max_length=5).new_framer()
    framer.feed(b"12345")
    assert framer.next_frame() is None  # could still be a line of 5
    framer.feed(b"6")
    with pytest.raises(LineTooLong, match="6 bytes without a delimiter"):
        framer.next_frame()
    framer.feed(b"more\n")  # ignored: the stream is finished
    assert framer.next_frame() is None
    assert len(framer._buffer) == 0  # type: ignore[attr-defined]


def test_a_partial_delimiter_at_the_end_does_not_count_against_the_limit() -> None:
    framer = LineBuffering(b"\r\n", max_length=5).new_framer()
    framer.feed(b"12345\r")
    assert framer.next_frame() is None
    framer.feed(b"\n")
    assert framer.next_frame() == b"12345\r\n"


def test_a_final_partial_line_past_the_limit_raises_at_eof() -> None:
    framer = LineBuffering(b"\r\n", max_length=5).new_framer()
    framer.feed(b"123456")
    assert framer.next_frame() is None  # the last byte could still start a delimiter
    framer.feed_eof()
    with pytest.raises(LineTooLong):
        framer.next_frame()


def test_max_length_none_means_no_limit() -> None:
    framer = LineBuffering(max_length=None).new_framer()
    framer.feed(b"x" * (DEFAULT_MAX_LINE_LENGTH * 2) + b"\n")
    assert len(framer.next_frame() or b"") == DEFAULT_MAX_LINE_LENGTH * 2 + 1


def test_default_max_length_is_1_mib() -> None:
    assert LineBuffering().max_length == DEFAULT_MAX_LINE_LENGTH == 1024 * 1024
    framer = LineBuffering().new_framer()
    framer.feed(b"x" * (DEFAULT_MAX_LINE_LENGTH + 1))
    with pytest.raises(LineTooLong):
        framer.next_frame()


@pytest.mark.parametrize(
    ("value", "error"), [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError)]
)
def test_line_buffering_rejects_a_bad_max_length(value: object, error: type) -> None:
    with pytest.raises(error, match="max_length"):
        LineBuffering(max_length=value)  # type: ignore[arg-type]


def test_line_too_long_is_an_endpoint_closed_exception() -> None:
    assert issubclass(LineTooLong, EndpointClosedException)


def test_a_self_overlapping_delimiter_is_cut_like_a_forward_scan() -> None:
    framer = LineBuffering(b"\n\n").new_framer()
    framer.feed(b"\n\n\n")
    assert framer.next_frame() == b"\n\n"
    assert framer.next_frame() is None
    framer.feed(b"x\n\n")
    assert framer.next_frame() == b"\nx\n\n"
    framer.feed(b"\n\n\n")
    framer.feed_eof()
    assert frames_of(framer) == [b"\n\n", b"\n"]


def test_lines_before_an_overlong_one_in_the_same_chunk_come_first() -> None:
    framer = LineBuffering(max_length=5).new_framer()
    framer.feed(b"ok\nfine\n" + b"x" * 9 + b"\nnever\n")
    assert framer.next_frame() == b"ok\n"
    assert framer.next_frame() == b"fine\n"
    with pytest.raises(LineTooLong):
        framer.next_frame()
    assert framer.next_frame() is None


def test_take_frames_hands_out_every_complete_line_at_once() -> None:
    framer = LineBuffering().new_framer()
    assert isinstance(framer, BulkFramer)
    framer.feed(b"one\ntwo\nthr")
    assert framer.take_frames() == [b"one\n", b"two\n"]
    assert framer.take_frames() == []
    framer.feed(b"ee\nfour")
    assert framer.next_frame() == b"three\n"
    framer.feed(b"\nfive")
    framer.feed_eof()
    assert framer.take_frames() == [b"four\n", b"five"]
    assert framer.take_frames() == []


def test_take_frames_gives_lines_left_by_next_frame_first() -> None:
    framer = LineBuffering(delimiter=b"\r\n").new_framer()
    framer.feed(b"a\r\nb\r\nc\r")
    assert framer.next_frame() == b"a\r\n"
    framer.feed(b"\nd")
    assert framer.take_frames() == [b"b\r\n", b"c\r\n"]


def test_take_frames_returns_the_lines_before_a_too_long_one_then_raises() -> None:
    framer = LineBuffering(max_length=3).new_framer()
    assert isinstance(framer, BulkFramer)
    framer.feed(b"ab\nabc\nabcd\nlost\n")
    assert not framer.error_waiting
    assert framer.take_frames() == [b"ab\n", b"abc\n"]
    assert framer.error_waiting
    with pytest.raises(LineTooLong) as info:
        framer.take_frames()
    assert (info.value.max_length, info.value.length) == (3, 4)
    assert not framer.error_waiting
    framer.feed(b"more\n")
    assert framer.take_frames() == []


def test_take_frames_returns_lines_before_a_too_long_tail_then_raises() -> None:
    framer = LineBuffering(max_length=3).new_framer()
    framer.feed(b"ab\nabcdef")
    assert framer.take_frames() == [b"ab\n"]
    with pytest.raises(LineTooLong):
        framer.take_frames()


def test_take_frames_raises_at_once_when_the_first_line_is_too_long() -> None:
    framer = LineBuffering(max_length=3).new_framer()
    framer.feed(b"abcd\nab\n")
    with pytest.raises(LineTooLong):
        framer.take_frames()


def test_bytes_framer_take_frames_gives_one_frame_of_all_bytes() -> None:
    framer = BytesBuffering().new_framer()
    assert isinstance(framer, BulkFramer) and not framer.error_waiting
    assert framer.take_frames() == []
    framer.feed(b"ab")
    framer.feed(b"cd")
    assert framer.take_frames() == [b"abcd"]


@given(
    stream=streams,
    points=st.lists(st.integers(min_value=0), max_size=20),
    delimiter=st.sampled_from([b"\n", b"\r\n", b"\0", b"\n\n"]),
    mix=st.lists(st.booleans(), max_size=21),
)
def test_take_frames_yields_exactly_the_lines_of_any_chunking(
    stream: bytes, points: List[int], delimiter: bytes, mix: List[bool]
) -> None:
    """Bulk takes, mixed with single next_frame() calls, lose and reorder nothing."""
    framer = LineBuffering(delimiter).new_framer()
    assert isinstance(framer, BulkFramer)
    frames: List[bytes] = []
    for index, chunk in enumerate(cut(stream, points)):
        framer.feed(chunk)
        if index < len(mix) and mix[index]:
            frame = framer.next_frame()
            frames += [] if frame is None else [frame]
        frames += framer.take_frames()
    framer.feed_eof()
    frames += framer.take_frames()
    assert frames == expected_lines(stream, delimiter)
