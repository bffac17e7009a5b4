"""MQTT publisher (paho-mqtt 2.x): availability + last will, outbox delivery, Home Assistant discovery, commands.

One background thread owns the paho client; no other thread calls paho. Readings travel only through
the outbox: the thread publishes a window of the oldest rows (QoS ``cfg.qos``) and deletes a row when
its PUBACK arrives. Each connection uses a fresh paho client, so nothing paho queued on a dead
connection is replayed behind our back: after a reconnect the window restarts at the outbox head,
which keeps the order and may repeat a message whose PUBACK was lost (consumers dedup by ``seq``).
"""

from __future__ import annotations

import json
import logging
import random
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from device import __version__
from device.config import MqttConfig
from device.errors import EdgeOCRError
from device.outbox import Outbox, OutboxError

logger = logging.getLogger(__name__)
_paho_logger = logging.getLogger(__name__ + ".paho")

WINDOW = 16  # outbox messages in flight at once
CONNACK_TIMEOUT_S = 10.0
LOOP_S = 0.05  # paho loop timeout: bounds the latency of a new reading and of stop()
CPU_TEMP_PATH = Path("/sys/class/thermal/thermal_zone0/temp")


class MqttSetupError(EdgeOCRError):
    """The MQTT settings cannot work (unreadable TLS files, invalid names)."""


def check_topic_part(name: str, what: str) -> str:
    """``name`` if it can be one topic level (no '/', '+', '#', NUL; not empty), else ValueError."""
    if not name or any(c in name for c in "/+#\0"):
        raise ValueError(f"{what} {name!r}: expected a topic level without '/', '+', '#'")
    return name


class Topics:
    """The topic layout of one device under ``<prefix>/<device>``."""

    def __init__(self, prefix: str, device_id: str):
        self.base = f"{prefix}/{check_topic_part(device_id, 'device id')}"
        self.available = f"{self.base}/available"
        self.stats = f"{self.base}/stats"
        self.cmd = f"{self.base}/cmd/"

    def state(self, region: str) -> str:
        return f"{self.base}/{check_topic_part(region, 'region')}/state"

    def value(self, region: str) -> str:
        return f"{self.base}/{check_topic_part(region, 'region')}/value"


def discovery_messages(
    cfg: MqttConfig, device_id: str, topics: Topics, regions: Sequence[dict]
) -> list[tuple[str, bytes]]:
    """Home Assistant MQTT discovery: one retained sensor config per region, ``(topic, payload)``."""
    device = {"identifiers": [f"edgeocr_{device_id}"], "name": f"edgeocr {device_id}", "manufacturer": "edgeocr",
              "model": "edgeocr camera reader", "sw_version": __version__}
    out = []
    for spec in regions:
        region = check_topic_part(str(spec["region"]), "region")
        # HA caps a state at 255 characters; text regions may be longer (the full text stays in attributes)
        template = "{{ value_json.value }}" if spec.get("kind", "meter") == "meter" else "{{ value_json.value[:255] }}"
        config: dict[str, Any] = {
            "name": region, "unique_id": f"edgeocr_{device_id}_{region}", "state_topic": topics.state(region),
            "value_template": template, "json_attributes_topic": topics.state(region),
            "availability_topic": topics.available, "payload_available": "online", "payload_not_available": "offline",
            "qos": cfg.qos, "device": device, "origin": {"name": "edgeocr", "sw_version": __version__},
        }
        for key, ha_key in (("unit", "unit_of_measurement"), ("device_class", "device_class"),
                            ("state_class", "state_class")):
            if spec.get(key):
                config[ha_key] = spec[key]
        if spec.get("kind") == "text":
            config["icon"] = "mdi:text-recognition"
        topic = f"{cfg.discovery_prefix}/sensor/{device_id}/{region}/config"
        out.append((topic, json.dumps(config, separators=(",", ":")).encode()))
    return out


