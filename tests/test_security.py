"""Security: TLS verification by default, secrets never logged or published, commands off by default and
limited to the device's own topic, permission warnings for config and credential files, a swapped model
file refused against its card's checksum. Broker traffic stays on 127.0.0.1."""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import Broker, wait_until

from device.config import (
    ConfigError,
    MqttConfig,
    OutboxConfig,
    load_config,
    parse_config,
)
from device.errors import ModelError
from device.outbox import Outbox
from device.publish import Publisher, tls_context

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "models" / "edgeocr-crnn.tflite"
DEMO = REPO / "firmware_config" / "replay-demo.toml"
SAMPLES = REPO / "firmware_config" / "samples"
SECRET = "Zq8-very-secret-pw-4711"
needs_model = pytest.mark.skipif(not MODEL.is_file(), reason="needs the shipped model models/edgeocr-crnn.tflite")


# -- TLS ----------------------------------------------------------------------------------------------------------

def test_tls_context_verifies_by_default(tls_files):
    ctx = tls_context(MqttConfig(tls=True, ca_file=str(tls_files.ca)))
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    system = tls_context(MqttConfig(tls=True))  # no ca_file: the system CAs, still verified
    assert system.verify_mode == ssl.CERT_REQUIRED and system.check_hostname


def test_tls_insecure_is_explicit_loud_and_still_checks_the_chain(tls_files, caplog):
    with caplog.at_level(logging.WARNING, logger="device.publish"):
        ctx = tls_context(MqttConfig(tls=True, ca_file=str(tls_files.ca), tls_insecure=True))
    assert ctx.verify_mode == ssl.CERT_REQUIRED and not ctx.check_hostname
    assert "tls_insecure = true" in caplog.text


@pytest.mark.parametrize("key", ["ca_file", "cert_file", "tls_insecure"])
def test_tls_settings_without_tls_are_a_config_error(tmp_path: Path, key: str):
    (tmp_path / "f.pem").write_text("x")
    value = True if key == "tls_insecure" else "f.pem"
    data = {"camera": {"source": "folder", "path": "."}, "regions": [{"name": "a", "box": [0, 0, 10, 10]}],
            "mqtt": {key: value, **({"key_file": "f.pem"} if key == "cert_file" else {})}}
    with pytest.raises(ConfigError, match=f"mqtt.{key}.*expected mqtt.tls = true"):
        parse_config(data, base=tmp_path, check_model=False)


def _publisher(tmp_path: Path, cfg: MqttConfig) -> Publisher:
    pub = Publisher(cfg, "sec", Outbox(OutboxConfig(path="o.sqlite"), tmp_path / f"s{id(cfg)}"),
                    rediscovery_jitter_s=0.1)
    pub.start()
    return pub


@pytest.mark.parametrize("insecure", [False, True])
def test_untrusted_broker_certificate_is_refused(make_broker, tls_files, tmp_path: Path, caplog, insecure: bool):
    """A broker whose certificate no configured/system CA signed: no connection, with or without tls_insecure."""
    broker = make_broker(tls=tls_files)
    cfg = MqttConfig(host="127.0.0.1", port=broker.tls_port, tls=True, tls_insecure=insecure,
                     cert_file=str(tls_files.client_cert), key_file=str(tls_files.client_key),
                     reconnect_min_s=0.1, reconnect_max_s=0.3)
    with caplog.at_level(logging.WARNING, logger="device.publish"):
        pub = _publisher(tmp_path, cfg)
        try:
            assert wait_until(lambda: "certificate verify failed" in caplog.text.lower()
                              or "CERTIFICATE_VERIFY_FAILED" in caplog.text, 8), caplog.text
            assert not pub.connected
        finally:
            pub.stop(1.0)
    trusted = _publisher(tmp_path, replace(cfg, ca_file=str(tls_files.ca)))
    try:
        assert wait_until(lambda: trusted.connected, 8)  # the same settings with the right CA do connect
    finally:
        trusted.stop(1.0)


# -- secrets ----------------------------------------------------------------------------------------------------

