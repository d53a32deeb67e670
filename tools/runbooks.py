"""Team runbooks: a folder of Markdown files whose front matter says when each applies.

A runbook file:

    ---
    title: Checkout runs out of memory
    services: [checkout]            # the service at fault (the root cause's), any of these
    fault_types: [memory_leak]      # any of these (state.FaultType)
    alertnames: [HighMemoryUsage]   # the alert's name, any of these
    ---
    ## Steps
    1. Take a heap profile first: `kubectl exec deploy/checkout -- curl -s localhost:6060/debug/pprof/heap` [risk: low]
    2. Restart the pods one at a time: `kubectl rollout restart deployment/checkout`

A runbook applies when every criterion it names holds (it must name at least one); the more it names, the more
specific it is and the earlier it ranks. Its steps are the items of the ordered list under a "Steps" heading (else
of the first ordered list); a step's first `code span` is its command, and a `[risk: low|medium|high]` tag its
risk (medium when untagged: a step nobody rated is not assumed safe). `{service}` in a step stands for the service
at fault.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from state import FAULT_TYPES, Alert, Hypothesis, RootCause, RunbookMatch, Suggestion

CRITERIA = ("alertnames", "services", "fault_types")
MAX_BYTES = 256 * 1024
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*(?:\n|\Z)", re.S)
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
_ORDERED_ITEM = re.compile(r"^\s{0,3}\d{1,3}[.)]\s+(.*)$")
_CONTINUATION = re.compile(r"^\s{2,}\S")
_CODE_SPAN = re.compile(r"`([^`]+)`")
_RISK_TAG = re.compile(r"\s*\[risk:\s*(low|medium|high)\]\s*", re.I)


class RunbookError(ValueError):
    """A runbook file that cannot be used, with the file and the reason."""


@dataclass(frozen=True)
class Runbook:
    """One parsed runbook file."""

    name: str  # path relative to the runbooks folder
    title: str
    alertnames: frozenset[str] = frozenset()
    services: frozenset[str] = frozenset()
    fault_types: frozenset[str] = frozenset()
    steps: tuple[Suggestion, ...] = field(default_factory=tuple)
    url: str = ""

    def steps_for(self, service: str) -> list[Suggestion]:
        """The steps with `{service}` filled in (a runbook may serve several services)."""
        return [
            s.model_copy(update={"action": s.action.replace("{service}", service),
                                 "command": s.command.replace("{service}", service) if s.command else None})
            for s in self.steps
        ]

    def matched_on(self, alert: Alert, root: Hypothesis | RootCause | None) -> list[str] | None:
        """The criteria this incident meets, or None when one the runbook names does not hold."""
        facts = {
            "alertnames": alert.alertname,
            "services": root.service if root else None,
            "fault_types": root.fault_type if root else None,
        }
        met = []
        for criterion in CRITERIA:
            wanted: frozenset[str] = getattr(self, criterion)
            if not wanted:
                continue
            if facts[criterion] not in wanted:
                return None
            met.append(f"{criterion[:-1].replace('_', ' ')} {facts[criterion]}")
        return met or None


def parse_runbook(name: str, text: str, base_url: str = "") -> Runbook:
    """A runbook from its Markdown text; RunbookError when the front matter is missing or wrong."""
    match = _FRONT_MATTER.match(text)
    if match is None:
        raise RunbookError(f"{name}: no front matter (a --- block with services, fault_types or alertnames)")
    import yaml  # here, not with the module: only a configured runbooks folder is parsed (~20 ms to import)

    try:
        meta = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as exc:
        raise RunbookError(f"{name}: front matter is not valid YAML: {exc}") from exc
    if not isinstance(meta, dict):
        raise RunbookError(f"{name}: front matter must be a mapping")
    unknown = sorted(set(meta) - {*CRITERIA, "title"})
    if unknown:
        raise RunbookError(f"{name}: unknown front matter key {unknown[0]!r} (known: title, {', '.join(CRITERIA)})")
    criteria = {key: _names(meta.get(key), f"{name}: {key}") for key in CRITERIA}
    if not any(criteria.values()):
        raise RunbookError(f"{name}: names none of {', '.join(CRITERIA)}, so it would match every incident")
    bad = sorted(criteria["fault_types"] - set(FAULT_TYPES))
    if bad:
        raise RunbookError(f"{name}: unknown fault type {bad[0]!r} (known: {', '.join(FAULT_TYPES)})")
    body = text[match.end():]
    title = str(meta.get("title") or _first_heading(body) or Path(name).stem.replace("-", " "))
    return Runbook(
        name=name, title=title, steps=tuple(_steps(body, title)), url=base_url + name if base_url else "",
        **{key: frozenset(values) for key, values in criteria.items()},
    )


def load_runbooks(folder: str | Path, base_url: str = "") -> tuple[list[Runbook], list[str]]:
    """Every *.md under `folder` (recursively), and a problem line per file that could not be used."""
    root = Path(folder)
    if not root.is_dir():
        return [], [f"runbooks folder {root} does not exist"]
    runbooks, problems = [], []
    for path in sorted(root.rglob("*.md")):
        name = path.relative_to(root).as_posix()
        try:
            if path.stat().st_size > MAX_BYTES:
                raise RunbookError(f"{name}: over {MAX_BYTES // 1024} KiB")
            runbooks.append(parse_runbook(name, path.read_text(encoding="utf-8"), base_url))
        except (OSError, UnicodeDecodeError, RunbookError) as exc:
            problems.append(str(exc))
    return runbooks, problems


def match_runbooks(
    runbooks: list[Runbook], alert: Alert, root: Hypothesis | RootCause | None
) -> list[tuple[Runbook, list[str]]]:
    """The runbooks that apply, most specific first (ties by name)."""
    found = [(r, met) for r in runbooks if (met := r.matched_on(alert, root)) is not None]
    found.sort(key=lambda pair: (-len(pair[1]), pair[0].name))
    return found


def alert_runbook(alert: Alert) -> RunbookMatch | None:
    """The alert's own `runbook_url` annotation (http or https only), as a runbook to link."""
    url = (alert.annotations.get("runbook_url") or "").strip()
    if not re.match(r"https?://", url, re.I):
        return None
    return RunbookMatch(title=f"Runbook of alert {alert.alertname}", url=url, matched_on=["alert runbook_url"])


