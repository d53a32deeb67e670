"""Parse one log entry (logfmt, JSON or plain text, maybe with a stack trace) into its parts, its level included."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from analysis.stacktraces import Frame, parse_trace

# Level names as logging libraries spell them (any case), mapped to error|warn|info|debug.
LEVEL_NAMES: dict[str, str] = {
    **dict.fromkeys(("fatal", "panic", "critical", "crit", "severe", "emerg", "emergency", "alert"), "error"),
    **dict.fromkeys(("error", "err", "eror", "fail", "ftl", "pnc", "crt"), "error"),
    **dict.fromkeys(("warning", "warn", "wrn"), "warn"),
    **dict.fromkeys(("info", "information", "informational", "notice", "inf", "informative"), "info"),
    **dict.fromkeys(("debug", "dbug", "dbg", "trace", "trce", "trc", "verbose", "vrb"), "debug"),
    **dict.fromkeys(("fine", "finer", "finest"), "debug"),  # java.util.logging
}
# Syslog severities 0-7 (RFC 5424): emerg, alert, crit, err, warning, notice, info, debug.
_SYSLOG = ("error",) * 4 + ("warn", "info", "info", "debug")


def _word(value: object) -> str | None:
    return LEVEL_NAMES.get(value.strip().lower()) if isinstance(value, str) else None


def _number(value: object) -> int | None:
    # JSON numbers only: a digit inside a string or a plain line is shape-blind to the summary's caches. Python's
    # decoder reads 1e999 as infinity and takes NaN: no level, and no int() of them either
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if isinstance(value, int) or math.isfinite(value) else None


def _word_or_number(value: object) -> str | None:
    """A level name, or a number on the scale its range gives away: syslog 0-7 (GELF), pino/bunyan 10-60,
    Monolog 100-600."""
    n = _number(value)
    if n is None:
        return _word(value)
    if 0 <= n <= 7:
        return _SYSLOG[n]
    if 10 <= n <= 69:
        return "error" if n >= 50 else "warn" if n >= 40 else "info" if n >= 30 else "debug"
    if 100 <= n <= 699:
        return "error" if n >= 400 else "warn" if n >= 300 else "info" if n >= 200 else "debug"
    return None


def _otel_number(value: object) -> str | None:
    """OpenTelemetry SeverityNumber: 1-4 trace, 5-8 debug, 9-12 info, 13-16 warn, 17-24 error and fatal."""
    n = _number(value)
    if n is None or not 1 <= n <= 24:
        return _word(value)
    return "error" if n >= 17 else "warn" if n >= 13 else "info" if n >= 9 else "debug"


def _python_number(value: object) -> str | None:
    """Python's logging levelno: 10 debug, 20 info, 30 warning, 40 error, 50 critical."""
    n = _number(value)
    if n is None or not 1 <= n <= 59:
        return None
    return "error" if n >= 40 else "warn" if n >= 30 else "info" if n >= 20 else "debug"


def _syslog_priority(value: object) -> str | None:
    """A syslog PRI (facility * 8 + severity)."""
    return _SYSLOG[int(value) % 8] if isinstance(value, str) and value.isdigit() and int(value) < 192 else None


def _klog_letter(value: object) -> str | None:
    return {"I": "info", "W": "warn", "E": "error", "F": "error"}.get(value) if isinstance(value, str) else None


_NAME = "|".join(sorted(LEVEL_NAMES, key=len, reverse=True))
_CAPS = "|".join(sorted((n.upper() for n in LEVEL_NAMES if len(n) >= 3), key=len, reverse=True))
_DATE = r"\d{4}[-/.]\d{2}[-/.]\d{2}|\d{2}[-/.]\d{2}[-/.]\d{2,4}|[A-Z][a-z]{2} +\d{1,2}"
_TIME = r"\d{2}:\d{2}:\d{2}(?:[.,:]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"
_STAMP = rf"(?:(?:{_DATE})(?:[T ]+(?:{_TIME}))?|{_TIME})"
_HEADER_TOKEN = r"(?:\[[^\]]{0,60}\]|\(\S{0,40}\)|\d+|-{1,3}|\||:)"


