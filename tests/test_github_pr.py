"""Pull requests on GitHub through PyGithub, against the loopback GitHub (tests/github_loopback.py): the fix as one
commit on the base branch, idempotent across crashes and replays, and GitHub's errors reported."""

from __future__ import annotations

import re
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from graph.context import ConfigError
from service.settings import SettingsError, load_settings
from tests.github_loopback import GitHubLoopback, pull_body
from tests.loopback import Reply
from tools.git_repo import file_changes, revert_patch
from tools.github import PullRequestDraft, github_client, open_pull_request

CALC = "def add(a, b):\n    return a + b\n"
TOKEN = "ghp_loopbacktoken"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


@pytest.fixture
def checkout(tmp_path: Path) -> tuple[Path, str]:
    """A checkout whose last commit broke calc.py; returns (path, bad commit)."""
    path = tmp_path / "shop"
    path.mkdir()
    git(path, "-c", "init.defaultBranch=main", "init", "-q")
    commit(path, {"calc.py": CALC, "README.md": "# shop\n"}, "calc")
    return path, commit(path, {"calc.py": CALC.replace("a + b", "a - b")}, "calc: faster add")


@pytest.fixture
def github(checkout):
    with GitHubLoopback(token=TOKEN) as server:
        server.add_repository("acme/shop", checkout[0])
        yield server


def draft_for(checkout: tuple[Path, str], branch: str = "incident-copilot/inc-1") -> PullRequestDraft:
    path, bad = checkout
    files = file_changes(path, "main", revert_patch(path, bad, "main"))
    return PullRequestDraft(
        repository="acme/shop", base_branch="main", branch=branch, files=files, title="Revert calc: faster add",
        body="Incident inc-1: checkout fails.", commit_message="Revert calc: faster add\n\nApproved-by: carol",
        author_name="Incident CoPilot", author_email="incident-copilot@example.com",
        at=datetime(2026, 12, 5, 18, 0, tzinfo=UTC),
    )


def client(github: GitHubLoopback, token: str = TOKEN):
    return github_client(token, github.url)


def test_opens_one_pull_request_with_the_fix_as_one_commit_on_the_base(github, checkout):
    pr = open_pull_request(client(github), draft_for(checkout))
    assert (pr.backend, pr.status, pr.branch) == ("github", "created", "incident-copilot/inc-1")
    assert pr.url == "https://github.example/acme/shop/pull/1"
    assert "opened pull request #1 on acme/shop: incident-copilot/inc-1 into main" in pr.detail
    repo = github.repositories["acme/shop"]
    assert repo.git("rev-parse", "incident-copilot/inc-1").strip() == pr.commit
    assert repo.git("rev-parse", f"{pr.commit}~").strip() == checkout[1]
    assert repo.git("show", f"{pr.commit}:calc.py") == CALC
    assert repo.git("log", "-1", "--format=%an <%ae>|%aI|%s", pr.commit).strip() == (
        "Incident CoPilot <incident-copilot@example.com>|2026-12-05T18:00:00+00:00|Revert calc: faster add")
    [pull] = repo.pulls
    assert (pull["title"], pull["base"], pull["labels"]) == ("Revert calc: faster add", "main", ["incident-copilot"])
    assert pull_body(github.posts_to("/pulls")[0])["head"] == "incident-copilot/inc-1"


def test_a_replay_finds_its_pull_request_and_makes_nothing_new(github, checkout):
    first = open_pull_request(client(github), draft_for(checkout))
    again = open_pull_request(client(github), draft_for(checkout))
    assert again.status == "exists" and again.url == first.url and again.commit == first.commit
    assert "pull request #1 (open) on acme/shop" in again.detail
    assert [len(github.posts_to(s)) for s in ("/pulls", "/git/refs", "/git/commits")] == [1, 1, 1]


def test_a_crash_between_branch_and_pull_request_resumes_on_the_same_branch(github, checkout):
    github.script("/repos/acme/shop/pulls", Reply(502, {"message": "Server Error"}))  # the first look-up fails
    crashed = open_pull_request(client(github), draft_for(checkout))
    assert crashed.status == "failed" and "502" in crashed.detail
    first = open_pull_request(client(github), draft_for(checkout))
    assert first.status == "created"
    # now crash after the branch: the pull request's POST fails once
    other = draft_for(checkout, branch="incident-copilot/inc-2")
    github.script("/repos/acme/shop/pulls", Reply(200, []), Reply(500, {"message": "Server Error"}))
    assert open_pull_request(client(github), other).status == "failed"
    resumed = open_pull_request(client(github), other)
    assert resumed.status == "created"
    assert len([r for r in github.posts_to("/git/refs") if pull_body(r)["ref"].endswith("inc-2")]) == 1
    assert len(github.repositories["acme/shop"].pulls) == 2


def test_a_crash_between_commit_and_branch_makes_the_same_commit_again(github, checkout):
    github.script("/repos/acme/shop/git/refs", Reply(502, {"message": "Bad Gateway"}))
    assert open_pull_request(client(github), draft_for(checkout)).status == "failed"
    pr = open_pull_request(client(github), draft_for(checkout))
    assert pr.status == "created"
    made = {pull_body(r)["message"] for r in github.posts_to("/git/commits")}
    assert len(github.posts_to("/git/commits")) == 2 and len(made) == 1
    assert github.repositories["acme/shop"].git("rev-parse", "incident-copilot/inc-1").strip() == pr.commit


