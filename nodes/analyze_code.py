"""analyze_code: read the commits deployed in the suspect window over MCP, rank them by the failing lines
inside their changes, and read the top one in full."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from analysis.code_suspects import (
    CommitChange,
    FailingLine,
    excerpt_ranges,
    rank_suspects,
    repo_path,
    template_phrase,
)
from graph.context import Context
from nodes.common import error_record, llm_outcome
from prompts.views import code_view
from state import CodeFindings, DeployEvent, Detection, Evidence, FileExcerpt, IncidentState
from tools.llm import spent_tokens, structured_call
from tools.redact import redact_value

if TYPE_CHECKING:  # annotations only: tools.mcp_code imports the MCP client (mcp, langchain_mcp_adapters)
    from tools.mcp_code import CodeReader

MAX_COMMITS = 15  # commits of the deployed range read per run
WITHOUT_PREVIOUS = timedelta(days=7)  # when no deploy names the commit before: the week before the deploy
MAX_FRAME_SEARCHES = 5
MAX_TEMPLATES = 3
MAX_DIFF_CHARS = 20_000
MAX_EXCERPTS = 10
HUNK_CONTEXT = 3
STACK_CONTEXT = 6


class CodeVerdict(BaseModel):
    """What the model is asked for."""

    summary: str = Field(description="one or two sentences: what the change broke and how")
    culprit_file: str | None = Field(default=None, description="the changed file that causes the failure")


async def analyze_code(state: IncidentState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Suspect commits of the deployed range ranked against the stack frames and error templates."""
    detection = state["detection"]
    repository = detection.repository  # the guard routes here only with one
    context = runtime.context
    # imported here, not with this module: the MCP client costs ~0.2 s to import, and most investigations never
    # reach analyze_code (it runs only for a deploy with a repository to read)
    from tools.mcp_code import open_code_reader

    try:
        async with open_code_reader(repository, context.github_mcp, context.github_token) as reader:
            findings = await locate_change(reader, detection, state["evidence"])
            notes = list(reader.notes)
    except Exception as exc:
        message = (f"reading {repository.name or 'the repository'} failed: {_leaf(exc)}; "
                   "the mitigations rest on the logs and metrics alone")
        return {"code": None, "errors": [error_record("analyze_code", message, "code")]}
    update: dict[str, Any] = {"errors": [error_record("analyze_code", note, "code") for note in notes]}
    verdict, usage, error = await structured_call(
        context, "reasoning", CodeVerdict, "analyze_code", spent=spent_tokens(state.get("tokens")),
        evidence=state["digest"], code=code_view(findings),
    )
    outcome = llm_outcome("analyze_code", usage, error)
    update["errors"] += outcome.pop("errors", [])
    update |= outcome
    if verdict is not None and (verdict.culprit_file is None or verdict.culprit_file in findings.files_changed):
        findings = findings.model_copy(update={"summary": verdict.summary})
    update["code"] = redact_value(findings)  # checkpoints hold no secret; the revert is read from git, not from here
    return update


