"""Deploys and configuration changes told by log lines: config reloads, deploy and start-up lines that name a
revision, and revision labels a log shipper copied from Kubernetes or image annotations onto the stream."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime

from analysis.records import LogRecord
from state import DeployEvent

# One Loki line filter (RE2) that lets through every line a form below can read.
DEPLOY_LINE_FILTER = (
    "|~",
    r"(?i)(config(uration)? reloaded|(revision|commit|git_sha|sha)[\"']?\s*[=:]|sync(ed| operation)? (succeeded )?to )",
)

# Stream labels (Prometheus-style names, as Loki stores them) that name the commit a pod runs: the OCI image
# annotation `org.opencontainers.image.revision` and the usual Kubernetes/Argo annotation names.
REVISION_LABELS = (
    "org_opencontainers_image_revision", "revision", "commit", "git_commit", "git_sha", "vcs_revision",
)
_REVISION = r"(?:revision|commit|git_sha|git_commit|sha)[\"']?\s*[=:]\s*[\"']?(?P<revision>[0-9a-fA-F]{7,40})\b"
_CONFIG_REVISION = re.compile(r"revision[=: ]\s*([^\s,;]+)")
_VERSION = re.compile(r"\bversion[\"']?\s*[=:]\s*[\"']?v?(?P<version>[\w.+-]+)", re.IGNORECASE)

# (name, pattern, kind, announces): `announces` = the line itself says a deploy happened; a start-up line only
# names the revision a process runs, so only a change of revision between such lines is a deploy.
LINE_FORMS: tuple[tuple[str, re.Pattern[str], str, bool], ...] = (
    ("config reload", re.compile(r"(?i)config(?:uration)? reloaded"), "config", True),
    ("argo sync",
     re.compile(r"(?i)sync(?:ed| operation)? (?:succeeded )?to (?:revision )?(?P<revision>[0-9a-f]{7,40})\b"),
     "code", True),
    ("deploy line", re.compile(r"(?i)\b(?:deploy(?:ed|ing|ment)?|roll(?:ed)? ?out|released?)\b.*?" + _REVISION),
     "code", True),
    ("start-up line", re.compile(r"(?i)\bstart(?:ing|ed)?\b.*?" + _REVISION), "code", False),
)


def deploys_from_logs(records: Iterable[LogRecord]) -> list[DeployEvent]:
    """Deploy and config events of the records (time order): announced deploys and config reloads as they are
    logged, and a change of the revision a service's start-up lines or stream labels name."""
    events: list[DeployEvent] = []
    running: dict[str, str] = {}
    for record in records:
        at = datetime.fromtimestamp(record.ts, UTC)
        first_line = record.line.split("\n", 1)[0]
        form = next(((name, m, kind, says) for name, pattern, kind, says in LINE_FORMS
                     if (m := pattern.search(first_line))), None)
        if form and form[2] == "config":
            named = _CONFIG_REVISION.search(first_line)
            version = named.group(1) if named else at.isoformat()
            events.append(DeployEvent(at=at, service=record.service, version=version, kind="config",
                                      description=first_line[:200], source="logs"))
            continue
        revision = form[1].group("revision") if form else _label_revision(record.labels)
        if not revision:
            continue
        previous = running.get(record.service)
        running[record.service] = revision
        announced = bool(form and form[3])
        if not announced and (previous is None or previous == revision):
            continue
        version = _VERSION.search(first_line)
        events.append(DeployEvent(
            at=at, service=record.service, version=version.group("version") if version else revision[:12],
            kind="code", commit=revision, previous_commit=previous if previous != revision else None,
            description=first_line[:200] if form else f"pods of {record.service} now run revision {revision[:12]}",
            source="logs",
        ))
    return events


def _label_revision(labels) -> str | None:
    for name in REVISION_LABELS:
        value = (labels or {}).get(name)
        if value and re.fullmatch(r"[0-9a-fA-F]{7,40}", value):
            return value
    return None
