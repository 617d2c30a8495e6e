"""``python -m channels``: a line-protocol toolbox built on the public API.

``connect ADDRESS`` bridges stdin/stdout with a stream socket, like ``nc``;
``serve ADDRESS`` runs a line server (echo, or a broadcast hub). Both use
``PipeChannel(shared=True)`` for stdin/stdout, so the terminal's flags are
left as they were, and the Poller's backpressure so nothing is lost.
"""

import argparse
import contextlib
import dataclasses
import logging
import os
import select
import signal
import socket
import stat
import sys
from typing import Dict, List, NoReturn, Optional, Sequence, Tuple

from channels import (
    Channel,
    ChannelClosed,
    ChannelLike,
    ClientAccepted,
    CloseReason,
    DataReceived,
    EndpointClosedException,
    LineBuffering,
    PipeChannel,
    Poller,
    PollEvent,
    SocketChannel,
    Writable,
    WriteBufferFullError,
)

__all__ = ["main"]

_LOGGER = logging.getLogger("channels.cli")


@dataclasses.dataclass(frozen=True)
class Address:
    """Where to connect or listen: a Unix socket path, or a TCP host and port."""

    path: Optional[str] = None
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


EXAMPLES = """examples:
  python -m channels serve 127.0.0.1:7000              a chat hub on loopback
  python -m channels serve unix:/tmp/hub.sock --echo   an echo server on a Unix socket
  python -m channels connect 127.0.0.1:7000 --line     talk to it from this terminal
  printf 'ping\\n' | python -m channels connect unix:/tmp/hub.sock
"""


