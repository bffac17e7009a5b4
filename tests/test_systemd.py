"""sd_notify over a real AF_UNIX datagram socket bound by the test."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from device.systemd import Notifier, watchdog_interval_s


def _receive(sock: socket.socket, n: int) -> list[str]:
    sock.settimeout(2.0)
    return [sock.recv(4096).decode() for _ in range(n)]


def test_path_socket_receives_each_state(tmp_path: Path):
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        n = Notifier({"NOTIFY_SOCKET": str(path)})
        assert n.enabled
        n.ready()
        n.watchdog()
        n.status("reading 3 regions\nfps 1.0")
        n.stopping()
        n.reloading()
        got = _receive(sock, 5)
        n.close()
    assert got[:4] == ["READY=1", "WATCHDOG=1", "STATUS=reading 3 regions fps 1.0", "STOPPING=1"]
    assert got[4].startswith("RELOADING=1\nMONOTONIC_USEC=")


def test_abstract_socket():
    name = f"edgeocr-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        n = Notifier({"NOTIFY_SOCKET": "@" + name})
        n.ready()
        assert _receive(sock, 1) == ["READY=1"]
        n.close()


def test_no_socket_is_a_noop():
    n = Notifier({})
    assert not n.enabled and n.watchdog_interval_s is None
    n.ready()
    n.watchdog()
    assert n.notify("READY=1") is False


def test_unreachable_socket_is_logged_once_not_raised(tmp_path: Path, caplog):
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    n.ready()
    n.watchdog()
    assert caplog.text.count("cannot notify systemd") == 1


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "10000000"}, 5.0),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())}, 5.0),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "abc"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env, expected):
    assert watchdog_interval_s(env, os.getpid()) == expected
    n = Notifier({"NOTIFY_SOCKET": "/run/x", **env})
    assert n.watchdog_interval_s == expected
