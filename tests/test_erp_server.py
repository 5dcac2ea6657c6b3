"""The ERP stand-in itself (tests/erp_server.py): a client that hangs up is
quiet, a bug in the stand-in is printed and recorded."""
import socket
import struct
import time

from tests.erp_server import FakeErp


def wait_for(condition, timeout=10):
    end = time.monotonic() + timeout
    while not condition() and time.monotonic() < end:
        time.sleep(0.02)
    return condition()


def test_a_client_that_resets_its_connection_mid_request_leaves_stderr_quiet(capfd):
    with FakeErp() as erp:
        client = socket.create_connection(("127.0.0.1", erp.port))
        client.sendall(b"POST /atp HTTP/1.1\r\nHost: erp\r\nContent-Length: 100\r\n\r\n{")
        assert wait_for(lambda: len(erp.log) == 0 and erp.open_connections == 1)
        # linger 0: close() sends a RST, the handler's read fails with ECONNRESET
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        assert wait_for(lambda: erp.hang_ups == 1)
        assert erp.handler_errors == []
    assert "Exception occurred during processing of request" not in capfd.readouterr().err


def test_a_bug_in_the_stand_in_is_printed_and_recorded(capfd):
    def broken(erp, seen):
        return {}["no such key"]

    with FakeErp() as erp:
        erp.respond = broken
        with socket.create_connection(("127.0.0.1", erp.port), timeout=10) as client:
            client.sendall(b'POST /atp HTTP/1.1\r\nHost: erp\r\nContent-Length: 2\r\n\r\n{}')
            assert client.recv(100) == b""  # no answer: the handler died
        assert wait_for(lambda: len(erp.handler_errors) == 1)
        assert "KeyError: 'no such key'" in erp.handler_errors[0]
        assert erp.hang_ups == 0
    err = capfd.readouterr().err
    assert "Exception occurred during processing of request" in err and "KeyError" in err