def _leaf(exc: BaseException) -> str:
    """The first real error inside exception groups (MCP sessions run in task groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}" if not isinstance(exc, RuntimeError) else str(exc)


async def locate_change(reader: CodeReader, detection: Detection, evidence: Evidence) -> CodeFindings:
    """The deployed commits, the failing lines at the deployed revision, the ranking, and the top commit read."""
    service, head = detection.suspect_service or "", detection.suspect_commit or ""
    deploys = [d for d in evidence.deploys if d.service == service and d.kind == "code" and d.commit]
    commits = await deployed_commits(reader, head, deploys)
    frames = [f for f in (evidence.logs.stack_frames if evidence.logs else []) if f.service == service]
    failing = await failing_lines(reader, head, commits, frames, evidence, service)
    deployed_by = {d.commit: f"deployed as {d.version} at {d.at:%Y-%m-%d %H:%M} UTC ({d.source})"
                   for d in deploys if d.commit}
    suspects = rank_suspects(commits, failing, reader.repository.path, deployed_by)
    top = next(c for c in commits if c.sha == suspects[0].commit)
    excerpts = await read_excerpts(reader, top, failing)
    diff = "".join(f.diff() for f in top.files)
    if len(diff) > MAX_DIFF_CHARS:
        diff = diff[:MAX_DIFF_CHARS] + f"\n... [{len(diff) - MAX_DIFF_CHARS} characters cut]\n"
    best = suspects[0]
    changed = ", ".join(best.files_changed[:3]) + (
        f" and {len(best.files_changed) - 3} more" if len(best.files_changed) > 3 else "")
    verdict = best.reasons[0] if best.failing_lines else (
        "no stack-trace line lies in its changes" if failing else "no stack trace or error line to compare")
    others = f"; {len(suspects) - 1} other deployed commit(s) ranked below" if len(suspects) > 1 else ""
    return CodeFindings(
        repo=reader.repository.checkout or reader.repository.name,
        commit=top.sha,
        subject=top.subject,
        author=top.author,
        files_changed=best.files_changed,
        diff=diff,
        excerpts=excerpts,
        matches_stack_trace=bool(best.failing_lines),
        summary=f'{top.sha[:12]} "{top.subject}" by {top.author.split(" <")[0]} changed {changed}; {verdict}{others}.',
        suspects=suspects,
    )


async def deployed_commits(reader: CodeReader, head: str, deploys: list[DeployEvent]) -> list[CommitChange]:
    """The commits the deploys brought, newest first: from the running commit back to the commit the earliest
    deploy replaced (exclusive), or, when no deploy names it, the commits of the week before the first deploy."""
    stop = {d.previous_commit for d in deploys if d.previous_commit}
    since = None if stop else min((d.at for d in deploys), default=None)
    listed = await reader.list_commits(head, since - WITHOUT_PREVIOUS if since else None, limit=MAX_COMMITS + 1)
    shas = []
    for item in listed:
        sha = str(item.get("sha", ""))
        if any(sha.startswith(s) or s.startswith(sha) for s in stop if sha):
            break
        shas.append(sha)
    if not shas:
        shas = [head]
    return [await reader.commit(sha) for sha in shas[:MAX_COMMITS]]


async def failing_lines(
    reader: CodeReader, head: str, commits: list[CommitChange], frames, evidence: Evidence, service: str
) -> list[FailingLine]:
    """Stack frames mapped to repository paths, and the code lines that log the new error templates."""
    known = sorted({f.path for c in commits for f in c.files})
    failing: list[FailingLine] = []
    searched = 0
    for frame in frames:
        path = repo_path(frame.file, known)
        if path is None and searched < MAX_FRAME_SEARCHES:
            searched += 1
            name = frame.file.replace("\\", "/").rsplit("/", 1)[-1]
            found = [p for p, _ in await reader.search(f"filename:{name}")]
            path = repo_path(frame.file, found)
            known = sorted({*known, *([path] if path else [])})
        if path:
            failing.append(FailingLine(path, frame.line, "stack frame", frame.function or ""))
    templates = [t for t in (evidence.logs.templates if evidence.logs else [])
                 if t.service == service and t.level == "error" and t.kind in ("new", "spiking")]
    scope = f" path:{reader.repository.path}" if reader.repository.path else ""
    for template in templates[:MAX_TEMPLATES]:
        phrase = template_phrase(template.template)
        if not phrase:
            continue
        for path, _ in await reader.search(f'"{phrase}"{scope}', limit=3):
            text = await reader.file_text(path, head)
            for number, line in enumerate(text.splitlines(), start=1):
                if phrase.lower() in line.lower():
                    failing.append(FailingLine(path, number, "error template", phrase))
    return failing


async def read_excerpts(reader: CodeReader, top: CommitChange, failing: list[FailingLine]) -> list[FileExcerpt]:
    """The top commit's hunks and the failing lines in its files, read at that commit."""
    changed = {f.path for f in top.files if f.status != "removed"}
    wanted = [(f.path, f.line - STACK_CONTEXT, f.line + STACK_CONTEXT) for f in failing if f.path in changed and f.line]
    wanted += [(f.path, h[2] - HUNK_CONTEXT, h[2] + max(h[3], 1) - 1 + HUNK_CONTEXT)
               for f in top.files if f.path in changed for h in f.hunks]
    ranges = excerpt_ranges(wanted, 0, MAX_EXCERPTS)
    texts: dict[str, list[str]] = {}
    excerpts = []
    for path, first, last in ranges:
        if path not in texts:
            texts[path] = (await reader.file_text(path, top.sha)).splitlines()
        lines = texts[path]
        last = min(last, len(lines))
        if first <= last:
            excerpts.append(FileExcerpt(path=path, start_line=first, text="\n".join(lines[first - 1:last])))
    return excerpts
