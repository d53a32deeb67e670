"""Deploys and configuration changes near the incident window, merged across sources and sorted."""

from __future__ import annotations

from datetime import timedelta

from state import DeployEvent, DeployEvidence, Window

MAX_DEPLOYS = 20


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
