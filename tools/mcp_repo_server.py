"""A read-only MCP server over one local git repository, under the tool names and answer shapes of GitHub's MCP
server (`search_code`, `get_file_contents`, `list_commits`, `get_commit`), so one analysis reads both.

The official `mcp-server-git` reads commits but searches no file contents; this server fills that gap for local
checkouts. Run: `python -m tools.mcp_repo_server --repository /srv/src/shop` (stdio). It never writes: every git
command it runs is a read (`grep`, `show`, `log`, `ls-tree`, `rev-parse`, `cat-file`), and `owner`/`repo`
arguments are accepted for GitHub compatibility and ignored (the server serves only its --repository).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

from mcp.server.fastmcp import FastMCP
from mcp.types import EmbeddedResource, TextContent, TextResourceContents, ToolAnnotations

GIT_TIMEOUT = 30.0
MAX_FILE_BYTES = 1_000_000
MAX_SEARCH_FILES = 100
READ_ONLY = ToolAnnotations(readOnlyHint=True)
_QUALIFIER = re.compile(r"^(repo|org|user|language|path|filename|extension|in|size|is):(.+)$")
_SEP = "\x1f"


class RepoError(RuntimeError):
    """A read failed; the message says what and is shown to the MCP client as the tool's error."""


class Repository:
    """Reads of one git repository through the git CLI."""

    def __init__(self, root: str | Path) -> None:
        self.root = str(Path(root).resolve())
        self.name = Path(self.root).name
        self.git("rev-parse", "--git-dir")

    def git(self, *args: str, nothing_found_ok: bool = False) -> str:
        try:
            done = subprocess.run(["git", "-C", self.root, *args], capture_output=True, timeout=GIT_TIMEOUT,
                                  check=False)
        except subprocess.TimeoutExpired as exc:
            raise RepoError(f"git {args[0]} timed out") from exc
        if nothing_found_ok and done.returncode == 1 and not done.stderr:
            return ""  # git grep: no match
        if done.returncode != 0:
            raise RepoError(done.stderr.decode(errors="replace").strip() or f"git {args[0]} failed")
        return done.stdout.decode(errors="replace")

    def commit(self, rev: str | None) -> str:
        """The commit a branch, tag or sha names (HEAD when none)."""
        rev = rev or "HEAD"
        if rev.startswith("-"):
            raise RepoError(f"invalid revision {rev!r}")
        rev = rev.removeprefix("refs/heads/") if rev.startswith("refs/heads/") else rev
        try:
            return self.git("rev-parse", "--verify", "--end-of-options", f"{rev}^{{commit}}").strip()
        except RepoError as exc:
            raise RepoError(f"no commit found for {rev!r}") from exc

    def minimal_commit(self, sha: str, with_files: bool) -> dict[str, Any]:
        """GitHub's MinimalCommit shape: sha, commit{message, author, committer}, stats and files with patches."""
        fmt = _SEP.join(("%H", "%an", "%ae", "%aI", "%cn", "%ce", "%cI", "%B"))
        out = self.git("show", "-s", f"--format={fmt}", sha)
        full, an, ae, ad, cn, ce, cd, message = out.split(_SEP, 7)
        commit: dict[str, Any] = {
            "sha": full,
            "html_url": "",
            "commit": {
                "message": message.rstrip("\n"),
                "author": {"name": an, "email": ae, "date": ad},
                "committer": {"name": cn, "email": ce, "date": cd},
            },
        }
        if with_files:
            commit["files"] = self.files_of(full)
            commit["stats"] = {
                "additions": sum(f["additions"] for f in commit["files"]),
                "deletions": sum(f["deletions"] for f in commit["files"]),
                "total": sum(f["changes"] for f in commit["files"]),
            }
        return commit

    def files_of(self, sha: str) -> list[dict[str, Any]]:
        """Changed files of a commit (against its first parent) with GitHub's status words and unified patches."""
        base = ["--root"] if not self.git("rev-list", "--parents", "-n", "1", sha).split()[1:] else []
        tree = ["diff-tree", "-r", "--no-commit-id", "--no-renames", *base]
        kinds = dict(reversed(line.split("\t", 1)) for line in self.git(*tree, "--name-status", sha).splitlines())
        patches: dict[str, str] = {}
        for block in re.split(r"^diff --git ", self.git(*tree, "-p", "--no-color", "--no-ext-diff", sha), flags=re.M):
            header, _, hunks = block.partition("\n@@")
            path = next((line[6:] for line in header.splitlines() if line.startswith("+++ b/")), None)
            path = path or next((line[6:] for line in header.splitlines() if line.startswith("--- a/")), None)
            if path:
                patches[path] = "@@" + hunks if hunks else ""
        status = {"A": "added", "M": "modified", "D": "removed", "T": "modified"}
        files = []
        for line in self.git(*tree, "--numstat", sha).splitlines():
            added, removed, path = line.split("\t", 2)
            adds, dels = (int(added), int(removed)) if added != "-" else (0, 0)
            files.append({"filename": path, "status": status.get(kinds.get(path, "M")[:1], "modified"),
                          "additions": adds, "deletions": dels, "changes": adds + dels,
                          "patch": patches.get(path, "")})
        return files