class CliError(Exception):
    """A runtime failure the user can act on: one line, exit code 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line and exit code 2, not argparse's usage block."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parse_address(text: str) -> Address:
    """``HOST:PORT``, ``[IPv6]:PORT`` or ``unix:PATH``."""
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if not path:
            raise argparse.ArgumentTypeError(f"{text!r}: unix: needs a path")
        return Address(path=path)
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise argparse.ArgumentTypeError(f"{text!r}: write an IPv6 address as [HOST]:PORT")
        port_text = rest[1:]
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon or not host or ":" in host:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not an address: use HOST:PORT, [IPv6]:PORT or unix:PATH"
            )
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: the port must be a number from 0 to 65535")
    return Address(host=host, port=int(port_text))


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a positive number of bytes is needed")
    return int(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a positive number of seconds is needed")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # (False for NaN too)
        raise argparse.ArgumentTypeError(f"{text!r}: 0 or more seconds are needed")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="channels",
        description="A line-protocol toolbox: connect to a stream socket, or serve lines.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def subcommand(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        command: argparse.ArgumentParser = commands.add_parser(
            name,
            help=summary,
            description=description + " Exit 1 on a runtime error, 2 on bad usage.",
            epilog=EXAMPLES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_argument(
            "address", type=parse_address, help="HOST:PORT, [IPv6]:PORT or unix:PATH"
        )
        return command

    connect = subcommand(
        "connect",
        "bridge stdin/stdout with a stream socket",
        "Send stdin to ADDRESS and write what comes back to stdout. When stdin ends,"
        " everything is sent, the socket is half-closed, and output goes on until the"
        " server closes; then it exits 0. When the server closes first, what stdin has"
        " ready is still sent (the server may have only half-closed; exit 1 if it is"
        " gone), then it exits.",
    )
    connect.add_argument("--line", action="store_true", help="pass whole lines only")
    connect.add_argument(
        "--timeout",
        type=_positive_float,
        metavar="S",
        help="give up (exit 1) when connecting or waiting takes longer than S seconds",
    )
    serve = subcommand(
        "serve",
        "run a line server: a broadcast hub (default) or an echo server",
        "Listen on ADDRESS and serve lines. Connects and disconnects are logged to"
        " stderr. SIGINT or SIGTERM closes every client (delivering what is queued)"
        " and removes the Unix socket file.",
    )
    mode = serve.add_mutually_exclusive_group()
    mode.add_argument("--echo", action="store_true", help="send each line back to its sender")
    mode.add_argument(
        "--broadcast", action="store_true", help="relay each line to every other client (default)"
    )
    serve.add_argument(
        "--max-line",
        type=_positive_int,
        default=64 * 1024,
        metavar="N",
        help="disconnect a client whose line passes N bytes (default 65536)",
    )
    serve.add_argument(
        "--linger",
        type=_seconds,
        default=2.0,
        metavar="S",
        help="give a closing client that takes none of its queued lines S seconds"
        " before they are dropped (default 2)",
    )
    return parser


# -- sockets ------------------------------------------------------------------


def _os_error(action: str, address: Address, exc: OSError) -> CliError:
    reason = exc.strerror or str(exc)
    return CliError(f"cannot {action} {address!s}: {reason}")


# Unix sockets: not on Windows (the address parser still reads unix:PATH there,
# and connecting or listening then fails with a one-line error).
_AF_UNIX = getattr(socket, "AF_UNIX", -1)


def open_connection(address: Address, timeout: Optional[float]) -> socket.socket:
    try:
        if address.path is not None:
            sock = socket.socket(_AF_UNIX)
            sock.settimeout(timeout)
            try:
                sock.connect(address.path)
            except BaseException:
                sock.close()
                raise
            return sock
        return socket.create_connection((address.host, address.port), timeout=timeout)
    except socket.timeout as exc:
        raise CliError(f"cannot connect to {address}: timed out") from exc
    except OSError as exc:
        raise _os_error("connect to", address, exc) from exc


def open_server(address: Address) -> socket.socket:
    try:
        if address.path is not None:
            sock = socket.socket(_AF_UNIX)
            try:
                sock.bind(address.path)
                sock.listen(128)
            except BaseException:
                sock.close()
                raise
            return sock
        family = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((address.host, address.port), family=family, backlog=128)
    except socket.gaierror as exc:
        raise CliError(f"cannot listen on {address}: {exc.strerror}") from exc
    except OSError as exc:
        raise _os_error("listen on", address, exc) from exc


# -- connect --------------------------------------------------------------------


class _Relay:
    """Pass data from channel to channel. When the destination refuses it
    (its queue is at the high-water mark), hold it and pause the source; the
    destination's ``Writable`` event passes it on and resumes the source."""

    def __init__(self, poller: Poller) -> None:
        self._poller = poller
        # By destination: the source paused for it, and what it refused.
        self._held: Dict[int, Tuple[ChannelLike, List[bytes]]] = {}

    def send(self, source: ChannelLike, destination: Channel, data: bytes) -> None:
        held = self._held.get(id(destination))
        if held is not None:
            held[1].append(data)  # (frames of the same poll, after the refusal)
            return
        try:
            destination.write(data)
        except WriteBufferFullError:
            self._held[id(destination)] = (source, [data])
            self._poller.pause_reading(source)

    def writable(self, destination: Channel) -> None:
        """``destination`` drained: pass on what it refused, resume its source."""
        held = self._held.pop(id(destination), None)
        if held is None:
            return
        source, chunks = held
        while chunks:
            try:
                destination.write(chunks[0])
            except WriteBufferFullError:
                self._held[id(destination)] = (source, chunks)
                return
            del chunks[0]
        self._poller.resume_reading(source)

    def holds_for(self, destination: Channel) -> bool:
        """True while data for ``destination`` waits for it to drain."""
        return id(destination) in self._held

    def flush_held(self, destination: Channel, timeout: Optional[float]) -> bool:
        """At the end: write what is held for ``destination`` waiting on it
        (nothing else is left to do); False if the timeout passed."""
        held = self._held.pop(id(destination), None)
        for chunk in [] if held is None else held[1]:
            while True:
                try:
                    destination.write(chunk)
                    break
                except WriteBufferFullError:
                    if not destination.flush(timeout):
                        return False
        return destination.flush(timeout)