def cpu_temp_c(path: Path = CPU_TEMP_PATH) -> float | None:
    """The SoC temperature in °C where the kernel exposes it, else None."""
    try:
        return round(int(path.read_text().strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None


def tls_context(cfg: MqttConfig) -> ssl.SSLContext:
    """A client TLS context: verify the broker against ``ca_file`` (system CAs if empty), optional client cert."""
    try:
        ctx = ssl.create_default_context(cafile=cfg.ca_file or None)
        if cfg.cert_file:
            # a passphrase-protected key fails here instead of prompting on a terminal nobody watches
            ctx.load_cert_chain(cfg.cert_file, cfg.key_file or None, password=lambda: b"")
    except (OSError, ssl.SSLError) as exc:
        raise MqttSetupError(f"mqtt TLS files (ca_file, cert_file, key_file): {exc}") from None
    if cfg.tls_insecure:
        logger.warning("mqtt.tls_insecure = true: the broker's host name is not checked against its certificate")
        ctx.check_hostname = False
    return ctx


class Publisher:
    """Delivers the outbox to an MQTT broker and announces the device; see the module docstring."""

    def __init__(
        self,
        cfg: MqttConfig,
        device_id: str,
        outbox: Outbox,
        discovery: Sequence[dict] = (),
        on_command: Callable[[str, bytes], None] | None = None,
        clock: Callable[[], float] = time.time,
        *,
        rediscovery_jitter_s: float = 2.0,
    ):
        self.cfg, self.device_id, self.outbox, self.on_command = cfg, device_id, outbox, on_command
        self.rediscovery_jitter_s = rediscovery_jitter_s
        self._clock, self._started_s = clock, clock()
        try:
            self.topics = Topics(cfg.topic_prefix, device_id)
            self._discovery = discovery_messages(cfg, device_id, self.topics, discovery) if cfg.discovery else []
        except ValueError as exc:
            raise MqttSetupError(str(exc)) from None
        self._tls = tls_context(cfg) if cfg.enabled and cfg.tls else None
        self._where = f"{cfg.host}:{cfg.port}"
        self._stop = threading.Event()
        self._stop_deadline = 0.0
        self._connected = threading.Event()
        self._stats: deque[bytes] = deque(maxlen=1)  # only the latest stats matter
        self._thread: threading.Thread | None = None
        # per-connection state, touched only by the I/O thread
        self._inflight: dict[int, int] = {}  # paho mid -> outbox seq
        self._acked: list[int] = []
        self._sent_seq, self._refused, self._last_error = 0, False, ""
        self._rediscover_at: float | None = None
        self._quiet = False  # the current outage was logged already
        self._ack_failing = False  # deleting delivered rows failed (logged once)

    @property
    def connected(self) -> bool:
        """True while a broker has accepted the connection."""
        return self._connected.is_set()

    def start(self) -> None:
        """Start the background thread: connect, reconnect with backoff, deliver the outbox in order."""
        if not self.cfg.enabled:
            logger.info("mqtt.enabled = false: readings are not published")
            return
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="edgeocr-mqtt", daemon=True)
        self._thread.start()

    def publish_state(self, region: str, state: dict, value: str) -> int:
        """Queue a reading durably: retained JSON on ``<region>/state`` (with ``seq`` added) and plain ``value``.

        Returns the seq, which is also in the JSON; it only grows, so consumers can dedup on it.
        """
        if not self.cfg.enabled:
            return 0

        def state_json(seq: int) -> bytes:
            body = {**state, "seq": seq}
            return json.dumps(body, separators=(",", ":"), ensure_ascii=False, default=str).encode()

        value_msg = (self.topics.value(region), str(value).encode(), True)
        return self.outbox.append_many([(self.topics.state(region), state_json, True), value_msg])[0]

    def publish_stats(self, stats: dict) -> None:
        """Best-effort, not retained, not queued: send the latest stats when connected.

        Adds ``uptime_s``, ``outbox_depth``, ``outbox_dropped``, ``cpu_temp_c`` (where readable) and ``ts``
        unless given.
        """
        out = dict(stats)
        now = self._clock()
        out.setdefault("uptime_s", round(now - self._started_s, 1))
        out.setdefault("outbox_depth", self.outbox.depth())
        out.setdefault("outbox_dropped", self.outbox.dropped)
        if "cpu_temp_c" not in out:
            temp = cpu_temp_c()
            if temp is not None:
                out["cpu_temp_c"] = temp
        out.setdefault("ts", round(now, 3))
        self._stats.append(json.dumps(out, separators=(",", ":"), default=str).encode())

    def stop(self, timeout_s: float = 5.0) -> None:
        """Flush what fits in ``timeout_s``, publish ``offline`` (retained), disconnect, end the thread."""
        if self._thread is None:
            return
        self._stop_deadline = time.monotonic() + timeout_s
        self._stop.set()
        self._thread.join(timeout_s + 1.0)
        if self._thread.is_alive():
            logger.warning("MQTT thread did not stop within %.1f s", timeout_s)
        self._thread = None

    # --- the I/O thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        delay = self.cfg.reconnect_min_s
        while not self._stop.is_set():
            accepted = False
            try:
                accepted = self._session()
            except Exception:  # never let the thread die: the outbox keeps everything, so try again
                logger.exception("MQTT session to %s failed unexpectedly; reconnecting", self._where)
            finally:
                self._connected.clear()
            if self._stop.is_set():
                break
            if accepted:
                delay = self.cfg.reconnect_min_s
            wait_s = random.uniform(delay / 2, delay)  # jitter: a fleet must not reconnect in lockstep
            logger.debug("MQTT: next connection attempt in %.1f s", wait_s)
            self._stop.wait(wait_s)
            delay = min(delay * 2, self.cfg.reconnect_max_s)

    def _new_client(self) -> Any:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.cfg.client_id or f"edgeocr-{self.device_id}",
            clean_session=True,
            protocol=mqtt.MQTTv311,
            reconnect_on_failure=False,
        )
        client.on_log = self._on_log  # paho's own lines go to DEBUG; its last error names a failure below
        client.max_inflight_messages_set(WINDOW + 8)  # our window plus availability / discovery
        client.will_set(self.topics.available, "offline", qos=1, retain=True)
        if self.cfg.username:
            client.username_pw_set(self.cfg.username, self.cfg.password or None)
        if self._tls is not None:
            client.tls_set_context(self._tls)
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        client.message_callback_add(f"{self.cfg.discovery_prefix}/status", self._on_ha_status)
        client.message_callback_add(self.topics.cmd + "#", self._on_cmd)
        return client

    def _session(self) -> bool:
        """One connection from connect to loss or stop; True if the broker accepted it."""
        from paho.mqtt.client import error_string
        from paho.mqtt.enums import MQTTErrorCode

        self._inflight.clear()
        self._acked.clear()
        self._sent_seq, self._refused, self._last_error, self._rediscover_at = 0, False, "", None
        client = self._new_client()
        try:
            client.connect(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        except (OSError, ValueError) as exc:
            self._outage("cannot reach MQTT broker %s: %s", exc)
            return False
        connack_by = time.monotonic() + CONNACK_TIMEOUT_S
        try:
            while True:
                rc = client.loop(timeout=LOOP_S)
                self._flush_acks()
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    detail = self._last_error or error_string(rc)
                    if self.connected:
                        self._outage("lost the connection to MQTT broker %s: %s", detail)
                    elif not self._refused:  # e.g. a TLS 1.3 broker rejecting our client certificate
                        self._outage("MQTT broker %s closed the connection before accepting it: %s", detail)
                    return self.connected
                if not self.connected:
                    if self._refused or self._stop.is_set():
                        return False
                    if time.monotonic() > connack_by:
                        self._outage("MQTT broker %s did not answer the connection: %s", "no CONNACK")
                        return False
                    continue
                if self._stop.is_set():
                    self._shutdown(client)
                    return True
                self._send_pending(client)
        finally:
            self._connected.clear()
            sock = client.socket()
            if sock is not None:  # this client is discarded: do not leave its socket to the collector
                sock.close()

    def _outage(self, msg: str, detail: object) -> None:
        """Log an outage once at WARNING; repeats while it lasts go to DEBUG."""
        level = logging.DEBUG if self._quiet else logging.WARNING
        logger.log(level, msg + "; readings wait in the outbox (depth %d), retrying with backoff",
                   self._where, detail, self.outbox.depth())
        self._quiet = True

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            hint = " (check mqtt.username and the password)" if reason_code in (134, 135) else ""
            logger.error("MQTT broker %s refused the connection: %s%s", self._where, reason_code, hint)
            self._refused = True
            return
        logger.info("connected to MQTT broker %s (outbox depth %d)", self._where, self.outbox.depth())
        self._quiet = False
        self._connected.set()
        client.publish(self.topics.available, "online", qos=1, retain=True)
        subs = []
        if self.cfg.discovery:
            subs.append((f"{self.cfg.discovery_prefix}/status", 1))
        if self.cfg.commands:
            subs.append((self.topics.cmd + "#", 1))
        if subs:
            client.subscribe(subs)
        self._send_discovery(client)

    def _on_log(self, client: Any, userdata: Any, level: int, buf: str) -> None:
        from paho.mqtt.enums import LogLevel

        if level == LogLevel.MQTT_LOG_ERR and not self._last_error:  # the first error is the cause
            self._last_error = buf
        _paho_logger.debug("%s", buf)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        seq = self._inflight.pop(mid, None)
        if seq is not None:
            self._acked.append(seq)

    def _on_ha_status(self, client: Any, userdata: Any, msg: Any) -> None:
        if msg.payload.strip().lower() == b"online" and self._discovery:
            self._rediscover_at = time.monotonic() + random.uniform(0.0, self.rediscovery_jitter_s)

    def _on_cmd(self, client: Any, userdata: Any, msg: Any) -> None:
        if not self.cfg.commands or not msg.topic.startswith(self.topics.cmd):
            return
        sub = msg.topic[len(self.topics.cmd):]
        if msg.retain:  # a retained command would run again on every reconnect
            logger.warning("ignoring retained MQTT command %r (publish commands without retain)", sub)
            return
        logger.info("MQTT command %r (%d bytes)", sub, len(msg.payload))
        try:
            if self.on_command is not None:
                self.on_command(sub, bytes(msg.payload))
        except Exception:  # a bad command must not take the connection down
            logger.exception("MQTT command %r failed", sub)

    def _send_discovery(self, client: Any) -> None:
        for topic, payload in self._discovery:
            client.publish(topic, payload, qos=1, retain=True)
        logger.debug("sent Home Assistant discovery for %d region(s)", len(self._discovery))

    def _flush_acks(self) -> None:
        if not self._acked:
            return
        try:
            self.outbox.ack_many(self._acked)
        except OutboxError as exc:  # read-only / full disk: delivered rows stay; deleting them is retried
            if not self._ack_failing:
                logger.warning("%s; %d delivered message(s) will be deleted when it is writable again "
                               "(until then a restart sends them again)", exc, len(self._acked))
            self._ack_failing = True
            return
        if self._ack_failing:
            logger.info("outbox writable again: delivered messages deleted")
        self._ack_failing = False
        self._acked.clear()

    def _send_pending(self, client: Any) -> None:
        """Top up the in-flight window from the outbox, then the latest stats and any discovery re-send."""
        from paho.mqtt.enums import MQTTErrorCode

        if len(self._inflight) < WINDOW and self.outbox.last_seq > self._sent_seq:
            for row in self.outbox.peek(WINDOW - len(self._inflight), after_seq=self._sent_seq):
                info = client.publish(row.topic, row.payload, qos=self.cfg.qos, retain=row.retain)
                if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break  # connection going down: the next session restarts at the outbox head
                self._sent_seq = row.seq
                if self.cfg.qos == 0:
                    self._acked.append(row.seq)  # no acknowledgement exists at QoS 0
                else:
                    self._inflight[info.mid] = row.seq
        if self._stats:
            client.publish(self.topics.stats, self._stats.popleft(), qos=0, retain=False)
        if self._rediscover_at is not None and time.monotonic() >= self._rediscover_at:
            self._rediscover_at = None
            logger.info("Home Assistant came online: re-sending discovery")
            self._send_discovery(client)

    def _shutdown(self, client: Any) -> None:
        """Flush the outbox until shortly before the stop deadline, then announce offline and disconnect."""
        reserve_s = min(1.0, max(0.0, self._stop_deadline - time.monotonic()) / 4)
        while self.outbox.depth() > 0 and time.monotonic() < self._stop_deadline - reserve_s:
            self._send_pending(client)
            rc = client.loop(timeout=LOOP_S)
            self._flush_acks()
            if rc != 0:
                return
        if self.outbox.depth():
            logger.info("stopping with %d message(s) left in the outbox for the next start", self.outbox.depth())
        info = client.publish(self.topics.available, "offline", qos=1, retain=True)
        while not info.is_published() and time.monotonic() < self._stop_deadline:
            if client.loop(timeout=LOOP_S) != 0:
                return
        self._flush_acks()
        client.disconnect()
        end = time.monotonic() + 1.0
        while client.socket() is not None and time.monotonic() < end:
            client.loop(timeout=LOOP_S)
        logger.info("disconnected from MQTT broker %s", self._where)
