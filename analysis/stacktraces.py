"""Stack traces of Java, Python, Go and Node: frames, exception lines, and which frames are the application's."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class Frame:
    """One stack frame: file, line and function as the trace names them, and the runtime that printed it."""

    file: str
    line: int | None
    function: str | None
    runtime: str = ""  # java | python | go | node


@dataclass(slots=True, frozen=True)
class Trace:
    """A parsed trace: frames root cause first (innermost first within each exception), every exception line as
    printed, and the one that names the failure (Java: the last cause; Python: the last line; Go: the panic)."""

    frames: tuple[Frame, ...]
    exceptions: tuple[str, ...]
    exception: str | None


_PY_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+)(?:, in (?P<func>\S+))?')
_JAVA_FRAME = re.compile(r"^\s*at (?P<func>[\w$.<>/]+)\((?P<file>[^:)]+)(?::(?P<line>\d+))?\)")
_NODE_FRAME = re.compile(
    r"^\s*at (?:async )?(?:(?P<func>[^()]+?) \((?P<file>[^()]+?):(?P<line>\d+):\d+\)"
    r"|(?P<bare>[^\s()]+?):(?P<bare_line>\d+):\d+)\s*$"
)
_GO_FILE = re.compile(r"^\s+(?P<file>\S+\.go):(?P<line>\d+)(?: \+0x[0-9a-fA-F]+)?\s*$")
_GO_FUNC = re.compile(r"^(?:created by )?(?P<func>\S.*?)(?:\((?:[^()]|\([^()]*\))*\))?(?: in goroutine \d+)?\s*$")
_GOROUTINE = re.compile(r"^goroutine \d+ \[")
_GO_PANIC = re.compile(r"^(?:panic|fatal error): ")
_EXCEPTION_LINE = re.compile(r"^(?:[\w.$]*(?:Error|Exception|Exit|Interrupt|Warning)|[\w.$]+\.[A-Z]\w+)(?::\s.*)?$")
_CAUSED_BY = "Caused by:"


@functools.lru_cache(maxsize=1024)
def parse_trace(text: str) -> Trace:
    """Frames and exception lines of a trace (the lines after a log entry's first line, or a stack field).

    Cached: a failing code path logs the same trace over and over.
    """
    sections: list[list[Frame]] = [[]]  # one per exception: Python traceback, Java "Caused by", ...
    exceptions: list[str] = []
    causes: list[str] = []
    panic = None
    go_function = None
    goroutines = 0
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if m := _PY_FRAME.match(raw):
            sections[-1].append(Frame(m["file"], int(m["line"]), m["func"], "python"))
        elif m := _JAVA_FRAME.match(raw):
            sections[-1].append(Frame(m["file"], int(m["line"]) if m["line"] else None, m["func"], "java"))
        elif m := _NODE_FRAME.match(raw):
            file, number = (m["file"], m["line"]) if m["file"] else (m["bare"], m["bare_line"])
            sections[-1].append(Frame(file, int(number), m["func"], "node"))
        elif (m := _GO_FILE.match(raw)) and go_function is not None:
            if goroutines <= 1:  # a dump of all goroutines: the first is the one that failed
                sections[-1].append(Frame(m["file"], int(m["line"]), go_function, "go"))
            go_function = None
        elif line.startswith("Traceback (most recent call last)"):
            sections.append([])
        elif line.startswith(_CAUSED_BY):
            causes.append(line[len(_CAUSED_BY) :].strip())
            exceptions.append(causes[-1])
            sections.append([])
        elif _GOROUTINE.match(line):
            goroutines += 1
        elif _GO_PANIC.match(line):
            panic = panic or line
            exceptions.append(line)
        elif _EXCEPTION_LINE.match(line):
            exceptions.append(line)
        else:
            go_function = m["func"] if not raw[:1].isspace() and (m := _GO_FUNC.match(line)) else None
    python = any(f.runtime == "python" for s in sections for f in s)
    # Python prints each traceback outermost first, the original cause's first; Java prints the outermost
    # exception first and its causes after it.
    ordered = [s[::-1] for s in sections] if python else sections[::-1] if causes else sections
    if causes:
        exception = causes[-1]
    elif panic:
        exception = panic
    elif python and exceptions:
        exception = exceptions[-1]
    else:
        exception = exceptions[0] if exceptions else None
    return Trace(tuple(f for s in ordered for f in s), tuple(exceptions), exception)


@dataclass(frozen=True, slots=True)
class LibraryFrames:
    """Frames of a runtime that are not the application's own code: a regex over the frame's function or file
    (after a Java module prefix such as "java.base/"), the general fact behind it, and an example frame."""

    runtime: str
    name: str
    fact: str
    example: Frame
    function: re.Pattern[str] | None = None
    file: re.Pattern[str] | None = None


_GO_STDLIB = (
    "archive|bufio|bytes|cmp|compress|container|context|crypto|database|debug|embed|encoding|errors|expvar|flag|"
    "fmt|go|hash|html|image|index|internal|io|iter|log|maps|math|mime|net|os|path|plugin|reflect|regexp|runtime|"
    "slices|sort|strconv|strings|structs|sync|syscall|testing|text|time|unicode|unique|unsafe|vendor|weak"
)
_JAVA_LIBRARIES = (
    "org\\.springframework|org\\.apache|org\\.eclipse|org\\.hibernate|org\\.slf4j|org\\.glassfish|org\\.jboss|"
    "org\\.postgresql|org\\.mariadb|org\\.h2|org\\.mybatis|org\\.jooq|org\\.junit|org\\.mockito|org\\.aspectj|"
    "org\\.elasticsearch|org\\.mongodb|io\\.netty|io\\.grpc|io\\.undertow|io\\.micrometer|io\\.reactivex|io\\.vertx|"
    "io\\.opentelemetry|io\\.quarkus|io\\.micronaut|io\\.lettuce|io\\.dropwizard|io\\.github\\.resilience4j|"
    "com\\.fasterxml|com\\.zaxxer|com\\.google|com\\.mysql|com\\.mongodb|com\\.datastax|com\\.amazonaws|"
    "com\\.netflix|com\\.squareup|ch\\.qos|reactor|okhttp3|okio|feign|retrofit2|rx|akka|net\\.bytebuddy|"
    "software\\.amazon|redis\\.clients"
)

LIBRARY_FRAMES: tuple[LibraryFrames, ...] = (
    LibraryFrames(
        "java", "the JDK and the JVM languages' runtimes",
        "their classes live in the java., javax., jdk., sun. (and jakarta., kotlin., scala., ...) packages",
        Frame("Thread.java", 829, "java.base/java.lang.Thread.run", "java"),
        function=re.compile(r"^(?:java|javax|jdk|sun|com\.sun|jakarta|kotlin|kotlinx|scala|groovy|clojure)\."),
    ),
    LibraryFrames(
        "java", "well-known frameworks and libraries",
        "libraries publish under their own organisation's reversed domain (org.springframework, io.netty, ...)",
        Frame("DispatcherServlet.java", 1067, "org.springframework.web.servlet.DispatcherServlet.doDispatch", "java"),
        function=re.compile(rf"^(?:{_JAVA_LIBRARIES})\."),
    ),
    LibraryFrames(
        "java", "generated proxies and accessors",
        "code generated at run time (CGLIB, lambdas, reflection) carries $$ or $Proxy in its class name",
        Frame("<generated>", None, "com.shop.Api$$EnhancerBySpringCGLIB$$1a2b.handle", "java"),
        function=re.compile(r"\$\$|\$Proxy\d|GeneratedMethodAccessor"),
    ),
    LibraryFrames(
        "python", "installed packages",
        "pip installs third-party packages under site-packages (dist-packages on Debian)",
        Frame("/usr/local/lib/python3.11/site-packages/flask/app.py", 1455, "wsgi_app", "python"),
        file=re.compile(r"[/\\](?:site|dist)-packages[/\\]"),
    ),
    LibraryFrames(
        "python", "the standard library",
        "the standard library lives in lib/pythonX.Y (Lib on Windows); frozen modules print as <frozen ...>",
        Frame("/usr/lib/python3.11/socket.py", 836, "create_connection", "python"),
        file=re.compile(r"[/\\]lib(?:64)?[/\\]python\d+(?:\.\d+)?[/\\]|[/\\]Lib[/\\]|^<frozen "),
    ),
    LibraryFrames(
        "go", "the runtime and the standard library",
        "standard library packages have a first path element without a dot, from a fixed list (net/http, runtime)",
        Frame("/usr/local/go/src/net/http/server.go", 2136, "net/http.HandlerFunc.ServeHTTP", "go"),
        function=re.compile(rf"^(?:{_GO_STDLIB})[./]"),
    ),
    LibraryFrames(
        "go", "modules and vendored code",
        "Go builds third-party modules from the module cache (pkg/mod, name@version) or vendor/",
        Frame("/go/pkg/mod/google.golang.org/grpc@v1.60.0/server.go", 1343, "google.golang.org/grpc.(*Server).Serve",
              "go"),
        file=re.compile(r"[/\\]pkg[/\\]mod[/\\]|@v\d|[/\\]vendor[/\\]|^golang\.org/x/"),
    ),
    LibraryFrames(
        "node", "dependencies",
        "npm installs dependencies under node_modules",
        Frame("/app/node_modules/express/lib/router/layer.js", 95, "Layer.handle", "node"),
        file=re.compile(r"[/\\]node_modules[/\\]|^node_modules[/\\]"),
    ),
    LibraryFrames(
        "node", "Node's own modules",
        "Node prints its core modules as node:..., internal/... or a bare file name; application files with a path",
        Frame("node:internal/process/task_queues", 95, "process.processTicksAndRejections", "node"),
        file=re.compile(r"^node:|^internal[/\\]|^[\w.-]+\.js$|^<anonymous>$|^native$"),
    ),
)
_RULES: dict[str, tuple[LibraryFrames, ...]] = {
    runtime: tuple(rule for rule in LIBRARY_FRAMES if rule.runtime == runtime)
    for runtime in {rule.runtime for rule in LIBRARY_FRAMES}
}


def is_application(frame: Frame) -> bool:
    """Whether a frame is the application's own code, not its runtime's or a library's."""
    function = (frame.function or "").rpartition("/")[2] if frame.runtime == "java" else frame.function or ""
    for rule in _RULES.get(frame.runtime, ()):
        if rule.function is not None and rule.function.search(function):
            return False
        if rule.file is not None and rule.file.search(frame.file):
            return False
    return True


def application_frames(frames: tuple[Frame, ...] | list[Frame], limit: int) -> list[Frame]:
    """The first `limit` distinct application frames, in trace order (root cause first, innermost first)."""
    out: list[Frame] = []
    for frame in frames:
        if frame not in out and is_application(frame):
            out.append(frame)
            if len(out) == limit:
                break
    return out
