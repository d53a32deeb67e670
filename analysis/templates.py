"""Log template mining, Drain style: mask variable values, group messages into templates, join lengths.

Masks replace values (numbers, ids, addresses, host names, paths, versions, durations, ...) by named tokens such
as <IP>. A Drain prefix tree then groups messages of one token count by similarity, and a last step joins a new
group to an older one of another length when the two differ only in how many variable tokens stand where one of
them has a variable (a list of addresses, a value with spaces). Settings and masks are one choice for every
system; `python -m bench.loghub_ga --loo` shows how that choice generalizes (bench/README.md).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import Any

from drain3.drain import Drain, LogCluster

_HEX4 = r"[0-9a-fA-F]{1,4}"
# Not preceded/followed by a letter or digit: "req_8f3a..." and "node-12" still get their id masked.
_L = r"(?<![0-9A-Za-z])"
_R = r"(?![0-9A-Za-z])"
# Host names end in a top-level domain: the generic ones, names used inside networks, and the country codes
# that are not also common words or file extensions.
_TLD = (
    "com|net|org|edu|gov|mil|int|io|info|biz|cloud|local|localdomain|internal|lan|corp|home|arpa|svc|"
    "ar|at|au|be|br|ca|ch|cl|cn|cz|de|dk|es|eu|fi|fr|gr|hk|hu|ie|il|jp|kr|mx|nl|nz|pl|pt|ro|ru|se|sg|sk|th|"
    "tr|tw|ua|uk|vn|za"
)
# File names end in an extension: the usual ones of programs, libraries, sources, configs, logs and archives.
_EXT = (
    "exe|dll|so|dylib|jar|war|class|py|pyc|js|mjs|ts|java|go|rb|php|c|cc|cpp|h|hpp|rs|log|txt|out|conf|cfg|"
    "ini|yaml|yml|json|xml|toml|properties|sh|bat|zip|gz|tgz|tar|xz|jpg|png|gif|svg|html|htm|css|sys|"
    "msi|db|sqlite|pid|sock|lock|dat|tmp|bak|pem|crt|key|csv|parquet"
)
_MONTH = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"
_DAY = "Mon|Tue|Wed|Thu|Fri|Sat|Sun"


def _either_case(words: str) -> str:
    """An alternation of words in lower and in upper case (case-sensitive alternations search much faster)."""
    return f"{words}|{words.upper()}"


# (regex, mask name, a substring or a compiled regex every match contains, or ""), applied in order: the most
# specific shapes first, plain numbers last. The hint lets a mask skip messages it cannot match (a fast search
# instead of the mask's own). No regex, nor hint, tells one digit from another (no digit outside quantifiers):
# the summary's caches rely on it.
DEFAULT_MASKS: tuple[tuple[str, str, str | re.Pattern[str]], ...] = (
    (r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+", "URL", "://"),
    (r"\b[\w.%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+\b", "EMAIL", "@"),
    (_L + r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}" + _R, "UUID", "-"),
    (r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?" + _R, "TS", "-"),
    # dates in words: "Sat Jul 2 03:04:05 2005", "Jul  2 03:04:05", "02/Jul/2005:03:04:05 +0200"
    (
        rf"\b(?:(?:{_DAY}),?\s+)?(?:{_MONTH})\s+\d{{1,2}},?\s+(?:\d{{4}}\s+)?\d{{1,2}}:\d{{2}}(?::\d{{2}}(?:[.,]\d+)?)?"
        rf"(?:\s+\d{{4}})?\b|\b\d{{1,2}}/(?:{_MONTH})/\d{{4}}(?::\d{{2}}){{3}}(?:\s+[+-]\d{{4}})?",
        "TS",
        re.compile(rf"(?:{_MONTH})[\s/]"),
    ),
    (
        rf"\[(?:{_HEX4}|:)*:(?:{_HEX4}|:)*\](?::\d{{1,5}})?"
        rf"|(?<![\w:])(?:(?:{_HEX4}:){{7}}{_HEX4}"
        rf"|(?:{_HEX4}:){{1,6}}:(?:{_HEX4}(?::{_HEX4}){{0,5}})?(?::\d{{1,3}}(?:\.\d{{1,3}}){{3}})?"
        rf"|::(?:{_HEX4}(?::{_HEX4}){{0,6}})(?::\d{{1,3}}(?:\.\d{{1,3}}){{3}})?)(?![\w:]|\.\d)",
        "IP",
        ":",
    ),
    (r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?!\w|\.\d)", "IP", "."),
    # a DNS name ending in a top-level domain, or any dotted name with a port
    (
        rf"(?<![\w.@/-])(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+(?:{_either_case(_TLD)})(?::\d{{1,5}})?"
        rf"(?![\w-]|\.\w)|(?<![\w.@/-])(?:[A-Za-z0-9-]+\.)+[A-Za-z][A-Za-z0-9-]*:\d{{1,5}}(?![\w.:-])",
        "HOST",
        re.compile(rf"\.(?:{_either_case(_TLD)})\b|\.[A-Za-z][\w-]*:\d"),
    ),
    # absolute paths of two segments or more, relative ones of three or more, and Windows paths
    (
        r"(?<![\w/.~:-])(?:~|\.{1,2})?(?:/[\w.@%+~:-]+){2,}/?|(?<![\w/.:-])[\w.-]+(?:/[\w.@%+~:-]+){2,}/?",
        "PATH",
        "/",
    ),
    (r"(?<![\w\\])[A-Za-z]:\\[^\s\"'<>|]*", "PATH", ":\\"),
    (
        rf"(?<![\w./\\-])[\w-]+(?:\.[\w-]+)*\.(?:{_either_case(_EXT)})(?![\w-])",
        "FILE",
        re.compile(rf"\.(?:{_either_case(_EXT)})\b"),
    ),
    (_L + r"0[xX][0-9a-fA-F]+" + _R, "NUM", "0"),
    # Hex ids are NUM too: a fixed-width hex value that happens to be all digits must mask the same way.
    (_L + r"(?=[0-9a-fA-F]*[a-fA-F])(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}" + _R, "NUM", ""),
    # versions: v1.2 or 1.2.3 with a pre-release or build suffix (a plain 1.2.3 is a NUM below)
    (
        r"(?<![\w.])[vV]\d+(?:\.\d+)+(?:[-+][0-9A-Za-z.]+)?(?![\w.])"
        r"|(?<![\w.])\d+(?:\.\d+){1,3}[-+][0-9A-Za-z][0-9A-Za-z.]*(?![\w.])",
        "VER",
        re.compile(r"\d\.\d+[-+]\w|[vV]\d+\.\d"),
    ),
    (_L + r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h|d))+" + _R, "DUR", re.compile(r"\d(?:ns|us|µs|ms|s|m|h|d)")),
    (_L + r"\d+(?:\.\d+)?(?i:[kmgtp]i?b|b|bytes)" + _R, "SIZE", re.compile(r"\d(?:[kKmMgGtTpP][iI]?)?[bB]")),
    (r"(?<==)\"(?:[^\"\\]|\\.)*\"|(?<==)'(?:[^'\\]|\\.)*'", "STR", "="),
    (_L + r"[-+]?\d+(?:[.,]\d+)*" + _R, "NUM", re.compile(r"\d")),
)

MAX_MESSAGE_CHARS = 2048
CACHE_SIZE = 4096
JOIN_CANDIDATES = 64  # older groups of a message's first token a new group is compared with, newest first

_ZERO_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_DIGIT = re.compile(r"[0-9]")
_HEX_NUMBER = re.compile(rb"(?<![0-9A-Za-z])0[xX][0-9a-fA-F]+(?![0-9A-Za-z])")
_WILDCARD = "<*>"
# A token is variable when it holds a digit, a mask or a Drain wildcard.
_VARIABLE = re.compile(r"[0-9]|<[A-Z]+>|<\*>")
# A run of one mask repeated ("<IP>, <IP>, <IP>") is one list value, however long.
_MASK_RUN = re.compile(r"(<[A-Z]+>)(?:[\s,;]+\1)+")


def shape_key(text: str) -> bytes | None:
    """The shape of a text: its ASCII digits turned into 0 and its 0x numbers into a run of 0xFF bytes.

    The default masks tell no digit from another, nor one 0x number from another (none but the 0x mask can
    take part of one), so texts of one shape mask alike, up to digits the masks keep (see `masks_alike`).
    None when a digit stands before "x" or "X" elsewhere: there "0x" and "1x" would mask differently.
    0xFF never occurs in UTF-8, so no text has the run of another's 0x number.
    """
    raw = text.encode("utf-8", "surrogatepass")
    key = raw.translate(_ZERO_DIGITS)
    # Without an x, or without a digit before one, there is no 0x number: most texts are settled by a search for
    # one letter in the text, far cheaper than one for two bytes in the key (most of whose digits are 0).
    if ("x" not in text and "X" not in text) or (b"0x" not in key and b"0X" not in key):
        return key
    if b"0x" in raw or b"0X" in raw:
        key = _HEX_NUMBER.sub(lambda m: b"\xff" * len(m[0]), raw).translate(_ZERO_DIGITS)
        return None if b"0x" in key or b"0X" in key else key
    return None


def masks_alike(masked: str) -> bool:
    """Whether every text of the masked text's shape masks to it: true when masking kept no digit."""
    return not _DIGIT.search(masked)


