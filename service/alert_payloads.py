"""Alert webhook bodies (Alertmanager v4, Grafana unified alerting, the seeds' generic one) parsed to Alerts.

Pure: no I/O. Every rejection is a `PayloadError` with a stable `code` and a message naming the faulty field.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

from state import Alert

ErrorCode = Literal["invalid_json", "unknown_format", "missing_field", "invalid_field", "too_many_alerts"]
PayloadFormat = Literal["alertmanager", "grafana", "generic"]

MAX_TEXT_BYTES = 4096
# Alertmanager's and Grafana's fingerprints are 16 hex digits; a group key longer than this is not a fingerprint
# (and past ~2,700 bytes no B-tree index, such as the open-incident one, can hold it).
MAX_FINGERPRINT_CHARS = 128
# Real payloads nest 3-4 levels; deep nesting would break pydantic's serializer (about 255 levels) later.
MAX_DEPTH = 32
MIN_WINDOW_SECONDS = 60
MAX_WINDOW_SECONDS = 86400
UNNAMED_ALERT = "UnnamedAlert"

_SHOW_CHARS = 100
_SERVICE = re.compile(r"[A-Za-z0-9_.:/-]{1,128}")
_SERVICE_LABELS = ("service", "service_name", "job")
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)
# Go's zero time: Alertmanager and Grafana send it as endsAt while an alert still fires.
_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)
_ZERO_TIME_TEXT = "0001-01-01T00:00:00Z"
# Telemetry backends count time from the Unix epoch, and a run reaches up to a day (window and baseline) around
# the alert: a time outside these bounds names no window anyone can read, and its arithmetic overflows.
EARLIEST = datetime(1970, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)
# Integers a checkpoint can hold (MessagePack, like most stores, has 64-bit integers): a body is refused at the
# door rather than failing the run that would try to store it.
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
_GRAFANA_TOP = ("orgId", "title", "state", "message")
_GRAFANA_ALERT = ("silenceURL", "dashboardURL", "panelURL", "values", "valueString")
_GROUP_FIELDS = ("receiver", "groupKey", "externalURL", "commonLabels", "orgId")
_GENERIC_FIELDS = (
    "service_name",
    "status",
    "lookup_window_seconds",
    "alertname",
    "severity",
    "summary",
    "labels",
    "starts_at",
)


class PayloadError(ValueError):
    """A rejected alert body: `code` is stable and machine-readable, `field` the path at fault."""

    def __init__(self, code: ErrorCode, field: str, problem: str) -> None:
        self.code = code
        self.field = field
        self.message = f"{field}: {problem}"
        super().__init__(self.message)


@dataclass(frozen=True)
class ParsedPayload:
    """The alerts of one webhook body, in the order they arrived, and the group they came in."""

    format: PayloadFormat
    alerts: list[Alert]
    group_key: str | None = None
    receiver: str | None = None


def _not_json_number(text: str) -> float:
    raise PayloadError("invalid_json", "body", f"{text} is not a JSON number (JSON has no NaN or Infinity)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 reads as infinity, which no JSON document or database column holds
        raise PayloadError("invalid_json", "body", f"{_cap(text)} is out of the range of a JSON number")
    return value


def decode_body(data: bytes | str) -> Any:
    """Decode a request body as JSON (strict: no NaN, no Infinity); `PayloadError("invalid_json")` when it is
    not."""
    try:
        return json.loads(data, parse_constant=_not_json_number, parse_float=_finite)
    except PayloadError:
        raise
    except json.JSONDecodeError as exc:
        raise PayloadError(
            "invalid_json", "body", f"not valid JSON: {exc.msg} at line {exc.lineno}"
        ) from None
    except UnicodeDecodeError:
        raise PayloadError("invalid_json", "body", "not valid UTF-8") from None
    except (ValueError, RecursionError):
        # Integers past Python's digit limit, or nesting past the recursion limit.
        raise PayloadError("invalid_json", "body", "not decodable JSON") from None


def fingerprint_of(alertname: str, service: str) -> str:
    """Stable fingerprint for alerts that come without one: sha256 of alertname and service, 16 hex chars."""
    # Service names cannot contain "|", so the joined text is unambiguous.
    return hashlib.sha256(f"{alertname}|{service}".encode()).hexdigest()[:16]


def parse_payload(body: Any, *, received_at: datetime, max_alerts: int = 1000) -> ParsedPayload:
    """Parse a decoded webhook body into Alerts; raises `PayloadError` on anything malformed or unknown.

    `received_at` (timezone-aware) stands in for a start time the body does not give.
    """
    if received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    if not isinstance(body, dict):
        raise PayloadError("invalid_json", "body", f"expected a JSON object, got {_kind(body)}")
    _check_values(body)
    received_at = received_at.astimezone(UTC)
    fmt = _detect(body)
    if fmt == "generic":
        return ParsedPayload(format=fmt, alerts=[_generic_alert(body, received_at)])
    items = body["alerts"]
    if not isinstance(items, list):
        raise PayloadError("invalid_field", "alerts", f"expected an array, got {_kind(items)}")
    if not items:
        raise PayloadError("invalid_field", "alerts", "expected at least one alert, got an empty array")
    if len(items) > max_alerts:
        raise PayloadError(
            "too_many_alerts", "alerts", f"{len(items)} alerts, at most {max_alerts} per request"
        )
    group = {key: body[key] for key in _GROUP_FIELDS if key in body}
    alerts = [
        _group_alert(fmt, body, item, f"alerts[{i}]", group, received_at) for i, item in enumerate(items)
    ]
    return ParsedPayload(
        format=fmt,
        alerts=alerts,
        group_key=_optional_text(body, "groupKey", "groupKey"),
        receiver=_optional_text(body, "receiver", "receiver"),
    )


def _detect(body: dict[str, Any]) -> PayloadFormat:
    """Which sender's shape the body has."""
    if "alerts" in body:
        items = body["alerts"]
        first = items[0] if isinstance(items, list) and items else None
        if any(key in body for key in _GRAFANA_TOP) or (
            isinstance(first, dict) and any(key in first for key in _GRAFANA_ALERT)
        ):
            return "grafana"
        if body.get("version") == "4":
            return "alertmanager"
        raise PayloadError(
            "unknown_format",
            "body",
            'has "alerts" but neither Alertmanager\'s version "4" nor Grafana\'s orgId/title/state/message',
        )
    if "service_name" in body:
        return "generic"
    keys = _show(", ".join(sorted(str(key) for key in body)))
    raise PayloadError(
        "unknown_format",
        "body",
        'expected an Alertmanager (version "4") or Grafana webhook, or {"service_name": ...}; '
        f"got keys {keys}",
    )


