"""A small "shop" monorepo with a real, deterministic git history that ends in a bad commit to one service.

The code-fix path runs against it: the simulator names the bad commit in a deploy and logs its traceback, and
the fix is a revert that makes the repository's own tests pass again.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

SERVICES = ("catalog", "cart", "checkout", "payments", "inventory")
PREVIOUS_VERSION = "1.7.0"
BAD_VERSION = "1.8.0"
INNOCENT_VERSION = "1.7.1"
FIRST_VERSION = "1.6.0"
SAMPLE_TEST_COMMAND = (sys.executable, "-m", "unittest", "discover", "-s", "tests", "-t", ".")

_TEMPLATES = Path(__file__).with_name("sample_repo_files")
_MARKER = "incident-copilot-sample"  # file in .git holding the fingerprint of the history it was built from

_OWNERS = {
    "catalog": "Priya Raman <priya.raman@shop.example>",
    "cart": "Tomas Ortega <tomas.ortega@shop.example>",
    "checkout": "Mei Lin <mei.lin@shop.example>",
    "payments": "Jonas Weber <jonas.weber@shop.example>",
    "inventory": "Kofi Mensah <kofi.mensah@shop.example>",
}
_FOUNDER = "Ana Souza <ana.souza@shop.example>"
_INITIAL_DATE = "2026-10-05T09:12:00+00:00"
_FEATURE_DATES = dict(
    zip(SERVICES, ("2026-10-19", "2026-10-27", "2026-11-03", "2026-11-10", "2026-11-16"), strict=True)
)
_INNOCENT_DATE = "2026-11-19T15:41:00+00:00"
_BAD_DATE = "2026-11-20T10:27:00+00:00"

_FEATURES = {
    "catalog": "catalog: list the products of a category",
    "cart": "cart: support percentage coupons",
    "checkout": "checkout: place orders",
    "payments": "payments: refunds of captured amounts",
    "inventory": "inventory: release reservations of cancelled orders",
}


@dataclass(frozen=True)
class _Frame:
    """A traceback frame: the enclosing `def`, the source line shown (stripped), the name Python prints."""

    path: str
    function: str
    code: str
    name: str | None = None


@dataclass(frozen=True)
class _Change:
    """A one-place edit of a service's handlers.py, applied as an exact text replacement."""

    message: str
    old: str
    new: str


@dataclass(frozen=True)
class _Bug:
    """The bad commit of a service and what it raises, frames outermost first."""

    change: _Change
    frames: tuple[_Frame, ...]
    exception: str


def _handlers(service: str) -> str:
    return f"services/{service}/handlers.py"


_DISPATCH = _Frame("services/common/http.py", "dispatch", "result = handler(request)")

