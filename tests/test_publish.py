"""Publisher + Outbox against a real Mosquitto on a free loopback port."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import Broker, Collector, wait_until

from device.config import MqttConfig, OutboxConfig
from device.outbox import Outbox
from device.publish import MqttSetupError, Publisher, Topics, discovery_messages

REPO = Path(__file__).resolve().parent.parent
DEV = "dev1"
REGIONS = [
    {"region": "gas", "kind": "meter", "unit": "m³", "device_class": "gas", "state_class": "total_increasing"},
    {"region": "label", "kind": "text", "unit": "", "device_class": "", "state_class": ""},
]


def mqtt_cfg(broker: Broker, **kw) -> MqttConfig:
    base = MqttConfig(host=broker.host, port=broker.port, reconnect_min_s=0.1, reconnect_max_s=0.4, keepalive_s=5)
    return replace(base, **kw)


@pytest.fixture
def make_publisher(tmp_path: Path):
    made: list[tuple[Publisher, Outbox]] = []

    def make(cfg: MqttConfig, discovery=(), on_command=None, outbox_cfg: OutboxConfig | None = None) -> Publisher:
        box = Outbox(outbox_cfg or OutboxConfig(path="outbox.sqlite"), tmp_path)
        pub = Publisher(cfg, DEV, box, discovery=discovery, on_command=on_command, rediscovery_jitter_s=0.2)
        made.append((pub, box))
        pub.start()
        return pub

    yield make
    for pub, box in made:
        pub.stop(2.0)
        box.close()


def states(col: Collector, region: str) -> list[dict]:
    return [json.loads(p) for p, _ in col.on(f"edgeocr/{DEV}/{region}/state")]


def first_seen(items: list[dict]) -> list[dict]:
    """Dedup by seq keeping the first arrival (what a consumer does)."""
    seen, out = set(), []
    for s in items:
        if s["seq"] not in seen:
            seen.add(s["seq"])
            out.append(s)
    return out


def test_readings_topics_retain_and_payloads(broker, subscribe, make_publisher):
    live = subscribe(broker, ["edgeocr/#"])
    pub = make_publisher(mqtt_cfg(broker, discovery=False))
    assert wait_until(lambda: pub.connected, 5)
    seq = pub.publish_state("gas", {"value": "0123.4", "raw": "0123.4", "confidence": 0.97, "status": "ok"}, "0123.4")
    pub.publish_state("label", {"value": "LOT 42", "status": "ok"}, "LOT 42")
    assert live.wait_for(lambda m: len([t for t, _, _ in m if t.endswith("/value")]) == 2)
    assert wait_until(lambda: pub.outbox.depth() == 0, 5)  # deleted once acknowledged
    gas = states(live, "gas")[0]
    assert gas == {"value": "0123.4", "raw": "0123.4", "confidence": 0.97, "status": "ok", "seq": seq}
    assert states(live, "label")[0]["seq"] > seq
    assert live.on(f"edgeocr/{DEV}/gas/value")[0][0] == b"0123.4"

    late = subscribe(broker, ["edgeocr/#"])  # a late subscriber sees what is retained
    assert late.wait_for(lambda m: len(m) >= 5)
    retained = {t: (p, r) for t, p, r in late.messages}
    assert retained[f"edgeocr/{DEV}/available"] == (b"online", True)
    assert retained[f"edgeocr/{DEV}/gas/value"] == (b"0123.4", True)
    assert retained[f"edgeocr/{DEV}/label/value"] == (b"LOT 42", True)
    assert json.loads(retained[f"edgeocr/{DEV}/gas/state"][0])["seq"] == seq

    pub.publish_stats({"fps": 2.5, "latency_ms": 40})
    assert live.wait_for(lambda m: any(t.endswith("/stats") for t, _, _ in m))
    stats = json.loads(live.on(f"edgeocr/{DEV}/stats")[0][0])
    assert stats["fps"] == 2.5 and stats["outbox_depth"] == 0 and stats["uptime_s"] >= 0 and "ts" in stats
    pub.stop(2.0)
    assert live.wait_for(lambda m: (b"offline", False) in live.on(f"edgeocr/{DEV}/available"))
    assert late.on(f"edgeocr/{DEV}/stats") == [(live.on(f"edgeocr/{DEV}/stats")[0][0], False)]  # not retained


def test_home_assistant_discovery_and_resend_on_ha_online(broker, subscribe, make_publisher):
    col = subscribe(broker, ["homeassistant/#"])
    make_publisher(mqtt_cfg(broker), discovery=REGIONS)
    gas_topic = f"homeassistant/sensor/{DEV}/gas/config"
    assert col.wait_for(lambda m: len(col.on(gas_topic)) == 1 and len(m) == 2)
    cfg = json.loads(col.on(gas_topic)[0][0])
    assert cfg["unique_id"] == f"edgeocr_{DEV}_gas"
    assert cfg["state_topic"] == cfg["json_attributes_topic"] == f"edgeocr/{DEV}/gas/state"
    assert cfg["availability_topic"] == f"edgeocr/{DEV}/available"
    assert cfg["value_template"] == "{{ value_json.value }}"
    assert (cfg["unit_of_measurement"], cfg["device_class"], cfg["state_class"]) == ("m³", "gas", "total_increasing")
    assert cfg["device"]["identifiers"] == [f"edgeocr_{DEV}"]
    label = json.loads(col.on(f"homeassistant/sensor/{DEV}/label/config")[0][0])
    assert "unit_of_measurement" not in label and "device_class" not in label

    col.publish("homeassistant/status", "online")
    assert col.wait_for(lambda m: len(col.on(gas_topic)) == 2, 5)  # re-sent
    late = subscribe(broker, ["homeassistant/sensor/#"])
    assert late.wait_for(lambda m: len(m) == 2) and all(r for _, _, r in late.messages)  # retained


def test_discovery_messages_are_pure():
    cfg = MqttConfig(discovery_prefix="ha")
    msgs = discovery_messages(cfg, "d", Topics("edgeocr", "d"), REGIONS[1:])
    assert msgs[0][0] == "ha/sensor/d/label/config"
    assert json.loads(msgs[0][1])["value_template"] == "{{ value_json.value[:255] }}"
    with pytest.raises(ValueError):
        Topics("edgeocr", "a/b")


def test_broker_outage_loses_nothing_and_keeps_order(make_broker, subscribe, make_publisher):
    broker = make_broker(persistent=True)
    col = subscribe(broker, ["edgeocr/+/+/state"], persistent=True)
    pub = make_publisher(mqtt_cfg(broker, discovery=False))
    produced: list[int] = []
    done = threading.Event()

    def produce() -> None:
        i = 0
        while not done.is_set() and i < 400:
            produced.append(pub.publish_state("gas", {"value": str(i), "i": i}, str(i)))
            i += 1
            time.sleep(0.01)

    worker = threading.Thread(target=produce)
    worker.start()
    try:
        assert col.wait_for(lambda m: len(m) >= 20, 5)
        broker.stop()
        assert wait_until(lambda: not pub.connected, 3)
        depth_before = pub.outbox.depth()
        time.sleep(0.7)  # readings keep coming while the broker is away
        assert pub.outbox.depth() > depth_before
        broker.start()
        assert wait_until(lambda: pub.connected, 5)
        time.sleep(0.3)
    finally:
        done.set()
        worker.join(5)
    assert wait_until(lambda: pub.outbox.depth() == 0, 10)
    assert col.wait_for(lambda m: {json.loads(p)["seq"] for _, p, _ in m} >= set(produced), 30)
    got = first_seen(states(col, "gas"))
    assert [s["seq"] for s in got] == produced  # every reading, in order, once after dedup
    assert [s["i"] for s in got] == list(range(len(produced)))


def test_tls_client_cert_and_password(make_broker, subscribe, make_publisher, tls_files, caplog):
    broker = make_broker(allow_anonymous=False, users={"edge": "s3cret-pw", "reader": "r"}, tls=tls_files)
    col = subscribe(broker, ["edgeocr/#"], username="reader", password="r")
    cfg = mqtt_cfg(broker, port=broker.tls_port, tls=True, ca_file=str(tls_files.ca), cert_file=str(
        tls_files.client_cert), key_file=str(tls_files.client_key), username="edge", password="s3cret-pw")
    assert "s3cret" not in repr(cfg)
    with caplog.at_level(logging.DEBUG):
        pub = make_publisher(replace(cfg, discovery=False))
        pub.publish_state("gas", {"value": "7"}, "7")
        assert col.wait_for(lambda m: (f"edgeocr/{DEV}/gas/value", b"7", False) in m, 5)
    assert "s3cret" not in caplog.text


def test_tls_without_client_cert_is_refused_by_the_broker(make_broker, make_publisher, tls_files, caplog):
    broker = make_broker(tls=tls_files)
    cfg = mqtt_cfg(broker, port=broker.tls_port, tls=True, ca_file=str(tls_files.ca))
    with caplog.at_level(logging.WARNING, logger="device.publish"):
        pub = make_publisher(cfg)
        assert wait_until(lambda: f"MQTT broker 127.0.0.1:{broker.tls_port}" in caplog.text, 5)
    assert not pub.connected


def test_unreadable_tls_files_fail_at_construction(tmp_path: Path):
    cfg = MqttConfig(tls=True, ca_file=str(tmp_path / "missing.crt"))
    with pytest.raises(MqttSetupError, match="ca_file"):
        Publisher(cfg, DEV, Outbox(OutboxConfig(path="o.sqlite"), tmp_path))


def test_wrong_password_is_logged_clearly_and_retried(make_broker, make_publisher, caplog):
    broker = make_broker(allow_anonymous=False, users={"edge": "right"})
    with caplog.at_level(logging.ERROR, logger="device.publish"):
        pub = make_publisher(mqtt_cfg(broker, username="edge", password="wrong-pw"))
        pub.publish_state("gas", {"value": "1"}, "1")
        # mosquitto answers a wrong password on MQTT 3.1.1 with "not authorised" (CONNACK 5)
        line = f"MQTT broker 127.0.0.1:{broker.port} refused the connection: Not authorized (check mqtt.username"
        assert wait_until(lambda: caplog.text.count(line) >= 2, 5)  # keeps retrying, no crash
    assert not pub.connected and pub._thread.is_alive()
    assert pub.outbox.depth() == 2  # kept for when the password is fixed
    assert "wrong-pw" not in caplog.text


def test_commands_only_when_enabled_and_only_own_device(broker, subscribe, make_publisher):
    got: list[tuple[str, bytes]] = []
    col = subscribe(broker, ["nothing"])
    make_publisher(mqtt_cfg(broker, commands=True), on_command=lambda sub, p: got.append((sub, p)))
    # the subscription goes out right after CONNACK: probe until it is in place
    assert wait_until(lambda: col.publish(f"edgeocr/{DEV}/cmd/probe", b"") or got, 5, interval_s=0.1)
    got.clear()
    col.publish(f"edgeocr/{DEV}/cmd/reread", b"")
    col.publish(f"edgeocr/{DEV}/cmd/set/gas", b"1234.5")
    col.publish("edgeocr/other/cmd/reread", b"x")
    real = lambda: [c for c in got if c[0] != "probe"]  # noqa: E731  (late copies of the probe may still arrive)
    assert wait_until(lambda: len(real()) >= 2, 5)
    time.sleep(0.3)
    assert real() == [("reread", b""), ("set/gas", b"1234.5")]


def test_retained_command_is_not_run_on_connect(broker, subscribe, make_publisher, caplog):
    col = subscribe(broker, ["nothing"])
    col.publish(f"edgeocr/{DEV}/cmd/snapshot", b"old", retain=True)  # would run again on every reconnect
    got: list[tuple[str, bytes]] = []
    pub = make_publisher(mqtt_cfg(broker, commands=True), on_command=lambda sub, p: got.append((sub, p)))
    assert wait_until(lambda: "ignoring retained MQTT command 'snapshot'" in caplog.text, 5)
    assert got == [] and pub.connected


def test_commands_off_means_not_subscribed(broker, subscribe, make_publisher):
    got: list[tuple[str, bytes]] = []
    col = subscribe(broker, ["homeassistant/sensor/#"])
    make_publisher(mqtt_cfg(broker, commands=False), discovery=REGIONS[:1],
                   on_command=lambda sub, p: got.append((sub, p)))
    # positive control: the publisher's other subscription (homeassistant/status) is in place
    assert wait_until(lambda: col.publish("homeassistant/status", "online") or len(col.messages) >= 2, 5, 0.3)
    col.publish(f"edgeocr/{DEV}/cmd/reread", b"")
    time.sleep(0.3)
    assert got == []


def test_starts_with_broker_down_and_delivers_when_it_appears(make_broker, subscribe, make_publisher, caplog):
    broker = make_broker()
    broker.stop()
    with caplog.at_level(logging.WARNING, logger="device.publish"):
        pub = make_publisher(mqtt_cfg(broker))
        seq = pub.publish_state("gas", {"value": "5"}, "5")
        assert wait_until(lambda: "cannot reach MQTT broker" in caplog.text, 3)
    assert caplog.text.count("cannot reach MQTT broker") == 1  # repeats go to DEBUG
    broker.start()
    late = subscribe(broker, ["edgeocr/+/gas/state"])
    assert late.wait_for(lambda m: m and json.loads(m[-1][1])["seq"] == seq, 5)


CHILD = r"""
import json, sys, time
from pathlib import Path
from device.config import MqttConfig, OutboxConfig
from device.outbox import Outbox
from device.publish import Publisher