def run_connect(args: argparse.Namespace) -> int:
    if sys.platform == "win32":
        raise CliError("connect bridges stdin/stdout, which select() cannot watch on Windows")
    else:  # (an else: for mypy --platform win32)
        return _bridge(args)


def _check_stdio() -> None:
    """stdin and stdout must be open (a socket would take a closed one's
    number), and stdin readable as a stream."""
    for fd, name in ((0, "stdin"), (1, "stdout")):
        try:
            mode = os.fstat(fd).st_mode
        except OSError as exc:
            raise CliError(f"{name} is not open ({exc.strerror})") from exc
        if stat.S_ISDIR(mode):
            raise CliError(f"{name} is a directory")


def _bridge(args: argparse.Namespace) -> int:
    _check_stdio()
    sock = open_connection(args.address, args.timeout)
    buffering = "line" if args.line else "bytes"
    try:
        net = SocketChannel(sock, buffering=buffering)
    except ValueError as exc:  # reset between connect() and here
        sock.close()
        raise CliError(f"the connection to {args.address} broke at once: {exc}") from exc
    # Duplicates: closing the channel leaves the process's own fds 0 and 1.
    stdio = PipeChannel(os.dup(0), os.dup(1), buffering=buffering, shared=True)
    with net, stdio, Poller() as poller:
        poller.register(stdio)
        poller.register(net)
        return _relay_until_the_server_ends(poller, net, stdio, args.timeout)


def _relay_until_the_server_ends(
    poller: Poller, net: SocketChannel, stdio: PipeChannel, timeout: Optional[float]
) -> int:
    session = _Session(_Relay(poller), net, stdio)
    while True:
        events = poller.poll_events(timeout)
        if not events and timeout is not None:
            raise CliError(f"nothing happened for {timeout:g} s")
        for event in events:
            session.handle(event)
        if session.over():
            _finish(session.relay, net, stdio, timeout)
            return 0


class _Session:
    """Where a ``connect`` session is: which ends ended, what was sent."""

    def __init__(self, relay: _Relay, net: SocketChannel, stdio: PipeChannel) -> None:
        self.relay = relay
        self.net = net
        self.stdio = stdio
        self.stdin_ended = self.server_ended = self.eof_sent = False

    def handle(self, event: PollEvent) -> None:
        net, stdio = self.net, self.stdio
        if isinstance(event, DataReceived):
            if event.channel is stdio:
                _send(self.relay, stdio, net, event.data, "the server")
            else:
                _send(self.relay, net, stdio, event.data, "stdout")
        elif isinstance(event, Writable):
            self.relay.writable(net if event.channel is net else stdio)
        elif isinstance(event, ChannelClosed):
            if event.reason is not CloseReason.PEER_CLOSED:
                what = "stdin/stdout" if event.channel is stdio else "the connection"
                raise CliError(_broken(what, event))
            if event.channel is stdio:
                self.stdin_ended = True
            else:
                self.server_ended = True

    def over(self) -> bool:
        """Half-close once all of stdin is queued; True when the session is over."""
        if self.stdin_ended and not self.eof_sent and not self.relay.holds_for(self.net):
            self.eof_sent = True
            _end_sending(self.net)  # the end follows what is queued
        # The server may have only half-closed: stdin that is there already
        # still goes to it (a write fails if it is gone); waiting for more,
        # or for a person to type it, would keep a finished session open.
        return self.server_ended and (self.eof_sent or not self._stdin_has_more())

    def _stdin_has_more(self) -> bool:
        if self.relay.holds_for(self.net):
            return True
        return not self.stdin_ended and bool(select.select([0], [], [], 0)[0])


