"""Deploys and configuration changes near the incident window, merged across sources and sorted."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from state import DeployEvent, DeployEvidence, LogTemplate, Window

MAX_DEPLOYS = 20
MIN_ERROR_LINES = 3  # lines of an error template in the window that make it a service's new errors, not a stray line


def summarize_deploys(deploys: list[DeployEvent], window: Window) -> DeployEvidence:
    """Deploys from the baseline start to the window end, one per (service, version, kind), oldest first.

    The same deploy seen by several sources (a version change in metrics, a deployment on the code host)
    is merged: the earliest time wins and missing commit/author/description are filled in.
    """
    lo, hi = window.baseline_start - timedelta(minutes=5), window.end
    merged: dict[tuple[str, str, str], DeployEvent] = {}
    for event in sorted(deploys, key=lambda d: (d.at, d.service, d.version)):
        if not lo <= event.at <= hi:
            continue
        key = (event.service, event.version, event.kind)
        known = merged.get(key)
        if known is None:
            merged[key] = event
            continue
        merged[key] = known.model_copy(
            update={
                "commit": known.commit or event.commit,
                "previous_commit": known.previous_commit or event.previous_commit,
                "author": known.author or event.author,
                "previous_version": known.previous_version or event.previous_version,
                "description": known.description or event.description,
            }
        )
    events = sorted(merged.values(), key=lambda d: (d.at, d.service, d.version))
    return DeployEvidence(deploys=events[-MAX_DEPLOYS:])


def new_error_starts(templates: Iterable[LogTemplate]) -> list[datetime]:
    """When each error template never logged before (at least MIN_ERROR_LINES lines in the window) first appeared. A
    bad change fails from its rollout on, and that first line dates it to the second: one event, no rate window, no
    deviation that must hold, where a ratio over a few requests a second takes minutes to show."""
    return [t.first_seen for t in templates
            if t.kind == "new" and t.level == "error" and t.incident_count >= MIN_ERROR_LINES and t.first_seen]


def changes_near(deploys: Iterable[DeployEvent], marks: list[datetime], before: timedelta,
                 after: timedelta) -> list[DeployEvent]:
    """The deploys from `before` ahead of any mark to `after` past it, in their order."""
    return [d for d in deploys if any(at - before <= d.at <= at + after for at in marks)]
