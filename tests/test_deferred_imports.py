"""tools/deferred_imports.py: a deferred package's `__init__` runs on the first read of the package, its submodules
import without it, and nothing already imported is touched; a skipped optional module reads as absent."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tools.deferred_imports import defer_package_init, skip_optional_module

PACKAGE = {
    "__init__.py": """
        import sys
        sys.modules["deferred_pkg_log"].append("init")
        from .heavy import HEAVY
        from .light import LIGHT as LIGHT_AGAIN
        VERSION = "1.0"
    """,
    "heavy.py": """
        import sys
        sys.modules["deferred_pkg_log"].append("heavy")
        HEAVY = "heavy"
    """,
    "light.py": """
        import sys
        sys.modules["deferred_pkg_log"].append("light")
        LIGHT = "light"
    """,
}


def run_python(tmp_path: Path, code: str) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter that sees the project and a package `deferred_pkg` (written to tmp_path) whose
    modules log their execution in the list `log`."""
    for name, text in PACKAGE.items():
        (tmp_path / "deferred_pkg").mkdir(exist_ok=True)
        (tmp_path / "deferred_pkg" / name).write_text(textwrap.dedent(text))
    prelude = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(tmp_path)!r}, {str(Path(__file__).resolve().parent.parent)!r}]
        log = []
        sys.modules["deferred_pkg_log"] = log
        from tools.deferred_imports import defer_package_init, skip_optional_module
    """)
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def test_a_submodule_imports_without_its_packages_init(tmp_path):
    done = run_python(tmp_path, """
        assert defer_package_init("deferred_pkg")
        from deferred_pkg.light import LIGHT
        assert LIGHT == "light" and log == ["light"], log
        import deferred_pkg.light
        assert log == ["light"], log
    """)
    assert done.returncode == 0, done.stderr


def test_the_first_read_of_the_package_runs_its_init_once(tmp_path):
    done = run_python(tmp_path, """
        defer_package_init("deferred_pkg")
        import deferred_pkg
        assert log == [], log
        from deferred_pkg import HEAVY, VERSION
        assert (HEAVY, VERSION) == ("heavy", "1.0") and log == ["init", "heavy", "light"], log
        import deferred_pkg.light
        assert deferred_pkg.LIGHT_AGAIN == "light" and deferred_pkg.light.LIGHT == "light"
        assert log == ["init", "heavy", "light"], log
        assert "__getattr__" not in vars(deferred_pkg)
        try:
            deferred_pkg.missing
        except AttributeError:
            pass
        else:
            raise AssertionError("a missing name must still raise AttributeError")
    """)
    assert done.returncode == 0, done.stderr


def test_a_submodule_imported_first_is_not_run_again_by_the_init(tmp_path):
    done = run_python(tmp_path, """
        defer_package_init("deferred_pkg")
        import deferred_pkg.light
        assert deferred_pkg.VERSION == "1.0"
        assert log == ["light", "init", "heavy"], log
    """)
    assert done.returncode == 0, done.stderr


def test_another_threads_read_waits_for_the_init_and_a_read_by_the_init_itself_fails_as_half_done(tmp_path):
    (tmp_path / "slow_pkg").mkdir()
    (tmp_path / "slow_pkg" / "__init__.py").write_text(textwrap.dedent("""
        import sys, threading, time
        import slow_pkg
        try:
            slow_pkg.READY
        except AttributeError as exc:
            SELF_READ = str(exc)
        sys.modules["deferred_pkg_log"].append("init started")
        time.sleep(0.3)  # the other thread reads meanwhile
        READY = "ready"
    """))
    done = run_python(tmp_path, """
        import threading, time
        defer_package_init("slow_pkg")
        import slow_pkg
        seen = []
        reader = threading.Thread(target=lambda: seen.append(slow_pkg.READY))
        first = threading.Thread(target=lambda: seen.append(slow_pkg.SELF_READ))
        first.start()
        while not log:
            time.sleep(0.01)
        reader.start()
        first.join(); reader.join()
        assert seen[1] == "ready" and "partially initialized module 'slow_pkg'" in seen[0], seen
    """)
    assert done.returncode == 0, done.stderr


def test_an_init_that_fails_raises_and_the_next_import_tries_again(tmp_path):
    (tmp_path / "failing_pkg").mkdir()
    (tmp_path / "failing_pkg" / "__init__.py").write_text(textwrap.dedent("""
        import sys
        log = sys.modules["deferred_pkg_log"]
        log.append("init")
        if len(log) == 1:
            raise RuntimeError("first try fails")
        VALUE = 2
    """))
    done = run_python(tmp_path, """
        defer_package_init("failing_pkg")
        import failing_pkg
        try:
            failing_pkg.VALUE
        except RuntimeError:
            pass
        else:
            raise AssertionError("the init's error must reach the reader")
        assert "failing_pkg" not in sys.modules
        import failing_pkg
        assert failing_pkg.VALUE == 2 and log == ["init", "init"], log
    """)
    assert done.returncode == 0, done.stderr


def test_a_package_whose_init_defines_its_own_getattr_keeps_it(tmp_path):
    # module-level __getattr__ (PEP 562) is how many libraries load attributes lazily: the hook must not remove it
    done = run_python(tmp_path, """
        from pathlib import Path
        init = Path(sys.path[0]) / "deferred_pkg" / "__init__.py"
        init.write_text(init.read_text() + "\\ndef __getattr__(name):\\n    return 'lazy ' + name\\n")
        assert defer_package_init("deferred_pkg")
        import deferred_pkg
        assert deferred_pkg.VERSION == "1.0"
        assert deferred_pkg.anything == "lazy anything", vars(deferred_pkg).get("__getattr__")
    """)
    assert done.returncode == 0, done.stderr


def test_nothing_changes_for_an_imported_package_a_plain_module_or_a_missing_one():
    before = sys.modules["json"]
    assert defer_package_init("json") is False  # imported already
    assert sys.modules["json"] is before
    assert defer_package_init("tests.conftest") is False  # a module, not a package
    assert defer_package_init("no_such_package_here") is False
    assert "no_such_package_here" not in sys.modules
    assert defer_package_init("no_such_package_here.sub") is False


def test_a_skipped_module_reads_as_absent_unless_its_package_decided_already(tmp_path):
    done = run_python(tmp_path, """
        assert skip_optional_module("httpx._main")
        import httpx
        assert "rich" not in sys.modules and "pygments" not in sys.modules
        try:
            import httpx._main
        except ImportError:
            pass
        else:
            raise AssertionError("httpx._main must read as absent")
        assert httpx.Client is not None
    """)
    assert done.returncode == 0, done.stderr
    import httpx  # noqa: F401  (imported here already; the call must leave it alone)

    assert skip_optional_module("httpx._main") is False
    assert sys.modules.get("httpx._main", "unset") is not None