class LRU:
    """A mapping bounded to `size` entries that forgets the least recently used one first."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable) -> Any:
        """The value stored for `key`, or None."""
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: Hashable, value: Any) -> None:
        """Store a value (not None), dropping the least recently used entry when full."""
        self._items[key] = value
        if len(self._items) > self._size:
            self._items.popitem(last=False)


def _headline(message: str) -> str:
    """The text a template is mined from: a multi-line entry keeps its first and last non-blank lines."""
    if "\n" in message:
        lines = [line.strip() for line in message.splitlines() if line.strip()]
        message = f"{lines[0]} ... {lines[-1]}" if len(lines) > 1 else "".join(lines)
    return message[:MAX_MESSAGE_CHARS]


class _Mask:
    """One masking rule: a regex replaced by <NAME> (or by a wildcard for the name "*"), skipped on messages
    without its hint (a substring, or a regex searched for)."""

    def __init__(self, pattern: str, name: str, hint: str | re.Pattern[str]) -> None:
        self.regex = re.compile(pattern)
        self.token = _WILDCARD if name == "*" else f"<{name}>"
        self.hint = hint

    def apply(self, text: str) -> str:
        hint = self.hint
        if (hint not in text) if isinstance(hint, str) else (hint.search(text) is None):
            return text
        return self.regex.sub(self.token, text)


class _Drain(Drain):
    """Drain whose prefix tree treats a token holding a mask ("host:<NUM>") as it treats one holding a digit:
    as a variable, not as a branch of its own. Masking removes the digits Drain's own rule looks for."""

    @staticmethod
    def has_numbers(s: str) -> bool:
        return _VARIABLE.search(s) is not None


