"""GitHub adapter (PyGithub): open the pull request of an approved fix, idempotently, and say plainly what failed.

The fix goes up through the Git Data API, never through a local push: one tree on the base branch's head (each file
sent whole, and only if its blob there is still the one the fix was checked against), one commit, the branch, the
pull request, its labels. Every step first looks for what an earlier, interrupted attempt made (the pull request of
the branch, the branch itself), so a resumed or replayed run finds its branch and pull request instead of making a
second one. GitHub's errors (401, 403 rate limit, 404, 422) come back as a `failed` result with the reason.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from github import (
    Auth,
    Github,
    GithubException,
    InputGitAuthor,
    InputGitTreeElement,
    RateLimitExceededException,
    UnknownObjectException,
)
from github.PullRequest import PullRequest as GitHubPullRequest
from github.Repository import Repository

from state import DeployEvent, FileChange, PullRequest

DEFAULT_API_URL = "https://api.github.com"
TIMEOUT_SECONDS = 30
# GitHub asks integrations to space out requests that create content; a pull request takes about five.
SECONDS_BETWEEN_WRITES = 0.2


@dataclass(frozen=True)
class PullRequestDraft:
    """Everything a pull request needs, decided before it is opened."""

    repository: str
    base_branch: str
    branch: str
    files: list[FileChange]
    title: str
    body: str
    commit_message: str
    author_name: str
    author_email: str
    at: datetime
    """The commit's date (the approval's): the same fix makes the same commit on every attempt."""
    labels: tuple[str, ...] = ("incident-copilot",)


def github_client(token: str, api_url: str = DEFAULT_API_URL) -> Github:
    """A PyGithub client that never sleeps on its own: rate limits and errors come back to the caller at once."""
    return Github(auth=Auth.Token(token), base_url=api_url.rstrip("/"), timeout=TIMEOUT_SECONDS, retry=None,
                  seconds_between_requests=None, seconds_between_writes=SECONDS_BETWEEN_WRITES)


def error_reason(exc: GithubException, repository: str) -> str:
    """What a GitHub error means for the person reading the incident, and what to do about it."""
    message = exc.data.get("message", "") if isinstance(exc.data, dict) else str(exc.data or "")
    headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
    if exc.status == 401:
        return f"GitHub refused the token (401 {message or 'Bad credentials'}): check GITHUB_TOKEN"
    if exc.status in (403, 429) and (headers.get("x-ratelimit-remaining") == "0" or "retry-after" in headers
                                     or isinstance(exc, RateLimitExceededException)):
        now = datetime.now(UTC)
        reset = (datetime.fromtimestamp(int(headers["x-ratelimit-reset"]), UTC) if "x-ratelimit-reset" in headers
                 else now + timedelta(seconds=int(headers.get("retry-after", "60"))))
        wait = max(0, int((reset - now).total_seconds()))
        return (f"GitHub's API rate limit is spent ({exc.status} {message}); it resets at "
                f"{reset:%Y-%m-%d %H:%M:%S} UTC (in {wait} s): replay the incident from its approval after that")
    if exc.status == 403:
        return f"GitHub denied access to {repository} (403 {message}): the token needs contents and pull-request write"
    if exc.status == 404:
        return f"GitHub repository {repository} not found (404), or the token cannot see it"
    details = "; ".join(e.get("message") or f"{e.get('field', '')} {e.get('code', '')}".strip()
                        for e in (exc.data.get("errors") or [] if isinstance(exc.data, dict) else []))
    return f"GitHub answered {exc.status} {message}" + (f": {details}" if details else "")


def _found(pr: GitHubPullRequest, draft: PullRequestDraft, how: str) -> PullRequest:
    return PullRequest(backend="github", status="exists", branch=draft.branch, commit=pr.head.sha, url=pr.html_url,
                       detail=f"pull request #{pr.number} ({pr.state}) on {draft.repository} {how}; nothing new made")


def _existing_pull(repo: Repository, draft: PullRequestDraft) -> GitHubPullRequest | None:
    owner = draft.repository.split("/")[0]
    return next(iter(repo.get_pulls(state="all", head=f"{owner}:{draft.branch}")), None)


def _branch_head(repo: Repository, branch: str) -> str | None:
    try:
        return repo.get_git_ref(f"heads/{branch}").object.sha
    except UnknownObjectException:
        return None


def _stale_files(repo: Repository, base_sha: str, files: list[FileChange]) -> list[str]:
    """Files whose blob on the base branch is no longer the one the fix was checked against."""
    stale = []
    for change in files:
        try:
            current = repo.get_contents(change.path, ref=base_sha)
            blob = current.sha if not isinstance(current, list) else None
        except UnknownObjectException:
            blob = None
        if blob != change.base_sha:
            stale.append(f"{change.path} (now {blob[:12] if blob else 'absent'}, "
                         f"checked on {change.base_sha[:12] if change.base_sha else 'absent'})")
    return stale


def open_pull_request(client: Github, draft: PullRequestDraft) -> PullRequest:
    """Open the draft's pull request, or find the one an earlier attempt opened; never raises for GitHub errors."""
    try:
        return _open(client, draft)
    except GithubException as exc:
        return PullRequest(backend="github", status="failed", branch=draft.branch,
                           detail=error_reason(exc, draft.repository))


