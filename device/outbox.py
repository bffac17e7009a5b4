"""Store-and-forward queue: every message is durable in sqlite before it is sent, deleted on acknowledgement.

One table, ``seq INTEGER PRIMARY KEY AUTOINCREMENT`` so sequence numbers only grow, across restarts and
after deletes. WAL journal with ``synchronous=FULL``: ``append`` returns only once the row is on disk.
Bounded by row count and age; what the bounds drop is counted in ``dropped`` and logged.
Thread-safe: the daemon appends while the publisher's thread peeks and acknowledges.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from device.config import OutboxConfig
from device.errors import EdgeOCRError

logger = logging.getLogger(__name__)

# A payload, or a function of the row's seq returning it (so a JSON state can carry its own seq).
Payload = Union[bytes, Callable[[int], bytes]]  # noqa: UP007 - a runtime alias, Python 3.9 has no X | Y

_LOG_EVERY_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    retain INTEGER NOT NULL,
    created_s REAL NOT NULL
)
"""


class OutboxError(EdgeOCRError):
    """The outbox file cannot be opened or written (disk full, read-only, I/O error); nothing was stored."""


@dataclass(frozen=True)
class OutboxMessage:
    """One queued message; ``seq`` grows monotonically and is never reused."""

    seq: int
    topic: str
    payload: bytes
    retain: bool
    created_s: float


def resolve_outbox_path(cfg: OutboxConfig, state_dir: Path) -> Path:
    """``cfg.path`` made absolute: relative paths resolve against ``state_dir``."""
    path = Path(cfg.path).expanduser()
    return path if path.is_absolute() else Path(state_dir) / path