def _finish(
    relay: _Relay, net: SocketChannel, stdio: PipeChannel, timeout: Optional[float]
) -> None:
    """The server ended (and stdin did, or a person types it): what the
    server sent goes to stdout, what stdin gave goes to the server."""
    if not relay.flush_held(stdio, timeout):
        raise CliError("stdout did not take the output in time")
    try:
        if not relay.flush_held(net, net.linger):
            raise CliError(
                f"the server closed the connection and did not take the last"
                f" {net.write_buffer_size} bytes within {net.linger:g} s"
            )
    except EndpointClosedException as exc:
        raise CliError(
            f"the server closed the connection; {exc.undelivered} bytes were not delivered"
        ) from exc


def _send(relay: _Relay, source: ChannelLike, destination: Channel, data: bytes, to: str) -> None:
    try:
        relay.send(source, destination, data)
    except EndpointClosedException as exc:
        raise CliError(f"{to} stopped taking data: {exc.__cause__ or exc}") from exc


def _broken(what: str, event: ChannelClosed) -> str:
    lost = f"; {event.undelivered} bytes were not delivered" if event.undelivered else ""
    return f"{what} broke ({event.reason.value}){lost}"


def _end_sending(net: SocketChannel) -> None:
    """stdin ended: half-close after everything queued, without waiting."""
    try:
        net.write_eof()
    except EndpointClosedException as exc:
        raise CliError(f"the server stopped taking data: {exc.__cause__ or exc}") from exc


# -- serve ----------------------------------------------------------------------


def run_serve(args: argparse.Namespace) -> int:
    server = open_server(args.address)
    stopping: List[int] = []
    try:
        with Poller(buffering=LineBuffering(max_length=args.max_line)) as poller:

            def stop(signum: int, frame: object) -> None:
                stopping.append(signum)
                poller.wakeup()

            previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                poller.add_server(server)
                _LOGGER.info("listening on %s", str(args.address))
                _serve(poller, args.echo, args.linger, stopping)
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
            _LOGGER.info("stopping (%s)", signal.Signals(stopping[0]).name if stopping else "")
    finally:
        server.close()
        if args.address.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(args.address.path)
    return 0


def _serve(poller: Poller, echo: bool, linger: float, stopping: List[int]) -> None:
    clients: Dict[int, SocketChannel] = {}
    while not stopping:
        for event in poller.poll_events():
            if isinstance(event, ClientAccepted):
                event.channel.linger = linger
                clients[id(event.channel)] = event.channel
                _LOGGER.info("%s connected", event.channel.peer)
            elif isinstance(event, ChannelClosed):
                channel = clients.pop(id(event.channel), None)
                if channel is not None:
                    _LOGGER.info("%s disconnected: %s", channel.peer, event.reason.value)
                    channel.close()
            elif isinstance(event, Writable):
                continue  # (the hub never waits for a full client: see _deliver)
            elif echo:
                _deliver(poller, clients, event.channel, [event.channel], event.data)
            else:
                others = [c for c in clients.values() if c is not event.channel]
                _deliver(poller, clients, event.channel, others, event.data)
    # Leaving the Poller's block closes every client: queued lines are
    # delivered to all of them at once, each within its linger.


def _deliver(
    poller: Poller,
    clients: Dict[int, SocketChannel],
    source: ChannelLike,
    targets: Sequence[ChannelLike],
    data: bytes,
) -> None:
    for target in targets:
        try:
            target.write(data)
        except WriteBufferFullError:
            # A client that does not read its lines must not grow the hub's
            # memory, nor stall everyone else: it is let go.
            _LOGGER.warning("%s reads too slowly; disconnecting it", clients[id(target)].peer)
            clients.pop(id(target)).abort()
            poller.unregister(target)
        except EndpointClosedException:
            pass  # its ChannelClosed event tells the rest


# -- main -----------------------------------------------------------------------


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; return the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="channels %(message)s", stream=sys.stderr)
    try:
        if args.command == "connect":
            return run_connect(args)
        return run_serve(args)
    except CliError as exc:
        print(f"channels {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