def test_bad_credentials_are_reported(github, checkout):
    pr = open_pull_request(client(github, token="ghp_wrong"), draft_for(checkout))
    assert pr.status == "failed"
    assert pr.detail == "GitHub refused the token (401 Bad credentials): check GITHUB_TOKEN"


def test_a_spent_rate_limit_is_reported_with_its_reset_time_and_nothing_is_written(github, checkout):
    github.rate_limit_reset = int(time.time()) + 600
    started = time.monotonic()
    pr = open_pull_request(client(github), draft_for(checkout))
    assert time.monotonic() - started < 10  # reported at once, not slept through
    reset = datetime.fromtimestamp(github.rate_limit_reset, UTC)
    assert pr.status == "failed"
    assert "rate limit is spent (403 API rate limit exceeded" in pr.detail
    assert f"resets at {reset:%Y-%m-%d %H:%M:%S} UTC" in pr.detail
    assert not [r for r in github.requests if r.method == "POST"]


def test_an_unknown_repository_is_reported(github, checkout):
    draft = draft_for(checkout)
    pr = open_pull_request(client(github), PullRequestDraft(**{**draft.__dict__, "repository": "acme/nope"}))
    assert pr.status == "failed"
    assert pr.detail == "GitHub repository acme/nope not found (404), or the token cannot see it"


def test_a_branch_that_exists_without_the_change_is_left_untouched(github, checkout):
    repo = github.repositories["acme/shop"]
    other = repo.git("rev-parse", "main~").strip()
    repo.git("update-ref", "refs/heads/incident-copilot/inc-1", other)
    pr = open_pull_request(client(github), draft_for(checkout))
    assert pr.status == "failed"
    assert "branch incident-copilot/inc-1 already exists on acme/shop without this change; left untouched" in pr.detail
    assert repo.git("rev-parse", "incident-copilot/inc-1").strip() == other
    assert repo.pulls == []


def test_a_race_on_the_branch_422_is_resolved_when_it_holds_the_same_commit(github, checkout):
    # another replica made the same commit and branch between our look-up and our create: 422, same commit
    draft = draft_for(checkout)
    pr = open_pull_request(client(github), draft)
    github.repositories["acme/shop"].pulls.clear()  # as if that replica crashed before opening the pull request
    github.script("/repos/acme/shop/git/ref/heads/incident-copilot/inc-1", Reply(404, {"message": "Not Found"}))
    again = open_pull_request(client(github), draft)
    assert again.status == "created" and again.commit == pr.commit
    assert len(github.posts_to("/git/refs")) == 2


def test_a_base_branch_that_moved_under_the_fix_is_reported(github, checkout):
    path, _ = checkout
    draft = draft_for(checkout)
    moved = commit(path, {"calc.py": "def add(a, b):\n    return b + a\n"}, "calc: commutative")
    github.repositories["acme/shop"].git("fetch", "-q", str(path), "+main:main")
    assert github.repositories["acme/shop"].ref("refs/heads/main") == moved
    pr = open_pull_request(client(github), draft)
    assert pr.status == "failed"
    assert "main on acme/shop changed since the fix was checked: calc.py (now" in pr.detail
    assert github.repositories["acme/shop"].ref("refs/heads/incident-copilot/inc-1") is None


@pytest.mark.parametrize(("env", "message"), [
    ({"PR_BACKEND": "github"}, "PR_BACKEND=github needs GITHUB_TOKEN"),
    ({"PR_BACKEND": "github", "GITHUB_TOKEN": "t", "GITHUB_API_URL": "api.github.com"}, "http:// or https://"),
])
def test_a_github_backend_that_cannot_work_refuses_to_start(env, message):
    with pytest.raises((ConfigError, SettingsError), match=message):
        load_settings(None, env, dotenv=None).run_context()


def test_the_github_settings_reach_the_run():
    context = load_settings(None, {"PR_BACKEND": "github", "GITHUB_TOKEN": "ghp_x",
                                   "GITHUB_API_URL": "https://ghe.example/api/v3/"}, dotenv=None).run_context()
    assert (context.pr_backend, context.github_token, context.github_api_url) == (
        "github", "ghp_x", "https://ghe.example/api/v3")


def test_a_secondary_rate_limit_and_a_missing_permission_are_told_apart(github, checkout):
    secondary = Reply(403, {"message": "You have exceeded a secondary rate limit. Please wait a few minutes before "
                                       "you try again.", "documentation_url": "https://docs.github.com/rest"},
                      {"retry-after": "120"})
    github.script("/repos/acme/shop", secondary)
    limited = open_pull_request(client(github), draft_for(checkout))
    assert limited.status == "failed" and "rate limit is spent (403 You have exceeded" in limited.detail
    assert re.search(r"\(in 1[12]\d s\): replay the incident from its approval after that$", limited.detail)
    denied = Reply(403, {"message": "Resource not accessible by integration",
                         "documentation_url": "https://docs.github.com/rest/git/refs#create-a-reference"})
    github.script("/repos/acme/shop/git/refs", denied)
    pr = open_pull_request(client(github), draft_for(checkout))
    assert pr.status == "failed"
    assert pr.detail == ("GitHub denied access to acme/shop (403 Resource not accessible by integration): the token "
                         "needs contents and pull-request write")
    assert github.repositories["acme/shop"].pulls == []
