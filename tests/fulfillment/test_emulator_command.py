"""``atp-bridge fulfillment-emulator`` as a real process: a busy port, SIGTERM."""
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.slow

ATP_BRIDGE = str(Path(sys.executable).with_name("atp-bridge"))  # the console script


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(port: int, output: Path) -> subprocess.Popen:
    with open(output, "wb") as out:  # a file, not a pipe: the request log must not block
        return subprocess.Popen([ATP_BRIDGE, "fulfillment-emulator", "--bind", f"127.0.0.1:{port}"],
                                stdout=out, stderr=subprocess.STDOUT)


def wait_up(proc: subprocess.Popen, port: int, output: Path) -> None:
    end = time.monotonic() + 30
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"emulator exited {proc.returncode}: {output.read_text()}")
        try:
            requests.get(f"http://127.0.0.1:{port}/_emulator/fulfillment_requests/ping", timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.05)
    pytest.fail(f"emulator did not start: {output.read_text()}")


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_a_busy_port_fails_with_one_line_and_no_banner():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([ATP_BRIDGE, "fulfillment-emulator", "--bind", f"127.0.0.1:{port}"],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (f"Error: cannot listen on 127.0.0.1:{port}: the port is in use; "
                             f"pick a free one with --bind HOST:PORT\n")


def test_sigterm_answers_the_request_in_progress_then_exits_0(tmp_path):
    port, output = free_port(), tmp_path / "emulator.log"
    proc = start(port, output)
    try:
        wait_up(proc, port, output)
        body = b'{"uuid": "fr-1", "items": [{"product_id": "p1", "price": 20.0}]}'
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(b"POST /_emulator/fulfillment_requests HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
                           b"Content-Length: %d\r\n\r\n" % len(body))
            # 100 Continue comes as the server starts on the request: it is in progress now
            assert client.recv(100).startswith(b"HTTP/1.1 100 Continue")
            proc.send_signal(signal.SIGTERM)
            end = time.monotonic() + 10
            while not refuses_connections(port) and time.monotonic() < end:
                time.sleep(0.05)
            assert refuses_connections(port)  # stopped accepting, still draining
            assert proc.poll() is None
            client.sendall(body)
            answer = b""
            while chunk := client.recv(65536):  # until the exiting process closes it
                answer += chunk
        while answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"):  # http.server's and werkzeug's
            answer = answer[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
        assert answer.startswith(b"HTTP/1.1 201 "), answer
        assert b'"uuid":"fr-1"' in answer.replace(b" ", b"")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = output.read_text()
    assert log.startswith("Fulfillment emulator on http://127.0.0.1:")
    assert log.rstrip().endswith("Fulfillment emulator stopped.")


def test_sigterm_on_an_idle_emulator_exits_0(tmp_path):
    port, output = free_port(), tmp_path / "emulator.log"
    proc = start(port, output)
    try:
        wait_up(proc, port, output)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