def _group_alert(
    fmt: PayloadFormat, body: dict[str, Any], item: Any, at: str, group: dict[str, Any], received_at: datetime
) -> Alert:
    """One alert of an Alertmanager or Grafana group."""
    if not isinstance(item, dict):
        raise PayloadError("invalid_field", at, f"expected an object, got {_kind(item)}")
    labels = _text_map(item.get("labels", {}), f"{at}.labels")
    annotations = _text_map(item.get("annotations", {}), f"{at}.annotations")
    service = _service_from_labels(labels, f"{at}.labels")
    alertname = labels.get("alertname") or UNNAMED_ALERT
    if "status" in item:
        status = _status(item["status"], f"{at}.status")
    elif "status" in body:
        status = _status(body["status"], "status")
    else:
        raise PayloadError("missing_field", f"{at}.status", 'required: "firing" or "resolved"')
    starts_at = _timestamp(item.get("startsAt"), f"{at}.startsAt") or received_at
    _timestamp(item.get("endsAt"), f"{at}.endsAt")
    summary = annotations.get("summary") or annotations.get("description") or ""
    if not summary and fmt == "grafana":
        summary = _grafana_values(item, at)
    return Alert(
        source=fmt,
        alertname=alertname,
        service=service,
        status=status,
        severity=labels.get("severity") or None,
        summary=summary,
        starts_at=starts_at,
        fingerprint=_fingerprint(item, f"{at}.fingerprint") or fingerprint_of(alertname, service),
        labels=labels,
        annotations=annotations,
        raw=_copy_json({**group, **item}),
    )