_BUGS = {
    "catalog": _Bug(
        _Change(
            "catalog: fail loudly on unknown currencies instead of guessing",
            '    currency = product.get("currency", DEFAULT_CURRENCY)\n'
            '    symbol = CURRENCY_SYMBOLS.get(currency, currency + " ")\n',
            '    currency = product["currency"]\n    symbol = CURRENCY_SYMBOLS[currency]\n',
        ),
        (
            _DISPATCH,
            _Frame(
                _handlers("catalog"),
                "get_product",
                'return {"sku": sku, "name": product["name"], "price": format_price(product)}',
            ),
            _Frame(_handlers("catalog"), "format_price", 'currency = product["currency"]'),
        ),
        "KeyError: 'currency'",
    ),
    "cart": _Bug(
        _Change(
            "cart: prepare line totals for promotion discounts",
            '    return line["price_cents"] * line["quantity"] - line.get("discount_cents", 0)\n',
            '    discount = line.get("discount_cents")\n'
            '    return line["price_cents"] * line["quantity"] - discount\n',
        ),
        (
            _DISPATCH,
            _Frame(
                _handlers("cart"),
                "get_cart",
                'return {"cart_id": request["cart_id"], "lines": lines, "total_cents": cart_total(lines)}',
            ),
            _Frame(_handlers("cart"), "cart_total", "return sum(line_total(line) for line in lines)"),
            _Frame(
                _handlers("cart"), "cart_total", "return sum(line_total(line) for line in lines)", "<genexpr>"
            ),
            _Frame(
                _handlers("cart"), "line_total", 'return line["price_cents"] * line["quantity"] - discount'
            ),
        ),
        "TypeError: unsupported operand type(s) for -: 'int' and 'NoneType'",
    ),
    "checkout": _Bug(
        _Change(
            "checkout: reject unsupported destinations before the free-shipping check",
            '    address = order.get("shipping_address")\n'
            "    if address is None:\n"
            "        return 0\n"
            '    country = address.get("country", "US")\n',
            '    address = order.get("shipping_address")\n    country = address.get("country", "US")\n',
        ),
        (
            _DISPATCH,
            _Frame(_handlers("checkout"), "quote", "shipping = shipping_cost(order)"),
            _Frame(_handlers("checkout"), "shipping_cost", 'country = address.get("country", "US")'),
        ),
        "AttributeError: 'NoneType' object has no attribute 'get'",
    ),
    "payments": _Bug(
        _Change(
            "payments: send capture amounts to the provider in major units",
            '    body = provider_capture_request(auth_id, amount_cents, auth["currency"])\n',
            '    body = provider_capture_request(auth_id, amount_cents / 100, auth["currency"])\n',
        ),
        (
            _DISPATCH,
            _Frame(
                _handlers("payments"),
                "capture_payment",
                'body = provider_capture_request(auth_id, amount_cents / 100, auth["currency"])',
            ),
            _Frame(
                _handlers("payments"),
                "provider_capture_request",
                'raise TypeError(f"amount_minor must be an integer number of minor units, '
                'got {type(amount_minor).__name__}")',
            ),
        ),
        "TypeError: amount_minor must be an integer number of minor units, got float",
    ),
    "inventory": _Bug(
        _Change(
            "inventory: simplify the low-stock check",
            '    return bool(level["capacity"]) and '
            'level["available"] / level["capacity"] < LOW_STOCK_RATIO\n',
            '    return level["available"] / level["capacity"] < LOW_STOCK_RATIO\n',
        ),
        (
            _DISPATCH,
            _Frame(
                _handlers("inventory"),
                "reserve_stock",
                'return {"order_id": request["order_id"], "reserved": quantity, '
                '"low_stock": is_low_stock(level)}',
            ),
            _Frame(
                _handlers("inventory"),
                "is_low_stock",
                'return level["available"] / level["capacity"] < LOW_STOCK_RATIO',
            ),
        ),
        "ZeroDivisionError: division by zero",
    ),
}

# Harmless releases; the one of the service after the faulty one lands just before the bad commit.
_INNOCENT = {
    "catalog": _Change(
        "catalog: add the Canadian dollar symbol",
        'CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}\n',
        'CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "CAD": "CA$"}\n',
    ),
    "cart": _Change(
        "cart: return the item count with the cart",
        '    return {"cart_id": request["cart_id"], "lines": lines, "total_cents": cart_total(lines)}\n',
        "    return {\n"
        '        "cart_id": request["cart_id"],\n'
        '        "lines": lines,\n'
        '        "item_count": sum(line["quantity"] for line in lines),\n'
        '        "total_cents": cart_total(lines),\n'
        "    }\n",
    ),
    "checkout": _Change(
        "checkout: ship to France",
        'SHIPPING_RATES_CENTS = {"US": 599, "DE": 899, "GB": 799}\n',
        'SHIPPING_RATES_CENTS = {"US": 599, "DE": 899, "GB": 799, "FR": 899}\n',
    ),
    "payments": _Change(
        "payments: tolerate whitespace around amounts",
        '    units, _, fraction = amount.partition(".")\n',
        '    units, _, fraction = amount.strip().partition(".")\n',
    ),
    "inventory": _Change(
        "inventory: warn earlier about low stock",
        "LOW_STOCK_RATIO = 0.1\n",
        "LOW_STOCK_RATIO = 0.15\n",
    ),
}


@dataclass(frozen=True)
class SampleRepo:
    """A built sample repository and the facts the simulator needs about its bad commit."""

    path: Path
    bad_commit: str
    bad_version: str
    previous_version: str
    innocent_commit: str
    innocent_service: str
    bad_file: str
    bad_line: int
    bad_function: str
    exception: str
    traceback: str
    innocent_version: str = INNOCENT_VERSION


@dataclass(frozen=True)
class _Commit:
    message: str
    author: str
    date: str
    files: tuple[tuple[str, str], ...]  # the full tree after this commit
    tags: tuple[str, ...]


