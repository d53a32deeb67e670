"""Which of the deployed commits broke the service: the failing lines (stack frames and the code lines that log
the new error templates, at the deployed revision) intersected with the hunks each commit changed.

Facts relied on:
- a failing line the failure runs through that a commit wrote points at that commit; one within three lines of
  what a commit wrote or deleted (a removed guard right above it) points at it half as strongly;
- lines move: a line of the deployed revision is followed back through each newer commit's hunks (shifted by the
  lines they added or removed above it); a line a newer commit wrote has no older counterpart;
- in a monorepo, a commit that changes nothing under the service's folder did not change the service.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from state import SuspectCommit

HUNK_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@", re.MULTILINE)
LINE_WEIGHT = {"stack frame": 3.0, "error template": 2.0}  # a frame is where it failed; a template, what it logged
NEAR = 3  # lines: git's default context, what a reviewer sees around a change
FILE_WEIGHT = 1.0  # the commit changed a file the failure runs through, away from the failing line
MAX_REASONS = 4


@dataclass(frozen=True, slots=True)
class ChangedFile:
    """A file a commit changed and its hunks as (old_start, old_count, new_start, new_count)."""

    path: str
    hunks: tuple[tuple[int, int, int, int], ...]
    # inside the hunks: new line -> old line for context lines, None for the lines the commit wrote
    moves: dict[int, int | None]
    deleted_at: tuple[int, ...] = ()  # new-side lines right after which the commit removed lines
    status: str = "modified"
    patch: str = ""

    @classmethod
    def from_patch(cls, path: str, patch: str, status: str = "modified") -> ChangedFile:
        """A changed file from its unified patch (the hunks, without the file header)."""
        moves: dict[int, int | None] = {}
        deleted: list[int] = []
        old = new = 0
        for text in patch.splitlines():
            if m := HUNK_HEADER.match(text):
                old, new = int(m.group(1)), int(m.group(3))
            elif text.startswith("+"):
                moves[new] = None
                new += 1
            elif text.startswith("-"):
                deleted.append(new)
                old += 1
            elif text.startswith(" ") or text == "":
                moves[new] = old
                old, new = old + 1, new + 1
        return cls(path=path, hunks=parse_hunks(patch), moves=moves, deleted_at=tuple(sorted(set(deleted))),
                   status=status, patch=patch)

    def nearest_edit(self, line: int) -> int | None:
        """How many lines `line` is from the nearest line this commit wrote or removed (0: it wrote it)."""
        if self.moves.get(line, 0) is None:
            return 0
        near = [abs(line - n) for n, old in self.moves.items() if old is None]
        # a removal sits between two lines: both are next to it, neither was written
        near += [max(1, min(abs(line - d + 1), abs(line - d))) for d in self.deleted_at]
        return min(near, default=None)

    def diff(self) -> str:
        """The file's part of a unified diff, with its header."""
        old = "/dev/null" if self.status == "added" else f"a/{self.path}"
        new = "/dev/null" if self.status == "removed" else f"b/{self.path}"
        body = self.patch if self.patch.endswith("\n") or not self.patch else self.patch + "\n"
        return f"diff --git a/{self.path} b/{self.path}\n--- {old}\n+++ {new}\n{body}"


@dataclass(frozen=True, slots=True)
class CommitChange:
    """One commit as read from the code host."""

    sha: str
    subject: str
    author: str
    at: datetime | None
    files: tuple[ChangedFile, ...]


@dataclass(frozen=True, slots=True)
class FailingLine:
    """A repository line the failure runs through, at the deployed revision: a stack frame or a line that logs
    a new error template."""

    path: str
    line: int | None
    why: str  # "stack frame" | "error template"
    detail: str = ""  # the frame's function or the template's text


def parse_hunks(patch: str) -> tuple[tuple[int, int, int, int], ...]:
    """(old_start, old_count, new_start, new_count) of each hunk of a unified patch."""
    return tuple(
        (int(a), int(b) if b else 1, int(c), int(d) if d else 1) for a, b, c, d in HUNK_HEADER.findall(patch)
    )


