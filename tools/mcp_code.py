"""Code reading over MCP (langchain-mcp-adapters): one session per server for a whole run, read-only tools only,
called by the tool names of GitHub's MCP server for every repository.

A local checkout is read through the official `mcp-server-git` (commits: `git_show`) and this project's
`tools.mcp_repo_server` (`search_code`, `get_file_contents`, `list_commits`, `get_commit` over the checkout); a
repository known only on GitHub through GitHub's MCP server (`github_mcp`: its URL, or the command that starts it).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool
from langchain_mcp_adapters.client import MultiServerMCPClient
from langchain_mcp_adapters.tools import load_mcp_tools

from analysis.code_suspects import ChangedFile, CommitChange
from state import CodeRepository

# The tools this project calls; each must also say it is read-only (readOnlyHint) or it is not used.
READ_TOOLS = frozenset({"search_code", "get_file_contents", "list_commits", "get_commit", "git_show"})
_GIT_SHOW_FILE = re.compile(r"^--- (.+)\n\+\+\+ (.+)\n", re.MULTILINE)


class CodeReadError(RuntimeError):
    """A repository could not be read over MCP (server not starting, tool missing, tool error)."""


def mcp_servers(repository: CodeRepository, github_mcp: str | None, github_token: str | None) -> dict[str, Any]:
    """The MCP server connections that read `repository`: its local checkout when there is one, else GitHub's."""
    if repository.checkout:
        checkout = str(Path(repository.checkout).resolve())
        if not Path(checkout, ".git").exists():
            raise CodeReadError(f"{checkout} is not a git checkout")
        return {
            "git": {"transport": "stdio", "command": sys.executable,
                    "args": ["-m", "mcp_server_git", "--repository", checkout]},
            "code": {"transport": "stdio", "command": sys.executable,
                     "args": ["-m", "tools.mcp_repo_server", "--repository", checkout],
                     "cwd": str(Path(__file__).resolve().parent.parent)},
        }
    if not repository.github:
        raise CodeReadError(f"no checkout and no GitHub repository is configured for {repository.service}")
    if not github_mcp:
        raise CodeReadError(
            f"{repository.github} is on GitHub but GitHub's MCP server is not configured (GITHUB_MCP)"
        )
    if github_mcp.startswith(("http://", "https://")):
        headers = {"Authorization": f"Bearer {github_token}"} if github_token else {}
        return {"github": {"transport": "streamable_http", "url": github_mcp, "headers": headers}}
    argv = shlex.split(github_mcp)
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "GITHUB_HOST")}
    if github_token:
        env["GITHUB_PERSONAL_ACCESS_TOKEN"] = github_token
    return {"github": {"transport": "stdio", "command": argv[0], "args": argv[1:], "env": env}}


class CodeReader:
    """The repository's read-only MCP tools, called by GitHub's tool names."""

    def __init__(self, repository: CodeRepository, tools: dict[str, BaseTool]) -> None:
        self.repository = repository
        self.tools = tools
        owner, _, name = (repository.github or f"local/{Path(repository.checkout or 'repo').name}").partition("/")
        self._where = {"owner": owner, "repo": name}
        self.calls = 0
        self.notes: list[str] = []  # reads that failed without stopping the analysis

    async def _call(self, tool: str, args: dict[str, Any]) -> list[str]:
        """The text blocks of one tool call; CodeReadError when the tool is missing or fails."""
        if tool not in self.tools:
            raise CodeReadError(f"the MCP servers offer no read-only {tool!r} tool")
        self.calls += 1
        try:
            content = await self.tools[tool].ainvoke(args)
        except Exception as exc:
            raise CodeReadError(f"{tool} failed: {str(exc)[:300]}") from exc
        if isinstance(content, str):
            return [content]
        return [block["text"] for block in content if isinstance(block, dict) and block.get("type") == "text"]

    async def _json(self, tool: str, args: dict[str, Any]) -> Any:
        texts = await self._call(tool, args)
        try:
            return json.loads(texts[-1])
        except (IndexError, ValueError) as exc:
            raise CodeReadError(f"{tool} answered no JSON: {(texts or [''])[-1][:200]!r}") from exc

    async def list_commits(self, sha: str, since: datetime | None = None, limit: int = 30) -> list[dict[str, Any]]:
        """Commits reachable from `sha`, newest first (GitHub's MinimalCommit objects)."""
        args: dict[str, Any] = {**self._where, "sha": sha, "perPage": min(limit, 100)}
        if since is not None:
            args["since"] = since.strftime("%Y-%m-%dT%H:%M:%SZ")
        found = await self._json("list_commits", args)
        if not isinstance(found, list):
            raise CodeReadError(f"list_commits answered {type(found).__name__}, not a list")
        return found[:limit]

    async def commit(self, sha: str) -> CommitChange:
        """A commit with its changed files and hunks: through mcp-server-git's git_show on a local checkout,
        GitHub's get_commit elsewhere."""
        if "git_show" in self.tools and self.repository.checkout:
            text = "\n".join(await self._call("git_show", {"repo_path": str(Path(self.repository.checkout).resolve()),
                                                            "revision": sha}))
            return _parse_git_show(text)
        found = await self._json("get_commit", {**self._where, "sha": sha, "include_diff": True, "perPage": 100})
        return _minimal_commit(found)

    async def file_text(self, path: str, sha: str) -> str:
        """A file's text at a commit."""
        texts = await self._call("get_file_contents", {**self._where, "path": path, "sha": sha})
        if not texts:
            raise CodeReadError(f"get_file_contents returned nothing for {path}")
        return texts[-1]  # GitHub's server (and ours) put a status line first, the file's text last

    async def search(self, query: str, limit: int = 10) -> list[tuple[str, list[str]]]:
        """(path, matching fragments) of files whose contents match a GitHub code-search query; a failed search
        is noted and finds nothing (a search only adds evidence)."""
        scoped = f"{query} repo:{self._where['owner']}/{self._where['repo']}" if self.repository.github else query
        try:
            found = await self._json("search_code", {"query": scoped, "perPage": limit})
        except CodeReadError as exc:
            self.notes.append(f"code search {query!r}: {exc}")
            return []
        items = (found.get("items") or []) if isinstance(found, dict) else []
        return [
            (item["path"], [m.get("fragment", "") for m in item.get("text_matches") or []])
            for item in items[:limit]
            if isinstance(item, dict) and item.get("path")
        ]


