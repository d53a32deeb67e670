"""PostgreSQL: the URL to use (DATABASE_URL or an embedded pgserver), the checkpointer, and migrations."""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import socket
import stat
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import psycopg
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

import migrations
from state import checkpoint_types

MIGRATIONS_DIR = Path(migrations.__file__).resolve().parent
_MIGRATION_LOCK = 0x1C0C1107  # advisory lock key: one migrator at a time across replicas
_embedded = None  # the pgserver handle, kept for the life of the process


def data_home() -> Path:
    """Per-user data directory ($INCIDENT_COPILOT_HOME or ~/.local/share/incident-copilot)."""
    home = os.environ.get("INCIDENT_COPILOT_HOME") or Path.home() / ".local" / "share" / "incident-copilot"
    path = Path(home)
    path.mkdir(parents=True, exist_ok=True)
    return path


def embedded_database_url() -> str:
    """Start (or attach to) the embedded PostgreSQL in the data directory and return its URL."""
    global _embedded
    if _embedded is None:
        runtime = data_home() / "run"
        runtime.mkdir(exist_ok=True)
        runtime.chmod(stat.S_IRWXU)
        # pgserver reads its lock and socket directory from XDG_RUNTIME_DIR when it is imported
        os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime))
        import pgserver

        _embedded = pgserver.get_server(data_home() / "pgdata", cleanup_mode="stop")
    return _embedded.get_uri()


def resolve_database_url(url: str | None = None) -> str:
    """The given URL, else DATABASE_URL, else the embedded server's."""
    return url or os.environ.get("DATABASE_URL") or embedded_database_url()


def checkpoint_serializer() -> JsonPlusSerializer:
    """The serializer that revives the state's pydantic models without warnings."""
    return JsonPlusSerializer(allowed_msgpack_modules=checkpoint_types())


async def apply_migrations(conn: AsyncConnection) -> list[str]:
    """Apply migrations/NNNN_*.sql in order, in one transaction under an advisory lock; return the new ones."""
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur = await conn.execute("SELECT name FROM schema_migrations")
        done = {row["name"] for row in await cur.fetchall()}
        applied += await _apply_queue_schema(conn, done)
        files = sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql"))
        if not files:  # an install without its package data must not look like an up-to-date schema
            raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}: the installation is incomplete")
        for path in files:
            if path.name in done:
                continue
            await conn.execute(path.read_text(), prepare=False)
            await conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (path.name,))
            applied.append(path.name)
    return applied


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


async def _apply_queue_schema(conn: AsyncConnection, done: set[str]) -> list[str]:
    """The run queue's tables (procrastinate's own schema, before our migrations, which refer to it): installed
    whole the first time, then upgraded with procrastinate's migration files when its version grows."""
    current = importlib.metadata.version("procrastinate")
    name = f"procrastinate {current}"
    if name in done:  # up to date, as on every start but the first: procrastinate itself need not be imported
        return []
    import procrastinate
    from procrastinate.schema import SchemaManager

    installed = [_version(n.split()[1]) for n in done if n.startswith("procrastinate ")]
    if not installed:
        await conn.execute(SchemaManager.get_schema(), prepare=False)
    else:
        since = max(installed)
        steps = sorted(Path(procrastinate.__file__).parent.glob("sql/migrations/[0-9]*.sql"))
        for step in steps:
            if since < _version(step.name.split("_")[0]) <= _version(current):
                await conn.execute(step.read_text(), prepare=False)
    await conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
    return [name]


# Every connection's TCP settings, unless the URL sets them itself. A connection whose peer fell silent (a partition
# that drops packets, a host gone without a word) is otherwise trusted for hours: keepalive probes after 10 s idle,
# every 5 s, and data left unacknowledged for 30 s (a statement sent into the void) make the OS close it within
# about half a minute, for the run workers' long-lived connections too. libpq ignores them on a Unix socket (the
# embedded PostgreSQL). connect_timeout bounds making a connection (libpq's default waits as long as the OS does).
TCP_PARAMETERS = {"connect_timeout": "10", "keepalives": "1", "keepalives_idle": "10", "keepalives_interval": "5",
                  "keepalives_count": "3", "tcp_user_timeout": "30000"}
# psycopg_pool retries a failed connection with a doubling wait until reconnect_timeout (5 min by default): after
# a minute's outage its next try could come half a minute after the database is back. Given up after 10 s, the
# attempt starts afresh at the next request that waits, so a try comes at most ~5 s apart while requests come.
RECONNECT_SECONDS = 10.0
# A new connection to a database that answers takes milliseconds, a busy one's included; one that takes a second
# is not coming (psycopg's own connect_timeout cannot go under 2 s).
PROBE_SECONDS = 1.0


def connection_parameters(conninfo: str) -> dict[str, str]:
    """The TCP_PARAMETERS that `conninfo` does not set itself."""
    given = conninfo_to_dict(conninfo)
    return {name: value for name, value in TCP_PARAMETERS.items() if name not in given}


class DatabaseTimeout(psycopg.OperationalError):
    """The database did not answer a statement in time; the statement may have been carried out all the same."""


def cut_connection(conn: AsyncConnection) -> None:
    """Shut the connection's socket down (the descriptor stays libpq's), so that whatever waits on it fails now."""
    try:
        with socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except (psycopg.Error, OSError):
        pass  # closed already


