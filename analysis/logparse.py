"""Parse one log entry (logfmt, JSON or plain text, maybe with a Python/Java stack trace) into its parts."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field

LEVELS: dict[str, str] = {
    "fatal": "error",
    "panic": "error",
    "critical": "error",
    "crit": "error",
    "severe": "error",
    "error": "error",
    "err": "error",
    "alert": "error",
    "emerg": "error",
    "warning": "warn",
    "warn": "warn",
    "info": "info",
    "notice": "info",
    "information": "info",
    "debug": "debug",
    "trace": "debug",
    "fine": "debug",
}
_LEVEL_KEYS = ("level", "lvl", "severity", "loglevel", "log.level", "levelname")
_MESSAGE_KEYS = ("msg", "message", "event", "log")
_TS_KEYS = ("ts", "time", "timestamp", "@timestamp", "t")
_TRACE_KEYS = ("stack", "stacktrace", "stack_trace", "exc_info", "exception", "traceback", "error.stack")

_LOGFMT_PAIR = re.compile(r'([A-Za-z_][\w.\-]*)=("(?:[^"\\]|\\.)*"|[^\s"]*)')
_PLAIN = re.compile(
    r"^\s*(?:\[?(?P<ts>\d{4}-\d{2}-\d{2}[T ][\d:.,]+(?:Z|[+-]\d{2}:?\d{2})?)\]?\s+)?"
    r"(?:\[?(?P<level>[A-Za-z]{4,11})(?:\]|\b):?\s+)?(?P<rest>.*)$",
    re.S,
)
_PY_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+)(?:, in (?P<func>[^\s]+))?')
_JAVA_FRAME = re.compile(r"^\s*at (?P<func>[\w$.<>/]+)\((?P<file>[^:)]+)(?::(?P<line>\d+))?\)")
_EXCEPTION_LINE = re.compile(r"^(?:[\w.$]+(?:Error|Exception|Exit|Interrupt|Warning)|[\w.$]+\.[A-Z]\w+)(?::\s.*)?$")
_LEVEL_WORD = re.compile(r"\b([A-Za-z]{4,8})\b[:\]]")


@dataclass(slots=True, frozen=True)
class Frame:
    """One stack frame: file, line and function as the trace names them."""

    file: str
    line: int | None
    function: str | None


@dataclass(slots=True)
class ParsedLog:
    """A parsed log entry; `frames` are innermost first."""

    level: str
    message: str
    fields: dict[str, str] = field(default_factory=dict)
    frames: list[Frame] = field(default_factory=list)
    exception: str | None = None


def normalize_level(raw: str | None) -> str | None:
    """Map a level spelling (WARNING, Err, fatal, ...) to error|warn|info|debug, or None when unknown."""
    if not raw:
        return None
    return LEVELS.get(raw.strip().lower())


def parse_line(line: str) -> ParsedLog:
    """Parse a log entry; a multi-line entry keeps its first line as message and its trace as frames."""
    head, _, tail = line.partition("\n")
    # A JSON first line is the whole entry's JSON: after it, a trace makes the entry invalid JSON and blanks
    # change nothing. So only a first line that is not JSON on its own needs the whole entry tried.
    parsed = _parse_json(head) or (_parse_json(line) if tail else None) or _parse_logfmt(head) or _parse_plain(head)
    trace_text = tail
    for key in _TRACE_KEYS:
        if key in parsed.fields and "\n" in parsed.fields[key]:
            trace_text = parsed.fields.pop(key) + ("\n" + tail if tail else "")
            break
    if trace_text:
        frames, parsed.exception = _parse_trace(trace_text)
        parsed.frames = list(frames)
    if parsed.exception and parsed.exception not in parsed.message:
        parsed.message = f"{parsed.message} | {parsed.exception}" if parsed.message else parsed.exception
    if parsed.level == "":
        parsed.level = "error" if parsed.frames or parsed.exception else "info"
    return parsed


def cue_text(parsed: ParsedLog) -> str:
    """The whole text of an entry that log cues are matched on: message, exception and one-line field values."""
    values = [value for value in parsed.fields.values() if "\n" not in value]
    return " ".join([parsed.message, *values]) if values else parsed.message


def parse_json_entry(line: str) -> tuple[str, str, str] | None:
    """(level, message, cue text) of a one-line JSON entry without a stack trace, as parse_line and cue_text
    give them, in less time.

    None for any other entry: parse it with parse_line.
    """
    obj = _json_object(line) if "\n" not in line else None
    if obj is None:
        return None
    # Only an escape makes a newline inside a JSON string, and a newline in a trace field makes a trace.
    if "\\" in line and any(isinstance(obj.get(key), str) and "\n" in obj[key] for key in _TRACE_KEYS):
        return None
    lower, level_key, message_key = _keys(obj)
    level = normalize_level(_text(obj[level_key])) if level_key else None
    message = _text(obj[message_key]).strip() if message_key else ""
    skip = {message_key, *(lower[k] for k in _LEVEL_KEYS + _TS_KEYS if k in lower)}
    values = [text for k, v in obj.items() if k not in skip and "\n" not in (text := _text(v))]
    return level or "info", message, " ".join([message, *values]) if values else message


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
    return _from_fields({str(k): _text(v) for k, v in obj.items()})


def _parse_logfmt(text: str) -> ParsedLog | None:
    if "=" not in text:
        return None
    pairs = _LOGFMT_PAIR.findall(text)
    keys = {k.lower() for k, _ in pairs}
    if not keys.intersection(_LEVEL_KEYS + _MESSAGE_KEYS):
        return None
    fields = {k: _unquote(v) for k, v in pairs}
    return _from_fields(fields)


def _keys(names: dict) -> tuple[dict[str, str], str | None, str | None]:
    """Lower-cased name -> name, and the names holding the level and the message."""
    lower = {k.lower(): k for k in names}
    level_key = next((lower[k] for k in _LEVEL_KEYS if k in lower), None)
    message_key = next((lower[k] for k in _MESSAGE_KEYS if k in lower), None)
    return lower, level_key, message_key


def _from_fields(fields: dict[str, str]) -> ParsedLog:
    lower, level_key, message_key = _keys(fields)
    level = fields[level_key] if level_key else None
    message = fields.pop(message_key) if message_key else ""
    for key in _LEVEL_KEYS + _TS_KEYS:
        if key in lower:
            fields.pop(lower[key], None)
    return ParsedLog(level=normalize_level(level) or "", message=message.strip(), fields=fields)


def _parse_plain(text: str) -> ParsedLog:
    match = _PLAIN.match(text)
    level = normalize_level(match.group("level")) if match and match.group("level") else None
    rest = match.group("rest") if match and level else (match.group("rest") if match else text)
    if match and match.group("level") and level is None:
        rest = f"{match.group('level')} {rest}".strip()
    if level is None:
        level = _level_in_text(rest)
    return ParsedLog(level=level or "", message=rest.strip())


def _level_in_text(text: str) -> str | None:
    # Plain lines like "app: error: disk full" carry the level later in the line.
    for word in _LEVEL_WORD.findall(text[:60]):
        level = normalize_level(word)
        if level:
            return level
    return None


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
    return value


@functools.lru_cache(maxsize=1024)
def _parse_trace(text: str) -> tuple[tuple[Frame, ...], str | None]:
    """Frames innermost first, and the exception line (Python: last line; Java: first line).

    Cached: a failing code path logs the same trace over and over.
    """
    python_frames: list[Frame] = []
    java_frames: list[Frame] = []
    exception = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if m := _PY_FRAME.match(raw):
            python_frames.append(Frame(m.group("file"), int(m.group("line")), m.group("func")))
        elif m := _JAVA_FRAME.match(raw):
            java_frames.append(
                Frame(m.group("file"), int(m.group("line")) if m.group("line") else None, m.group("func"))
            )
        elif line.startswith("Caused by:"):
            exception = line[len("Caused by:") :].strip()
        elif _EXCEPTION_LINE.match(line) and (python_frames or exception is None):
            exception = line
    python_frames.reverse()
    return tuple(python_frames + java_frames), exception