def innocent_service_for(service: str) -> str:
    """The service whose harmless release precedes the bad commit of `service`."""
    return SERVICES[(SERVICES.index(service) + 1) % len(SERVICES)]


def _template(name: str) -> str:
    return (_TEMPLATES / name).read_text(encoding="utf-8")


def _apply(text: str, change: _Change) -> str:
    if text.count(change.old) != 1:
        raise ValueError(f"sample repo change {change.message!r} does not match its file exactly once")
    return text.replace(change.old, change.new)


def _history(service: str) -> list[_Commit]:
    """Every commit of the sample repository whose bad commit belongs to `service`, oldest first."""
    tree = {
        "README.md": _template("README.md.txt"),
        ".gitignore": _template("gitignore.txt"),
        ".github/workflows/ci.yml": _template("ci.yml.txt"),
        "requirements.lock": _template("requirements.lock.txt"),
        "services/__init__.py": "",
        "services/common/__init__.py": "",
        "services/common/http.py": _template("common/http.py.txt"),
        "tests/__init__.py": "",
        "tests/test_http.py": _template("common/test_http.py.txt"),
    }
    for svc in SERVICES:
        tree[f"services/{svc}/__init__.py"] = ""
        tree[_handlers(svc)] = _template(f"{svc}/handlers.py.txt")
        tree[f"tests/test_{svc}.py"] = _template(f"{svc}/test.py.txt")

    def snapshot(message: str, author: str, date: str, tags: tuple[str, ...]) -> _Commit:
        return _Commit(message, author, date, tuple(sorted(tree.items())), tags)

    commits = [
        snapshot(
            "Initial import of the shop services",
            _FOUNDER,
            _INITIAL_DATE,
            tuple(f"{svc}-v{FIRST_VERSION}" for svc in SERVICES),
        )
    ]
    for svc in SERVICES:
        tree[_handlers(svc)] += _template(f"{svc}/feature.py.txt")
        tree[f"tests/test_{svc}.py"] += _template(f"{svc}/test_feature.py.txt")
        date = f"{_FEATURE_DATES[svc]}T14:05:00+00:00"
        commits.append(snapshot(_FEATURES[svc], _OWNERS[svc], date, (f"{svc}-v{PREVIOUS_VERSION}",)))
    innocent = innocent_service_for(service)
    tree[_handlers(innocent)] = _apply(tree[_handlers(innocent)], _INNOCENT[innocent])
    commits.append(
        snapshot(
            _INNOCENT[innocent].message,
            _OWNERS[innocent],
            _INNOCENT_DATE,
            (f"{innocent}-v{INNOCENT_VERSION}",),
        )
    )
    tree[_handlers(service)] = _apply(tree[_handlers(service)], _BUGS[service].change)
    commits.append(
        snapshot(_BUGS[service].change.message, _OWNERS[service], _BAD_DATE, (f"{service}-v{BAD_VERSION}",))
    )
    return commits


def _fingerprint(history: list[_Commit]) -> str:
    return hashlib.sha256(repr(history).encode()).hexdigest()