@asynccontextmanager
async def open_code_reader(
    repository: CodeRepository, github_mcp: str | None = None, github_token: str | None = None
) -> AsyncIterator[CodeReader]:
    """A CodeReader over one MCP session per server, open for the block (one run's analysis)."""
    client = MultiServerMCPClient(mcp_servers(repository, github_mcp, github_token), handle_tool_errors=False)
    async with AsyncExitStack() as stack:
        tools: dict[str, BaseTool] = {}
        for name in client.connections:
            try:
                session = await stack.enter_async_context(client.session(name))
                loaded = await load_mcp_tools(session, server_name=name, handle_tool_errors=False)
            except Exception as exc:
                raise CodeReadError(f"MCP server {name!r} for {repository.name} did not start: {exc}") from exc
            for tool in loaded:
                if tool.name in READ_TOOLS and (tool.metadata or {}).get("readOnlyHint") is True:
                    tools.setdefault(tool.name, tool)
        yield CodeReader(repository, tools)


def _minimal_commit(found: Any) -> CommitChange:
    """A CommitChange from GitHub's MinimalCommit JSON."""
    try:
        info = found["commit"]
        author = info.get("author") or {}
        files = tuple(
            ChangedFile.from_patch(f["filename"], f.get("patch") or "", f.get("status") or "modified")
            for f in found.get("files") or []
        )
        return CommitChange(
            sha=found["sha"], subject=info["message"].split("\n", 1)[0], files=files,
            author=f"{author.get('name', '')} <{author.get('email', '')}>".strip(),
            at=datetime.fromisoformat(author["date"].replace("Z", "+00:00")) if author.get("date") else None,
        )
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise CodeReadError(f"get_commit answered an unexpected shape: {exc!r}") from exc


def _parse_git_show(text: str) -> CommitChange:
    """A CommitChange from mcp-server-git's git_show text (a `git show` header, then `--- a`/`+++ b` blocks)."""
    header, _, rest = text.partition("\n\n")
    fields = dict(line.split(":", 1) for line in header.splitlines()[1:] if ":" in line)
    sha = header.splitlines()[0].removeprefix("commit ").strip()
    body = rest.split("\n--- ", 1)[0] if "\n--- " in rest else rest
    subject = next((line.strip() for line in body.splitlines() if line.strip()), "")
    files = []
    blocks = list(_GIT_SHOW_FILE.finditer(text))
    for index, block in enumerate(blocks):
        end = blocks[index + 1].start() if index + 1 < len(blocks) else len(text)
        old, new = block.group(1).strip(), block.group(2).strip()
        path = old if new == "/dev/null" else new
        status = "added" if old == "/dev/null" else "removed" if new == "/dev/null" else "modified"
        files.append(ChangedFile.from_patch(path, text[block.end():end], status))
    try:
        at = datetime.strptime(fields.get("Date", "").strip(), "%Y-%m-%d %H:%M:%S %z")
    except ValueError:
        at = None
    if not re.fullmatch(r"[0-9a-f]{40}", sha):
        raise CodeReadError(f"git_show answered an unexpected header: {header[:200]!r}")
    return CommitChange(sha=sha, subject=subject, author=fields.get("Author", "").strip(), at=at,
                        files=tuple(files))