@dataclass(frozen=True, slots=True)
class LevelForm:
    """One way logs carry their level. Field and label forms name keys (a dotted key also matches nested
    objects); line forms are a regex over a plain line whose group `level` is read, and whose group `rest`
    (when it has one) is the message."""

    name: str
    where: str  # "field" (JSON, logfmt), "line" (plain text), "label" (Loki stream labels)
    read: Callable[[object], str | None]
    example: str  # an entry (for labels: a JSON object of labels) in this form, carrying `example_level`
    example_level: str
    keys: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None


LEVEL_FORMS: tuple[LevelForm, ...] = (
    LevelForm(
        "level field, named or numbered (pino/bunyan 10-60, GELF syslog 0-7, Monolog 100-600)",
        "field", _word_or_number, '{"level":50,"time":1700000000000,"msg":"db down"}', "error",
        keys=("level",),
    ),
    LevelForm(
        "named level under another key (GCP/ECS severity, log.level, levelname, lvl, Serilog @l)",
        "field", _word, '{"log":{"level":"warn"},"message":"slow query"}', "warn",
        keys=("severity", "lvl", "log.level", "levelname", "level_name", "loglevel", "log_level", "@l",
              "severity_text", "detected_level"),
    ),
    LevelForm(
        "OpenTelemetry severity number", "field", _otel_number, '{"severity_number":17,"body":"boom"}', "error",
        keys=("severity_number", "severitynumber"),
    ),
    LevelForm("Python levelno", "field", _python_number, '{"levelno":30,"msg":"retrying"}', "warn",
              keys=("levelno",)),
    LevelForm(
        "syslog <PRI> header (RFC 3164 / 5424)", "line", _syslog_priority,
        "<11>Dec  5 10:00:00 host app[12]: write failed", "error",
        pattern=re.compile(
            r"<(?P<level>\d{1,3})>(?:1 \S+ \S+ \S+ \S+ \S+ (?:-|\[.*?\]) ?"
            r"|[A-Z][a-z]{2} +\d{1,2} \d{2}:\d{2}:\d{2} \S+ [^\s:]+: ?)?(?P<rest>.*)", re.S,
        ),
    ),
    LevelForm(
        "klog/glog header Lmmdd hh:mm:ss.uuuuuu threadid file:line]", "line", _klog_letter,
        "E1205 10:00:00.123456       1 controller.go:42] sync failed", "error",
        pattern=re.compile(r"(?P<level>[IWEF])\d{4} \d{2}:\d{2}:\d{2}\.\d+ +\d+ [^\]\s]+\] ?(?P<rest>.*)", re.S),
    ),
    LevelForm(
        "timestamp (date and time, or time only as Logback's HH:mm:ss.SSS), [thread] or pid, then the level",
        "line", _word, "12:34:56.789 [main] ERROR com.shop.Api - request failed", "error",
        pattern=re.compile(
            rf"\s*\[?{_STAMP}\]?(?:\s+{_HEADER_TOKEN})*?\s+[\[<]?(?P<level>(?i:{_NAME}))[\]>]?(?::\s*|\s+|$)(?P<rest>.*)",
            re.S,
        ),
    ),
    LevelForm(
        "a level name in capitals among the first words ('%(asctime)s - %(name)s - %(levelname)s', BGL)",
        "line", _word, "2024-01-01 12:00:00,123 - myapp.db - ERROR - connection lost", "error",
        pattern=re.compile(rf"^.{{0,120}}?(?<![\w.-])(?P<level>{_CAPS})(?![\w.-])", re.S),
    ),
    LevelForm(
        "level bracketed or followed by a colon near the start ([error], ERROR:root:, fail:, [12:00:01 ERR])",
        "line", _word, "app: error: disk full", "error",
        pattern=re.compile(rf"^.{{0,60}}?(?:\[(?:[^\]\s]+\s+)*|(?<![\w.-]))(?P<level>{_NAME})[\]:]", re.S | re.I),
    ),
    LevelForm(
        "Loki stream label (level, detected_level, severity_text, ...)", "label", _word,
        '{"service_name":"cart","detected_level":"error"}', "error",
        keys=("level", "detected_level", "severity", "severity_text", "lvl", "loglevel"),
    ),
)
_FIELD_FORMS = tuple(form for form in LEVEL_FORMS if form.where == "field")
_LINE_FORMS = tuple(form for form in LEVEL_FORMS if form.where == "line")
_LABEL_FORMS = tuple(form for form in LEVEL_FORMS if form.where == "label")
_LEVEL_KEYS = tuple(dict.fromkeys(key for form in _FIELD_FORMS for key in form.keys))
_LABEL_KEYS = frozenset(key for form in _LABEL_FORMS for key in form.keys)
_MESSAGE_KEYS = ("msg", "message", "event", "log", "@m", "body")
_TS_KEYS = ("ts", "time", "timestamp", "@timestamp", "t", "@t")
# Fields holding a stack trace (a dotted key also matches nested objects: pino's err.stack, ECS error.stack_trace).
_TRACE_KEYS = (
    "stack", "stacktrace", "stack_trace", "exc_info", "exception", "traceback", "error.stack", "err.stack",
    "error.stack_trace", "exception.stacktrace", "exception.stack_trace",
)

