"""Shared fixtures: a fresh PostgreSQL database per test on the local server, dropped afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _admin_connection() -> psycopg.Connection:
    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {ADMIN_URL} is required under CI and unreachable: {exc}")
        pytest.skip(f"PostgreSQL at {ADMIN_URL} unreachable: {exc}")


def _url_for(name: str) -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


@contextmanager
def fresh_database() -> Iterator[str]:
    """Create a database with a unique name; drop it on exit."""
    name = f"ic_test_{uuid.uuid4().hex[:10]}"
    with _admin_connection() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _url_for(name)
    finally:
        with _admin_connection() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