def _is_variable(token: str) -> bool:
    return _VARIABLE.search(token) is not None


def _fits(template: Sequence[str], tokens: Sequence[str]) -> bool:
    """Whether `tokens` follow `template` when each variable token of the template stands for one or more
    variable tokens (or copies of itself), and every other token for itself."""
    reach = [True] + [False] * len(tokens)  # reach[j]: the template so far produces tokens[:j]
    for part in template:
        following = [False] * len(reach)
        if _is_variable(part):
            run = False  # some start k < j reached, with tokens[k:j] all variable
            for j, token in enumerate(tokens, 1):
                run = (run or reach[j - 1]) if token == part or _is_variable(token) else False
                following[j] = run
        else:
            for j, token in enumerate(tokens, 1):
                following[j] = reach[j - 1] and token == part
        reach = following
        if not any(reach):
            return False
    return reach[-1]


class TemplateMiner:
    """Online template miner for service log messages; ids are "T<n>", never reused by a miner."""

    # Named masks count as matching tokens, so a stricter similarity threshold than Drain's usual 0.4-0.5 still
    # groups messages that differ only in masked values, and keeps "check passed" apart from "check failed".
    # The defaults are the choice of `bench.loghub_ga --loo` (bench/README.md).

    def __init__(
        self,
        *,
        sim_th: float = 0.75,
        depth: int = 5,
        max_templates: int = 2000,
        extra_masks: Sequence[tuple[str, str]] = (),
        masks: Sequence[tuple[str, str, str | re.Pattern[str]]] = DEFAULT_MASKS,
        masks_in_tree: bool = True,
        collapse_runs: bool = True,
        join_lengths: bool = True,
    ) -> None:
        """Masks are (regex, name) pairs; `extra_masks` run before `masks` (the defaults, or none: `()`).

        A name "*" makes the masked value a Drain wildcard instead of a named token such as "<IP>".
        Past `max_templates`, the least recently used template is dropped. The three switches turn off the
        steps this miner adds to Drain (for `bench.loghub_ga`, which measures what each is worth).
        """
        self._masks = [_Mask(regex, name, "") for regex, name in extra_masks]
        self._masks += [_Mask(regex, name, needle) for regex, name, needle in masks]
        drain = _Drain if masks_in_tree else Drain
        self._drain = drain(sim_th=sim_th, depth=depth, max_clusters=max_templates)
        self._collapse = collapse_runs
        self._join = join_lengths
        self._max_templates = max_templates
        # group of each cluster joined to an older one of another length, and the clusters by first token
        self._group: dict[int, int] = {}
        self._by_first: dict[str, list[LogCluster]] = {}
        # Masked text by shape key (the default masks mask texts of one shape to one text when it keeps no
        # digit; the caller's own masks may not, and turn shapes off), else by the text itself.
        self._shapes = not extra_masks
        self._masked = LRU()
        # The answer by masked text, valid while Drain's tree and templates stay as they were (same version).
        self._matched = LRU()
        self._version = 0

    def mask(self, message: str) -> str:
        """The message with its variable values replaced by <NAME> tokens, as the miner sees it."""
        headline = _headline(message)
        key = shape_key(headline) if self._shapes else None
        masked = self._masked.get(key) if key is not None else None
        if masked is None:
            masked = self._masked.get(headline)
        if masked is None:
            masked = headline
            for rule in self._masks:
                masked = rule.apply(masked)
            if self._collapse and "<" in masked:
                masked = _MASK_RUN.sub(r"\1", masked)
            self._masked.put(key if key is not None and masks_alike(masked) else headline, masked)
        return masked

    def add(self, message: str) -> tuple[str, str]:
        """Mine one message; returns (template id, the template's current text)."""
        return self.add_masked(self.mask(message))

    def add_masked(self, masked: str) -> tuple[str, str]:
        """Mine a message already masked by `mask`; returns (template id, the template's current text)."""
        drain = self._drain
        hit = self._matched.get(masked)
        if hit is not None and hit[0] == self._version:
            _, cluster, template_id, text = hit
            # What Drain does on a match that changes nothing: count it and mark the template recently used.
            cluster.size += 1
            drain.id_to_cluster.__getitem__(cluster.cluster_id)
            return template_id, text
        cluster, change = drain.add_log_message(masked)
        if change == "cluster_created" and self._join:
            self._join_older(cluster)
        group = self._group.get(cluster.cluster_id, cluster.cluster_id)
        template_id, text = f"T{group}", self._text(group, cluster)
        if change == "none":
            self._matched.put(masked, (self._version, cluster, template_id, text))
        else:
            self._version += 1
        return template_id, text

    def template(self, template_id: str) -> str:
        """Current text of a template (it generalises as messages arrive); KeyError if unknown or dropped."""
        text = self.templates().get(template_id)
        if text is None:
            raise KeyError(template_id)
        return text

    def templates(self) -> dict[str, str]:
        """All live templates by id, in creation order."""
        out: dict[str, str] = {}
        for cluster in sorted(self._drain.clusters, key=lambda c: c.cluster_id):
            group = self._group.get(cluster.cluster_id, cluster.cluster_id)
            out.setdefault(f"T{group}", cluster.get_template())
        return out

    def _text(self, group: int, cluster: LogCluster) -> str:
        """A group's text: that of its first cluster while Drain keeps it, else of this one."""
        first = self._drain.id_to_cluster.get(group) if group != cluster.cluster_id else cluster
        return (first or cluster).get_template()

    def _join_older(self, cluster: LogCluster) -> None:
        """Put a new cluster in the group of an older one of another length when either template fits the
        other's tokens with its variable tokens standing for several (a list, a value with spaces)."""
        tokens = cluster.log_template_tokens
        first = _WILDCARD if not tokens or _is_variable(tokens[0]) else tokens[0]
        peers = self._by_first.setdefault(first, [])
        live = self._drain.id_to_cluster
        words = set(tokens)
        for older in reversed(peers[-JOIN_CANDIDATES:]):
            other = older.log_template_tokens
            if len(other) == len(tokens) or older.cluster_id not in live:
                continue
            shorter, longer = (other, tokens) if len(other) < len(tokens) else (tokens, other)
            longer_words = words if longer is tokens else set(other)
            # every constant word of the shorter one must be in the longer one: most pairs fail this cheap test
            if all(w in longer_words or _is_variable(w) for w in shorter) and _fits(shorter, longer):
                self._group[cluster.cluster_id] = self._group.get(older.cluster_id, older.cluster_id)
                break
        peers.append(cluster)
        if len(peers) > 2 * JOIN_CANDIDATES:
            del peers[:JOIN_CANDIDATES]
        if len(self._group) > 2 * self._max_templates:
            self._group = {k: v for k, v in self._group.items() if k in live}
        if len(self._by_first) > 2 * self._max_templates:
            kept = {key: [c for c in clusters if c.cluster_id in live] for key, clusters in self._by_first.items()}
            self._by_first = {key: clusters for key, clusters in kept.items() if clusters}