def test_mistyped_password_is_not_echoed_in_config_errors():
    data = {"camera": {"source": "folder", "path": "."}, "regions": [{"name": "a", "box": [0, 0, 10, 10]}],
            "mqtt": {"password": 47114711}}
    with pytest.raises(ConfigError) as err:
        parse_config(data, check_model=False)
    assert "mqtt.password" in str(err.value) and "47114711" not in str(err.value)
    assert SECRET not in repr(MqttConfig(password=SECRET))


def _daemon_config(tmp_path: Path, broker: Broker, mqtt_extra: str, commands: bool) -> Path:
    import re

    text = DEMO.read_text(encoding="utf-8").replace('"samples/', f'"{SAMPLES}/')
    text = re.sub(r"(?m)^interval_s = [\d.]+", "interval_s = 0.05", text, count=1)
    mqtt = (f'enabled = true\nhost = "127.0.0.1"\nport = {broker.port}\nreconnect_min_s = 0.1\nreconnect_max_s = 0.3\n'
            f"stats_interval_s = 0.5\ncommands = {'true' if commands else 'false'}\n{mqtt_extra}")
    text = re.sub(r"(?ms)^\[mqtt\]\n.*?(?=^\[|\Z)", f"[mqtt]\n{mqtt}\n", text)
    text = re.sub(r"(?ms)^\[outbox\]\n.*?(?=^\[|\Z)", '[outbox]\npath = "outbox.sqlite"\n\n', text)
    text = re.sub(r"(?ms)^\[health\]\n.*?(?=^\[|\Z)", f'[health]\nstate_dir = "{tmp_path / "state"}"\n\n', text)
    path = tmp_path / "edgeocr.toml"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def _start(config: Path, log: Path, extra_env: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    env.pop("NOTIFY_SOCKET", None)
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "device.cli", "-v", "run", "--config", str(config)],
                                cwd=config.parent, env=env, stdout=out, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(5)


@needs_model
def test_password_never_in_logs_or_published_topics(make_broker, subscribe, tmp_path: Path):
    """Debug logs of a good run and of a refused run (wrong password), every topic and payload: no password."""
    broker = make_broker(allow_anonymous=False, users={"edge": SECRET, "reader": "r"})
    col = subscribe(broker, ["#"], username="reader", password="r")
    secret_file = tmp_path / "mqtt-password"
    secret_file.write_text(SECRET + "\n")
    secret_file.chmod(0o600)
    config = _daemon_config(tmp_path, broker, f'username = "edge"\npassword_file = "{secret_file}"\n', True)
    log = tmp_path / "daemon.log"
    proc = _start(config, log)
    try:
        assert col.wait_for(lambda m: sum(t.endswith("/state") for t, _, _ in m) >= 8
                            and any(t.endswith("/stats") for t, _, _ in m), 40), log.read_text()[-2000:]
    finally:
        assert _stop(proc) == 0
    wrong = tmp_path / "wrong"
    wrong.write_text("not-" + SECRET)
    wrong.chmod(0o600)
    (tmp_path / "bad").mkdir()
    bad_config = _daemon_config(tmp_path / "bad", broker, f'username = "edge"\npassword_file = "{wrong}"\n', True)
    bad_log = tmp_path / "bad.log"
    bad = _start(bad_config, bad_log)
    try:
        assert wait_until(lambda: "refused the connection" in bad_log.read_text(errors="replace"), 30)
    finally:
        _stop(bad)
    check = subprocess.run([sys.executable, "-m", "device.cli", "-v", "check-config", str(config)], check=False,
                           cwd=tmp_path,
                           env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60)
    texts = [log.read_text(errors="replace"), bad_log.read_text(errors="replace"), check.stdout + check.stderr,
             broker.log_text()]
    texts += [t + " " + p.decode(errors="replace") for t, p, _ in list(col.messages)]
    for text in texts:
        assert SECRET not in text, text[:300]
    assert any("/stats" in t for t in texts)  # the topics we grepped include stats and states


# -- commands ------------------------------------------------------------------------------------------------------

class _FakeClient:
    def __init__(self) -> None:
        self.subscribed: list = []

    def publish(self, *args, **kwargs) -> SimpleNamespace:
        return SimpleNamespace(rc=0, mid=1, is_published=lambda: True)

    def subscribe(self, topics) -> None:
        self.subscribed.extend(topics)


