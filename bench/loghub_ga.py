"""Grouping accuracy (GA) of analysis.templates.TemplateMiner on the Loghub-2k samples.

Usage (from the repository root): python -m bench.loghub_ga [--data DIR] [--json] [--loo]
--loo: leave one system out: for each system, choose the miner's settings (similarity threshold, depth, mask set,
the steps it adds to Drain) on the other systems, and score them on it.
DIR defaults to $LOGHUB_2K_DIR, else shared/data/loghub-2k next to the repository root or next to its parent
(a worktree under wt/).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from analysis.templates import DEFAULT_MASKS, TemplateMiner

_CANDIDATES = [Path(__file__).resolve().parents[i] / "shared" / "data" / "loghub-2k" for i in (2, 3)]
DEFAULT_DATA = next((path for path in _CANDIDATES if path.is_dir()), _CANDIDATES[0])

# Drain's GA in Zhu et al., "Tools and Benchmarks for Automated Log Parsing" (ICSE-SEIP 2019).
PUBLISHED_DRAIN = {
    "HDFS": 0.9975,
    "Hadoop": 0.9475,
    "Spark": 0.920,
    "Zookeeper": 0.9665,
    "BGL": 0.9625,
    "HPC": 0.887,
    "Thunderbird": 0.955,
    "OpenSSH": 0.7875,
}

# The Loghub benchmark's own Drain setup per system (logparser benchmark/Drain_benchmark.py):
# (preprocessing regexes, each replaced by a wildcard; similarity threshold; tree depth).
LOGHUB_SETUP: dict[str, tuple[list[str], float, int]] = {
    "HDFS": ([r"blk_-?\d+", r"(\d+\.){3}\d+(:\d+)?"], 0.5, 4),
    "Hadoop": ([r"(\d+\.){3}\d+"], 0.5, 4),
    "Spark": ([r"(\d+\.){3}\d+", r"\b[KGTM]?B\b", r"([\w-]+\.){2,}[\w-]+"], 0.5, 4),
    "Zookeeper": ([r"(/|)(\d+\.){3}\d+(:\d+)?"], 0.5, 4),
    "BGL": ([r"core\.\d+"], 0.5, 4),
    "HPC": ([r"=\d+"], 0.5, 4),
    "Thunderbird": ([r"(\d+\.){3}\d+"], 0.5, 4),
    "OpenSSH": ([r"(\d+\.){3}\d+", r"([\w-]+\.){2,}[\w-]+"], 0.6, 5),
}


def load(data_dir: Path, system: str) -> tuple[list[str], list[str]]:
    """The `Content` messages and ground-truth `EventId`s of one system, in line order."""
    path = data_dir / system / f"{system}_2k.log_structured.csv"
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [row["Content"] for row in rows], [row["EventId"] for row in rows]


def grouping_accuracy(predicted: Sequence[str], truth: Sequence[str]) -> float:
    """Share of lines whose predicted group is exactly the set of lines sharing their true event."""
    predicted_groups: dict[str, list[int]] = defaultdict(list)
    truth_sizes: dict[str, int] = defaultdict(int)
    for i, (p, t) in enumerate(zip(predicted, truth, strict=True)):
        predicted_groups[p].append(i)
        truth_sizes[t] += 1
    correct = 0
    for lines in predicted_groups.values():
        events = {truth[i] for i in lines}
        if len(events) == 1 and truth_sizes[events.pop()] == len(lines):
            correct += len(lines)
    return correct / len(truth)


def mine(make_miner: Callable[[], TemplateMiner], messages: Sequence[str]) -> tuple[list[str], float]:
    """Template id of each message, and the best lines/s of a fresh miner over three short runs."""
    best = 0.0
    for _ in range(3):
        miner = make_miner()
        start = time.perf_counter()
        ids = [miner.add(message)[0] for message in messages]
        best = max(best, len(messages) / (time.perf_counter() - start))
    return ids, best


def evaluate(data_dir: Path, system: str) -> dict:
    """GA with the project's default miner and with Loghub's per-system Drain setup, for one system."""
    messages, truth = load(data_dir, system)
    default_ids, lines_per_s = mine(TemplateMiner, messages)
    regexes, sim_th, depth = LOGHUB_SETUP[system]
    loghub_ids, _ = mine(lambda: drain_as_published(regexes, sim_th, depth), messages)
    return {
        "system": system,
        "lines": len(messages),
        "ga_default": round(grouping_accuracy(default_ids, truth), 4),
        "ga_loghub_setup": round(grouping_accuracy(loghub_ids, truth), 4),
        "drain_published": PUBLISHED_DRAIN[system],
        "templates_default": len(set(default_ids)),
        "templates_loghub_setup": len(set(loghub_ids)),
        "templates_truth": len(set(truth)),
        "lines_per_s": round(lines_per_s),
    }


def drain_as_published(regexes: Sequence[str], sim_th: float, depth: int) -> TemplateMiner:
    """Plain Drain as the Loghub benchmark ran it: its regexes as wildcards, none of the miner's own steps."""
    return TemplateMiner(
        sim_th=sim_th,
        depth=depth,
        extra_masks=[(regex, "*") for regex in regexes],
        masks=(),
        masks_in_tree=False,
        collapse_runs=False,
        join_lengths=False,
    )