class Outbox:
    """A durable FIFO of MQTT messages in one sqlite file."""

    def __init__(self, cfg: OutboxConfig, state_dir: Path, clock: Callable[[], float] = time.time):
        self.cfg = cfg
        self.path = resolve_outbox_path(cfg, state_dir)
        self.dropped = 0
        self._unlogged = 0  # drops not yet reported (the warning is rate limited while the queue stays full)
        self._logged_at: float | None = None
        self._clock = clock
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = self._open()
        except (OSError, sqlite3.OperationalError) as exc:  # full, read-only, locked: the file may be fine
            raise OutboxError(f"outbox {self.path}: cannot open ({getattr(exc, 'strerror', None) or exc})") from None
        except sqlite3.DatabaseError as exc:  # not a database / malformed: keep it for inspection, start afresh
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            logger.error("outbox %s is unreadable (%s); moved aside to %s, starting empty", self.path, exc, aside)
            for suffix in ("", "-wal", "-shm"):
                src = Path(f"{self.path}{suffix}")
                if src.exists():
                    src.replace(Path(f"{aside}{suffix}"))
            self._db = self._open()
        row = self._db.execute("SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM outbox").fetchone()
        self._depth = int(row[0])
        seq_row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        self._last_seq = max(int(row[1]), int(seq_row[0]) if seq_row else 0)
        with self._lock:
            try:
                self._enforce_bounds()
            except sqlite3.Error as exc:  # e.g. a full disk: keep every row, try again on the next append
                logger.warning("outbox %s: cannot apply the bounds now (%s)", self.path, exc)
        if self._depth:
            logger.info("outbox %s: %d message(s) waiting from a previous run", self.path, self._depth)

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=10.0)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute(_SCHEMA)
            db.execute("SELECT COUNT(*) FROM outbox").fetchone()  # surfaces a malformed file now
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def append(self, topic: str, payload: bytes, retain: bool) -> int:
        """Queue one message durably; return its seq."""
        return self.append_many([(topic, payload, retain)])[0]

    def append_many(self, messages: Iterable[tuple[str, Payload, bool]]) -> list[int]:
        """Queue several messages in one transaction (one fsync); return their seqs in order.

        A payload may be a function of the row's seq, called inside the transaction.
        """
        now = self._clock()
        seqs = []
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for topic, payload, retain in messages:
                    body = payload if isinstance(payload, (bytes, bytearray)) else b""
                    cur = self._db.execute(
                        "INSERT INTO outbox (topic, payload, retain, created_s) VALUES (?, ?, ?, ?)",
                        (topic, bytes(body), int(bool(retain)), now),
                    )
                    seq = int(cur.lastrowid)
                    if callable(payload):
                        self._db.execute("UPDATE outbox SET payload = ? WHERE seq = ?", (bytes(payload(seq)), seq))
                    seqs.append(seq)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise OutboxError(f"outbox {self.path}: cannot write ({exc})") from None
            except BaseException:
                self._rollback()
                raise
            self._depth += len(seqs)
            self._last_seq = max([self._last_seq, *seqs])
            try:  # the rows are committed: a failed clean-up must not make the caller store them twice
                self._enforce_bounds()
            except sqlite3.Error as exc:
                self._rollback()
                logger.warning("outbox %s: cannot apply the bounds now (%s)", self.path, exc)
        return seqs

    def _rollback(self) -> None:
        """Roll back if a transaction is open (sqlite already rolled back after e.g. SQLITE_FULL)."""
        if self._db.in_transaction:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error as exc:
                logger.debug("outbox rollback: %s", exc)

    def peek(self, limit: int, after_seq: int = 0) -> list[OutboxMessage]:
        """Up to ``limit`` messages with seq > ``after_seq``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, payload, retain, created_s FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, max(0, int(limit))),
            ).fetchall()
        return [OutboxMessage(int(s), t, bytes(p), bool(r), float(c)) for s, t, p, r, c in rows]

    def ack(self, seq: int) -> None:
        """Delete a delivered message (unknown seqs are ignored)."""
        self.ack_many([seq])

    def ack_many(self, seqs: Sequence[int]) -> None:
        """Delete several delivered messages in one transaction."""
        if not seqs:
            return
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                removed = 0
                for seq in seqs:
                    removed += self._db.execute("DELETE FROM outbox WHERE seq = ?", (int(seq),)).rowcount
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise OutboxError(f"outbox {self.path}: cannot delete delivered messages ({exc})") from None
            except BaseException:
                self._rollback()
                raise
            self._depth -= removed

    def depth(self) -> int:
        """How many messages wait for delivery."""
        with self._lock:
            return self._depth

    @property
    def last_seq(self) -> int:
        """The highest seq ever handed out (0 for a new outbox)."""
        with self._lock:
            return self._last_seq

    def prune(self) -> int:
        """Apply the row and age bounds now; return how many rows were dropped."""
        with self._lock:
            return self._enforce_bounds()

    def _enforce_bounds(self) -> int:
        """Drop the oldest rows beyond ``max_rows`` and rows older than ``max_age_s``. Caller holds the lock."""
        cutoff = self._clock() - self.cfg.max_age_s
        excess = self._depth - self.cfg.max_rows
        if excess <= 0:
            oldest = self._db.execute("SELECT created_s FROM outbox ORDER BY seq LIMIT 1").fetchone()
            if oldest is None or oldest[0] >= cutoff:
                return 0
        self._db.execute("BEGIN IMMEDIATE")
        try:
            n_rows = 0
            if excess > 0:
                n_rows = self._db.execute(
                    "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)", (excess,)
                ).rowcount
            n_age = self._db.execute("DELETE FROM outbox WHERE created_s < ?", (cutoff,)).rowcount
            self._db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        self._depth -= n_rows + n_age
        self.dropped += n_rows + n_age
        self._unlogged += n_rows + n_age
        now = time.monotonic()
        if self._unlogged and (self._logged_at is None or now - self._logged_at >= _LOG_EVERY_S):
            logger.warning(
                "outbox %s: dropped %d undelivered message(s) (bounds: max_rows=%d, max_age_s=%g); "
                "%d dropped since start",
                self.path, self._unlogged, self.cfg.max_rows, self.cfg.max_age_s, self.dropped,
            )
            self._unlogged, self._logged_at = 0, now
        return n_rows + n_age

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None  # type: ignore[assignment]
