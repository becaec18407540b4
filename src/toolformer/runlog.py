"""The run log: every `ask`, `chat` and served request in SQLite (`$TOOLFORMER_HOME/logs.db`), read by `toolformer logs`.

One row of `responses` per answer (prompt, model, answer, token counts, milliseconds, where it came from: `ask`,
`chat` or `serve`, and the conversation a chat turn belongs to), one row of `calls` per tool call it ran (tool,
input, output, ok, milliseconds), in order. The schema grows by numbered migrations (`MIGRATIONS`), applied in
order once each and recorded in `_migrations`, the way `llm logs` keeps its database.

Writing never breaks a request: `RunLog.record` swallows every failure (read-only home, locked or broken
database), warns once and returns None. `open_run_log` gives None when logging is off (`--no-log`, or
`TOOLFORMER_NO_LOG=1`). Reading (`read_responses`) raises a one-line `DataError` for a file that is no run log.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from toolformer.errors import DataError
from toolformer.paths import toolformer_home
from toolformer.runtime.results import CallTrace

logger = logging.getLogger(__name__)

LOG_FILE = "logs.db"
NO_LOG_ENV = "TOOLFORMER_NO_LOG"
BUSY_TIMEOUT = 2.0  # seconds a write waits for another writer before it gives up (and the answer goes out)


@dataclass(frozen=True)
class Migration:
    """One numbered step of the schema: statements run in one transaction, recorded in `_migrations`."""

    number: int
    name: str
    statements: tuple[str, ...]


# Append only: a database records which numbers it has, so an edited or renumbered step would never run again.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "responses and calls",
        (
            """CREATE TABLE responses (
                id INTEGER PRIMARY KEY,
                time TEXT NOT NULL,
                model TEXT NOT NULL,
                prompt TEXT NOT NULL,
                answer TEXT NOT NULL,
                prompt_tokens INTEGER,
                completion_tokens INTEGER,
                duration_ms INTEGER,
                source TEXT NOT NULL,
                conversation_id TEXT
            )""",
            """CREATE TABLE calls (
                response_id INTEGER NOT NULL REFERENCES responses(id) ON DELETE CASCADE,
                position INTEGER NOT NULL,
                tool TEXT NOT NULL,
                input TEXT NOT NULL,
                output TEXT NOT NULL,
                ok INTEGER NOT NULL,
                ms REAL,
                PRIMARY KEY (response_id, position)
            )""",
        ),
    ),
    Migration(
        2,
        "decoding options, finish reason, filter indexes",
        (
            "ALTER TABLE responses ADD COLUMN options TEXT",  # the DecodeConfig as JSON
            "ALTER TABLE responses ADD COLUMN finish_reason TEXT",
            "CREATE INDEX responses_model ON responses(model)",
            "CREATE INDEX responses_conversation ON responses(conversation_id)",
            "CREATE INDEX calls_tool ON calls(tool COLLATE NOCASE)",
        ),
    ),
)


def log_path() -> Path:
    """The run log's database: `$TOOLFORMER_HOME/logs.db`."""
    return toolformer_home() / LOG_FILE