class OutageAwarePool(AsyncConnectionPool):
    """A pool that tells an outage from a busy moment: a caller that got no connection within `outage_timeout`
    asks the database directly (one probe a second, shared by every waiter) and gives up (PoolTimeout) when it
    does not answer; when it does, the pool's connections are merely all in use, and the caller waits up to the
    usual timeout. `connection_within()` applies the same rule to the statements of a request."""

    def __init__(self, *args: Any, outage_timeout: float, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.outage_timeout = outage_timeout
        self._probe_lock = asyncio.Lock()
        self._probed_at, self._answers = float("-inf"), True

    async def getconn(self, timeout: float | None = None) -> Any:
        timeout = self.timeout if timeout is None else timeout
        if self.outage_timeout >= timeout:
            return await super().getconn(timeout)
        started = time.monotonic()
        try:
            return await super().getconn(self.outage_timeout)
        except PoolTimeout:
            if not await self.database_answers():
                raise
        left = timeout - (time.monotonic() - started)
        if left <= 0:
            raise PoolTimeout(f"couldn't get a connection after {timeout:.2f} sec")
        return await super().getconn(left)

    @asynccontextmanager
    async def connection_within(self, deadline: float) -> AsyncIterator[AsyncConnection]:
        """A connection for work that must be done within `deadline` seconds. A statement still unanswered after
        `outage_timeout` while the database does not answer a new connection (a partition: the pooled connection
        went silent), or at the deadline whatever the probes say, has its connection cut: the work fails with
        DatabaseTimeout at once and the pool discards the connection, instead of waiting for the network."""
        ends = time.monotonic() + deadline
        conn = await self.getconn(deadline)
        watchdog: asyncio.Task | None = None

        def watch() -> None:
            nonlocal watchdog
            watchdog = asyncio.create_task(self._cut_when_silent(conn, ends))

        # a timer, not a task, until the work is slow: the usual request, answered in a millisecond, then costs
        # about a fifth of the CPU a task would (a timer set and cancelled: ~3 us; a task started and cancelled:
        # ~13 us, on this 2-core machine)
        timer = asyncio.get_running_loop().call_later(max(0.0, min(self.outage_timeout, ends - time.monotonic())),
                                                      watch)
        try:
            yield conn
        except psycopg.Error as exc:
            if watchdog is not None and watchdog.done() and not watchdog.cancelled():
                raise DatabaseTimeout("the database did not answer in time") from exc
            raise
        finally:
            timer.cancel()
            if watchdog is not None:
                watchdog.cancel()
            await self.putconn(conn)

    async def _cut_when_silent(self, conn: AsyncConnection, ends: float) -> None:
        """Cut `conn` as soon as the database does not answer a probe, or at `ends`."""
        while time.monotonic() < ends and await self.database_answers():
            await asyncio.sleep(min(1.0, max(0.0, ends - time.monotonic())))
        cut_connection(conn)

    async def database_answers(self) -> bool:
        """Whether a new connection to the database can be made now (probed at most once a second). A server
        that refuses it for having too many clients answers all the same: it is busy, not gone."""
        async with self._probe_lock:
            if time.monotonic() - self._probed_at >= 1.0:
                try:
                    probe = await asyncio.wait_for(AsyncConnection.connect(self.conninfo, **self.kwargs), PROBE_SECONDS)
                    await probe.close()
                    self._answers = True
                except psycopg.Error as exc:
                    self._answers = exc.sqlstate == "53300"  # too_many_connections
                except TimeoutError:
                    self._answers = False
                self._probed_at = time.monotonic()
            return self._answers


async def take_migration_lock(conn: AsyncConnection) -> None:
    """Wait for the migration lock by polling, the connection idle between tries. Waiting in pg_advisory_lock is a
    running statement, and the checkpointer's setup in the process that holds the lock runs CREATE INDEX
    CONCURRENTLY, which waits for every running statement to end: two processes starting on a fresh database
    would wait for each other forever (a deadlock PostgreSQL does not detect)."""
    while True:
        cur = await conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (_MIGRATION_LOCK,))
        if (await cur.fetchone())["ok"]:
            return
        await asyncio.sleep(0.1)


@asynccontextmanager
async def open_database(url: str | None = None, *, max_size: int = 10,
                        acquire_timeout: float = 30.0) -> AsyncIterator[Database]:
    """Open the pool, set up the checkpointer's tables and apply our migrations.

    `acquire_timeout`: how long a caller waits for a connection when the pool holds none at all (the database is
    down or unreachable: PoolTimeout, a fast 503 for a service); while the pool's connections are only busy, it
    waits up to 30 s as usual."""
    conninfo = resolve_database_url(url)
    pool = OutageAwarePool(
        conninfo,
        outage_timeout=acquire_timeout,
        min_size=1,
        max_size=max_size,
        reconnect_timeout=RECONNECT_SECONDS,
        open=False,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row,
                **connection_parameters(conninfo)},
    )
    await pool.open(wait=True, timeout=30)
    try:
        saver = AsyncPostgresSaver(pool, serde=checkpoint_serializer())  # type: ignore[arg-type]
        async with pool.connection() as conn:
            # replicas starting together: one sets up the checkpointer's tables and ours, the others wait
            await take_migration_lock(conn)
            try:
                await saver.setup()
                applied = await apply_migrations(conn)
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
        yield Database(url=conninfo, pool=pool, checkpointer=saver, applied=applied)
    finally:
        await pool.close()


class Database:
    """An open pool with the checkpointer that uses it."""

    def __init__(self, url: str, pool: AsyncConnectionPool, checkpointer: AsyncPostgresSaver,
                 applied: list[str] | None = None):
        self.url = url
        self.pool = pool
        self.checkpointer = checkpointer
        self.applied = applied or []  # the migrations this opening applied


@contextmanager
def throwaway_database(admin_url: str, prefix: str = "ic_tmp") -> Iterator[str]:
    """Create a uniquely named database on the admin URL's server and drop it on exit (tests, benchmarks)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_conninfo(admin_url, dbname=name)
    finally:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