def _line_of(text: str, frame: _Frame) -> int:
    """1-based line of `frame.code` inside `def frame.function`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith(f"def {frame.function}("))
    return next(i + 1 for i in range(start, len(lines)) if lines[i].strip() == frame.code)


def _git_env() -> dict[str, str]:
    # Isolated from the user's git configuration (signing, hooks, autocrlf, templates) so SHAs never vary.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0")
    return env


def _run_git(repo: Path, args: list[str], env: dict[str, str], stdin: bytes | None = None) -> str:
    argv = ["git", "-C", str(repo), *args]
    result = subprocess.run(argv, input=stdin, env=env, capture_output=True, check=False)
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"git {' '.join(args)} failed in {repo}: {stderr}")
    return result.stdout.decode()


def _fast_import_stream(history: list[_Commit]) -> bytes:
    """The whole history as one `git fast-import` stream: each commit carries its full tree."""
    out = bytearray()
    for mark, commit in enumerate(history, start=1):
        stamp = int(datetime.fromisoformat(commit.date).timestamp())
        message = commit.message.encode() + b"\n"
        out += f"commit refs/heads/main\nmark :{mark}\n".encode()
        out += f"author {commit.author} {stamp} +0000\ncommitter {commit.author} {stamp} +0000\n".encode()
        out += f"data {len(message)}\n".encode() + message + b"deleteall\n"
        for path, text in commit.files:
            data = text.encode()
            out += f"M 100644 inline {path}\ndata {len(data)}\n".encode() + data + b"\n"
        out += b"\n"
        for tag in commit.tags:
            out += f"reset refs/tags/{tag}\nfrom :{mark}\n\n".encode()
    return bytes(out)


def _build(target: Path, history: list[_Commit], fingerprint: str) -> None:
    """Write the repository into `target` (an empty directory) and check out main."""
    env = _git_env()
    _run_git(target, ["-c", "init.defaultBranch=main", "init", "-q", "--template="], env)
    _run_git(target, ["fast-import", "--quiet", "--done"], env, _fast_import_stream(history) + b"done\n")
    _run_git(target, ["reset", "-q", "--hard", "main"], env)
    (target / ".git" / _MARKER).write_text(fingerprint + "\n", encoding="utf-8")


def _intact(path: Path, fingerprint: str, tags: list[str]) -> list[str] | None:
    """SHAs of `tags` when `path` holds the repository built from `fingerprint` with main at the last tag."""
    try:
        if (path / ".git" / _MARKER).read_text(encoding="utf-8").strip() != fingerprint:
            return None
        shas = _run_git(
            path, ["rev-parse", "refs/heads/main", *(f"refs/tags/{t}^{{commit}}" for t in tags)], _git_env()
        ).split()
    except (OSError, RuntimeError):
        return None
    return shas[1:] if len(shas) == len(tags) + 1 and shas[0] == shas[-1] else None


def default_root() -> Path:
    """Where sample repositories live unless told otherwise: $INCIDENT_COPILOT_HOME or the user's data dir."""
    home = os.environ.get("INCIDENT_COPILOT_HOME")
    if home:
        return Path(home) / "sample-repos"
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "incident-copilot" / "sample-repos"


def ensure_sample_repo(service: str, root: str | Path | None = None) -> SampleRepo:
    """Build (once) and return the sample repo `<root>/shop-<service>` whose last commit breaks `service`."""
    if service not in _BUGS:
        raise ValueError(f"no sample repository for {service!r}; choose one of {', '.join(SERVICES)}")
    root = Path(root) if root is not None else default_root()
    path = root / f"shop-{service}"
    history = _history(service)
    fingerprint = _fingerprint(history)
    innocent = innocent_service_for(service)
    tags = [f"{innocent}-v{INNOCENT_VERSION}", f"{service}-v{BAD_VERSION}"]

    shas = _intact(path, fingerprint, tags)
    if shas is None:
        root.mkdir(parents=True, exist_ok=True)
        # One builder at a time (threads or processes); readers of an intact repository never wait.
        with open(root / f".shop-{service}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            shas = _intact(path, fingerprint, tags)
            if shas is None:
                _build_and_publish(path, history, fingerprint)
                shas = _intact(path, fingerprint, tags)
        if shas is None:
            raise RuntimeError(f"sample repository {path} could not be built")

    bug = _BUGS[service]
    files = dict(history[-1].files)
    lines = [_line_of(files[frame.path], frame) for frame in bug.frames]
    frames = "".join(
        f'  File "/app/{frame.path}", line {line}, in {frame.name or frame.function}\n    {frame.code}\n'
        for frame, line in zip(bug.frames, lines, strict=True)
    )
    return SampleRepo(
        path=path,
        bad_commit=shas[1],
        bad_version=BAD_VERSION,
        previous_version=PREVIOUS_VERSION,
        innocent_commit=shas[0],
        innocent_service=innocent,
        bad_file=bug.frames[-1].path,
        bad_line=lines[-1],
        bad_function=bug.frames[-1].name or bug.frames[-1].function,
        exception=bug.exception,
        traceback=f"Traceback (most recent call last):\n{frames}{bug.exception}",
    )


def _build_and_publish(path: Path, history: list[_Commit], fingerprint: str) -> None:
    """Build next to `path` and rename into place, so a crash never leaves a half-built repository there."""
    if path.exists() and not (path / ".git" / _MARKER).exists():
        raise RuntimeError(f"{path} exists and is not a sample repository; not touching it")
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    stale = path.parent / f"{staging.name}-stale"
    try:
        _build(staging, history, fingerprint)
        if path.exists():
            path.rename(stale)
        staging.rename(path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(stale, ignore_errors=True)
