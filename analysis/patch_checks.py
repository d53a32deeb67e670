"""Safety checks on proposed patches and suggested shell commands (pure: text in, verdicts out)."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

from analysis.secrets import find_secrets
from state import PatchCheck

DENIED_PATHS: tuple[str, ...] = (
    ".github/",
    ".gitlab-ci.yml",
    ".circleci/",
    "Jenkinsfile",
    ".env",
    "secrets",
    "*.pem",
    "*.key",
    "id_rsa",
    ".npmrc",
    ".pypirc",
    "CODEOWNERS",
)
LOCK_FILES: tuple[str, ...] = (
    "*.lock",
    "package-lock.json",
    "pnpm-lock.yaml",
    "go.sum",
    "npm-shrinkwrap.json",
)

# Where tests live, by convention of the common ecosystems (a directory/ anywhere, or a file-name glob).
TEST_PATHS: tuple[str, ...] = (
    "tests/", "test/", "__tests__/", "spec/", "testing/",
    "test_*.py", "*_test.py", "*_test.go", "*.test.[jt]s", "*.test.[jt]sx", "*.spec.[jt]s", "*.spec.[jt]sx",
    "*Test.java", "*Tests.java", "*Test.kt", "*_spec.rb", "*Tests.cs",
)
# A line that defines a test or asserts something, in those ecosystems: removing one weakens the tests.
TEST_LINE = re.compile(
    r"^\s*(?:(?:async\s+)?def\s+test|assert\b|self\.assert\w*\(|(?:it|test|describe)\s*\(|expect\s*\("
    r"|func\s+Test|@Test\b|@pytest\.mark|t\.(?:Error|Fatal)|Assert\.\w+\(|assert\w*\()"
)
SYMLINK_MODE = "120000"

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_EXTENDED_HEADERS = (
    "index ",
    "old mode ",
    "new mode ",
    "deleted file mode ",
    "new file mode ",
    "similarity index ",
    "dissimilarity index ",
    "rename from ",
    "rename to ",
    "copy from ",
    "copy to ",
)
_BLOCKED_COMMANDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("drops a database, schema or table", re.compile(r"(?i)\bdrop\s+(?:database|schema|table)\b")),
    ("truncates a table", re.compile(r"(?i)\btruncate\s+(?:table\s+)?[a-z_\"`]")),
    ("deletes every row of a table", re.compile(r"(?i)\bdelete\s+from\s+[\w.\"`]+\s*(?:;|$)")),
    (
        "deletes a Kubernetes namespace",
        re.compile(r"(?i)\bkubectl\b.*\bdelete\s+(?:-\S+\s+)*(?:namespaces?|ns)\b"),
    ),
    ("deletes every resource of a kind", re.compile(r"(?i)\bkubectl\b.*\bdelete\b.*\s--all\b")),
    ("formats a filesystem", re.compile(r"(?i)\bmkfs(?:\.\w+)?\b")),
    (
        "writes raw data to a device",
        re.compile(r"(?i)\bdd\b[^;&|]*\bof=/dev/(?!null\b|zero\b|stdout\b|stderr\b)"),
    ),
    ("overwrites a disk device", re.compile(r">\s*/dev/(?:sd|hd|vd|xvd|nvme|mmcblk|disk)\w*")),
    ("fork bomb", re.compile(r":\s*\(\s*\)\s*\{")),
    (
        "makes files world-writable recursively",
        re.compile(r"(?i)\bchmod\s+(?:-\w*R\w*|--recursive)\s+(?:0?777|a\+rwx|ugo\+rwx)\b"),
    ),
    (
        "makes the root directory world-writable",
        re.compile(r"(?i)\bchmod\s+(?:-\S+\s+)*(?:0?777|a\+rwx)\s+/(?:\s|$)"),
    ),
    (
        "shuts down or reboots the machine",
        re.compile(r"(?i)\b(?:shutdown|reboot|halt|poweroff)\b|\binit\s+[06]\b"),
    ),
    (
        "force-pushes to the main branch",
        re.compile(
            r"(?i)\bgit\s+push\b(?=.*(?:\s--force(?:-with-lease)?\b|\s-[a-z]*f[a-z]*\b|\s\+\S))"
            r"(?=.*\b(?:main|master)\b)"
        ),
    ),
    (
        "pipes a download into a shell",
        re.compile(
            r"(?i)\b(?:curl|wget)\b[^|;&]*\|\s*(?:sudo\s+)?(?:\w*sh|python\d*|perl|ruby)\b"
            r"|\b\w*sh\s+(?:-c\s+['\"]?\$\(|<\()\s*(?:curl|wget)\b"
        ),
    ),
    ("destroys infrastructure", re.compile(r"(?i)\bterraform\s+destroy\b|\bpulumi\s+destroy\b")),
    (
        "uploads local files to a remote host",
        re.compile(
            r"(?i)\b(?:curl|wget)\b[^|;&]*\s(?:-T|--upload-file|--post-file)\b"
            r"|\bcurl\b[^|;&]*\s(?:-d|--data(?:-binary|-raw|-urlencode)?|-F|--form)[=\s]*['\"]?[^'\"\s]*@"
        ),
    ),
    ("mails data out", re.compile(r"(?i)(?:^|[|;&(]\s*)(?:sudo\s+)?(?:mail|mailx|sendmail|mutt)\b")),
    ("opens a raw network connection", re.compile(r"(?i)\b(?:nc|ncat|netcat|socat)\b")),
)
_RM = re.compile(r"\brm\s+([^;&|]*)")


@dataclass
class FileDiff:
    """One file of a unified diff: its paths, hunks and added lines."""

    old_path: str | None
    new_path: str | None
    hunks: list[tuple[int, int, int, int]] = field(
        default_factory=list
    )  # old start, old count, new start, count
    added: list[tuple[int, str]] = field(default_factory=list)  # (line in the new file, text)
    removed: int = 0
    removed_lines: list[str] = field(default_factory=list)
    binary: bool = False
    new_mode: str | None = None

    @property
    def paths(self) -> list[str]:
        """Both paths, without /dev/null and duplicates."""
        return sorted({p for p in (self.old_path, self.new_path) if p})


@dataclass
class ParsedDiff:
    """A parsed unified diff and what was wrong with its form."""

    files: list[FileDiff]
    errors: list[str]


def _diff_path(raw: str) -> str | None:
    """Path of a ---/+++ or header operand, without the a/ or b/ prefix; None for /dev/null."""
    raw = raw.split("\t")[0].rstrip()
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        # git C-quotes unusual names, with octal escapes for the UTF-8 bytes
        raw = raw[1:-1].encode().decode("unicode_escape").encode("latin-1").decode("utf-8", "replace")
    if raw == "/dev/null":
        return None
    return raw[2:] if raw[:2] in ("a/", "b/") else raw


def parse_diff(diff: str) -> ParsedDiff:
    """Parse a git or plain unified diff into files, hunks and added lines, noting malformed parts."""
    files: list[FileDiff] = []
    errors: list[str] = []
    current: FileDiff | None = None
    in_git_header = False  # between "diff --git" and its "+++" line, "---" belongs to the same file
    old_left = new_left = 0
    new_line = 0
    for number, line in enumerate(diff.splitlines(), start=1):
        if old_left > 0 or new_left > 0:
            tag = line[:1]
            if tag in (" ", ""):
                old_left, new_left, new_line = old_left - 1, new_left - 1, new_line + 1
            elif tag == "-":
                old_left -= 1
                current.removed += 1
                current.removed_lines.append(line[1:])
            elif tag == "+":
                new_left -= 1
                current.added.append((new_line, line[1:]))
                new_line += 1
            elif tag != "\\":
                errors.append(f"line {number}: hunk ends early (expected more context, '+' or '-' lines)")
                old_left = new_left = 0
            if old_left < 0 or new_left < 0:
                errors.append(f"line {number}: hunk is longer than its header says")
                old_left = new_left = 0
            continue
        if line.startswith("diff --git "):
            operands = line[len("diff --git ") :]
            split = operands.rfind(" b/")
            old, new = (operands[:split], operands[split + 1 :]) if split > 0 else (operands, operands)
            current = FileDiff(_diff_path(old), _diff_path(new))
            files.append(current)
            in_git_header = True
        elif line.startswith("--- "):
            if not in_git_header:
                current = FileDiff(None, None)
                files.append(current)
            current.old_path = _diff_path(line[4:])
        elif line.startswith("+++ ") and current is not None:
            current.new_path = _diff_path(line[4:])
            in_git_header = False
        elif line.startswith("@@"):
            match = _HUNK.match(line)
            if current is None or match is None:
                errors.append(f"line {number}: malformed or misplaced hunk header")
                continue
            old_start, old_count, new_start, new_count = (
                int(g) if g is not None else 1 for g in match.groups()
            )
            current.hunks.append((old_start, old_count, new_start, new_count))
            old_left, new_left, new_line = old_count, new_count, new_start
        elif line.startswith(("Binary files ", "GIT binary patch")) and current is not None:
            current.binary = True
        elif line.startswith(("new file mode ", "new mode ")) and current is not None:
            current.new_mode = line.split()[-1]
        elif line.startswith("rename from ") or line.startswith("copy from "):
            current.old_path = _diff_path(line.split(" from ", 1)[1]) if current else None
        elif line.startswith("rename to ") or line.startswith("copy to "):
            current.new_path = _diff_path(line.split(" to ", 1)[1]) if current else None
        elif current is not None and not line.startswith((*_EXTENDED_HEADERS, "\\")) and line.strip():
            errors.append(f"line {number}: unexpected text between files")
    if old_left > 0 or new_left > 0:
        errors.append("the last hunk is cut short")
    if not files:
        errors.append("no file changes found")
    return ParsedDiff(files=files, errors=errors)


def _path_problem(path: str) -> str | None:
    parts = path.split("/")
    if path.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", path):
        return "is absolute"
    if ".." in parts or "\\" in path:
        return "leaves the repository"
    if ".git" in parts:
        return "is inside .git"
    if not path.strip() or "" in parts:
        return "is empty or malformed"
    return None


def _matches(path: str, pattern: str) -> bool:
    """Whether `path` falls under a deny-list entry: a dir/ anywhere, a glob, or a file name (+ variants)."""
    parts = path.lower().split("/")
    pattern = pattern.lower()
    if pattern.endswith("/"):
        return pattern[:-1] in parts[:-1]
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatch(parts[-1], pattern)
    return any(part == pattern or part.startswith(pattern + ".") for part in parts)


def _through_symlink(path: str, symlinks: frozenset[str]) -> str | None:
    """The symbolic link of the base tree that `path` is or lies under, if any."""
    parts = path.split("/")
    return next(("/".join(parts[:i]) for i in range(1, len(parts) + 1) if "/".join(parts[:i]) in symlinks), None)


def _weakened_tests(files: list[FileDiff]) -> list[str]:
    """Test files the patch deletes, and test or assertion lines it removes without adding them back."""
    found = []
    for f in files:
        path = f.old_path or f.new_path or ""
        if not any(_matches(path, rule) for rule in TEST_PATHS):
            continue
        if f.new_path is None:
            found.append(f"deletes the test file {path}")
            continue
        added = [text.strip() for _, text in f.added]
        lost = [line for line in f.removed_lines if TEST_LINE.match(line) and line.strip() not in added]
        if lost:
            found.append(f"removes {len(lost)} test or assertion line(s) from {path}, e.g. {lost[0].strip()[:80]!r}")
    return found


def check_patch(
    diff: str,
    *,
    max_changed_lines: int = 400,
    denied: tuple[str, ...] = DENIED_PATHS,
    allow_lockfiles: bool = False,
    symlinks: frozenset[str] = frozenset(),
) -> list[PatchCheck]:
    """The safety checks of a patch, one PatchCheck each: form, paths, denied paths, size, secrets, tests kept.

    `symlinks` are the symbolic links of the base tree: a patch may not write through them.
    """
    parsed = parse_diff(diff)
    binary = [f.new_path or f.old_path or "?" for f in parsed.files if f.binary]
    form_problems = parsed.errors + [f"binary change to {p}" for p in binary]
    paths = sorted({p for f in parsed.files for p in f.paths})

    bad_paths = [f"{p} {problem}" for p in paths if (problem := _path_problem(p))]
    bad_paths += [f"{f.new_path} would become a symbolic link" for f in parsed.files
                  if f.new_path and f.new_mode == SYMLINK_MODE]
    bad_paths += [f"{p} goes through the symbolic link {link}" for p in paths
                  if (link := _through_symlink(p, symlinks))]
    rules = denied + (() if allow_lockfiles else LOCK_FILES)
    hits = [f"{p} ({rule})" for p in paths for rule in rules if _matches(p, rule)]

    changed = sum(len(f.added) + f.removed for f in parsed.files)
    weakened = _weakened_tests(parsed.files)
    secrets = [
        f"{f.new_path}:{line} ({finding.name})"
        for f in parsed.files
        for line, text in f.added
        for finding in find_secrets(text, code=True)
    ]
    return [
        PatchCheck(
            name="well_formed",
            ok=not form_problems,
            detail="; ".join(form_problems[:5]) or f"{len(parsed.files)} file(s) changed",
        ),
        PatchCheck(
            name="paths_inside_repo",
            ok=not bad_paths,
            detail="; ".join(bad_paths[:5]) or f"{len(paths)} path(s), all inside the repository, no symbolic link",
        ),
        PatchCheck(
            name="no_denied_paths",
            ok=not hits,
            detail=("touches protected paths: " + "; ".join(hits[:5])) if hits else "no protected paths",
        ),
        PatchCheck(
            name="size",
            ok=changed <= max_changed_lines,
            detail=f"{changed} changed line(s), limit {max_changed_lines}",
        ),
        PatchCheck(
            name="no_secrets",
            ok=not secrets,
            # worded so that the detail itself never reads as "secret: value" to the redactor
            detail=("adds a secret at " + ", ".join(secrets[:5])) if secrets else "no secrets added",
        ),
        PatchCheck(
            name="tests_kept",
            ok=not weakened,
            detail="; ".join(weakened[:5]) or "no test removed or weakened",
        ),
    ]


def _rm_reason(command: str) -> str | None:
    for match in _RM.finditer(command):
        flags = [arg for arg in match.group(1).split() if arg.startswith("-")]
        short = "".join(f[1:] for f in flags if not f.startswith("--"))
        recursive = "r" in short.lower() or "--recursive" in flags
        force = "f" in short or "--force" in flags
        if recursive and force:
            return "recursive forced delete (rm -rf)"
    return None


def check_command(command: str) -> str | None:
    """Why a suggested shell command is blocked, or None when it may be shown to run."""
    normalized = " ".join(command.split())
    reason = _rm_reason(normalized)
    if reason:
        return reason
    for reason, pattern in _BLOCKED_COMMANDS:
        if pattern.search(normalized):
            return reason
    return None