def _ok() -> SimpleNamespace:
    return SimpleNamespace(is_failure=False)


def test_commands_are_off_by_default_and_only_the_own_topic_is_subscribed(tmp_path: Path):
    assert MqttConfig().commands is False
    box = Outbox(OutboxConfig(path="o.sqlite"), tmp_path)
    client = _FakeClient()
    Publisher(MqttConfig(), "dev1", box, on_command=lambda t, p: None)._on_connect(client, None, None, _ok(), None)
    assert all("/cmd" not in t for t, _ in client.subscribed)
    client = _FakeClient()
    Publisher(MqttConfig(commands=True), "dev1", box, on_command=lambda t, p: None)._on_connect(
        client, None, None, _ok(), None)
    assert [t for t, _ in client.subscribed if "cmd" in t] == ["edgeocr/dev1/cmd/#"]


@needs_model
def test_commands_disabled_do_nothing_on_a_real_broker(broker, subscribe, tmp_path: Path):
    """``mqtt.commands = false``: a valid ``set`` on the device's own topic changes nothing."""
    col = subscribe(broker, ["edgeocr/demo/#"])
    config = _daemon_config(tmp_path, broker, "", commands=False)
    log = tmp_path / "daemon.log"
    proc = _start(config, log)
    try:
        assert col.wait_for(lambda m: any(t.endswith("/energy/state") for t, _, _ in m), 40), log.read_text()[-2000:]
        col.publish("edgeocr/demo/cmd/set/temperature", b"12.5")
        col.publish("edgeocr/demo/cmd/reread", b"")
        assert not col.wait_for(lambda m: (("edgeocr/demo/temperature/value", b"12.5", True) in m
                                           or ("edgeocr/demo/temperature/value", b"12.5", False) in m), 2)
    finally:
        assert _stop(proc) == 0
    assert "command" not in log.read_text(errors="replace").lower().replace("commands", "")


@needs_model
def test_fuzzed_commands_on_a_real_broker_only_valid_ones_act(broker, subscribe, tmp_path: Path):
    """``mqtt.commands = true``: 60 garbage commands (odd topics, binary, huge, other devices) leave the daemon
    up and its values alone; the one valid ``set`` acts."""
    import random

    rng = random.Random(11)
    col = subscribe(broker, ["edgeocr/#"])
    col.publish("edgeocr/demo/cmd/set/temperature", b"12.5", retain=True)  # waiting before the daemon subscribes
    config = _daemon_config(tmp_path, broker, "", commands=True)
    log = tmp_path / "daemon.log"
    proc = _start(config, log)
    try:
        assert col.wait_for(lambda m: any(t.endswith("/temperature/state") for t, _, _ in m), 40), log.read_text()
        subs = ["set/temperature", "set/energy", "set/nope", "set", "snapshot", "reread", "x/y/z", "set/temperature/x",
                "../available", "set/label", "\u00e9", "set_reference/water"]
        bad = [b"", b"\xff\xfe\x00", b"nan", b"-1", b"1e999", b"9" * 40, bytes(rng.randrange(256) for _ in range(300)),
               b"x" * 70_000, b'{"value": 12}', b"12.5.1"]
        for i in range(60):
            device = "demo" if i % 4 else "other"
            col.publish(f"edgeocr/{device}/cmd/{rng.choice(subs)}", rng.choice(bad))
        col.publish("edgeocr/other/cmd/set/temperature", b"12.5")  # another device's topic: not ours
        assert not col.wait_for(lambda m: ("edgeocr/demo/temperature/value", b"12.5", False) in m, 1.5)
        values = {p for t, p, _ in col.messages if t in ("edgeocr/demo/energy/value", "edgeocr/demo/water/value")}
        assert all(re.fullmatch(rb"[\d.]*", v) and len(v) < 20 for v in values), values
        col.publish("edgeocr/demo/cmd/set/temperature", b"12.5")  # valid and enabled: acts
        assert col.wait_for(lambda m: ("edgeocr/demo/temperature/value", b"12.5", False) in m, 10), log.read_text()
        assert proc.poll() is None
        before = sum(t.endswith("/state") for t, _, _ in col.messages)
        assert col.wait_for(lambda m: sum(t.endswith("/state") for t, _, _ in m) > before, 20)  # still reading
    finally:
        col.publish("edgeocr/demo/cmd/set/temperature", b"", retain=True)  # clear the retained command
        assert _stop(proc) == 0
    text = log.read_text(errors="replace")
    assert "Traceback" not in text and "ignoring retained MQTT command" in text