def logging_disabled() -> bool:
    """Whether `$TOOLFORMER_NO_LOG` turns the run log off (any value but empty, 0, false, no, off)."""
    return os.environ.get(NO_LOG_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


# ---------------------------------------------------------------------------------------------------------------
# The schema


def applied(conn: sqlite3.Connection) -> set[int]:
    """The migration numbers `conn`'s database has (none for a new file)."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (number INTEGER PRIMARY KEY, name TEXT, applied TEXT)"
    )
    return {row[0] for row in conn.execute("SELECT number FROM _migrations")}


def migrate(conn: sqlite3.Connection, upto: int | None = None) -> int:
    """Apply the migrations `conn`'s database lacks, in order (up to number `upto`); returns the newest applied.

    Each runs in its own transaction, taken with a write lock, so two processes opening one new file at once
    cannot both apply it. `conn` must be in autocommit mode (`isolation_level=None`).
    """
    done = applied(conn)
    for step in MIGRATIONS:
        if step.number in done or (upto is not None and step.number > upto):
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            if step.number not in applied(conn):  # another process may have applied it while we waited
                for statement in step.statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO _migrations (number, name, applied) VALUES (?, ?, ?)",
                    (step.number, step.name, _now()),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        done.add(step.number)
    return max(applied(conn), default=0)


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the database at `path` in autocommit mode, usable from any thread (callers lock)."""
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


# ---------------------------------------------------------------------------------------------------------------
# Writing


class RunLog:
    """The writer: `record` one answer and its calls. Opens (and migrates) the database on the first write.

    Safe to share between threads (a server's request threads): writes take a lock. `warn` gets one line the
    first time a write fails (default: a logging warning); later failures go to the debug log, and each later
    write tries again, so a database that was locked for a moment logs again once it is free.
    """

    def __init__(self, path: Path | str | None = None, warn: Callable[[str], None] | None = None) -> None:
        self.path = Path(path) if path is not None else log_path()
        self.warn = warn or logger.warning
        self.warned = False
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def record(
        self,
        *,
        source: str,
        model: str,
        prompt: str,
        answer: str,
        calls: Sequence[CallTrace] = (),
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        duration_ms: float | None = None,
        conversation_id: str | None = None,
        options: Any = None,
        finish_reason: str | None = None,
    ) -> int | None:
        """Write one answer and its calls; its id, or None when the write failed (never raises).

        `options`: the decoding settings (a dataclass such as `DecodeConfig`, or a dict), stored as JSON.
        """
        with self._lock:
            try:
                return self._insert(
                    (
                        _now(),
                        model,
                        prompt,
                        answer,
                        prompt_tokens,
                        completion_tokens,
                        None if duration_ms is None else round(duration_ms),
                        source,
                        conversation_id,
                        _options_json(options),
                        finish_reason,
                    ),
                    calls,
                )
            except Exception as exc:  # a log must never cost the user the answer
                self._failed(exc)
                return None

    def close(self) -> None:
        """Close the connection (a later `record` opens it again)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _insert(self, response: tuple[Any, ...], calls: Sequence[CallTrace]) -> int:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = connect(self.path)
            try:
                migrate(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            cursor = conn.execute(
                "INSERT INTO responses (time, model, prompt, answer, prompt_tokens, completion_tokens, "
                "duration_ms, source, conversation_id, options, finish_reason) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                response,
            )
            rid = int(cursor.lastrowid or 0)
            conn.executemany(
                "INSERT INTO calls (response_id, position, tool, input, output, ok, ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (rid, i, c.tool, c.input, c.output, int(bool(c.ok)), c.seconds * 1000)
                    for i, c in enumerate(calls)
                ],
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return rid

    def _failed(self, exc: Exception) -> None:
        if self._conn is not None:  # start afresh next time (the file may have been fixed or replaced)
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
        message = f"run log: could not write {self.path}: {exc} (the answer is not logged; {NO_LOG_ENV}=1 turns logging off)"
        if self.warned:
            logger.debug(message)
            return
        self.warned = True
        self.warn(" ".join(message.split("\n")))


def open_run_log(
    enabled: bool = True, path: Path | str | None = None, warn: Callable[[str], None] | None = None
) -> RunLog | None:
    """The run log to write to, or None when logging is off: `enabled` False (`--no-log`) or `$TOOLFORMER_NO_LOG`."""
    if not enabled or logging_disabled():
        return None
    return RunLog(path, warn)


def _options_json(options: Any) -> str | None:
    if options is None:
        return None
    if is_dataclass(options) and not isinstance(options, type):
        options = asdict(options)
    return json.dumps(options, ensure_ascii=False, default=str)


# ---------------------------------------------------------------------------------------------------------------
# Reading


def read_responses(
    path: Path | str | None = None, n: int = 3, model: str | None = None, tool: str | None = None
) -> list[dict[str, Any]]:
    """The last `n` logged answers (0: all), oldest first, each a JSON-ready dict with its `calls`.

    `model`: only answers of this model; `tool`: only answers that called this tool (any case). A missing file
    is an empty log. Raises DataError, one line, when the file is not a run log.
    """
    path = Path(path) if path is not None else log_path()
    if not path.is_file():
        return []
    conn: sqlite3.Connection | None = None
    try:
        conn = connect(path)
        migrate(conn)  # an older log is brought up to date first (a no-op, and no write, when it is current)
        where, args = [], []
        if model:
            where.append("model = ?")
            args.append(model)
        if tool:
            where.append(
                "EXISTS (SELECT 1 FROM calls WHERE calls.response_id = responses.id AND calls.tool = ? COLLATE NOCASE)"
            )
            args.append(tool)
        sql = (
            "SELECT * FROM responses"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + " ORDER BY id DESC"
        )
        if n > 0:
            sql += f" LIMIT {int(n)}"
        conn.row_factory = sqlite3.Row
        rows = [dict(row) for row in conn.execute(sql, args)][::-1]
        for row in rows:
            row["options"] = json.loads(row["options"]) if row.get("options") else None
            row["calls"] = [
                {**dict(call), "ok": bool(call["ok"])}
                for call in conn.execute(
                    "SELECT position, tool, input, output, ok, ms FROM calls WHERE response_id = ? ORDER BY position",
                    (row["id"],),
                )
            ]
        return rows
    except sqlite3.Error as exc:
        raise DataError(f"{path}: cannot read the run log: {exc}") from None
    finally:
        if conn is not None:
            conn.close()
