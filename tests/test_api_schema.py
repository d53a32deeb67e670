"""The HTTP API against its own OpenAPI schema (schemathesis): no 5xx, documented shapes, auth on every route.

The real service runs as a subprocess (uvicorn) on a fresh database holding one incident waiting at the approval
gate, so generated requests reach the deep paths too. Run workers are off, so no graph runs while fuzzing;
Hypothesis is derandomized, so every run sends the same requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, seed, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from graph.context import Context
from server import create_app
from service.runs import IncidentRunner
from service.settings import ServerSettings
from sim.scenarios import build_scenario
from state import TelemetrySpec
from tests.live_server import API_KEY, LiveServer, start_server
from tools.database import open_database

GATED = "inc-schema-gated"
OPEN_PATHS = {"/healthz", "/readyz", "/metrics"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
BOUNDED = settings(
    max_examples=30, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
SEED = 20261121  # schemathesis seeds Hypothesis per process unless the test carries a seed of its own


async def _seed_gated_incident(database_url: str, output_dir: Path) -> list[str]:
    """Run one sim deployment regression to the approval gate; its checkpoint ids."""
    end = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    scenario = build_scenario("deployment_regression", 1, end)
    telemetry = TelemetrySpec(kind="sim", scenario="deployment_regression", seed=1, end=end)
    async with open_database(database_url) as db:
        runner = IncidentRunner(db, Context(output_dir=str(output_dir), notify_channels=("file",)))
        result = await runner.start(scenario.alert, telemetry, incident_id=GATED)
        assert result.status == "awaiting_approval"
        return [entry.checkpoint_id for entry in await runner.history(GATED)]


@pytest.fixture(scope="module")
def checkpoints(module_database_url, tmp_path_factory) -> list[str]:
    return asyncio.run(_seed_gated_incident(module_database_url, tmp_path_factory.mktemp("seed")))


@pytest.fixture(scope="module")
def server(module_database_url, tmp_path_factory, checkpoints) -> Iterator[LiveServer]:
    server = start_server(module_database_url, tmp_path_factory.mktemp("server"), run_workers=False)
    yield server
    server.stop()
    assert "Traceback" not in server.log(), server.log()[-3000:]


# The schema the app publishes at /openapi.json (test_served_schema_is_the_app_schema checks that they agree).
APP_SCHEMA = create_app(ServerSettings(api_keys={API_KEY: "webhook"}, run_workers=False)).openapi()
schema = schemathesis.openapi.from_dict(APP_SCHEMA)


def assert_error_shape(response) -> None:
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body


@schema.parametrize()
@BOUNDED
@seed(SEED)
def test_authenticated_calls_never_fail_and_match_the_schema(case, server, checkpoints):
    response = case.call_and_validate(base_url=server.url, headers=server.headers, checks=CHECKS)
    assert_error_shape(response)
    if "incident_id" in (case.path_parameters or {}):
        # The same request about the incident at the gate (and one of its checkpoints) reaches the deep paths.
        case.path_parameters["incident_id"] = GATED
        if isinstance(case.body, dict) and "checkpoint_id" in case.body:
            case.body["checkpoint_id"] = checkpoints[len(checkpoints) // 2]
        response = case.call_and_validate(base_url=server.url, headers=server.headers, checks=CHECKS)
        assert_error_shape(response)


@schema.parametrize()
@BOUNDED
@seed(SEED)
def test_unauthenticated_calls_are_refused(case, server):
    response = case.call_and_validate(base_url=server.url, checks=CHECKS)
    assert_error_shape(response)
    if case.method.upper() != case.operation.method.upper():  # the coverage phase tries other methods too
        assert response.status_code == 405
    elif case.path in OPEN_PATHS:
        assert response.status_code < 400
    else:
        assert response.status_code == 401, (case.method, case.path, response.status_code, response.text)
        assert response.json()["error"]["code"] == "unauthorized"


def test_served_schema_is_the_app_schema(server):
    assert httpx.get(f"{server.url}/openapi.json").json() == APP_SCHEMA
