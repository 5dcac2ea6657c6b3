"""``atp-bridge fulfillment-emulator``: serve the emulator from the command line.

Unlike werkzeug's ``run_simple`` this binds the port before anything is
printed, so a busy port fails with one line and no banner, and it stops
cleanly on SIGTERM (what ``kill``, Docker and CI runners send): it stops
accepting connections, waits for the requests being answered, then returns,
so the process exits 0 instead of dying of the signal (143 in a shell).
Ctrl+C stops it the same way.
"""
from __future__ import annotations

import errno
import signal
import socket
import threading
from typing import Callable

import click
from werkzeug.serving import WSGIRequestHandler, make_server, select_address_family

from .emulator_options import build_emulator, emulator_options

#: How long a stop waits for the requests being answered.
DRAIN_TIMEOUT_S = 10.0


class InProgress:
    """How many requests are in progress: from their first byte to the last
    byte of their answer (an idle kept-alive connection is not counted)."""

    def __init__(self):
        self.count = 0
        self._changed = threading.Condition()

    def __enter__(self):
        with self._changed:
            self.count += 1

    def __exit__(self, *exc):
        with self._changed:
            self.count -= 1
            self._changed.notify_all()

    def wait_idle(self, timeout_s: float) -> int:
        """Wait until none is in progress, at most ``timeout_s``; how many are left."""
        with self._changed:
            self._changed.wait_for(lambda: self.count == 0, timeout=timeout_s)
            return self.count


class _Handler(WSGIRequestHandler):
    in_progress: InProgress  # set on the subclass made per server

    def handle_one_request(self) -> None:
        self.rfile.peek(1)  # a kept-alive connection waits here for its next request, uncounted
        with self.in_progress:
            super().handle_one_request()


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; ``OSError`` (a busy port, say) at once."""
    sock = socket.socket(select_address_family(host, port), socket.SOCK_STREAM)
    try:
        # as socketserver does: a port whose old connections are in TIME_WAIT is free
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def serve(app, host: str, port: int, *, ready: Callable[[str], None],
          drain_timeout_s: float = DRAIN_TIMEOUT_S) -> int:
    """Serve ``app`` until SIGTERM or Ctrl+C, then drain. ``ready(url)`` is called
    once the port is bound (print the banner there). Returns the number of
    requests still running when the drain gave up (0: a clean stop)."""
    in_progress = InProgress()
    handler = type("Handler", (_Handler,), {"in_progress": in_progress})
    sock = listen(host, port)
    try:
        server = make_server(host, port, app, threaded=True, request_handler=handler,
                             fd=sock.fileno())
    finally:
        sock.close()  # werkzeug serves on its own duplicate of the descriptor
    url_host = f"[{host}]" if ":" in host else host
    ready(f"http://{url_host}:{server.port}")
    stopping = threading.Event()

    def on_sigterm(signum, frame):
        if not stopping.is_set():
            stopping.set()
            # shutdown() waits for serve_forever to return: not from this thread
            threading.Thread(target=server.shutdown, daemon=True).start()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        server.serve_forever(poll_interval=0.1)  # werkzeug's returns on Ctrl+C too
    finally:
        signal.signal(signal.SIGTERM, previous)
    return in_progress.wait_idle(drain_timeout_s)


def parse_bind(value: str) -> tuple[str, int]:
    """``HOST:PORT`` -> ``(host, port)``; raises ``click.BadParameter``."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{value!r} is not HOST:PORT, e.g. 127.0.0.1:8081",
                                 param_hint="--bind")
    return host.strip("[]"), int(port)


@click.command("fulfillment-emulator")
@click.option("--bind", default="127.0.0.1:8081", show_default=True, help="HOST:PORT")
@click.option("--seed", type=int, help="Makes ids, tie-breaks and generated orders reproducible.")
@click.option("--token", envvar="FULFILLMENT_EMULATOR_TOKEN", show_envvar=True,
              help="Accept only this bearer token (default: any non-empty token).")
@emulator_options
def fulfillment_emulator(bind: str, seed: int | None, token: str | None, **options):
    """Serve the local Fulfillment Provider API emulator (state in memory).

    Stops on Ctrl+C or SIGTERM after answering the requests in progress (exit 0).
    """
    host, port = parse_bind(bind)
    app, pusher, generator = build_emulator(seed, token, **options)

    def ready(url: str) -> None:
        click.echo(f"Fulfillment emulator on {url}/v0/d/fulfillment_requests/ "
                   f"(test data: POST /_emulator/fulfillment_requests)", err=True)
        if generator is not None:
            generator.start()

    try:
        left = serve(app, host, port, ready=ready)
    except OSError as err:  # raised before the banner: a busy port is one line
        problem = ("the port is in use; pick a free one with --bind HOST:PORT"
                   if err.errno == errno.EADDRINUSE else f"{err.strerror or err}; check --bind")
        raise click.ClickException(f"cannot listen on {bind}: {problem}") from None
    finally:
        if pusher is not None:
            pusher.stop()
    if left:
        raise click.ClickException(f"emulator stopped with {left} request(s) still running "
                                   f"after {DRAIN_TIMEOUT_S:g} s")
    click.echo("Fulfillment emulator stopped.", err=True)