def _generic_alert(body: dict[str, Any], received_at: datetime) -> Alert:
    """The seeds' generic `{"service_name": ..., "lookup_window_seconds": ...}` body as one firing alert."""
    for key in body:
        if key not in _GENERIC_FIELDS:
            raise PayloadError(
                "invalid_field",
                _cap(str(key)),
                f"unknown field; a generic payload has {', '.join(_GENERIC_FIELDS)}",
            )
    service = _service(body["service_name"], "service_name")
    labels = _text_map(body.get("labels", {}), "labels")
    alertname = _optional_text(body, "alertname", "alertname") or labels.get("alertname") or UNNAMED_ALERT
    return Alert(
        source="generic",
        alertname=alertname,
        service=service,
        status=_status(body.get("status", "firing"), "status"),
        severity=_optional_text(body, "severity", "severity") or labels.get("severity") or None,
        summary=_optional_text(body, "summary", "summary") or "",
        starts_at=_timestamp(body.get("starts_at"), "starts_at") or received_at,
        fingerprint=fingerprint_of(alertname, service),
        labels=labels,
        lookup_window_seconds=_window(body.get("lookup_window_seconds")),
        raw=_copy_json(body),
    )


def _service_from_labels(labels: dict[str, str], at: str) -> str:
    """The service an alert is about: label `service`, else `service_name`, else `job`."""
    for key in _SERVICE_LABELS:
        if labels.get(key):
            return _service(labels[key], f"{at}.{key}")
    raise PayloadError("missing_field", f"{at}.service", "no non-empty service, service_name or job label")


def _service(value: Any, at: str) -> str:
    """A valid service name: 1..128 characters of [A-Za-z0-9_.:/-]."""
    if not isinstance(value, str):
        raise PayloadError("invalid_field", at, f"expected a string, got {_kind(value)}")
    if not _SERVICE.fullmatch(value):
        raise PayloadError(
            "invalid_field",
            at,
            f"{_show(value)} is not a service name (1-128 characters of A-Z a-z 0-9 _ . : / -)",
        )
    return value


def _status(value: Any, at: str) -> Literal["firing", "resolved"]:
    """An alert status."""
    if value == "firing" or value == "resolved":
        return value
    shown = _show(value) if isinstance(value, str) else _kind(value)
    raise PayloadError("invalid_field", at, f'expected "firing" or "resolved", got {shown}')