args = json.loads(sys.argv[1])
box = Outbox(OutboxConfig(path="outbox.sqlite"), Path(args["state_dir"]))
pub = Publisher(MqttConfig(host="127.0.0.1", port=args["port"], reconnect_min_s=0.1, reconnect_max_s=0.3,
                           discovery=False), "dev1", box)
pub.start()
for i in range(args["start"], args["start"] + args["count"]):
    seq = pub.publish_state("gas", {"value": str(i), "i": i}, str(i))
    print(i, seq, flush=True)  # printed only once the reading is durable in the outbox
    time.sleep(0.01)
while True:  # drain; the test ends us
    print("depth", box.depth(), flush=True)
    time.sleep(0.05)
"""


class Child:
    """The CHILD script in a subprocess; collects the readings it reports as durable."""

    def __init__(self, tmp: Path, port: int, start: int, count: int):
        script = tmp / "child.py"
        script.write_text(CHILD)
        arg = json.dumps({"state_dir": str(tmp / "state"), "port": port, "start": start, "count": count})
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen([sys.executable, str(script), arg], stdout=subprocess.PIPE, text=True, env=env)
        self.durable: list[tuple[int, int]] = []
        self.depth = -1
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            a, b = line.split()
            if a == "depth":
                self.depth = int(b)
            else:
                self.durable.append((int(a), int(b)))

    def kill(self, sig: int = signal.SIGKILL) -> None:
        self.proc.send_signal(sig)
        self.proc.wait(10)
        self._reader.join(5)
        self.proc.stdout.close()


def test_sigkill_loses_nothing_that_reached_the_outbox(make_broker, subscribe, tmp_path: Path):
    broker = make_broker(persistent=True)
    col = subscribe(broker, ["edgeocr/#"], persistent=True)
    avail = f"edgeocr/{DEV}/available"
    # 1. killed while connected: the broker publishes the last will
    a = Child(tmp_path, broker.port, 0, 10_000)
    assert col.wait_for(lambda m: len(states(col, "gas")) >= 20, 30)
    a.kill()
    assert col.wait_for(lambda m: col.on(avail)[-1][0] == b"offline", 5)
    # 2. killed while the broker is away, with a backlog in the outbox
    broker.stop()
    b = Child(tmp_path, broker.port, 10_000, 10_000)
    assert wait_until(lambda: len(b.durable) >= 30, 10)
    b.kill()
    # 3. restarted with the broker back: everything durable arrives, in order, once after dedup
    broker.start()
    c = Child(tmp_path, broker.port, 20_000, 5)
    try:
        assert wait_until(lambda: c.depth == 0 and len(c.durable) == 5, 15)
        durable = a.durable + b.durable + c.durable
        want = [seq for _, seq in durable]
        assert col.wait_for(lambda m: {s["seq"] for s in states(col, "gas")} >= set(want), 30)
    finally:
        c.kill(signal.SIGTERM)
    got = first_seen(states(col, "gas"))
    got_seqs = [s["seq"] for s in got]
    assert got_seqs == sorted(got_seqs)
    assert set(want) <= set(got_seqs)
    assert {s["i"] for s in got} >= {i for i, _ in durable}
    # (phase 1 may have appended one more row after its last printed line: that one arrives too)
    assert len(got_seqs) - len(want) <= 2


def test_reconnect_renews_announcements_and_subscriptions(broker, subscribe, make_publisher):
    got: list[tuple[str, bytes]] = []
    pub = make_publisher(mqtt_cfg(broker, commands=True), discovery=REGIONS[:1],
                         on_command=lambda sub, p: got.append((sub, p)))
    assert wait_until(lambda: pub.connected, 5)
    broker.stop()  # no persistence: retained messages and subscriptions are gone with it
    assert wait_until(lambda: not pub.connected, 3)
    broker.start()
    assert wait_until(lambda: pub.connected, 5)
    announced = {f"edgeocr/{DEV}/available", f"homeassistant/sensor/{DEV}/gas/config"}
    late = subscribe(broker, ["edgeocr/#", "homeassistant/#"])
    # announced again (live copies carry retain=0 if they arrive after this subscription) ...
    assert late.wait_for(lambda m: {t for t, _, _ in m} >= announced, 5)
    # ... and retained: a subscriber that comes after gets them as retained messages
    fresh = subscribe(broker, ["edgeocr/#", "homeassistant/#"])
    assert fresh.wait_for(lambda m: {t for t, _, r in m if r} >= announced, 5)
    assert wait_until(lambda: (late.publish(f"edgeocr/{DEV}/cmd/reread", b"") or got), 5, interval_s=0.2)
    assert got[0] == ("reread", b"")