def _open(client: Github, draft: PullRequestDraft) -> PullRequest:
    repo = client.get_repo(draft.repository)
    existing = _existing_pull(repo, draft)
    if existing is not None:
        return _found(existing, draft, f"from {draft.branch} was opened earlier")
    base_sha = repo.get_branch(draft.base_branch).commit.sha
    base = repo.get_git_commit(base_sha)
    head = _branch_head(repo, draft.branch)
    if head is None:
        stale = _stale_files(repo, base_sha, draft.files)
        if stale:
            return PullRequest(backend="github", status="failed", branch=draft.branch, detail=(
                f"{draft.base_branch} on {draft.repository} changed since the fix was checked: "
                + "; ".join(stale[:5]) + ". Investigate again to check a fix on the new base"))
    elements = [InputGitTreeElement(f.path, f.mode, "blob", sha=None) if f.content is None
                else InputGitTreeElement(f.path, f.mode, "blob", content=f.content) for f in draft.files]
    if head is not None:  # an earlier attempt made the branch: use it only if it holds this very change
        head_commit = repo.get_git_commit(head)
        parent = head_commit.parents[0].sha if head_commit.parents else None
        tree = repo.create_git_tree(elements, base_tree=repo.get_git_commit(parent).tree) if parent else None
        if tree is None or head_commit.tree.sha != tree.sha:
            return PullRequest(backend="github", status="failed", branch=draft.branch, commit=head, detail=(
                f"branch {draft.branch} already exists on {draft.repository} without this change; left untouched"))
        commit_sha = head
    else:
        tree = repo.create_git_tree(elements, base_tree=base.tree)
        when = draft.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        author = InputGitAuthor(draft.author_name, draft.author_email, when)
        commit_sha = repo.create_git_commit(draft.commit_message, tree, [base], author=author, committer=author).sha
        try:
            repo.create_git_ref(f"refs/heads/{draft.branch}", commit_sha)
        except GithubException as exc:
            if exc.status != 422 or _branch_head(repo, draft.branch) != commit_sha:
                raise
    try:
        pr = repo.create_pull(base=draft.base_branch, head=draft.branch, title=draft.title, body=draft.body)
    except GithubException as exc:
        existing = _existing_pull(repo, draft) if exc.status == 422 else None
        if existing is None:
            raise
        return _found(existing, draft, "was opened meanwhile")
    detail = f"opened pull request #{pr.number} on {draft.repository}: {draft.branch} into {draft.base_branch}"
    try:
        pr.add_to_labels(*draft.labels)
    except GithubException as exc:  # the pull request stands; say the labels are missing
        detail += f"; labels not added: {error_reason(exc, draft.repository)}"
    return PullRequest(backend="github", status="created", branch=draft.branch, commit=commit_sha, url=pr.html_url,
                       detail=detail)


# --- deploys told by the code host ------------------------------------------------------------------------------

MAX_DEPLOYMENTS = 30  # newest first: enough to reach back past a window's start and find the deploy before it
MAX_TAGS = 100


def deploy_events(
    client: Github, repository: str, service: str, start: datetime, end: datetime, environment: str = ""
) -> list[DeployEvent]:
    """The service's deploys in [start, end] as GitHub knows them: deployments (at their first successful status,
    with the commit of the successful deployment before), and releases published then (their tag's commit).

    Raises GithubException; the caller notes it and goes on with the other sources."""
    repo = client.get_repo(repository)
    events = _deployments(repo, service, start, end, environment)
    known = {e.commit for e in events}
    return events + [e for e in _releases(repo, service, start, end) if e.commit not in known]


def _deployments(repo: Repository, service: str, start: datetime, end: datetime, environment: str) -> list[DeployEvent]:
    found: list[tuple[datetime, str, str, str, str]] = []  # (at, sha, ref, creator, environment), newest first
    listed = repo.get_deployments(environment=environment) if environment else repo.get_deployments()
    for deployment in itertools.islice(listed, MAX_DEPLOYMENTS):
        success = next((s for s in deployment.get_statuses() if s.state == "success"), None)
        if success is None:
            continue  # failed or still running: nothing changed in production
        creator = deployment.creator.login if deployment.creator else ""
        found.append((_utc(success.created_at), deployment.sha, deployment.ref, creator, deployment.environment))
        if _utc(deployment.created_at) < start:
            break  # the deploy before the window: the commit it replaced
    events = []
    for at, sha, ref, creator, env in found:
        if not start <= at <= end:
            continue
        before = next((f for f in found if f[0] < at and f[4] == env), None)
        events.append(DeployEvent(
            at=at, service=service, version=ref if ref != sha else sha[:12], previous_version=before[2] if before
            else None, kind="code", commit=sha, previous_commit=before[1] if before else None, author=creator or None,
            description=f"GitHub deployment of {ref} to {env}", source="github",
        ))
    return events


def _releases(repo: Repository, service: str, start: datetime, end: datetime) -> list[DeployEvent]:
    releases = [r for r in itertools.islice(repo.get_releases(), MAX_DEPLOYMENTS)
                if not r.draft and r.published_at and start <= _utc(r.published_at) <= end]
    if not releases:
        return []
    tags = {}
    for tag in itertools.islice(repo.get_tags(), MAX_TAGS):
        tags[tag.name] = tag.commit.sha
    return [
        DeployEvent(at=_utc(r.published_at), service=service, version=r.tag_name, kind="code",
                    commit=tags.get(r.tag_name), author=r.author.login if r.author else None,
                    description=f"GitHub release {r.tag_name}", source="github")
        for r in releases
        if tags.get(r.tag_name)
    ]


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)
