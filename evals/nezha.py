"""Convert the public Nezha dataset's OnlineBoutique days into an eval set (evals/dataset.py) served over the wire.

Nezha (IntelligentDDS/Nezha, FSE'23, MIT licence) recorded OnlineBoutique (10 services, Kubernetes) while injecting
56 faults over two days. Only those two days are read: `rca_data/2022-08-22`, `rca_data/2022-08-23`, their baselines
in `construct_data/2022-08-22` and `construct_data/2022-08-23`, the labels in `<day>-fault_list.json` and
`construct_data/root_cause_hipster.json`. Its TrainTicket days are held out for independent scoring: no path to them is
ever built here (ONLINE_BOUTIQUE_DAYS is the only list of days, and nothing lists `rca_data/` itself).

What becomes what (the data is not rewritten; names are Nezha's columns in Prometheus' style):
- metric CSVs (one row per pod and minute) -> gauges labelled service (the pod name without its two hash parts) and
  pod, e.g. `CpuUsage(m)` -> `cpu_usage_millicores`; front_service.csv (the storefront's own success rate and
  latency) -> `front_service_*{service="frontend"}`; source_50.csv / destination_50.csv (median latency per call
  edge, measured at the caller / at the callee) -> `edge_latency_p50_seconds{service, peer, reporter}` as Istio names
  its reporters. `telemetry.toml` maps the engine's signals onto these names (tools/telemetry_config.py), as a user
  whose metrics have other names would. The timestamps come from the `Time` column: the `TimeStamp` column of
  adservice on 2022-08-22 is corrupt (year 2028, out of order). `PodSuccessRate(%)` is 0 in every row of every pod
  and is not used; the only error signal is the storefront's SuccessRate.
- log CSVs -> Loki entries (service_name = service), the container runtime's JSON envelope unwrapped as promtail's
  docker stage does. The snapshot lacks every file of 4 MiB or more: 3 of the 168 minute files of logs exist.
- trace CSVs -> spans served by a Tempo API, sampled by trace id (`--trace-sample`, as OpenTelemetry's probabilistic
  sampler does) to keep the set small; 102 of the 168 minute files exist. Nezha's spans carry no status, so traces
  show where time goes, never errors.
- each fault -> a case: the alert fires ALERT_DELAY after the injection on the storefront (`frontend`), the only
  service users reach; the expected answer is the injected service and FAULT_TYPES' mapping of the injected type.
  Nezha injects a fault every 8-9 minutes, each lasting 3-4: a 15-minute window before the alert holds the previous
  fault too, and the baseline before it two or three more. The first fault of each day has under 3 minutes of
  history before it.
- quiet hours (QUIET_AFTER past a day's last injection) -> false-alarm cases: the alert fires at the storefront's
  worst p99 minute of each quiet stretch (a latency alert fires on its worst blip); expected: no incident.

Run: python -m evals.nezha --source PATH --out DIR (PATH: a Nezha checkout or a bare git mirror of it).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from evals.dataset import FORMAT, EvalCase, write_manifest

ONLINE_BOUTIQUE_DAYS = ("2022-08-22", "2022-08-23")
SOURCE_URL = "https://github.com/IntelligentDDS/Nezha"
ALERTED_SERVICE = "frontend"
ALERT_DELAY = timedelta(minutes=3)  # 1-minute scrapes and a rule that holds for 2 minutes
WINDOW = timedelta(minutes=15)
BASELINE = timedelta(minutes=30)
QUIET_AFTER = timedelta(minutes=60)
QUIET_ALERTS_PER_DAY = 2
SCRAPE_INTERVAL_SECONDS = 60

# Nezha's fault types in our vocabulary (DESIGN.md 4.1), with the reason for each row.
FAULT_TYPES: dict[str, tuple[str, str]] = {
    "cpu_contention": ("cpu_saturation", "a stress process in the pod competes for its CPU limit"),
    "cpu_consumed": ("cpu_saturation", "the service's own code burns CPU (an injected loop)"),
    "network_delay": (
        "network_partition",
        "tc netem delays the pod's traffic; our vocabulary's network fault (it has no separate delay type)",
    ),
    "return": ("deployment_regression", "an injected code fault: a function returns early with a wrong value"),
    "exception": ("deployment_regression", "an injected code fault: a function throws"),
}

POD_COLUMNS: dict[str, tuple[str, str]] = {
    "CpuUsage(m)": ("cpu_usage_millicores", "CPU used by the pod, millicores."),
    "CpuUsageRate(%)": ("cpu_usage_rate_percent", "CPU used, percent of the pod's limit."),
    "MemoryUsage(Mi)": ("memory_usage_mebibytes", "Memory used by the pod, MiB."),
    "MemoryUsageRate(%)": ("memory_usage_rate_percent", "Memory used, percent of the pod's limit."),
    "SyscallRead": ("syscall_read", "read system calls in the minute."),
    "SyscallWrite": ("syscall_write", "write system calls in the minute."),
    "NetworkReceiveBytes": ("network_receive_bytes", "Bytes received per second."),
    "NetworkTransmitBytes": ("network_transmit_bytes", "Bytes sent per second."),
    "PodClientLatencyP90(s)": ("pod_client_latency_p90_seconds", "p90 of the pod's outgoing calls, seconds."),
    "PodServerLatencyP90(s)": ("pod_server_latency_p90_seconds", "p90 of requests the pod served, seconds."),
    "PodClientLatencyP95(s)": ("pod_client_latency_p95_seconds", "p95 of the pod's outgoing calls, seconds."),
    "PodServerLatencyP95(s)": ("pod_server_latency_p95_seconds", "p95 of requests the pod served, seconds."),
    "PodClientLatencyP99(s)": ("pod_client_latency_p99_seconds", "p99 of the pod's outgoing calls, seconds."),
    "PodServerLatencyP99(s)": ("pod_server_latency_p99_seconds", "p99 of requests the pod served, seconds."),
    "PodWorkload(Ops)": ("pod_workload_ops", "Requests served per second."),
    "PodSuccessRate(%)": ("pod_success_rate_percent", "Nezha's pod success rate (0 in every row: unusable)."),
    "NodeCpuUsageRate(%)": ("node_cpu_usage_rate_percent", "CPU used on the pod's node, percent."),
    "NodeMemoryUsageRate(%)": ("node_memory_usage_rate_percent", "Memory used on the pod's node, percent."),
    "NodeNetworkReceiveBytes": ("node_network_receive_bytes", "Bytes received per second by the pod's node."),
}
FRONT_COLUMNS: dict[str, tuple[str, str]] = {
    "SuccessRate(%)": ("front_service_success_rate_percent", "Storefront requests answered successfully, percent."),
    "LatencyP50(s)": ("front_service_latency_p50_seconds", "Storefront p50 latency, seconds."),
    "LatencyP90(s)": ("front_service_latency_p90_seconds", "Storefront p90 latency, seconds."),
    "LatencyP95(s)": ("front_service_latency_p95_seconds", "Storefront p95 latency, seconds."),
    "LatencyP99(s)": ("front_service_latency_p99_seconds", "Storefront p99 latency, seconds."),
}
EDGE_FILES = {"source_50.csv": "source", "destination_50.csv": "destination"}
EDGE_FAMILY = ("edge_latency_p50_seconds", "Median latency of calls from service to peer, seconds, by reporter.")

# The engine's signals on Nezha's names (a telemetry config, tools/telemetry_config.py), copied into the eval set.
TELEMETRY_TOML = Path(__file__).with_name("nezha_telemetry.toml")

_POD_SUFFIX = re.compile(r"-[0-9a-f]{6,10}-[0-9a-z]{5}$")
_TIME = re.compile(r"(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:\.(\d+))?")


def pod_service(pod: str) -> str:
    """The service of a Kubernetes pod name: frontend-579b9bff58-t2dbm -> frontend."""
    return _POD_SUFFIX.sub("", pod)


def parse_time(text: str) -> float:
    """Unix seconds (ms precision) of a Nezha `Time` cell: '2022-08-22 03:51:19.799087274 +0000 UTC m=+0.30'."""
    match = _TIME.match(text)
    if not match:
        raise ValueError(f"unreadable time {text[:40]!r}")
    day, clock, fraction = match.groups()
    at = datetime.fromisoformat(f"{day}T{clock}+00:00").timestamp()
    return round(at + float(f"0.{fraction or 0}"), 3)


# --- reading the dataset -------------------------------------------------------------------------------------


class NezhaRepo:
    """Files of a Nezha checkout or of a bare git mirror; a file is absent when the snapshot lacks it (a missing
    blob, a missing file or a Git LFS pointer)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.bare = (self.path / "HEAD").is_file() and (self.path / "objects").is_dir()
        if not self.bare and not (self.path / "rca_data").is_dir():
            raise ValueError(f"{path}: neither a Nezha checkout (no rca_data/) nor a bare git repository")

    def commit(self) -> str | None:
        """The commit read (bare mirrors only)."""
        return self._git("rev-parse", "HEAD").strip() if self.bare else None

    def files(self, folder: str) -> dict[str, bool]:
        """Names in `folder` -> whether the file's content is present."""
        if not self.bare:
            directory = self.path / folder
            if not directory.is_dir():
                return {}
            return {p.name: not _is_pointer(p) for p in sorted(directory.iterdir()) if p.is_file()}
        out = {}
        for line in self._git("ls-tree", "-l", f"HEAD:{folder}").splitlines():
            meta, name = line.split("\t", 1)
            kind, size = meta.split()[1], meta.split()[3]
            if kind == "blob":
                out[name] = size != "BAD" and self._has(f"HEAD:{folder}/{name}")
        return out

    def read(self, path: str) -> str:
        """A present file's text."""
        if not self.bare:
            return (self.path / path).read_text()
        return self._git("show", f"HEAD:{path}")

    def _has(self, ref: str) -> bool:
        done = subprocess.run(["git", f"--git-dir={self.path}", "cat-file", "-e", ref], capture_output=True)
        return done.returncode == 0

    def _git(self, *args: str) -> str:
        done = subprocess.run(["git", f"--git-dir={self.path}", *args], capture_output=True, text=True)
        if done.returncode:
            raise OSError(f"git {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout


def _is_pointer(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(40).startswith(b"version https://git-lfs")


def _rows(text: str) -> Iterator[dict[str, str]]:
    return csv.DictReader(io.StringIO(text))


# --- metrics ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Gauge:
    """One sample of the converted metrics."""

    family: str
    labels: tuple[tuple[str, str], ...]
    at: float
    value: float


def metric_samples(repo: NezhaRepo, day: str) -> Iterator[Gauge]:
    """Every metric value of the day as a gauge sample (empty cells skipped; NaN kept, as Prometheus keeps it)."""
    folder = f"rca_data/{day}/metric"
    for name, present in repo.files(folder).items():
        if not present:
            continue
        text = repo.read(f"{folder}/{name}")
        if name.endswith("_metric.csv"):
            for row in _rows(text):
                labels = (("service", pod_service(row["PodName"])), ("pod", row["PodName"]))
                at = parse_time(row["Time"])
                yield from _cells(row, POD_COLUMNS, labels, at)
        elif name == "front_service.csv":
            for row in _rows(text):
                yield from _cells(row, FRONT_COLUMNS, (("service", ALERTED_SERVICE),), parse_time(row["Time"]))
        elif name in EDGE_FILES:
            for row in _rows(text):
                at = parse_time(row["time"])
                for column, cell in row.items():
                    if column in ("time", "timestamp") or not cell:
                        continue
                    caller, callee = column.split("_", 1)
                    labels = (("service", caller), ("peer", callee), ("reporter", EDGE_FILES[name]))
                    yield Gauge(EDGE_FAMILY[0], labels, at, float(cell))


def _cells(
    row: dict[str, str], columns: dict[str, tuple[str, str]], labels: tuple[tuple[str, str], ...], at: float
) -> Iterator[Gauge]:
    for column, (family, _) in columns.items():
        cell = row.get(column, "")
        if cell:
            yield Gauge(family, labels, at, float(cell))


def write_openmetrics(samples: Iterable[Gauge], out: Path) -> int:
    """Gzipped OpenMetrics for `promtool tsdb create-blocks-from openmetrics`: each family together, each series
    in time order. Returns the number of samples."""
    helps = {family: text for family, text in [*POD_COLUMNS.values(), *FRONT_COLUMNS.values(), EDGE_FAMILY]}
    by_family: dict[str, list[Gauge]] = {}
    for sample in samples:
        by_family.setdefault(sample.family, []).append(sample)
    count = 0
    with gzip.open(out, "wt") as handle:
        for family in sorted(by_family):
            handle.write(f"# TYPE {family} gauge\n# HELP {family} {helps[family]}\n")
            rows = sorted(by_family[family], key=lambda s: (s.labels, s.at))
            last: tuple | None = None
            for s in rows:
                if (s.labels, s.at) == last:
                    continue  # a duplicated row: promtool refuses two samples of one series at one time
                last = (s.labels, s.at)
                labels = ",".join(f'{k}="{v}"' for k, v in s.labels)
                handle.write(f"{family}{{{labels}}} {_number(s.value)} {s.at:.3f}\n")
                count += 1
        handle.write("# EOF\n")
    return count


def _number(value: float) -> str:
    return "NaN" if value != value else repr(value)


# --- logs and traces -------------------------------------------------------------------------------------------


def log_entries(repo: NezhaRepo, day: str, kind: str = "rca_data") -> Iterator[tuple[int, str, str]]:
    """(ns, service, line) of the day's present log files, the runtime's JSON envelope unwrapped."""
    folder = f"{kind}/{day}/log"
    for name, present in repo.files(folder).items():
        if present:
            for row in _rows(repo.read(f"{folder}/{name}")):
                yield int(row["TimeUnixNano"]), pod_service(row["PodName"]), _unwrap(row["Log"])


def _unwrap(text: str) -> str:
    """The application's line inside Docker's json-file envelope {"log": "...\\n", "stream", "time"}."""
    try:
        envelope = json.loads(text)
    except ValueError:
        return text.rstrip("\n")
    if isinstance(envelope, dict) and isinstance(envelope.get("log"), str):
        return envelope["log"].rstrip("\n")
    return text.rstrip("\n")


def sampled(trace_id: str, ratio: float) -> bool:
    """Whether a trace is kept: the same answer for the same id everywhere (a hash of the id below the ratio)."""
    if ratio >= 1.0:
        return True
    digest = hashlib.blake2b(trace_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < ratio * 2**64


def span_rows(repo: NezhaRepo, day: str, ratio: float, kind: str = "rca_data") -> Iterator[list]:
    """[trace, span, parent|None, service, pod, name, start ns, end ns] of the day's present trace files."""
    folder = f"{kind}/{day}/trace"
    for name, present in repo.files(folder).items():
        if not present:
            continue
        for row in _rows(repo.read(f"{folder}/{name}")):
            if sampled(row["TraceID"], ratio):
                parent = row["ParentID"] if row["ParentID"] not in ("", "root") else None
                yield [
                    row["TraceID"],
                    row["SpanID"],
                    parent,
                    pod_service(row["PodName"]),
                    row["PodName"],
                    row["OperationName"],
                    int(row["StartTimeUnixNano"]),
                    int(row["EndTimeUnixNano"]),
                ]


def _write_jsonl(rows: Iterable, out: Path) -> int:
    count = 0
    with gzip.open(out, "wt") as handle:
        for row in rows:
            handle.write(json.dumps(row, separators=(",", ":")) + "\n")
            count += 1
    return count


# --- cases -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One injected fault of the labels."""

    day: str
    at: datetime
    pod: str
    kind: str

    @property
    def service(self) -> str:
        return pod_service(self.pod)

    @property
    def case_id(self) -> str:
        return f"{self.at:%Y-%m-%dT%H:%M:%S}-{self.service}-{self.kind}"


def faults(repo: NezhaRepo, day: str) -> list[Fault]:
    """The day's injections in time order."""
    table = json.loads(repo.read(f"rca_data/{day}/{day}-fault_list.json"))
    out = [
        Fault(day, datetime.fromtimestamp(int(f["inject_timestamp"]), UTC), f["inject_pod"], f["inject_type"])
        for hour in table.values()
        for f in hour
    ]
    unknown = {f.kind for f in out} - set(FAULT_TYPES)
    if unknown:
        raise ValueError(f"fault types without a mapping: {sorted(unknown)}")
    return sorted(out, key=lambda f: f.at)


def fault_case(fault: Fault, everything: list[Fault], coverage: dict[str, dict[str, bool]]) -> EvalCase:
    """The case of one fault: the storefront's alert ALERT_DELAY later, the expected answer, what the window
    holds (earlier faults, recorded minutes of traces and logs)."""
    at = fault.at + ALERT_DELAY
    start = at - WINDOW
    earlier = [f.case_id for f in everything if start - BASELINE <= f.at < fault.at]
    return EvalCase(
        id=fault.case_id,
        service=ALERTED_SERVICE,
        at=at,
        alertname="FrontendLatencyOrErrors",
        expected_service=fault.service,
        expected_fault=FAULT_TYPES[fault.kind][0],
        source_fault=fault.kind,
        notes={
            "injected_at": fault.at.isoformat(),
            "injected_pod": fault.pod,
            "earlier_faults_in_window": [c for c in earlier if _fault_time(c) >= start],
            "earlier_faults_in_baseline": [c for c in earlier if _fault_time(c) < start],
            **_minutes(coverage, fault.day, start, at),
        },
    )


def _fault_time(case_id: str) -> datetime:
    return datetime.fromisoformat(case_id[:19] + "+00:00")


def _minutes(coverage: dict[str, dict[str, bool]], day: str, start: datetime, end: datetime) -> dict:
    """Recorded minute files of traces and logs within [start, end]: present of listed (absent = lacked by the
    snapshot; unlisted minutes were never recorded)."""
    out = {}
    for kind in ("trace", "log"):
        files = coverage.get(f"{day}/{kind}", {})
        inside = {n: ok for n, ok in files.items() if start <= _file_minute(day, n) + timedelta(minutes=1)
                  and _file_minute(day, n) <= end}
        out[f"{kind}_minutes"] = {"present": sum(inside.values()), "listed": len(inside)}
    return out


def _file_minute(day: str, name: str) -> datetime:
    hour, minute = name.split("_")[:2]
    return datetime.fromisoformat(f"{day}T{hour}:{minute}:00+00:00")


def quiet_cases(samples: list[Gauge], day: str, last_fault: datetime) -> list[EvalCase]:
    """False-alarm cases: the storefront's worst p99 minutes of the day's quiet stretch, an hour apart or more."""
    family = FRONT_COLUMNS["LatencyP99(s)"][0]
    samples = [s for s in samples if s.value == s.value]  # NaN: no request in the minute
    quiet_from = last_fault + QUIET_AFTER
    points = sorted(
        ((s.value, s.at) for s in samples if s.family == family and s.at >= quiet_from.timestamp()),
        reverse=True,
    )
    chosen: list[float] = []
    for _, at in points:
        if all(abs(at - other) >= 3600 for other in chosen):
            chosen.append(at)
        if len(chosen) == QUIET_ALERTS_PER_DAY:
            break
    cases = []
    for at in sorted(chosen):
        when = datetime.fromtimestamp(round(at) + SCRAPE_INTERVAL_SECONDS, UTC)
        cases.append(
            EvalCase(
                id=f"{when:%Y-%m-%dT%H:%M:%S}-quiet",
                service=ALERTED_SERVICE,
                at=when,
                alertname="FrontendLatencyOrErrors",
                expected_service=None,
                expected_fault="none",
                source_fault="none",
                notes={"why": f"the storefront's worst p99 minute, {QUIET_AFTER} or more after the last fault"},
            )
        )
    return cases


# --- the whole conversion --------------------------------------------------------------------------------------


def convert(source: Path, out: Path, trace_sample: float = 0.1, days: Iterable[str] = ONLINE_BOUTIQUE_DAYS) -> dict:
    """Write the eval set of the given OnlineBoutique days to `out`; returns its manifest."""
    days = list(days)
    held_out = [d for d in days if d not in ONLINE_BOUTIQUE_DAYS]
    if held_out:
        raise ValueError(f"only the OnlineBoutique days {ONLINE_BOUTIQUE_DAYS} may be converted, not {held_out}")
    repo = NezhaRepo(source)
    out.mkdir(parents=True, exist_ok=True)
    coverage = {}
    for day in days:
        for kind in ("log", "trace", "metric"):
            files = {**repo.files(f"construct_data/{day}/{kind}"), **repo.files(f"rca_data/{day}/{kind}")}
            coverage[f"{day}/{kind}"] = files

    samples = [s for day in days for s in metric_samples(repo, day)]
    metric_count = write_openmetrics(samples, out / "metrics.om.gz")

    def logs() -> Iterator[tuple[int, str, str]]:
        for day in days:
            for kind in ("construct_data", "rca_data"):
                yield from log_entries(repo, day, kind)

    def spans() -> Iterator[list]:
        for day in days:
            for kind in ("construct_data", "rca_data"):
                yield from span_rows(repo, day, trace_sample, kind)

    log_count = _write_jsonl(sorted(logs()), out / "logs.jsonl.gz")
    span_count = _write_jsonl(spans(), out / "spans.jsonl.gz")
    shutil.copyfile(TELEMETRY_TOML, out / "telemetry.toml")

    cases: list[EvalCase] = []
    for day in days:
        day_faults = faults(repo, day)
        cases += [fault_case(f, day_faults, coverage) for f in day_faults]
        day_samples = [s for s in samples if _day_start(day) <= s.at < _day_start(day) + 86400]
        cases += quiet_cases(day_samples, day, day_faults[-1].at)
    absent = {key: sorted(n for n, ok in files.items() if not ok) for key, files in coverage.items()}
    manifest = {
        "format": FORMAT,
        "name": "nezha-online-boutique",
        "description": "Nezha's OnlineBoutique faults (FSE'23), converted by evals/nezha.py",
        "source": {
            "repository": SOURCE_URL,
            "commit": repo.commit(),
            "license": "MIT",
            "days": days,
            "files": {k: {"present": sum(v.values()), "listed": len(v)} for k, v in coverage.items()},
            "absent": {k: v for k, v in absent.items() if v},
        },
        "telemetry": {
            "metrics": "metrics.om.gz",
            "logs": "logs.jsonl.gz",
            "spans": "spans.jsonl.gz",
            "config": "telemetry.toml",
            "scrape_interval_seconds": SCRAPE_INTERVAL_SECONDS,
            "trace_sample_ratio": trace_sample,
            "counts": {"metric_samples": metric_count, "log_entries": log_count, "spans": span_count},
        },
        "run": {"window_seconds": int(WINDOW.total_seconds()), "metrics_step_seconds": SCRAPE_INTERVAL_SECONDS},
        "fault_types": {k: {"fault_type": v, "why": why} for k, (v, why) in FAULT_TYPES.items()},
    }
    write_manifest(out, manifest, cases)
    return manifest


def _day_start(day: str) -> float:
    return datetime.fromisoformat(f"{day}T00:00:00+00:00").timestamp()


def main(argv: list[str] | None = None) -> int:
    """Command line: convert a Nezha checkout or mirror."""
    parser = argparse.ArgumentParser(prog="python -m evals.nezha", description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True, type=Path, help="a Nezha checkout or bare git mirror")
    parser.add_argument("--out", required=True, type=Path, help="the eval set directory to write")
    parser.add_argument("--trace-sample", type=float, default=0.1, help="fraction of traces kept (default 0.1)")
    args = parser.parse_args(argv)
    if not 0 < args.trace_sample <= 1:
        parser.error("--trace-sample must be in (0, 1]")
    try:
        manifest = convert(args.source, args.out, args.trace_sample)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts = manifest["telemetry"]["counts"]
    print(
        f"{args.out}: {len(json.loads((args.out / 'dataset.json').read_text())['cases'])} cases, "
        f"{counts['metric_samples']} metric samples, {counts['log_entries']} log entries, {counts['spans']} spans"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
