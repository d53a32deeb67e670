"""Log template mining with Drain3: masks variable values, then groups messages into templates."""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import Any

from drain3 import TemplateMiner as _Drain3Miner
from drain3.masking import MaskingInstruction
from drain3.template_miner_config import TemplateMinerConfig

# Drain3 logs at INFO on every miner it builds; the evidence engine builds one per service and window.
logging.getLogger("drain3").setLevel(logging.WARNING)

_HEX4 = r"[0-9a-fA-F]{1,4}"
# Not preceded/followed by a letter or digit: "req_8f3a..." and "node-12" still get their id masked.
_L = r"(?<![0-9A-Za-z])"
_R = r"(?![0-9A-Za-z])"

# (regex, mask name, a substring every match contains or ""), applied in order: the most specific shapes
# first, plain numbers last. The substring lets a mask skip messages it cannot match (masking twice as fast).
DEFAULT_MASKS: tuple[tuple[str, str, str], ...] = (
    (r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+", "URL", "://"),
    (r"\b[\w.%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+\b", "EMAIL", "@"),
    (_L + r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}" + _R, "UUID", "-"),
    (r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?" + _R, "TS", "-"),
    (
        rf"\[(?:{_HEX4}|:)*:(?:{_HEX4}|:)*\](?::\d{{1,5}})?"
        rf"|(?<![\w:])(?:(?:{_HEX4}:){{7}}{_HEX4}"
        rf"|(?:{_HEX4}:){{1,6}}:(?:{_HEX4}(?::{_HEX4}){{0,5}})?(?::\d{{1,3}}(?:\.\d{{1,3}}){{3}})?"
        rf"|::(?:{_HEX4}(?::{_HEX4}){{0,6}})(?::\d{{1,3}}(?:\.\d{{1,3}}){{3}})?)(?![\w:]|\.\d)",
        "IP",
        ":",
    ),
    (r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?!\w|\.\d)", "IP", "."),
    (_L + r"0[xX][0-9a-fA-F]+" + _R, "NUM", "0"),
    # Hex ids are NUM too: a fixed-width hex value that happens to be all digits must mask the same way.
    (_L + r"(?=[0-9a-fA-F]*[a-fA-F])(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}" + _R, "NUM", ""),
    (_L + r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h|d))+" + _R, "DUR", ""),
    (_L + r"\d+(?:\.\d+)?(?i:[kmgtp]i?b|b|bytes)" + _R, "SIZE", ""),
    (r"(?<==)\"(?:[^\"\\]|\\.)*\"|(?<==)'(?:[^'\\]|\\.)*'", "STR", "="),
    (_L + r"[-+]?\d+(?:[.,]\d+)*" + _R, "NUM", ""),
)

MAX_MESSAGE_CHARS = 2048
CACHE_SIZE = 4096

_ZERO_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_DIGIT = re.compile(r"[0-9]")
_HEX_NUMBER = re.compile(rb"(?<![0-9A-Za-z])0[xX][0-9a-fA-F]+(?![0-9A-Za-z])")


def shape_key(text: str) -> bytes | None:
    """The shape of a text: its ASCII digits turned into 0 and its 0x numbers into a run of 0xFF bytes.

    The default masks tell no digit from another, nor one 0x number from another (none but the 0x mask can
    take part of one), so texts of one shape mask alike, up to digits the masks keep (see `masks_alike`).
    None when a digit stands before "x" or "X" elsewhere: there "0x" and "1x" would mask differently.
    0xFF never occurs in UTF-8, so no text has the run of another's 0x number.
    """
    raw = text.encode("utf-8", "surrogatepass")
    if b"0x" in raw or b"0X" in raw:
        raw = _HEX_NUMBER.sub(lambda m: b"\xff" * len(m[0]), raw)
    key = raw.translate(_ZERO_DIGITS)
    return None if b"0x" in key or b"0X" in key else key


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


class _Mask(MaskingInstruction):
    """A Drain3 masking instruction that skips messages without its required substring."""

    def __init__(self, pattern: str, mask_with: str, needle: str) -> None:
        super().__init__(pattern, mask_with)
        self.needle = needle

    def mask(self, content: str, mask_prefix: str, mask_suffix: str) -> str:
        if self.needle not in content:
            return content
        return super().mask(content, mask_prefix, mask_suffix)


class TemplateMiner:
    """Online Drain3 template miner for service log messages; ids are "T<n>", never reused by a miner."""

    # Named masks count as matching tokens, so a stricter threshold than Drain's usual 0.4-0.5 still groups
    # messages that differ only in masked values, and keeps "check passed" apart from "check failed".
    # 0.65-0.75 with depth 5 is the plateau on Loghub-2k (bench/README.md).

    def __init__(
        self,
        *,
        sim_th: float = 0.7,
        depth: int = 5,
        max_templates: int = 2000,
        extra_masks: Sequence[tuple[str, str]] = (),
        default_masks: bool = True,
    ) -> None:
        """Masks are (regex, name) pairs; `extra_masks` run before the defaults (or alone without them).

        A name "*" makes the masked value a Drain wildcard instead of a named token such as "<IP>".
        Past `max_templates`, the least recently used template is dropped.
        """
        masks = [(regex, name, "") for regex, name in extra_masks]
        if default_masks:
            masks += DEFAULT_MASKS
        config = TemplateMinerConfig()
        config.drain_sim_th = sim_th
        config.drain_depth = depth
        config.drain_max_clusters = max_templates
        config.masking_instructions = [_Mask(regex, name, needle) for regex, name, needle in masks]
        self._miner = _Drain3Miner(persistence_handler=None, config=config)
        # Masked text by shape key (the default masks mask texts of one shape to one text when it keeps no
        # digit; the caller's own masks may not, and turn shapes off), else by the text itself.
        self._shapes = not extra_masks
        self._masked = LRU()
        # Drain's answer by masked text, valid while its tree and templates stay as they were (same version).
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
            masked = self._miner.masker.mask(headline)
            self._masked.put(key if key is not None and masks_alike(masked) else headline, masked)
        return masked

    def add(self, message: str) -> tuple[str, str]:
        """Mine one message; returns (template id, the template's current text)."""
        return self.add_masked(self.mask(message))

    def add_masked(self, masked: str) -> tuple[str, str]:
        """Mine a message already masked by `mask`; returns (template id, the template's current text)."""
        drain = self._miner.drain
        hit = self._matched.get(masked)
        if hit is not None and hit[0] == self._version:
            _, cluster, template_id, text = hit
            # What Drain does on a match that changes nothing: count it and mark the template recently used.
            cluster.size += 1
            drain.id_to_cluster.__getitem__(cluster.cluster_id)
            return template_id, text
        cluster, change = drain.add_log_message(masked)
        template_id, text = f"T{cluster.cluster_id}", cluster.get_template()
        if change == "none":
            self._matched.put(masked, (self._version, cluster, template_id, text))
        else:
            self._version += 1
        return template_id, text

    def template(self, template_id: str) -> str:
        """Current text of a template (it generalises as messages arrive); KeyError if unknown or dropped."""
        cluster = None
        if template_id.startswith("T") and template_id[1:].isdigit():
            cluster = self._miner.drain.id_to_cluster.get(int(template_id[1:]))
        if cluster is None:
            raise KeyError(template_id)
        return cluster.get_template()

    def templates(self) -> dict[str, str]:
        """All live templates by id, in creation order."""
        clusters = sorted(self._miner.drain.clusters, key=lambda c: c.cluster_id)
        return {f"T{c.cluster_id}": c.get_template() for c in clusters}
