"""The daemon loop: capture -> align -> regions -> recognise -> track -> outbox/publish, with health.

Never dies on a bad frame, a missing broker or a flaky camera. Signals: SIGTERM/SIGINT finish the frame,
flush, publish ``offline`` and exit 0; SIGHUP reloads the config (an invalid one is reported and ignored).
sd_notify: READY after start-up, WATCHDOG only while the loop advances, STATUS, STOPPING.
"""

from __future__ import annotations

import logging
import queue
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from device.capture import Capture, Frame, FrameSource
from device.config import Config, ConfigError, load_config, resolve_state_dir
from device.outbox import OutboxError
from device.pipeline import StageTimes, align_frame, read_regions
from device.tracker import Reading, RegionTracker, StateStore

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_SOFTWARE, EXIT_CONFIG = 0, 70, 78
_SLICE_S = 0.2  # longest uninterrupted sleep, so signals and commands are seen quickly
HELD_MAX = 1000  # readings kept in memory while the outbox cannot be written (not durable; see docs/MQTT.md)
OUTBOX_RETRY_S = 10.0  # how often to try opening an outbox that could not be opened


class _NullNotifier:
    watchdog_interval_s = None

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


def make_notifier() -> Any:
    """``device.systemd.Notifier`` (a no-op without $NOTIFY_SOCKET)."""
    try:
        from device.systemd import Notifier
    except ImportError:
        logger.debug("device.systemd not available; sd_notify disabled")
        return _NullNotifier()
    return Notifier()


def format_line(reading: Reading, unit: str = "") -> str:
    """One journald-friendly line per published reading."""
    value = "-" if reading.value is None else reading.value.replace("\n", " | ")
    unit = f" {unit}" if unit and reading.value is not None else ""
    fields = ""
    if reading.fields:
        fields = " " + " ".join(f"{k}={v}" for k, v in sorted(reading.fields.items()))
    raw = reading.raw.replace("\n", " | ")
    return f"{reading.region}: {value}{unit} [{reading.status}] raw={raw!r} conf={reading.confidence:.2f}{fields}"