# -- file permissions -----------------------------------------------------------------------------------------------

def _write(path: Path, text: str, mode: int) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


BODY = '[camera]\nsource = "folder"\npath = "."\n[[regions]]\nname = "a"\nbox = [0, 0, 10, 10]\n'


@pytest.mark.parametrize(("mode", "inline_password", "warned"), [
    (0o600, True, False), (0o644, False, False), (0o644, True, True), (0o646, False, True), (0o640, True, False)])
def test_config_file_permissions_are_checked_at_load(tmp_path: Path, caplog, mode, inline_password, warned):
    body = BODY + ("[mqtt]\nusername = 'u'\npassword = 'pw'\n" if inline_password else "")
    path = _write(tmp_path / "c.toml", body, mode)
    with caplog.at_level(logging.WARNING, logger="device.config"):
        load_config(path, check_model=False)
    assert ("config file" in caplog.text and oct(mode) in caplog.text) is warned, caplog.text
    assert "pw'" not in caplog.text


@pytest.mark.parametrize(("mode", "warned"), [(0o600, False), (0o640, False), (0o604, True), (0o666, True)])
def test_password_file_and_credential_permissions(tmp_path: Path, caplog, monkeypatch, mode, warned):
    secret = _write(tmp_path / "pw", "x", mode)
    creds = tmp_path / "creds"
    creds.mkdir()
    _write(creds / "mqtt-pw", "y", mode)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    with caplog.at_level(logging.WARNING, logger="device.config"):
        load_config(_write(tmp_path / "a.toml", BODY + f'[mqtt]\npassword_file = "{secret}"\n', 0o600), False)
        load_config(_write(tmp_path / "b.toml", BODY + '[mqtt]\npassword_credential = "mqtt-pw"\n', 0o600), False)
    assert ("mqtt.password_file" in caplog.text) is warned
    assert ("mqtt.password_credential" in caplog.text) is warned


def test_tls_key_file_permissions(tmp_path: Path, caplog, tls_files):
    key = tmp_path / "client.key"
    shutil.copy(tls_files.client_key, key)
    key.chmod(0o644)
    body = BODY + f'[mqtt]\ntls = true\ncert_file = "{tls_files.client_cert}"\nkey_file = "{key}"\n'
    with caplog.at_level(logging.WARNING, logger="device.config"):
        load_config(_write(tmp_path / "c.toml", body, 0o600), False)
    assert "mqtt.key_file" in caplog.text and "world-readable" in caplog.text


# -- the model file ----------------------------------------------------------------------------------------------

@needs_model
def test_swapped_model_file_is_refused(tmp_path: Path):
    """A model whose bytes differ from its card's sha256 is refused before the interpreter sees it."""
    from device.recognize import Recognizer

    model = tmp_path / "m.tflite"
    data = bytearray(MODEL.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit
    model.write_bytes(bytes(data))
    shutil.copy(MODEL.with_suffix(".json"), model.with_suffix(".json"))
    with pytest.raises(ModelError, match="sha256 .* does not match its card"):
        Recognizer(model)
    config = tmp_path / "c.toml"
    text = DEMO.read_text(encoding="utf-8").replace('"samples/', f'"{SAMPLES}/').replace('model = ""',
                                                                                        f'model = "{model}"')
    config.write_text(text.replace("enabled = true\nhost", "enabled = false\nhost"))
    run = subprocess.run([sys.executable, "-m", "device.cli", "run", "--config", str(config), "--once"],
                         check=False, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                         text=True,
                         timeout=120)
    assert run.returncode == 78, run.stderr
    assert "does not match its card" in run.stderr and "Traceback" not in run.stderr
