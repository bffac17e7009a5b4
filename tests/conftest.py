"""Shared fixtures: a real Mosquitto broker on a free loopback port, TLS files made with openssl, a subscriber.

The broker runs with its own config file in a tmp folder (persistence off); tests that need it are
skipped when ``mosquitto`` is not installed. All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], object], timeout_s: float, interval_s: float = 0.02) -> bool:
    """Poll ``predicate`` until it is truthy or ``timeout_s`` passes; return whether it became truthy."""
    end = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(interval_s)


@dataclass(frozen=True)
class TlsFiles:
    """A test CA, a broker certificate for 127.0.0.1/localhost, and a client certificate, all PEM."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


class Broker:
    """One Mosquitto process with its own config; ``stop()``/``start()`` keep the same ports."""

    def __init__(self, folder: Path, allow_anonymous: bool = True, users: dict[str, str] | None = None,
                 tls: TlsFiles | None = None, persistent: bool = False):
        """``persistent``: keep sessions and queued messages across ``stop()``/``start()`` (saved on exit),
        so a subscriber with ``clean_session=False`` misses nothing while either side reconnects."""
        if MOSQUITTO is None:
            pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        self.log = folder / "mosquitto.log"
        self.proc: subprocess.Popen | None = None
        lines = [
            f"listener {self.port} 127.0.0.1",
            "per_listener_settings false",
            f"allow_anonymous {'true' if allow_anonymous else 'false'}",
            *(["persistence true", f"persistence_location {folder}/", "autosave_interval 3600",
               "max_queued_messages 100000"] if persistent else ["persistence false"]),
            f"log_dest file {self.log}",
            "log_type error", "log_type warning", "log_type notice", "log_type information",
            "connection_messages true",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # otherwise mosquitto drops to 'mosquitto' and cannot read tmp files
        if users:
            if MOSQUITTO_PASSWD is None:
                pytest.skip("mosquitto_passwd is not installed")
            pw = folder / "passwd"
            pw.write_text("")
            for user, password in users.items():
                subprocess.run([MOSQUITTO_PASSWD, "-b", str(pw), user, password], check=True, timeout=10,
                               capture_output=True)
            lines.append(f"password_file {pw}")
        if tls:
            lines += [
                f"listener {self.tls_port} 127.0.0.1",
                f"cafile {tls.ca}", f"certfile {tls.server_cert}", f"keyfile {tls.server_key}",
                "require_certificate true",
            ]
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self, timeout_s: float = 5.0) -> None:
        """Start the process and wait until every listener accepts TCP connections."""
        assert self.proc is None, "broker already running"
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        ports = [p for p in (self.port, self.tls_port) if p]
        if not wait_until(lambda: self.proc.poll() is not None or all(_accepts(p) for p in ports), timeout_s):
            self.stop()
            raise RuntimeError(f"mosquitto did not listen within {timeout_s} s:\n{self.log_text()}")
        if self.proc.poll() is not None:
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
            self.proc = None
            raise RuntimeError(f"mosquitto exited at start: {err}\n{self.log_text()}")

    def stop(self) -> None:
        """Terminate the process (no persistence: retained messages are gone afterwards)."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Collector:
    """A paho subscriber that records ``(topic, payload, retain)`` of everything it receives."""

    def __init__(self, broker: Broker, topics: list[str], username: str = "", password: str = "",
                 persistent: bool = False):
        """``persistent``: a QoS 1 session kept by the broker (``clean_session=False``) and quick reconnects."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.RLock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-sub-{os.getpid()}-{id(self)}",
                                  clean_session=not persistent)
        self.client.reconnect_delay_set(0.05, 0.2)
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(5):
            self.close()
            raise RuntimeError("test subscriber could not subscribe")

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def on(self, topic: str) -> list[tuple[bytes, bool]]:
        """``(payload, retain)`` received on ``topic``, in arrival order."""
        with self._lock:
            return [(p, r) for t, p, r in self.messages if t == topic]

    def wait_for(self, predicate: Callable[[list[tuple[str, bytes, bool]]], object], timeout_s: float = 5.0) -> bool:
        """Wait until ``predicate(messages)`` holds (bounded)."""
        def check() -> object:
            with self._lock:
                return predicate(list(self.messages))
        return wait_until(check, timeout_s)

    def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def make_broker(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    """Factory: ``make_broker(allow_anonymous=..., users={...}, tls=...)`` -> a started Broker."""
    brokers: list[Broker] = []

    def make(**kwargs) -> Broker:
        b = Broker(tmp_path / f"broker{len(brokers)}", **kwargs)
        brokers.append(b)
        b.start()
        return b

    yield make
    for b in brokers:
        b.stop()


@pytest.fixture
def broker(make_broker) -> Broker:
    """An anonymous broker on a free loopback port."""
    return make_broker()


@pytest.fixture
def subscribe() -> Iterator[Callable[..., Collector]]:
    """Factory: ``subscribe(broker, ["topic/#"])`` -> a Collector, closed at teardown."""
    made: list[Collector] = []

    def make(broker: Broker, topics: list[str], **kwargs) -> Collector:
        c = Collector(broker, topics, **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory) -> TlsFiles:
    """A CA, a broker certificate (SAN 127.0.0.1, localhost) and a client certificate, made with openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("tls")

    def ossl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=30)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ossl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=edgeocr test CA")
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name in ("server", "client"):
        ossl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=edgeocr-test-{name}")
        ossl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext")
    return TlsFiles(d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt", d / "client.key")
