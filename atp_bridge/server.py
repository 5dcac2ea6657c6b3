"""Run the app under gunicorn from ``atp-bridge serve``."""
from __future__ import annotations

import errno
import logging
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

from gunicorn import sock, systemd
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.errors import HaltServer

from atp_bridge import gunicorn_conf
from atp_bridge.config import ENV_VAR
from atp_bridge.errors import AtpBridgeError

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # same name as atp_bridge.metrics; no import here


class CannotListen(AtpBridgeError):
    """The address to serve on cannot be listened on; the message says why."""


class BridgeServer(BaseApplication):
    """Gunicorn with :mod:`atp_bridge.gunicorn_conf`, plus the CLI's overrides.

    :meth:`listen` opens the listening socket before gunicorn starts, once:
    gunicorn's own attempt retries a busy or unusable address 5 times, 1 s
    apart, with two JSON error lines each time, before it exits 1.
    """

    def __init__(self, overrides: dict):
        self.overrides = overrides
        self.listeners: list = []
        super().__init__()

    def listen(self) -> None:
        """Open the configured address with gunicorn's own socket classes and
        options (``SO_REUSEADDR``, backlog, umask); raise :class:`CannotListen`.

        Sockets that gunicorn inherits (a USR2 upgrade's ``GUNICORN_FD``,
        systemd's ``LISTEN_FDS``) or opens per worker (``reuse_port``) are
        left to gunicorn: the address is then held by design.
        """
        if ("GUNICORN_FD" in os.environ or systemd.listen_fds(unset_environment=False)
                or self.cfg.reuse_port):
            return
        log = logging.getLogger("gunicorn.error")
        for address in self.cfg.address:
            try:
                self.listeners.append(_open(address, self.cfg, log))
            except (OSError, ValueError) as e:
                for listener in self.listeners:
                    listener.close()
                self.listeners = []
                raise CannotListen(_why(address, e)) from None

    def run(self):
        arbiter = Arbiter(self)
        arbiter.LISTENERS = self.listeners  # none: gunicorn opens (or inherits) them itself
        try:
            arbiter.run()
        except RuntimeError as e:  # as BaseApplication.run
            print(f"\nError: {e}\n", file=sys.stderr, flush=True)
            sys.exit(1)

    def load_config(self):
        settings = {k: v for k, v in vars(gunicorn_conf).items()
                    if k in self.cfg.settings and v is not None}
        settings.update({k: v for k, v in self.overrides.items() if v is not None})
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self):
        from atp_bridge.app import create_app

        return create_app()  # reads ATP_BRIDGE_CONFIG, set by run()


def prepare_metrics_dir() -> tuple[Path, bool, int]:
    """Point ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory: a new temporary
    one, or the one already named, emptied of a previous run's ``*.db`` files
    (stale files would add old counts to the new totals).

    Must run before anything imports prometheus_client in this process: the
    library picks its multiprocess value class at import time. Returns the
    directory, whether it was created here (and is to be removed at exit) and
    the pid of the process that owns it.
    """
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        return path, False, os.getpid()
    path = Path(tempfile.mkdtemp(prefix="atp-bridge-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)
    return path, True, os.getpid()


def run(config_path: str, *, bind=None, workers=None, connections=None) -> None:
    """Serve ``config_path`` until SIGTERM/SIGINT (gunicorn drains in-flight
    requests for up to ``graceful_timeout``). Call :func:`prepare_metrics_dir`
    first, before the config is loaded. Raises :class:`CannotListen` before
    gunicorn starts if the address cannot be listened on."""
    os.environ[ENV_VAR] = config_path  # workers build their own app from it
    server = BridgeServer({"bind": bind, "workers": workers, "worker_connections": connections})
    server.listen()  # CannotListen: one line from the CLI, before gunicorn logs anything
    try:
        server.run()
    except HaltServer as e:  # raised past gunicorn when a second worker fails to boot while
        # it halts, before it logs the reason: log it, exit with gunicorn's code, no traceback
        logging.getLogger("atp_bridge").error("gunicorn stopped: %s", e.reason)
        raise SystemExit(e.exit_status) from None


def _open(address, cfg, log):
    """One gunicorn listener for a parsed address (``cfg.address`` item): a
    (host, port) tuple, a unix socket path or an inherited fd (``fd://N``)."""
    if isinstance(address, int):  # as gunicorn's create_sockets takes an fd
        probe = socket.fromfd(address, socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            name = probe.getsockname()
        finally:
            probe.close()
        return sock._sock_type(name)(name, cfg, log, fd=address)
    if isinstance(address, str) and _answers(address):
        # gunicorn would delete the live server's socket file and take the path over
        raise OSError(errno.EADDRINUSE, "address already in use")
    return sock._sock_type(address)(address, cfg, log)


def _answers(path: str) -> bool:
    """True when a unix socket at ``path`` accepts connections (a server holds it)."""
    if path.startswith("\0") or not os.path.exists(path):
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def _why(address, e: Exception) -> str:
    """Why ``address`` cannot be listened on, for one line of the CLI."""
    if isinstance(e, ValueError):  # gunicorn: the unix path exists and is no socket
        return f"{address} exists and is not a socket; remove it or choose another path"
    if isinstance(e, socket.gaierror):
        return f"cannot resolve host {address[0]!r} ({e.strerror})"
    if e.errno == errno.EADDRINUSE:
        return "address already in use (another process listens there); stop it or choose another address"
    if e.errno == errno.EADDRNOTAVAIL:
        return "address not available: no network interface of this machine has that IP"
    if e.errno == errno.EACCES and isinstance(address, tuple) and 0 < address[1] < 1024:
        return "permission denied: a port below 1024 needs root or CAP_NET_BIND_SERVICE"
    if isinstance(address, int) and e.errno in (errno.EBADF, errno.ENOTSOCK):
        return f"file descriptor {address} is not an open socket"
    if isinstance(address, str) and e.errno == errno.ENOENT:
        return f"no such directory {os.path.dirname(address) or '.'}"
    return f"cannot listen: {e.strerror or e}"


def cleanup_metrics_dir(path: Path, created: bool, owner_pid: int) -> None:
    """Remove the metrics directory if :func:`prepare_metrics_dir` created it.

    Gunicorn workers are forks that unwind through the same ``finally`` when
    they exit; only the master (the owner) may remove the directory.
    """
    if created and os.getpid() == owner_pid:
        shutil.rmtree(path, ignore_errors=True)
