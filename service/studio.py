"""What langgraph.json serves to LangGraph Server and `langgraph dev`: the graph and our checkpointer."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

from graph.builder import build_graph
from tools.database import open_database

# compiled without a checkpointer: the server injects the one `checkpointer` below yields
graph = build_graph()


@asynccontextmanager
async def checkpointer() -> AsyncIterator[AsyncPostgresSaver]:
    """The Postgres checkpointer on DATABASE_URL (else the embedded server), with our serde and migrations."""
    async with open_database() as database:
        yield database.checkpointer