def repo_path(raw: str, known: Sequence[str]) -> str | None:
    """The repository path a trace path (/app/services/x.py) names: the longest known path it ends with."""
    raw = raw.replace("\\", "/")
    found = [p for p in known if raw == p or raw.endswith("/" + p)]
    return max(found, key=len) if found else None


def _older(line: int, change: ChangedFile) -> int | None:
    """Where a line of a commit's result was before the commit; None when the commit wrote it."""
    if line in change.moves:
        return change.moves[line]
    shift = 0
    for old_start, old_count, new_start, new_count in change.hunks:
        if line < new_start:
            break
        shift = (new_start + new_count) - (old_start + old_count)
    return line - shift


def rank_suspects(
    commits: Sequence[CommitChange], failing: Sequence[FailingLine], service_path: str = "",
    deployed_by: dict[str, str] | None = None,
) -> list[SuspectCommit]:
    """The commits (newest first, as deployed) ranked by the failing lines inside their hunks, newest first
    among equals; each with the reasons behind its score."""
    positions: dict[int, tuple[FailingLine, int | None]] = dict(enumerate((f, f.line) for f in failing))
    ranked = []
    for age, commit in enumerate(commits):
        changed = {f.path: f for f in commit.files}
        score, hits, reasons = 0.0, [], []
        in_service = not service_path or any(
            p == service_path or p.startswith(service_path.rstrip("/") + "/") for p in changed
        )
        touched: dict[str, str] = {}  # failing files this commit changed away from the failing lines
        for fail, line in positions.values():
            change = changed.get(fail.path)
            if change is None:
                continue
            distance = change.nearest_edit(line) if line is not None else None
            what = f"{fail.why} {fail.path}:{fail.line}" + (f" ({fail.detail})" if fail.detail else "")
            if distance is not None and distance <= NEAR:
                score += LINE_WEIGHT.get(fail.why, 1.0) * (1.0 if distance == 0 else 0.5)
                hits.append(f"{fail.path}:{fail.line}")
                reasons.append(f"this commit wrote the line of the {what}" if distance == 0
                               else f"the {what} is {distance} line(s) from a line this commit changed")
            else:
                touched.setdefault(fail.path, fail.why)
        for path, why in touched.items():
            if not any(hit.startswith(path + ":") for hit in hits):
                score += FILE_WEIGHT
                reasons.append(f"changed {path}, where a {why} points, away from the failing line")
        if not in_service:
            score = 0.0
            reasons = [f"changes nothing under {service_path}"]
        elif not reasons:
            reasons.append("changes no file the failure runs through")
        if deployed_by and commit.sha in deployed_by:
            reasons.append(deployed_by[commit.sha])
        ranked.append((score, -age, SuspectCommit(
            commit=commit.sha, subject=commit.subject, author=commit.author, at=commit.at, score=score,
            files_changed=[f.path for f in commit.files], failing_lines=hits, reasons=reasons[:MAX_REASONS],
        )))
        # follow each failing line back to where it was before this commit
        for key, (fail, line) in list(positions.items()):
            change = changed.get(fail.path)
            if change is not None and line is not None:
                positions[key] = (fail, _older(line, change))
    ranked.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return [suspect for _, _, suspect in ranked]


def template_phrase(template: str) -> str | None:
    """The longest literal run of a mined log template (between its <*> variables) worth searching the code for:
    at least two words and 12 characters, the way a message is written in a logging call."""
    runs = [run.strip(" :=,;'\"()") for run in re.split(r"<\*>|\[[^\]]*\]|\{[^}]*\}|:\s", template)]
    runs = [run for run in runs if len(run) >= 12 and len(run.split()) >= 2]
    return max(runs, key=len)[:80] if runs else None


def excerpt_ranges(
    wanted: Sequence[tuple[str, int, int]], context: int, limit: int
) -> list[tuple[str, int, int]]:
    """(path, first, last) line ranges widened by `context` lines and merged where they overlap, in order."""
    ranges: list[list] = []
    for path, first, last in wanted:
        first, last = max(1, first - context), last + context
        for existing in ranges:
            if existing[0] == path and first <= existing[2] + 1 and last >= existing[1] - 1:
                existing[1], existing[2] = min(first, existing[1]), max(last, existing[2])
                break
        else:
            ranges.append([path, first, last])
    return [(path, first, last) for path, first, last in ranges[:limit]]