# Container runtimes wrap each line: Docker's json-file driver as {"log": "<line>\n", "stream": ..., "time": ...},
# CRI runtimes (containerd, CRI-O) as "<RFC 3339 time> <stdout|stderr> <F|P> <line>".
_DOCKER_KEYS = frozenset({"log", "stream", "time", "attrs"})
_CRI = re.compile(r"\d{4}-\d{2}-\d{2}T\S+ (?:stdout|stderr) [FP] ")
_LOGFMT_PAIR = re.compile(r'([A-Za-z_][\w.\-]*)=("(?:[^"\\]|\\.)*"|[^\s"]*)')
# logfmt is pairs from the start (after a timestamp at most); a plain line may merely contain "msg=..."
_LOGFMT_START = re.compile(rf"\s*(?:{_STAMP}\s+)?[A-Za-z_][\w.\-]*=")
_LEADING_STAMP = re.compile(rf"\s*\[?{_STAMP}\]?\s+")
@dataclass(slots=True)
class ParsedLog:
    """A parsed log entry; `frames` root cause first, innermost first (see analysis/stacktraces.py)."""

    level: str
    message: str
    fields: dict[str, str] = field(default_factory=dict)
    frames: list[Frame] = field(default_factory=list)
    exception: str | None = None
    exceptions: tuple[str, ...] = ()
    trace: str = ""  # a stack trace found in a field, until parse_line reads it


def level_of_labels(labels: Mapping[str, str] | None) -> str | None:
    """The level the stream labels of an entry give (Loki's `level`, `detected_level`, ...), or None."""
    if labels and not labels.keys().isdisjoint(_LABEL_KEYS):
        for form in _LABEL_FORMS:
            for key in form.keys:
                if key in labels and (level := form.read(labels[key])):
                    return level
    return None


def unwrap(line: str) -> str:
    """The application's own entry inside a container runtime's envelope (Docker json-file, CRI), else the entry."""
    if line.startswith('{"log"'):  # json-file writes "log" first
        obj = _json_object(line)
        if obj is not None and isinstance(obj.get("log"), str) and obj.keys() <= _DOCKER_KEYS:
            return obj["log"].rstrip("\n")
    elif line[:1].isdigit() and (match := _CRI.match(line)):
        return line[match.end() :]
    return line


def parse_line(line: str, default_level: str | None = None) -> ParsedLog:
    """Parse a log entry; a multi-line entry keeps its first line as message and its trace as frames.

    The level is the entry's own; else `default_level` (from its stream labels); else error when it carries a
    stack trace; else info. A container runtime's envelope is taken off first.
    """
    line = unwrap(line)
    head, _, tail = line.partition("\n")
    # A JSON first line is the whole entry's JSON: after it, a trace makes the entry invalid JSON and blanks
    # change nothing. So only a first line that is not JSON on its own needs the whole entry tried.
    parsed = _parse_json(head) or (_parse_json(line) if tail else None) or _parse_logfmt(head) or _parse_plain(head)
    trace_text = f"{parsed.trace}\n{tail}" if parsed.trace and tail else parsed.trace or tail
    if trace_text:
        trace = parse_trace(trace_text)
        parsed.frames, parsed.exception, parsed.exceptions = list(trace.frames), trace.exception, trace.exceptions
    parsed.trace = ""
    if parsed.exception and parsed.exception not in parsed.message:
        parsed.message = f"{parsed.message} | {parsed.exception}" if parsed.message else parsed.exception
    if parsed.level == "":
        parsed.level = default_level or ("error" if parsed.frames or parsed.exception else "info")
    return parsed


