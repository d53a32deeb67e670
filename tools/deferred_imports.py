"""Package `__init__`s that start-up would import whole for one small submodule, run when first read instead.

Two libraries on every command's import path reach into a package for one module, and Python runs the package's
`__init__` first, which imports all of it:
- LangChain Core's tracers import LangSmith's run trees, which import one enum from `langsmith.types`. That
  package's `__init__` imports every module generated from LangSmith's OpenAPI spec (about 160, a pydantic model
  each).
- LangGraph's runtime imports `langgraph_sdk.auth.types` for one class. The SDK's `__init__` imports its HTTP and
  WebSocket clients for a LangGraph server, which nothing here talks to.
A deferred package stays whole: its submodules import as ever, and the first attribute read of the package itself
(`from langsmith.types import Run`, `langgraph_sdk.get_client`) runs its real `__init__`.

One optional module is not imported at all: httpx's own command line (`httpx._main`, the `httpx URL` tool, with rich's
consoles and pygments' lexers), which httpx imports when those are installed and otherwise replaces with a stub that
says they are missing. No process of ours runs httpx's command line.

Measured in bench/README.md ("Library imports deferred").
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import types
from typing import Any

DEFERRED_PACKAGES = ("langsmith.types", "langgraph_sdk")
SKIPPED_MODULES = ("httpx._main",)


def defer_package_init(name: str) -> bool:
    """Register package `name` so its `__init__` runs on the first attribute read; False when it was already
    imported or is not a package here (another release), and nothing changed."""
    if name in sys.modules:
        return False
    try:
        spec = importlib.util.find_spec(name)
    except ImportError:
        return False
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return False
    package = types.ModuleType(name)
    package.__spec__, package.__loader__, package.__file__ = spec, spec.loader, spec.origin
    package.__package__, package.__path__ = name, list(spec.submodule_search_locations)
    lock = threading.RLock()
    loading = False

    def load_package(attribute: str) -> Any:
        nonlocal loading
        with lock:  # another thread's read waits here while `__init__` runs, as it would on a normal import
            if loading:  # a read by `__init__` itself, in this thread: what a half-done import shows
                raise AttributeError(f"partially initialized module {name!r} has no attribute {attribute!r}")
            if vars(package).get("__getattr__") is load_package:
                loading = True
                try:
                    spec.loader.exec_module(package)
                except BaseException:
                    if sys.modules.get(name) is package:  # as a failed import: the next import tries again
                        del sys.modules[name]
                    raise
                finally:
                    loading = False
                    if vars(package).get("__getattr__") is load_package:  # not one `__init__` defined (PEP 562)
                        del package.__getattr__
        return getattr(package, attribute)

    package.__getattr__ = load_package
    sys.modules[name] = package
    return True


def skip_optional_module(name: str) -> bool:
    """Make `import name` raise ImportError, which its package takes as the feature being absent; False when the
    package is imported already (it decided), and nothing changed."""
    package = name.rpartition(".")[0]
    if package in sys.modules or name in sys.modules:
        return False
    sys.modules[name] = None  # the import system's own "not importable" mark
    return True


def defer_heavy_imports() -> None:
    """Defer DEFERRED_PACKAGES and skip SKIPPED_MODULES (the module's docstring says why each)."""
    for name in DEFERRED_PACKAGES:
        defer_package_init(name)
    for name in SKIPPED_MODULES:
        skip_optional_module(name)