# The settings --loo chooses from: every combination of these values (TemplateMiner's defaults are one of them).
GRID: dict[str, tuple] = {
    "sim_th": (0.5, 0.6, 0.65, 0.7, 0.75, 0.8),
    "depth": (4, 5, 6),
    "masks": ("all", "values only"),  # "values only": without the host name, path, file and version masks
    "masks_in_tree": (False, True),
    "collapse_runs": (False, True),
    "join_lengths": (False, True),
}
VALUE_MASKS = tuple(row for row in DEFAULT_MASKS if row[1] not in ("HOST", "PATH", "FILE", "VER"))


def settings_grid() -> list[dict]:
    """Every combination of the GRID values, in GRID order."""
    return [dict(zip(GRID, values, strict=True)) for values in itertools.product(*GRID.values())]


def miner_for(settings: dict) -> TemplateMiner:
    """A fresh miner with these settings."""
    masks = DEFAULT_MASKS if settings["masks"] == "all" else VALUE_MASKS
    return TemplateMiner(**{**settings, "masks": masks})


def leave_one_out(data_dir: Path, systems: Sequence[str], grid: Sequence[dict] | None = None) -> dict:
    """For each system, the settings with the best average GA on the other systems, and their GA on it; and the
    settings the same rule chooses on all systems (which TemplateMiner's defaults must be), with their GAs."""
    grid = list(grid or settings_grid())
    data = {system: load(data_dir, system) for system in systems}
    scores = []
    for settings in grid:
        row = {}
        for system, (messages, truth) in data.items():
            miner = miner_for(settings)
            row[system] = grouping_accuracy([miner.add(message)[0] for message in messages], truth)
        scores.append(row)

    def best(among: Sequence[str]) -> int:
        # ties go to the earliest settings of the grid
        return max(range(len(grid)), key=lambda i: (sum(scores[i][s] for s in among), -i))

    folds = []
    for held_out in systems:
        chosen = best([s for s in systems if s != held_out])
        folds.append(
            {
                "held_out": held_out,
                "settings": grid[chosen],
                "ga": round(scores[chosen][held_out], 4),
                "drain_published": PUBLISHED_DRAIN[held_out],
            }
        )
    overall = best(systems)
    return {
        "folds": folds,
        "loo_average": round(sum(f["ga"] for f in folds) / len(folds), 4),
        "drain_average": round(sum(PUBLISHED_DRAIN[s] for s in systems) / len(systems), 4),
        "chosen_on_all": grid[overall],
        "chosen_on_all_ga": {s: round(scores[overall][s], 4) for s in systems},
        "settings_tried": len(grid),
    }


def loo_table(result: dict) -> str:
    """A Markdown table of a leave_one_out result."""
    def show(settings: dict) -> str:
        return ", ".join(f"{k}={v}" for k, v in settings.items())

    lines = ["| held out | GA | Drain published | settings chosen on the other systems |", "|---|---|---|---|"]
    for f in result["folds"]:
        lines.append(f"| {f['held_out']} | {f['ga']:.4f} | {f['drain_published']:.4f} | {show(f['settings'])} |")
    lines.append(f"| **average** | **{result['loo_average']:.4f}** | **{result['drain_average']:.4f}** | |")
    lines.append("")
    lines.append(f"Chosen on all {len(result['folds'])} systems ({result['settings_tried']} settings tried): "
                 f"{show(result['chosen_on_all'])}")
    return "\n".join(lines)


def summarize(rows: list[dict]) -> dict:
    """Averages over systems of the GA columns, and the overall mining speed."""
    n = len(rows)
    seconds = sum(row["lines"] / row["lines_per_s"] for row in rows)
    return {
        "ga_default": round(sum(row["ga_default"] for row in rows) / n, 4),
        "ga_loghub_setup": round(sum(row["ga_loghub_setup"] for row in rows) / n, 4),
        "drain_published": round(sum(row["drain_published"] for row in rows) / n, 4),
        "lines_per_s": round(sum(row["lines"] for row in rows) / seconds),
    }


def table(rows: list[dict], average: dict) -> str:
    """A Markdown table of the results."""
    lines = [
        "| system | GA default masking | GA Loghub per-system setup | Drain published "
        "| templates default / Loghub setup / truth | lines/s (default) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ga = f"{r['ga_default']:.4f} | {r['ga_loghub_setup']:.4f} | {r['drain_published']:.4f}"
        templates = f"{r['templates_default']} / {r['templates_loghub_setup']} / {r['templates_truth']}"
        lines.append(f"| {r['system']} | {ga} | {templates} | {r['lines_per_s']:,} |")
    lines.append(
        f"| **average** | **{average['ga_default']:.4f}** | **{average['ga_loghub_setup']:.4f}** "
        f"| **{average['drain_published']:.4f}** | | {average['lines_per_s']:,} |"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark over every system present in the data folder and print the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("LOGHUB_2K_DIR", DEFAULT_DATA)))
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--loo", action="store_true", help="leave one system out (settings chosen on the others)")
    args = parser.parse_args(argv)
    systems = [s for s in LOGHUB_SETUP if (args.data / s).is_dir()]
    if not systems or (args.loo and len(systems) < 2):
        parser.error(f"not enough Loghub-2k systems found under {args.data}")
    if args.loo:
        result = leave_one_out(args.data, systems)
        print(json.dumps({"data": str(args.data), **result}, indent=2) if args.json else loo_table(result))
        return 0
    rows = [evaluate(args.data, system) for system in systems]
    average = summarize(rows)
    if args.json:
        print(json.dumps({"data": str(args.data), "systems": rows, "average": average}, indent=2))
    else:
        print(table(rows, average))
    return 0


if __name__ == "__main__":
    sys.exit(main())