def as_match(runbook: Runbook, matched_on: list[str]) -> RunbookMatch:
    """What the state keeps of a matched runbook."""
    return RunbookMatch(title=runbook.title, name=runbook.name, url=runbook.url, matched_on=matched_on,
                        steps=len(runbook.steps))


def _names(value: Any, where: str) -> set[str]:
    """A front matter list of names (a single string is a list of one)."""
    if value is None:
        return set()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise RunbookError(f"{where} must be a list of names")
    return {v.strip() for v in value}


def _first_heading(body: str) -> str | None:
    for line in body.splitlines():
        if m := _HEADING.match(line):
            return m.group(1)
    return None


def _steps(body: str, title: str) -> list[Suggestion]:
    """The ordered list under a "Steps" heading, else the first ordered list of the body."""
    lines = body.splitlines()
    start = next((i + 1 for i, line in enumerate(lines)
                  if (m := _HEADING.match(line)) and m.group(1).strip().lower().startswith("steps")), 0)
    items: list[str] = []
    for line in lines[start:]:
        if m := _ORDERED_ITEM.match(line):
            items.append(m.group(1).strip())
        elif not items or line.strip() == "":  # before the list, or a blank line between its items
            continue
        elif _CONTINUATION.match(line):
            items[-1] += " " + line.strip()
        else:  # a heading, a paragraph, another list: the steps are over
            break
    return [_step(item, title) for item in items]


def _step(item: str, title: str) -> Suggestion:
    risk_tag = _RISK_TAG.search(item)
    risk = risk_tag.group(1).lower() if risk_tag else "medium"
    text = _RISK_TAG.sub(" ", item).strip()
    command = _CODE_SPAN.search(text)
    action = _CODE_SPAN.sub(lambda m: m.group(1), text).rstrip(": ").strip()
    if command and text.rstrip().endswith(command.group(0)):  # "Restart the pods: `cmd`": the action is the words
        action = text[: command.start()].rstrip(" :-").strip() or action
    return Suggestion(action=action, risk=risk, rationale=f"runbook: {title}",  # type: ignore[arg-type]
                      command=command.group(1).strip() if command else None, source="runbook")
