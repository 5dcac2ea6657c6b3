"""``atp-bridge serve --bind``: a malformed or busy address fails at once with
one line (gunicorn alone retries 5 times, 1 s apart, for 5-6 s of JSON lines);
every form gunicorn takes still serves."""
import socket
import subprocess
import time

import pytest
import requests

from tests.serve import atp_bridge_cmd, free_port, subprocess_env

pytestmark = pytest.mark.slow

FORMS = "HOST:PORT (e.g. 127.0.0.1:8080, 0.0.0.0:8080, [::]:8080), unix:PATH or fd://N"
BUSY = "address already in use (another process listens there); stop it or choose another address"
QUICK_S = 3.0  # generous: the fix answers in well under 1 s, gunicorn's retries take 5-6 s


def serve(*args, **env):
    """``atp-bridge serve ARGS`` run to its end: (result, seconds it took)."""
    started = time.monotonic()
    result = subprocess.run(atp_bridge_cmd("serve", *args), env=subprocess_env(**env),
                            capture_output=True, text=True, timeout=60)
    return result, time.monotonic() - started


@pytest.fixture
def busy_port():
    """A loopback port this test listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.parametrize("bind, why", [
    ("nonsense", f"expected {FORMS}"),
    ("127.0.0.1", f"expected {FORMS}"),
    ("127.0.0.1:http", f"expected {FORMS}"),
    ("::1:8080", f"expected {FORMS}"),
    ("unix:", f"expected {FORMS}"),
    ("fd://three", f"expected {FORMS}"),
    ("127.0.0.1:99999", "port 99999 is out of range (0-65535; 0 = any free port)"),
])
def test_a_malformed_bind_fails_at_once_with_one_line(bind, why):
    result, took = serve("--bind", bind)
    assert result.returncode == 1
    assert result.stderr == f"Error: --bind {bind!r}: {why}\n"
    assert result.stdout == ""
    assert took < QUICK_S


def test_a_malformed_atp_bridge_bind_names_the_variable():
    result, took = serve(ATP_BRIDGE_BIND="nonsense")
    assert result.returncode == 1
    assert result.stderr == f"Error: ATP_BRIDGE_BIND='nonsense': expected {FORMS}; fix the environment variable\n"
    assert took < QUICK_S


def test_a_busy_port_fails_at_once_with_one_line_naming_it(busy_port):
    result, took = serve("--bind", f"127.0.0.1:{busy_port}")
    assert result.returncode == 1
    assert result.stderr == f"Error: --bind '127.0.0.1:{busy_port}': {BUSY}\n"
    assert result.stdout == ""
    assert took < QUICK_S


def test_a_busy_port_from_atp_bridge_bind_names_the_variable(busy_port):
    result, took = serve(ATP_BRIDGE_BIND=f"127.0.0.1:{busy_port}")
    assert result.returncode == 1
    assert result.stderr == f"Error: ATP_BRIDGE_BIND='127.0.0.1:{busy_port}': {BUSY}\n"
    assert took < QUICK_S


def test_a_port_bound_without_listening_is_busy_too():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        result, took = serve("--bind", f"127.0.0.1:{port}")
    assert result.stderr == f"Error: --bind '127.0.0.1:{port}': {BUSY}\n"
    assert took < QUICK_S


def test_a_host_that_does_not_resolve_is_one_line():
    result, _ = serve("--bind", "no-such-host.invalid:8080")  # DNS may be slow: no time bound
    assert result.returncode == 1
    assert result.stderr.startswith("Error: --bind 'no-such-host.invalid:8080': "
                                    "cannot resolve host 'no-such-host.invalid' (")
    assert len(result.stderr.splitlines()) == 1


def test_an_ip_of_no_local_interface_is_one_line():
    result, took = serve("--bind", "192.0.2.1:8080")  # TEST-NET-1: never a local address
    assert result.returncode == 1
    assert result.stderr == ("Error: --bind '192.0.2.1:8080': address not available: no network "
                             "interface of this machine has that IP\n")
    assert took < QUICK_S


def test_a_busy_unix_socket_fails_and_is_left_to_its_owner(tmp_path):
    path = tmp_path / "busy.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        s.listen()
        result, took = serve("--bind", f"unix:{path}")
        assert path.exists()  # gunicorn alone would have deleted the live server's socket file
    assert result.stderr == f"Error: --bind 'unix:{path}': {BUSY}\n"
    assert took < QUICK_S


def test_a_unix_socket_in_a_missing_directory_names_the_directory(tmp_path):
    result, took = serve("--bind", f"unix:{tmp_path}/nope/a.sock")
    assert result.stderr == f"Error: --bind 'unix:{tmp_path}/nope/a.sock': no such directory {tmp_path}/nope\n"
    assert took < QUICK_S


def test_a_file_descriptor_that_is_no_socket_is_one_line():
    result, took = serve("--bind", "fd://97")
    assert result.stderr == "Error: --bind 'fd://97': file descriptor 97 is not an open socket\n"
    assert took < QUICK_S


def test_the_default_address_says_where_it_came_from(monkeypatch):
    from atp_bridge import gunicorn_conf
    from atp_bridge.cli import _bind_name

    monkeypatch.delenv("ATP_BRIDGE_BIND", raising=False)
    monkeypatch.setattr(gunicorn_conf, "bind", "127.0.0.1:8080")
    assert _bind_name(None) == "default bind '127.0.0.1:8080' (set --bind or ATP_BRIDGE_BIND)"
    monkeypatch.setenv("ATP_BRIDGE_BIND", "127.0.0.1:8080")
    assert _bind_name(None) == "ATP_BRIDGE_BIND='127.0.0.1:8080'"
    assert _bind_name("127.0.0.1:9") == "--bind '127.0.0.1:9'"


# -- the forms gunicorn takes still serve --------------------------------------

def http_get_unix(path, target="/healthz") -> bytes:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(path))
        s.sendall(f"GET {target} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        return b"".join(iter(lambda: s.recv(65536), b""))


def test_serve_listens_on_a_unix_socket_and_removes_it_at_exit(tmp_path):
    path = tmp_path / "atp.sock"
    proc = subprocess.Popen(atp_bridge_cmd("serve", "--workers", "1", "--bind", f"unix:{path}"),
                            env=subprocess_env(), stdout=open(tmp_path / "out", "wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        answer = b""
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                answer = http_get_unix(path)
                break
            except OSError:
                time.sleep(0.05)
        assert answer.startswith(b"HTTP/1.0 200 OK") and answer.endswith(b'{"status":"ok"}')
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
    assert not path.exists()


def test_serve_listens_on_an_inherited_socket_given_as_fd(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        proc = subprocess.Popen(atp_bridge_cmd("serve", "--workers", "1", "--bind", f"fd://{s.fileno()}"),
                                env=subprocess_env(), pass_fds=(s.fileno(),),
                                stdout=open(tmp_path / "out", "wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline and proc.poll() is None and status is None:
            try:
                status = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code
            except requests.RequestException:
                time.sleep(0.05)
        assert status == 200
    finally:
        proc.terminate()
        assert proc.wait(30) == 0


def test_a_restart_on_the_same_port_right_after_serving_clients_starts(tmp_path):
    # the connections the server closed linger in TIME_WAIT: the early bind must
    # set the options gunicorn sets (SO_REUSEADDR), or a quick restart is refused
    port = free_port()
    for run in range(2):
        log = tmp_path / f"serve{run}.log"
        with subprocess.Popen(atp_bridge_cmd("serve", "--workers", "1", "--bind", f"127.0.0.1:{port}"),
                              env=subprocess_env(), stdout=open(log, "wb"), stderr=subprocess.STDOUT) as proc:
            try:
                deadline = time.monotonic() + 30
                served = 0
                while served < 3 and time.monotonic() < deadline and proc.poll() is None:
                    try:
                        r = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2,
                                         headers={"Connection": "close"})
                        served += r.status_code == 200
                    except requests.ConnectionError:
                        time.sleep(0.05)
                assert served == 3, log.read_text()
            finally:
                proc.terminate()
                assert proc.wait(30) == 0
