"""Shared fixtures: a fresh PostgreSQL database per test on the local server, dropped afterwards."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mcp.client.stdio  # noqa: F401  (see below)
import psycopg
import pytest

from tools.database import throwaway_database

# mcp binds its stdio servers' stderr to sys.stderr as it is when mcp.client.stdio is first imported. The project
# imports it only when code is read (tools.mcp_code, imported by analyze_code when it runs); were that first import
# to happen inside a test that replaced sys.stderr (capsys: no file descriptor), every later test's MCP server would
# fail to start. Imported here, it binds the real stderr, as the command line and the service do.

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _require_postgres() -> None:
    try:
        psycopg.connect(ADMIN_URL, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {ADMIN_URL} is required under CI and unreachable: {exc}")
        pytest.skip(f"PostgreSQL at {ADMIN_URL} unreachable: {exc}")


@pytest.fixture
def sandbox() -> None:
    """The test sandbox (bubblewrap) must work here: under CI a missing one fails the test, elsewhere it skips."""
    from tools.sandbox import sandbox_problem

    problem = sandbox_problem()
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the test sandbox is required under CI (scripts/install-system-deps.sh): {problem}")
        pytest.skip(f"no test sandbox here: {problem}")


@contextmanager
def fresh_database() -> Iterator[str]:
    """A database with a unique name on the test server; dropped on exit."""
    _require_postgres()
    with throwaway_database(ADMIN_URL, prefix="ic_test") as url:
        yield url


@pytest.fixture
def database_url() -> Iterator[str]:
    """The URL of a new, empty database, dropped when the test ends."""
    with fresh_database() as url:
        yield url


@pytest.fixture(scope="module")
def module_database_url() -> Iterator[str]:
    """One new database for a whole test module (for many independent incidents)."""
    with fresh_database() as url:
        yield url


@pytest.fixture(autouse=True, scope="session")
def private_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private INCIDENT_COPILOT_HOME for the whole session, so tests never touch the user's data."""
    home = tmp_path_factory.mktemp("home")
    old = os.environ.get("INCIDENT_COPILOT_HOME")
    os.environ["INCIDENT_COPILOT_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("INCIDENT_COPILOT_HOME", None)
    else:
        os.environ["INCIDENT_COPILOT_HOME"] = old