def _window(value: Any) -> int | None:
    """The generic payload's lookup window in seconds, if it gives one."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(
            "invalid_field", "lookup_window_seconds", f"expected an integer, got {_kind(value)}"
        )
    if not MIN_WINDOW_SECONDS <= value <= MAX_WINDOW_SECONDS:
        raise PayloadError(
            "invalid_field",
            "lookup_window_seconds",
            f"{_cap(str(value))} is out of range {MIN_WINDOW_SECONDS}..{MAX_WINDOW_SECONDS}",
        )
    return value


def _timestamp(value: Any, at: str) -> datetime | None:
    """An RFC 3339 time in UTC, fractions past microseconds cut; None when absent, empty or Go's zero time."""
    if value is None or value == "" or value == _ZERO_TIME_TEXT:  # the last: every firing alert's endsAt
        return None
    if not isinstance(value, str):
        raise PayloadError("invalid_field", at, f"expected an RFC 3339 timestamp string, got {_kind(value)}")
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise PayloadError("invalid_field", at, f"{_show(value)} is not an RFC 3339 timestamp")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    try:
        offset = timedelta(0) if zulu else int(sign + "1") * timedelta(hours=int(off_h), minutes=int(off_m))
        micros = int((fraction or "0")[:6].ljust(6, "0"))
        fields = (int(part) for part in (year, month, day, hour, minute, second))
        parsed = datetime(*fields, micros, tzinfo=timezone(offset)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise PayloadError("invalid_field", at, f"{_show(value)} is not a valid date and time") from None
    if parsed == _ZERO_TIME:
        return None
    if not EARLIEST <= parsed < LATEST:
        raise PayloadError("invalid_field", at, f"{_show(value)} is outside {EARLIEST:%Y-%m-%d}..{LATEST:%Y-%m-%d}")
    return parsed


def _check_values(body: dict[str, Any]) -> None:
    """Reject a body nested deeper than MAX_DEPTH levels, or holding an integer beyond 64 bits, which no checkpoint
    can keep (NaN and infinities are refused as JSON already); iteratively: no recursion on untrusted input."""
    # A container's path is kept as (parent path, key) and spelled out only for an error: this runs on every alert.
    stack: list[tuple[Any, int, Any]] = [(body, 1, None)]
    while stack:
        value, depth, at = stack.pop()
        if depth > MAX_DEPTH:
            raise PayloadError("invalid_field", "body", f"nested deeper than {MAX_DEPTH} levels")
        for key, child in value.items() if isinstance(value, dict) else enumerate(value):
            if isinstance(child, dict | list):
                stack.append((child, depth + 1, (at, key)))
            elif type(child) is int and not INT_MIN <= child <= INT_MAX:
                raise PayloadError("invalid_field", _path((at, key)),
                                   f"{_cap(str(child))} is beyond the 64-bit integer range and cannot be stored")


def _path(at: Any) -> str:
    """`alerts[0].labels.x` from the nested (parent, key) pairs of _check_values."""
    keys = []
    while at is not None:
        at, key = at
        keys.append(f"[{key}]" if isinstance(key, int) else f".{_cap(str(key))}")
    return "".join(reversed(keys)).removeprefix(".")


def _copy_json(value: Any) -> Any:
    """A deep copy of decoded JSON (dicts, lists and immutable scalars), several times cheaper than copy.deepcopy;
    recursive, which is safe only after _check_values has bounded the depth."""
    if isinstance(value, dict):
        return {key: _copy_json(child) for key, child in value.items()}
    if isinstance(value, list):
        return [_copy_json(child) for child in value]
    return value


def _text_map(value: Any, at: str) -> dict[str, str]:
    """Labels or annotations as str -> str: numbers and booleans become text, anything else is rejected."""
    if not isinstance(value, dict):
        raise PayloadError("invalid_field", at, f"expected an object, got {_kind(value)}")
    out: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise PayloadError(
                "invalid_field", at, f"names must be strings, got {_kind(key)} {_show(str(key))}"
            )
        _check_size(key, at, "name", key)
        if isinstance(item, bool):
            item = "true" if item else "false"
        elif isinstance(item, int | float):
            item = str(item)
        elif not isinstance(item, str):
            raise PayloadError("invalid_field", f"{at}.{_cap(key)}", f"expected a string, got {_kind(item)}")
        _check_size(item, at, "value", key)
        out[key] = item
    return out


def _fingerprint(item: dict[str, Any], at: str) -> str | None:
    """The sender's fingerprint of an alert, if it gives one: printable, at most MAX_FINGERPRINT_CHARS."""
    value = _optional_text(item, "fingerprint", at)
    if value is not None and (len(value) > MAX_FINGERPRINT_CHARS or not value.isprintable()):
        raise PayloadError("invalid_field", at, f"a fingerprint is at most {MAX_FINGERPRINT_CHARS} printable "
                           f"characters, got {len(value)}")
    return value


def _optional_text(mapping: dict[str, Any], key: str, at: str) -> str | None:
    """A string field that may be absent (or null)."""
    value = mapping.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadError("invalid_field", at, f"expected a string, got {_kind(value)}")
    _check_size(value, at, "value")
    return value


def _grafana_values(item: dict[str, Any], at: str) -> str:
    """A summary from Grafana's query values: `values` ("B=44.2394, C=1") or the older `valueString`."""
    values = item.get("values")
    if isinstance(values, dict) and values:
        text = ", ".join(f"{key}={_number(values[key])}" for key in sorted(values, key=str))
        _check_size(text, f"{at}.values", "summary")
        return text
    return _optional_text(item, "valueString", f"{at}.valueString") or ""


def _number(value: Any) -> str:
    """A query value as short text."""
    return format(value, ".6g") if isinstance(value, float) else str(value)


def _check_size(text: str, at: str, what: str, key: str | None = None) -> None:
    """Reject a text longer than MAX_TEXT_BYTES in UTF-8 rather than cut it silently (`key`: the field of `at`)."""
    if len(text) <= MAX_TEXT_BYTES // 4:  # no character takes more than 4 bytes: short texts need no encoding
        return
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_TEXT_BYTES:
        raise PayloadError("invalid_field", at if key is None else f"{at}.{_cap(key)}",
                           f"{what} is {size} bytes, at most {MAX_TEXT_BYTES}")


def _cap(text: str) -> str:
    """Text cut to about 100 characters, so that no huge input is echoed back."""
    return text if len(text) <= _SHOW_CHARS else text[: _SHOW_CHARS - 3] + "..."


def _show(text: str) -> str:
    """A value quoted for an error message, cut to about 100 characters."""
    return json.dumps(_cap(text), ensure_ascii=False)


def _kind(value: Any) -> str:
    """The JSON type name of a decoded value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
