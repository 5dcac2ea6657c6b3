"""Real ``redis-server`` processes for the tests: standalone, TLS and a 3-master cluster.

Every server listens on a free loopback port, in its own temporary directory,
with persistence off (``--save "" --appendonly no``). A missing
``redis-server`` is a loud failure with the install hint, never a skip.
"""
from __future__ import annotations

import datetime
import ipaddress
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

INSTALL_HINT = "redis-server not found: apt-get install redis-server"


def require(binary: str = "redis-server") -> str:
    """Path of ``binary``; raises RuntimeError with the install hint when absent."""
    path = shutil.which(binary)
    if path is None:
        raise RuntimeError(INSTALL_HINT if binary == "redis-server"
                           else f"{binary} not found: apt-get install redis-tools")
    return path


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(cluster_bus: bool = False) -> int:
    """A free loopback port; with ``cluster_bus`` also port + 10000 (the cluster
    bus), which must stay at or below 65535."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not cluster_bus or (port <= 55535 and _bindable(port + 10000)):
            return port


class RedisServer:
    """One ``redis-server`` process; :meth:`stop` then :meth:`start` reuses the port."""

    def __init__(self, workdir: Path, *args: str, port: int | None = None, tls: "TlsFiles | None" = None,
                 tls_auth_clients: bool = False):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port(cluster_bus="--cluster-enabled" in args)
        self.tls = tls
        self.tls_auth_clients = tls_auth_clients  # mutual TLS: clients must show a certificate
        self.args = list(args)
        self.password = args[args.index("--requirepass") + 1] if "--requirepass" in args else None
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        cmd = [require(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--dir", str(self.workdir), "--protected-mode", "no"]
        if self.tls:
            cmd += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.tls.cert),
                    "--tls-key-file", str(self.tls.key), "--tls-ca-cert-file", str(self.tls.cert),
                    "--tls-auth-clients", "yes" if self.tls_auth_clients else "no"]
        else:
            cmd += ["--port", str(self.port)]
        return cmd + self.args

    def client(self, **kw) -> redis.Redis:
        if self.tls:
            kw = {"ssl": True, "ssl_ca_certs": str(self.tls.cert), **kw}
            if self.tls_auth_clients:
                kw = {"ssl_certfile": str(self.tls.cert), "ssl_keyfile": str(self.tls.key), **kw}
        kw.setdefault("password", self.password)
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, **kw)

    def start(self, timeout: float = 10.0) -> "RedisServer":
        log = open(self.workdir / "redis.log", "ab")
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited with {self.proc.returncode}: "
                                   f"{(self.workdir / 'redis.log').read_text()[-2000:]}")
            try:
                with self.client() as c:
                    if c.ping():
                        return self
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not answer PING in {timeout} s")
            time.sleep(0.02)

    def stop(self) -> None:
        """Kill the process (SIGKILL: an outage, not a graceful shutdown) and wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


class TlsFiles:
    """A self-signed certificate for 127.0.0.1 (``cryptography``, else the openssl CLI)."""

    def __init__(self, folder: Path):
        self.cert = Path(folder) / "redis.crt"
        self.key = Path(folder) / "redis.key"
        try:
            self._with_cryptography()
        except ImportError:
            subprocess.run([require("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                            "-keyout", str(self.key), "-out", str(self.cert), "-days", "1",
                            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                           check=True, capture_output=True)

    def _with_cryptography(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                               critical=False)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        self.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.TraditionalOpenSSL,
                                               serialization.NoEncryption()))


def tls_supported() -> bool:
    """True when this redis-server was built with TLS.

    With both ports 0 a TLS build accepts ``--tls-port`` and exits with "not
    listen anywhere"; a build without TLS rejects the directive instead.
    """
    out = subprocess.run([require(), "--port", "0", "--tls-port", "0", "--save", ""],
                         capture_output=True, text=True, timeout=10)
    return "not listen anywhere" in out.stdout + out.stderr


class RedisCluster:
    """Three masters, no replicas, created with ``redis-cli --cluster create``."""

    def __init__(self, workdir: Path, size: int = 3):
        self.nodes = [RedisServer(Path(workdir) / f"node{i}", "--cluster-enabled", "yes",
                                  "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
                      for i in range(size)]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}/0"

    def start(self, timeout: float = 30.0) -> "RedisCluster":
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()  # never leave half a cluster running
            raise

    def _start(self, timeout: float) -> "RedisCluster":
        for node in self.nodes:
            node.start()
        subprocess.run([require("redis-cli"), "--cluster", "create",
                        *[f"127.0.0.1:{n.port}" for n in self.nodes],
                        "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, capture_output=True, timeout=timeout)
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            with node.client() as c:
                while c.execute_command("CLUSTER INFO").get("cluster_state") != "ok":
                    if time.monotonic() > deadline:
                        raise RuntimeError("the test cluster did not reach cluster_state:ok")
                    time.sleep(0.05)
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.terminate()


def command_calls(client: redis.Redis, command: str) -> int:
    """How many times the server ran ``command`` (``INFO commandstats``)."""
    stats = client.info("commandstats").get(f"cmdstat_{command.lower()}")
    return stats["calls"] if stats else 0
