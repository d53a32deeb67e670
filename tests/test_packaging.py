"""The wheel installs what it runs: built from the sources, installed into a fresh venv, it migrates a database and
runs the demo from there, finding its migrations, templates, prompts, runbooks and sample repository as package data.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import venv
from pathlib import Path

import psycopg

from tests.conftest import REPO_ROOT

MIGRATIONS = sorted(p.name for p in (REPO_ROOT / "migrations").glob("[0-9][0-9][0-9][0-9]_*.sql"))
NOT_SOURCES = shutil.ignore_patterns(".venv", ".git", ".home", "output", "build", "*.egg-info", "__pycache__",
                                     ".pytest_cache", ".ruff_cache", ".langgraph_api")


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    output = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}\n{output}"
    return done.stdout


def test_the_wheel_installed_in_a_fresh_venv_migrates_and_runs_the_demo(tmp_path, database_url):
    # build from a copy of the sources, so nothing is written into the checkout
    sources = tmp_path / "src"
    shutil.copytree(REPO_ROOT, sources, ignore=NOT_SOURCES)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"),
         str(sources)], cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("incident_copilot-*.whl"))

    # a fresh venv with the wheel alone; third-party packages come from ours, read-only, through a .pth file
    # (a path line: the .pth files of that folder, among them our editable install's, are not run)
    target = tmp_path / "venv"
    venv.create(target, with_pip=False)
    python = target / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)], cwd=tmp_path)
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path).strip())
    (site / "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {"DATABASE_URL": database_url, "INCIDENT_COPILOT_HOME": str(tmp_path / "home"),
            "OUTPUT_DIR": str(tmp_path / "out"), "LANGSMITH_TRACING": "false"}
    where = run([str(python), "-c", "import cli, migrations; print(cli.__file__); print(migrations.__file__)"],
                tmp_path, env)
    assert all(line.startswith(str(target)) for line in where.split()), f"not the installed copy:\n{where}"

    command = str(target / "bin" / "incident-copilot")
    migrated = run([command, "db", "migrate"], tmp_path, env)
    assert "database ready" in migrated
    with psycopg.connect(database_url) as conn:
        applied = sorted(row[0] for row in conn.execute("SELECT name FROM schema_migrations"))
    queue_schema = f"procrastinate {importlib.metadata.version('procrastinate')}"  # the run queue's own tables
    assert applied == sorted([*MIGRATIONS, queue_schema])

    demo = run([command, "demo", "--scenario", "deployment_regression", "--yes"], tmp_path, env)
    assert "created: branch incident-copilot/" in demo, demo
    briefs = list((tmp_path / "out").glob("*/brief.html"))
    assert len(briefs) == 1 and list(briefs[0].parent.glob("charts/*.png")), "the brief and its charts"
    assert "A deploy or config change broke a service" in briefs[0].read_text(), "the fleet's runbook is shipped"


def test_every_runtime_dependency_has_version_bounds():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    loose = [d for d in project["dependencies"] if not ("==" in d or (">=" in d and "<" in d))]
    assert loose == [], f"runtime dependencies without a lower and an upper bound: {loose}"
    assert "settings" not in tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"].get(
        "py-modules", [])


def test_every_imported_package_is_a_declared_dependency():
    """A package the code imports directly is declared (with bounds), not borrowed from another's dependencies."""
    import ast
    from importlib.metadata import packages_distributions, requires

    from packaging.requirements import Requirement

    own = {p.name for p in REPO_ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()} | {
        "state", "server", "cli"}
    imported = set()
    for path in REPO_ROOT.rglob("*.py"):
        top = path.relative_to(REPO_ROOT).parts[0]
        if top.startswith(".") or top in ("tests", "bench", "build"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - own - set(sys.stdlib_module_names)

    def canonical(name: str) -> str:
        return name.lower().replace("_", "-")

    declared = set()
    for text in tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        requirement = Requirement(text)
        declared.add(canonical(requirement.name))
        for extra in requirement.extras:  # psycopg[pool] brings psycopg-pool
            for dependency in requires(requirement.name) or []:
                needed = Requirement(dependency)
                if needed.marker and needed.marker.evaluate({"extra": extra}):
                    declared.add(canonical(needed.name))
    distributions = packages_distributions()
    undeclared = sorted(m for m in third_party if not {canonical(d) for d in distributions.get(m, [m])} & declared)
    assert undeclared == [], f"imported but not declared in pyproject.toml: {undeclared}"