def _search_terms(query: str) -> tuple[list[str], dict[str, str]]:
    """Terms (quoted phrases kept whole) and qualifiers of a GitHub code-search query."""
    terms, qualifiers = [], {}
    for token in shlex.split(query, posix=True):
        m = _QUALIFIER.match(token)
        if m:
            qualifiers[m.group(1)] = m.group(2)
        elif token not in ("AND",):
            terms.append(token)
    return terms, qualifiers


def build_server(root: str | Path) -> FastMCP:
    """The MCP server of one repository."""
    repository = Repository(root)
    server = FastMCP("incident-copilot-repo", instructions=f"Read-only access to the git repository {root}.",
                     log_level="WARNING")  # stderr is the client's terminal

    @server.tool(annotations=READ_ONLY, structured_output=False)
    def search_code(query: str, sort: str | None = None, order: str | None = None, page: int = 1,
                    perPage: int = 30) -> str:  # noqa: N803 - GitHub's argument names
        """Search file contents at HEAD: every term (a "quoted phrase" stays whole) must occur in the file;
        qualifiers path: (prefix), filename:, extension: narrow the files; repo:, language: and the rest are
        accepted and ignored."""
        terms, qualifiers = _search_terms(query)
        if not terms and "filename" not in qualifiers:
            raise RepoError("search_code needs at least one search term")
        head = repository.commit(None)
        files = set(repository.git("ls-tree", "-r", "--name-only", "-z", head).split("\0")) - {""}
        if prefix := qualifiers.get("path", "").strip("/"):
            files = {f for f in files if f == prefix or f.startswith(prefix + "/")}
        if name := qualifiers.get("filename"):
            files = {f for f in files if f.rsplit("/", 1)[-1] == name}
        if ext := qualifiers.get("extension"):
            files = {f for f in files if f.endswith("." + ext.lstrip("."))}
        for term in terms:
            if not files:
                break
            found = repository.git("grep", "-l", "-I", "-F", "-i", "-z", "-e", term, head, "--", *sorted(files),
                                   nothing_found_ok=True)
            files &= {hit.split(":", 1)[1] for hit in found.split("\0") if ":" in hit}
        ordered = sorted(files)
        start = max(0, (page - 1) * perPage)
        items = []
        for path in ordered[start:start + min(perPage, MAX_SEARCH_FILES)]:
            text = repository.git("show", f"{head}:{path}")
            matches = []
            for term in terms:
                at = text.lower().find(term.lower())
                if at >= 0:
                    lo = text.rfind("\n", 0, at) + 1
                    hi = text.find("\n", at)
                    fragment = text[lo: hi if hi >= 0 else len(text)]
                    matches.append({"fragment": fragment, "matches": [
                        {"text": text[at:at + len(term)], "indices": [at - lo, at - lo + len(term)]}]})
            blob = repository.git("rev-parse", f"{head}:{path}").strip()
            items.append({"name": path.rsplit("/", 1)[-1], "path": path, "sha": blob,
                          "repository": repository.name, "text_matches": matches})
        return json.dumps({"total_count": len(ordered), "incomplete_results": False, "items": items})

    @server.tool(annotations=READ_ONLY, structured_output=False)
    def get_file_contents(owner: str, repo: str, path: str = "/", ref: str | None = None,
                          sha: str | None = None) -> list[TextContent | EmbeddedResource]:
        """A file's text at a commit (sha, else ref, else HEAD), or a directory's entries as JSON."""
        commit = repository.commit(sha or ref)
        inner = path.strip("/")
        if inner.startswith("..") or "/../" in f"/{inner}/":
            raise RepoError(f"path {path!r} is outside the repository")
        kind = repository.git("cat-file", "-t", f"{commit}:{inner}").strip() if inner else "tree"
        if kind == "tree":
            entries = []
            for line in repository.git("ls-tree", "-z", "-l", f"{commit}:{inner}" if inner else commit).split("\0"):
                if not line:
                    continue
                meta, name = line.split("\t", 1)
                _, otype, blob, size = meta.split()
                full = f"{inner}/{name}" if inner else name
                entries.append({"type": "dir" if otype == "tree" else "file", "name": name, "path": full,
                                "sha": blob, "size": 0 if size == "-" else int(size)})
            return [TextContent(type="text", text=json.dumps(entries))]
        blob = repository.git("rev-parse", f"{commit}:{inner}").strip()
        size = int(repository.git("cat-file", "-s", blob).strip())
        if size > MAX_FILE_BYTES:
            raise RepoError(f"{inner} is {size} bytes, over the {MAX_FILE_BYTES} byte limit")
        text = repository.git("cat-file", "blob", blob)
        uri = f"repo://{owner or repository.name}/{repo or repository.name}/sha/{commit}/contents/{inner}"
        return [
            TextContent(type="text", text=f"successfully downloaded text file (SHA: {blob})"),
            EmbeddedResource(type="resource", resource=TextResourceContents(uri=uri, mimeType="text/plain",
                                                                            text=text)),
        ]

    @server.tool(annotations=READ_ONLY, structured_output=False)
    def list_commits(owner: str, repo: str, sha: str | None = None, author: str | None = None,
                     path: str | None = None, since: str | None = None, until: str | None = None,
                     page: int = 1, perPage: int = 30) -> str:  # noqa: N803
        """Commits reachable from sha (a branch, tag or sha; HEAD when none), newest first, as JSON."""
        args = ["rev-list", f"--max-count={max(1, min(perPage, 100))}", f"--skip={max(0, (page - 1) * perPage)}"]
        for flag, value in (("--author", author), ("--since", since), ("--until", until)):
            if value:
                args.append(f"{flag}={value}")
        args += [repository.commit(sha), "--"]
        if path:
            args.append(path)
        shas = repository.git(*args).split()
        return json.dumps([repository.minimal_commit(s, with_files=False) for s in shas])

    @server.tool(annotations=READ_ONLY, structured_output=False)
    def get_commit(owner: str, repo: str, sha: str, include_diff: bool = True, page: int = 1,
                   perPage: int = 30) -> str:  # noqa: N803
        """One commit with its changed files and their patches, as JSON."""
        commit = repository.minimal_commit(repository.commit(sha), with_files=include_diff)
        if include_diff:
            start = max(0, (page - 1) * perPage)
            commit["files"] = commit["files"][start:start + perPage]
        return json.dumps(commit)

    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", required=True, help="the local git repository to serve")
    args = parser.parse_args()
    build_server(args.repository).run("stdio")


if __name__ == "__main__":
    main()