class Daemon:
    """Wires the stages for one config. Dependencies may be injected (tests, benchmark)."""

    def __init__(self, cfg: Config, config_path: Path | str | None = None, *, recognizer: Any = None,
                 source: FrameSource | None = None, notifier: Any = None, out: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time):
        self.cfg, self.config_path = cfg, Path(config_path) if config_path else None
        self.out = out if out is not None else sys.stdout
        self.clock, self.wall = clock, wall
        self.notifier = notifier if notifier is not None else make_notifier()
        self.times = StageTimes()
        self.recognizer = recognizer
        self._injected_source = source
        self._stop, self._reload = threading.Event(), threading.Event()
        self._commands: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.frames_read = self.published = self.frame_errors = self.frames_seen = 0
        self.first_publish_s: float | None = None
        self.started_s = clock()
        self.last_frame: Frame | None = None
        self.publisher = self.outbox = None
        # readings the outbox could not store (disk full, read-only): held here, oldest first, retried
        self.held: deque[tuple[str, dict, str]] = deque()
        self.held_dropped = 0
        self._outbox_down_since: float | None = None
        self._outbox_retry_s = float("inf")
        self._build(cfg)

    # -- set-up / tear-down ----------------------------------------------------------------------------------
    def _build(self, cfg: Config) -> None:
        from device.align import load_aligner

        self.cfg = cfg
        self.state_dir = resolve_state_dir(cfg.health)
        self.store = StateStore(self.state_dir / f"last-values-{cfg.device_id}.json")
        saved = self.store.load()
        self.trackers = {r.name: RegionTracker.restore(r, saved.get(r.name)) for r in cfg.regions}
        self.units = {r.name: r.unit for r in cfg.regions}
        self.aligner = load_aligner(cfg.align)
        self.matrix = None
        self.capture = Capture(cfg.camera, self._injected_source)
        if self.recognizer is None:
            from device.recognize import Recognizer

            self.recognizer = Recognizer(cfg.recognizer.model or None, num_threads=cfg.recognizer.threads)
        self._last_persist_s = self._last_stats_s = self.clock()
        if self.publisher is None:
            self._start_mqtt(cfg)

    @staticmethod
    def _mqtt_identity(cfg: Config) -> tuple:
        """What the publisher depends on: a reload that keeps these keeps the connection."""
        regions = tuple((r.name, r.kind, r.unit, r.device_class, r.state_class) for r in cfg.regions)
        return cfg.device_id, cfg.mqtt, cfg.outbox, regions, resolve_state_dir(cfg.health)

    def _start_mqtt(self, cfg: Config) -> None:
        if not cfg.mqtt.enabled:
            return
        try:
            from device.outbox import Outbox
            from device.publish import Publisher
        except ImportError as exc:
            logger.error("MQTT disabled: %s (install paho-mqtt: pip install 'edgeocr[device]')", exc)
            return
        self._outbox_retry_s = float("inf")
        try:
            self.outbox = Outbox(cfg.outbox, self.state_dir)
        except OutboxError as exc:  # full or read-only state folder: keep reading, hold readings, retry
            self._outbox_failed(exc)
            self._outbox_retry_s = self.clock() + OUTBOX_RETRY_S
            return
        discovery = [{"region": r.name, "kind": r.kind, "unit": r.unit, "device_class": r.device_class,
                      "state_class": r.state_class} for r in cfg.regions]
        on_command = self.command if cfg.mqtt.commands else None
        self.publisher = Publisher(cfg.mqtt, cfg.device_id, self.outbox, discovery, on_command)
        self.publisher.start()

    def _stop_mqtt(self) -> None:
        if self.publisher is not None:
            self.publisher.stop()
            self.publisher = None
        if self.outbox is not None:
            self.outbox.close()
            self.outbox = None

    def close(self) -> None:
        """Persist, flush and publish ``offline``, release the camera."""
        self.persist(force=True)
        self._flush_held()
        if self.held:
            logger.error("stopping with %d reading(s) the outbox could not store: they are lost", len(self.held))
        self._stop_mqtt()
        self.capture.close()

    # -- control (signal handlers, MQTT thread) ----------------------------------------------------------------
    def request_stop(self, *_: Any) -> None:
        """Finish the current frame, then stop."""
        self._stop.set()

    def request_reload(self, *_: Any) -> None:
        """Reload the config before the next frame."""
        self._reload.set()

    def command(self, topic: str, payload: bytes) -> None:
        """Queue a command from the publisher's thread: ``reread``, ``set/<region>`` (payload value), ``snapshot``."""
        self._commands.put((topic, payload))

    def install_signals(self) -> None:
        """SIGTERM/SIGINT: graceful stop; SIGHUP: reload (main thread only)."""
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGHUP, self.request_reload)

    # -- the loop ---------------------------------------------------------------------------------------------
    def run(self, max_frames: int | None = None) -> int:
        """Run until stopped, the replay ends, or ``max_frames`` frames were taken; returns the exit status."""
        n = len(self.cfg.regions)
        self.notifier.ready()
        self.notifier.status(f"reading {n} region(s) from {self.capture.source.name}")
        logger.info("started: device %s, %d region(s), source %s, state %s", self.cfg.device_id, n,
                    self.capture.source.name, self.state_dir)
        next_due = self.clock()
        last_ping = float("-inf")
        try:
            while not self._stop.is_set():
                reread = self._handle_commands()
                if self._reload.is_set():
                    self.reload()
                now = self.clock()
                if now < next_due and not reread:
                    self._sleep_until(next_due)
                    last_ping = self._health(self.clock(), last_ping)  # waiting between frames is progress too
                    continue
                t0 = self.clock()
                frame = self.capture.read(now)
                self.times.add("capture", self.clock() - t0)
                if self.capture.exhausted:
                    break
                if frame is not None:
                    self.frames_read += 1
                    self._process_safely(frame, reread)
                self.frames_seen = self.capture.frames + self.capture.bad_frames
                if max_frames is not None and self.frames_seen >= max_frames:
                    break
                now = self.clock()
                last_ping = self._health(now, last_ping)
                wait = self.cfg.camera.interval_s if frame is not None else max(
                    self.cfg.camera.interval_s, self.capture.retry_in_s(now))
                next_due = t0 + wait if frame is not None else now + min(wait, 1.0)
        finally:
            self.notifier.stopping()
            self.notifier.status("stopping")
            self.close()
        logger.info("stopped after %d frame(s), %d bad, %d reading(s) published",
                    self.capture.frames, self.capture.bad_frames, self.published)
        return EXIT_OK

    def _sleep_until(self, deadline: float) -> None:
        remaining = deadline - self.clock()
        if remaining > 0:
            self._stop.wait(min(remaining, _SLICE_S))

    def _process_safely(self, frame: Frame, force: bool) -> None:
        """The loop's last resort: a frame that breaks a stage is logged and counted, never fatal."""
        try:
            self.process(frame, force=force)
        except Exception:  # noqa: BLE001 - a daemon must outlive any single frame
            self.frame_errors += 1
            logger.exception("frame %d (%s) failed; skipped (%d so far)", frame.index, frame.name, self.frame_errors)

    def process(self, frame: Frame, force: bool = False) -> list[Reading]:
        """Read every region of one frame, update the trackers, publish what they return."""
        self.last_frame = frame
        alignment = align_frame(self.aligner, frame.image, self.times)
        if alignment is not None:
            if alignment.ok:
                self.matrix = alignment.matrix
            else:
                logger.debug("frame %d: alignment markers not found; using the last transform", frame.index)
        results = read_regions(frame.image, self.cfg.regions, self.recognizer, self.matrix, self.times)
        out = []
        for result in results:
            tracker = self.trackers[result.name]
            reading = tracker.update(result.read, frame.t_s, result.fields)
            if reading is None and force:
                reading = tracker.current(frame.t_s)
            if reading is not None:
                self.emit(reading)
                out.append(reading)
        self.persist()
        return out

    def emit(self, reading: Reading) -> None:
        """Print one line and hand the reading to the publisher."""
        t0 = self.clock()
        print(format_line(reading, self.units.get(reading.region, "")), file=self.out, flush=True)
        if self.publisher is not None or self._outbox_down_since is not None:
            self.store_reading(reading.region, reading.to_state(), reading.value or "")
        self.times.add("publish", self.clock() - t0)
        self.published += 1
        if self.first_publish_s is None:
            self.first_publish_s = self.clock() - self.started_s

    def store_reading(self, region: str, state: dict, value: str) -> None:
        """Queue a reading in the outbox, after any held ones (order kept); hold it when the outbox fails.

        Held readings are NOT durable: at most ``HELD_MAX`` (the oldest are dropped, counted and logged),
        lost if the process dies. Every outage is logged at ERROR and shown in stats / STATUS.
        """
        if len(self.held) >= HELD_MAX:
            self.held.popleft()
            self.held_dropped += 1
            if self.held_dropped == 1 or self.held_dropped % 100 == 0:
                logger.error("outbox still not writable: dropped the oldest held reading (%d dropped so far)",
                             self.held_dropped)
        self.held.append((region, state, value))
        self._flush_held()

    def _flush_held(self) -> None:
        while self.held and self.publisher is not None:
            try:
                self.publisher.publish_state(*self.held[0])
            except OutboxError as exc:
                self._outbox_failed(exc)
                return
            self.held.popleft()
        if not self.held and self._outbox_down_since is not None and self.publisher is not None:
            logger.warning("outbox writable again after %.0f s: held readings stored",
                           self.clock() - self._outbox_down_since)
            self._outbox_down_since = None

    def _outbox_failed(self, exc: Exception) -> None:
        if self._outbox_down_since is None:
            self._outbox_down_since = self.clock()
            logger.error("%s: readings are held in memory (not durable, at most %d) until it can be written",
                         exc, HELD_MAX)

    def persist(self, force: bool = False) -> None:
        """Write the last accepted values (throttled to ``health.persist_interval_s``)."""
        dirty = any(t.dirty for t in self.trackers.values())
        now = self.clock()
        if not dirty or (not force and now - self._last_persist_s < self.cfg.health.persist_interval_s):
            return
        try:
            self.store.save({name: t.persisted() for name, t in self.trackers.items()})
        except OSError as exc:
            logger.warning("%s: cannot save last values (%s)", self.store.path, exc.strerror or exc)
            return
        for t in self.trackers.values():
            t.dirty = False
        self._last_persist_s = now

    def _health(self, now: float, last_ping: float) -> float:
        if self.publisher is None and now >= self._outbox_retry_s:
            self._start_mqtt(self.cfg)  # the outbox could not be opened: try again
        if self.held and self.publisher is not None:
            self._flush_held()
        interval = getattr(self.notifier, "watchdog_interval_s", None)
        if self.cfg.health.watchdog and interval and now - last_ping >= interval / 2.0:
            self.notifier.watchdog()
            last_ping = now
        if now - self._last_stats_s >= self.cfg.mqtt.stats_interval_s:
            self._last_stats_s = now
            stats = self.stats(now)
            held = f", outbox failing: {len(self.held)} held in memory" if self._outbox_down_since is not None else ""
            self.notifier.status(f"{stats['fps']:.1f} frames/s, {stats['frames']} frames, {stats['bad_frames']} "
                                 f"bad, camera {'ok' if self.capture.healthy else 'down'}{held}")
            if self.publisher is not None:
                self.publisher.publish_stats(stats)
        return last_ping

    def stats(self, now: float) -> dict[str, Any]:
        """Health numbers for ``<prefix>/<device>/stats`` (the publisher adds outbox depth and CPU temperature)."""
        uptime = max(1e-9, now - self.started_s)
        per_frame = sum(self.times.mean_ms(s) * self.times.count.get(s, 0) for s in self.times.count)
        return {
            "fps": round(self.frames_read / uptime, 2), "frames": self.capture.frames,
            "bad_frames": self.capture.bad_frames, "camera_failures": self.capture.failures,
            "camera_ok": self.capture.healthy, "latency_ms": round(per_frame / max(1, self.frames_read), 1),
            "frame_errors": self.frame_errors, "published": self.published, "uptime_s": round(uptime, 1),
            "outbox_held": len(self.held), "outbox_held_dropped": self.held_dropped,
            "stages_ms": {stage: round(self.times.mean_ms(stage), 2) for stage in self.times.count},
        }

    # -- commands and reload ----------------------------------------------------------------------------------
    def _handle_commands(self) -> bool:
        """Run queued commands; True when a re-read was asked for."""
        reread = False
        while True:
            try:
                topic, payload = self._commands.get_nowait()
            except queue.Empty:
                return reread
            try:
                reread |= self.run_command(topic, payload)
            except Exception:  # noqa: BLE001 - a command must never stop the daemon
                logger.exception("command %r failed; ignored", topic[:64])

    def run_command(self, topic: str, payload: bytes) -> bool:
        """``reread`` (read and publish now), ``set/<region>`` (reference value), ``snapshot`` (annotated PNG)."""
        name = topic.split("/cmd/", 1)[-1].removeprefix("cmd/").strip("/")
        try:
            text = payload.decode("utf-8").strip()
        except UnicodeDecodeError:
            logger.warning("command %r refused: payload is not UTF-8", name[:64])
            return False
        verb, _, region = name.partition("/")
        logger.info("command %r %r", name[:64], text[:64])
        if verb in ("reread", "read"):
            return True
        if verb in ("set", "set_reference") and region in self.trackers:
            try:
                self.emit(self.trackers[region].set_reference(text, self.wall()))
            except ValueError as exc:
                logger.warning("command %s refused: %s", name, str(exc)[:200])
            self.persist(force=True)
        elif verb == "snapshot":
            self.snapshot()
        else:
            logger.warning("command %r: unknown (expected reread, set/<region>, snapshot)", name[:64])
        return False

    def snapshot(self) -> Path | None:
        """Write the last frame, annotated, to ``<state_dir>/snapshot.png``."""
        from device.preview import render_preview

        if self.last_frame is None:
            logger.warning("snapshot: no frame yet")
            return None
        path = self.state_dir / "snapshot.png"
        try:
            render_preview(self.cfg, self.last_frame.image, self.recognizer, self.aligner, path)
        except OSError as exc:
            logger.warning("snapshot: cannot write %s (%s)", path, exc.strerror or exc)
            return None
        logger.info("snapshot written to %s", path)
        return path

    def reload(self) -> None:
        """SIGHUP: load the config again; keep the running one when the new one is invalid."""
        self._reload.clear()
        if self.config_path is None:
            return
        self.notifier.reloading()
        try:
            cfg = load_config(self.config_path)
        except ConfigError as exc:
            for message in exc.messages:
                logger.error("reload refused: %s", message)
            self.notifier.ready()
            return
        logger.info("reloading %s", self.config_path)
        self.persist(force=True)
        self.capture.close()
        if self._mqtt_identity(cfg) != self._mqtt_identity(self.cfg):
            self._stop_mqtt()
        if cfg.recognizer != self.cfg.recognizer:
            self.recognizer = None
        self._build(cfg)
        self.notifier.ready()