def cue_text(parsed: ParsedLog) -> str:
    """The whole text of an entry that log cues are matched on: message, exception lines, one-line field values."""
    extra = [line for line in parsed.exceptions if line not in parsed.message]
    extra += [value for value in parsed.fields.values() if "\n" not in value]
    return " ".join([parsed.message, *extra]) if extra else parsed.message


def parse_json_entry(line: str, default_level: str | None = None) -> tuple[str, str, str] | None:
    """(level, message, cue text) of a one-line JSON entry without a stack trace, as parse_line and cue_text
    give them, in less time.

    None for any other entry: parse it with parse_line.
    """
    obj = _json_object(line) if "\n" not in line else None
    if obj is None:
        return None
    # Only an escape makes a newline inside a JSON string, and a newline in a trace field makes a trace.
    if "\\" in line and _trace_field(obj)[0]:
        return None
    level, message_key, skip = _structured(obj)
    message = _text(obj[message_key]).strip() if message_key else ""
    values = [text for k, v in obj.items() if k not in skip and "\n" not in (text := _text(v))]
    return level or default_level or "info", message, " ".join([message, *values]) if values else message


def _json_object(text: str) -> dict | None:
    text = text.strip()
    if not text.startswith("{"):
        return None
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _parse_json(text: str) -> ParsedLog | None:
    obj = _json_object(text)
    if obj is None:
        return None
    return _from_fields(obj)


def _parse_logfmt(text: str) -> ParsedLog | None:
    if "=" not in text or not _LOGFMT_START.match(text):
        return None
    pairs = _LOGFMT_PAIR.findall(text)
    keys = {k.lower() for k, _ in pairs}
    if not keys.intersection(_LEVEL_KEYS + _MESSAGE_KEYS):
        return None
    return _from_fields({k: _unquote(v) for k, v in pairs})


def _lookup(obj: Mapping[str, object], lower: dict[str, str], key: str) -> object:
    """The value under a lower-cased key, or under its dotted path through nested objects; None if absent."""
    if key in lower:
        return obj[lower[key]]
    if "." in key:
        value: object = obj
        for part in key.split("."):
            if not isinstance(value, dict) or part not in value:
                return None
            value = value[part]
        return value
    return None


def _structured(obj: Mapping[str, object]) -> tuple[str | None, str | None, set[str]]:
    """The level of a JSON or logfmt entry, the name holding its message, and the names that are not fields."""
    lower = {k.lower(): k for k in obj}
    level = None
    for form in _FIELD_FORMS:
        for key in form.keys:
            value = _lookup(obj, lower, key)
            if value is not None and (level := form.read(value)):
                break
        if level:
            break
    message_key = next((lower[k] for k in _MESSAGE_KEYS if k in lower), None)
    skip = {lower[k] for k in _LEVEL_KEYS + _TS_KEYS if k in lower}
    if message_key:
        skip.add(message_key)
    return level, message_key, skip


def _from_fields(obj: Mapping[str, object]) -> ParsedLog:
    level, message_key, skip = _structured(obj)
    message = _text(obj[message_key]).strip() if message_key else ""
    trace, holder = _trace_field(obj)
    fields = {str(k): _text(v) for k, v in obj.items() if k not in skip and k != holder}
    return ParsedLog(level=level or "", message=message, fields=fields, trace=trace)


def _trace_field(obj: Mapping[str, object]) -> tuple[str, str | None]:
    """A multi-line stack trace held in a field, and the top-level key holding it; ("", None) if none."""
    lower = {k.lower(): k for k in obj}
    for key in _TRACE_KEYS:
        value = _lookup(obj, lower, key)
        if isinstance(value, str) and "\n" in value:
            return value, lower[key] if key in lower else lower[key.split(".")[0]]
    return "", None


def _parse_plain(text: str) -> ParsedLog:
    for form in _LINE_FORMS:
        match = form.pattern.match(text)
        if match and (level := form.read(match.group("level"))):
            rest = match.group("rest") if "rest" in form.pattern.groupindex else _without_stamp(text)
            return ParsedLog(level=level, message=rest.strip())
    return ParsedLog(level="", message=_without_stamp(text).strip())


def _without_stamp(text: str) -> str:
    match = _LEADING_STAMP.match(text)
    return text[match.end() :] if match else text


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
    return value
