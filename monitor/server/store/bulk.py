"""Bulk inserts: binary COPY on PostgreSQL (one round trip for thousands of rows), executemany on
SQLite."""

from __future__ import annotations

import contextlib
import fcntl
import gc
import logging
import os
import signal
import sys
import tempfile
import threading
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import IO, Any, NoReturn

import psycopg
import psycopg.copy
import sqlalchemy as sa
from sqlalchemy import Connection

from monitor.metrics import kernels_idle

log = logging.getLogger("cvmon.store.bulk")

#: json and jsonb: SQLAlchemy's bind processor has already made the value a JSON string, which a
#: binary jsonb dumper would encode a second time.
_JSON_OIDS = frozenset({114, 3802})


def bulk_insert(conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (dicts with the same keys) into ``table`` inside the caller's transaction."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(sa.insert(table), list(rows))
        return
    columns = list(rows[0])
    copy_rows(conn, table, columns, [tuple(row[c] for c in columns) for row in rows])


def copy_rows(conn: Connection, table: sa.Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Insert ``rows`` (values in the order of ``columns``) inside the caller's transaction.

    On PostgreSQL this is a COPY in the binary format, with the column types read from the server:
    psycopg then packs each value with its binary dumper instead of formatting and escaping text
    that the server parses again (127 000 metric rows: 0.23 s instead of 1.5 s).
    """
    if conn.dialect.name != "postgresql":
        values = [dict(zip(columns, row, strict=True)) for row in rows]
        if values:
            conn.execute(sa.insert(table), values)
        return
    target = _CopyTarget(conn, table, columns)
    with target.cursor, target.cursor.copy(target.statement) as copy:
        copy.set_types(target.types)
        for row in target.bound(rows):
            copy.write_row(row)


class _CopyTarget:
    """What a binary COPY into ``table`` needs: the statement, the columns' type oids (read from
    the server) and SQLAlchemy's bind processors of the columns that have one."""

    def __init__(self, conn: Connection, table: sa.Table, columns: Sequence[str]) -> None:
        self.table = table.name
        self.processors = [(i, p) for i, c in enumerate(columns) if (p := table.c[c].type.bind_processor(conn.dialect)) is not None]
        self.cursor: psycopg.Cursor[Any] = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        oids = dict(
            self.cursor.execute(
                "SELECT attname, atttypid::int FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                [table.name],
            ).fetchall()
        )
        self.types = [oids[c] for c in columns]
        if _JSON_OIDS.intersection(self.types):
            raise TypeError(f"copy_rows does not take json columns ({table.name})")
        names = ", ".join(f'"{c}"' for c in columns)
        self.statement = f'COPY "{table.name}" ({names}) FROM STDIN (FORMAT BINARY)'

    def bound(self, rows: Iterable[Sequence[Any]]) -> Iterator[Sequence[Any]]:
        if not self.processors:
            yield from rows
            return
        for row in rows:
            row = list(row)
            for i, p in self.processors:
                row[i] = p(row[i])
            yield row


class ForkedCopy:
    """A binary COPY of rows that a child process, forked for them, computes and encodes while
    this process goes on with other work.

    Creating one forks the child and starts sending what it writes: a thread of this process
    forwards the child's stream to a COPY on ``conn`` as it comes, so the server stores the rows
    while the child computes the next ones, and this process does its own work meanwhile. The
    caller must not use ``conn`` until :meth:`wait` returns. A child that fails aborts the COPY
    (and with it the caller's transaction) and :meth:`wait` raises its traceback; leaving the
    block early stops the child. Where the fork itself fails (no memory to commit for a copy of
    the process, under strict overcommit), the rows are computed and stored here, at once.

    Why a process, not a thread: the rows are metrics whose Python parts hold the GIL (a thread
    computing the day windows beside the hour windows gained 1 %). Why fork: the child inherits
    what the rows are computed from (a week of decoded hour states) for free, where a pool of
    processes would have to be sent it. The child only computes and writes to a pipe: it never
    uses the database connection it inherits (its rows are encoded by a cursor that never
    executes) and leaves by ``os._exit``, so no finaliser of the parent's objects runs in it.
    No other thread is inside a metrics kernel when it forks (:func:`monitor.metrics.kernels_idle`),
    so none holds a lock of numba's that the child, compiling a kernel, would wait for forever;
    logging's locks are reset by Python itself.

    Linux only (:data:`FORK_AVAILABLE`): macOS's system libraries are not safe to use in a child
    forked from a threaded process.
    """

    def __init__(self, conn: Connection, table: sa.Table, columns: Sequence[str], rows: Callable[[], Iterable[Sequence[Any]]]) -> None:
        self._target = _CopyTarget(conn, table, columns)
        self._failure: BaseException | None = None
        self._pid: int | None
        self._forwarder: threading.Thread | None
        self._reaping = threading.Lock()
        # a cursor that never executes: psycopg's Copy then only encodes, into the pipe
        self._encoder = encoder = self._target.cursor.connection.cursor()
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 (the child's traceback, if any; closed by close())
        read_end, write_end = os.pipe()
        with contextlib.suppress(OSError):  # 64 KiB by default: fewer wake-ups of the forwarder
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        try:
            with kernels_idle(), warnings.catch_warnings():
                # Python 3.12+ warns about any fork of a threaded process; see the class docstring
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
        except OSError as exc:  # e.g. no memory to commit for a copy of this process (strict overcommit)
            os.close(read_end)
            os.close(write_end)
            self._err.close()
            log.warning("could not fork a process for the rows of %s (%s): computing them in this one", table.name, exc)
            self._pid, self._forwarder = None, None
            copy_rows(conn, table, columns, rows())
            return
        if pid == 0:
            os.close(read_end)
            self._child(encoder, os.fdopen(write_end, "wb", buffering=_PIPE_BYTES), rows)  # never returns
        os.close(write_end)
        self._pid = pid
        self._forwarder = threading.Thread(target=self._forward, args=(read_end,), name="cvmon-forked-copy", daemon=True)
        self._forwarder.start()

    def _child(self, encoder: psycopg.Cursor[Any], out: IO[bytes], rows: Callable[[], Iterable[Sequence[Any]]]) -> NoReturn:
        code = 1
        try:
            # short-lived: a collection would walk (and copy the pages of) every object inherited
            gc.disable()
            with psycopg.Copy(encoder, binary=True, writer=psycopg.copy.FileWriter(out)) as copy:
                copy.set_types(self._target.types)
                for row in self._target.bound(rows()):
                    copy.write_row(row)
            out.flush()
            code = 0
        except BaseException:
            self._err.write(traceback.format_exc().encode())
            self._err.flush()
        finally:
            os._exit(code)

    def _forward(self, read_end: int) -> None:
        """The forwarder thread: the child's stream into the COPY, which is aborted unless the
        child finished well (its stream ends when it exits, a failure's too)."""
        try:
            with os.fdopen(read_end, "rb", buffering=0) as stream, self._target.cursor.copy(self._target.statement) as copy:
                while chunk := stream.read(_PIPE_BYTES):
                    copy.write(chunk)
                code = self._reap(kill=False)
                if code != 0:
                    raise RuntimeError(f"the child process computing rows for {self._target.table} {self._how_it_ended(code)}")
        except BaseException as exc:
            self._failure = exc
        finally:
            self._reap(kill=True)  # still running if the COPY failed first

    def _reap(self, *, kill: bool) -> int | None:
        """Wait for the child (killed first if ``kill``): its exit code, or None when an earlier
        call reaped it. Under a lock, so a pid is never signalled after it was reaped (and maybe
        reused)."""
        with self._reaping:
            if self._pid is None:
                return None
            if kill:
                os.kill(self._pid, signal.SIGKILL)
            _, status = os.waitpid(self._pid, 0)
            self._pid = None
        return os.waitstatus_to_exitcode(status)

    def _how_it_ended(self, code: int | None) -> str:
        if code is None:
            return "was stopped"
        if code < 0:
            return f"was killed by signal {-code}"
        self._err.seek(0)
        detail = self._err.read().decode(errors="replace").strip()
        return "failed" + (f":\n{detail}" if detail else "")

    def wait(self) -> None:
        """Wait until the child's rows are stored (in the caller's transaction); raise if they are not."""
        if self._forwarder is not None:
            self._forwarder.join()
        if self._failure is not None:
            raise self._failure

    def close(self) -> None:
        """Stop the child if it is still running (the caller failed meanwhile); free what it held."""
        self._reap(kill=True)
        if self._forwarder is not None:
            self._forwarder.join()
        self._err.close()
        self._encoder.close()
        self._target.cursor.close()

    def __enter__(self) -> ForkedCopy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: Bytes the child's pipe holds, and the forwarder's reads.
_PIPE_BYTES = 1 << 20


#: Whether :class:`ForkedCopy` may be used here.
FORK_AVAILABLE = sys.platform == "linux"
