"""What langgraph.json serves: the incident graph and the project's Postgres checkpointer for LangGraph Server."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

from graph.builder import build_graph
from tools.database import open_database

# compiled without a checkpointer: the server injects the one `checkpointer` below yields
graph = build_graph()


@asynccontextmanager
async def checkpointer() -> AsyncIterator[AsyncPostgresSaver]:
    """The project's checkpointer on DATABASE_URL (else the embedded PostgreSQL), with its serializer and migrations."""
    async with open_database() as database:
        yield database.checkpointer
