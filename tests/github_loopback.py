"""A loopback GitHub: the REST endpoints PyGithub calls to open a pull request, with GitHub's response shapes.

Each repository is a real bare git repository, so blob, tree and commit ids are the ids GitHub would give, and the
Git Data API (blobs, trees with base_tree, commits, refs) is done with git plumbing. Errors have GitHub's shapes:
401 "Bad credentials", 403 "API rate limit exceeded" with the x-ratelimit-* headers, 404 "Not Found", 422
"Reference already exists" and "A pull request already exists for owner:branch." Routes are a table
(`GitHubLoopback.routes`: method, path pattern, handler) that other tests extend (deployments, releases, tags).

    with GitHubLoopback(token="t") as github:
        github.add_repository("acme/shop", "/path/to/a/checkout")
        client = Github(auth=Auth.Token("t"), base_url=github.url)
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tests.loopback import LoopbackServer, Reply, Request

DOCS = "https://docs.github.com/rest"
Route = tuple[str, re.Pattern[str], Callable[..., Reply]]


def error(status: int, message: str, docs: str = DOCS, **extra: Any) -> Reply:
    """GitHub's error body: message, documentation_url, status (as a string)."""
    return Reply(status, {"message": message, "documentation_url": docs, "status": str(status), **extra})


@dataclass
class Repository:
    """One repository: a bare git repository, its pull requests and their labels."""

    owner: str
    name: str
    git_dir: Path
    default_branch: str = "main"
    pulls: list[dict[str, Any]] = field(default_factory=list)
    deployments: list[dict[str, Any]] = field(default_factory=list)  # oldest first, as added
    releases: list[dict[str, Any]] = field(default_factory=list)

    def git(self, *args: str, input: str | bytes | None = None, env: dict[str, str] | None = None) -> str:
        data = input.encode() if isinstance(input, str) else input
        result = subprocess.run(["git", "--git-dir", str(self.git_dir), *args], input=data, capture_output=True,
                                env={**os.environ, **(env or {})}, check=False)
        if result.returncode != 0:
            raise LookupError(result.stderr.decode(errors="replace").strip())
        return result.stdout.decode(errors="replace")

    def ref(self, name: str) -> str | None:
        try:
            return self.git("rev-parse", "--verify", "--quiet", name).strip()
        except LookupError:
            return None

    def object_type(self, sha: str) -> str | None:
        try:
            return self.git("cat-file", "-t", sha).strip()
        except LookupError:
            return None


class GitHubLoopback(LoopbackServer):
    """GitHub's REST API on 127.0.0.1 for the repositories added to it."""

    def __init__(self, token: str = "loopback-token") -> None:
        super().__init__(self._route)
        self.token = token
        self.repositories: dict[str, Repository] = {}
        self.rate_limit_reset: int | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="github-loopback-")
        self._write_lock = threading.Lock()
        self._next_number = 1
        self.routes: list[Route] = [
            ("GET", re.compile(r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"), self.get_repository),
            ("GET", re.compile(r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/branches/(?P<branch>.+)"), self.get_branch),
            ("GET", re.compile(r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/git/ref/(?P<ref>.+)"), self.get_ref),
            ("GET", re.compile(r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/git/commits/(?P<sha>\w+)"), self.get_commit),
            ("GET", re.compile(r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/contents/(?P<path>.+)"), self.get_contents),
            ("POST", re.compile(r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/git/blobs"), self.create_blob),
            ("POST", re.compile(r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/git/trees"), self.create_tree),
            ("POST", re.compile(r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/git/commits"), self.create_commit),
            ("POST", re.compile(r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/git/refs"), self.create_ref),
            ("GET", re.compile(r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/pulls"), self.list_pulls),
            ("POST", re.compile(r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/pulls"), self.create_pull),
            ("POST", re.compile(r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/issues/(?P<number>\d+)/labels"),
             self.add_labels),
            ("GET", re.compile(r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/deployments"), self.list_deployments),
            ("GET", re.compile(r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/deployments/(?P<id>\d+)/statuses"),
             self.list_deployment_statuses),
            ("GET", re.compile(r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/releases"), self.list_releases),
            ("GET", re.compile(r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/tags"), self.list_tags),
        ]

    def stop(self) -> None:
        super().stop()
        self._tmp.cleanup()

    # --- set-up -------------------------------------------------------------------------------------------------

    def add_repository(self, full_name: str, checkout: str | Path, default_branch: str = "main") -> Repository:
        """Serve `full_name` with every branch and tag of the local repository `checkout` (a bare mirror of it)."""
        owner, name = full_name.split("/")
        git_dir = Path(self._tmp.name) / f"{owner}+{name}.git"
        subprocess.run(["git", "clone", "-q", "--mirror", str(checkout), str(git_dir)], check=True,
                       capture_output=True)
        repository = Repository(owner, name, git_dir, default_branch)
        self.repositories[full_name] = repository
        return repository

    def add_deployment(self, full_name: str, sha: str, ref: str, at: datetime, environment: str = "production",
                       states: tuple[str, ...] = ("in_progress", "success")) -> dict[str, Any]:
        """A deployment of `sha` created at `at`, with statuses one second apart (the last is its outcome)."""
        repo = self.repositories[full_name]
        number = len(repo.deployments) + 1
        stamp = [(at + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ") for i in range(len(states) + 1)]
        deployment = {"id": number, "sha": sha, "ref": ref, "environment": environment, "created_at": stamp[0],
                      "statuses": [{"id": number * 100 + i, "state": state, "created_at": stamp[i + 1]}
                                   for i, state in enumerate(states)]}
        repo.deployments.append(deployment)
        return deployment

    def add_release(self, full_name: str, tag: str, at: datetime, draft: bool = False) -> None:
        """A release of an existing tag, published at `at`."""
        repo = self.repositories[full_name]
        repo.releases.append({"id": len(repo.releases) + 1, "tag_name": tag, "draft": draft,
                              "published_at": at.strftime("%Y-%m-%dT%H:%M:%SZ")})

    def posts_to(self, suffix: str) -> list[Request]:
        """The POST requests whose path ends with `suffix` (e.g. "/pulls", "/git/refs")."""
        return [r for r in self.requests if r.method == "POST" and r.path.endswith(suffix)]

    # --- routing ------------------------------------------------------------------------------------------------

    def _route(self, request: Request) -> Reply:
        if request.headers.get("authorization", "") not in (f"token {self.token}", f"Bearer {self.token}"):
            return error(401, "Bad credentials")
        if self.rate_limit_reset is not None:
            reply = error(403, "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, "
                          "please include the request ID.", f"{DOCS}/overview/rate-limits-for-the-rest-api")
            reply.headers.update(self._rate_headers(remaining=0))
            return reply
        for method, pattern, handler in self.routes:
            match = pattern.fullmatch(request.path)
            if method == request.method and match:
                args = match.groupdict()
                repository = self.repositories.get(f"{args.pop('owner')}/{args.pop('repo')}")
                if repository is None:
                    return error(404, "Not Found", f"{DOCS}/repos/repos#get-a-repository")
                with self._write_lock:
                    reply = handler(request, repository, **args)
                reply.headers.update(self._rate_headers(remaining=4999))
                return reply
        return error(404, "Not Found")

    def _rate_headers(self, remaining: int) -> dict[str, str]:
        reset = self.rate_limit_reset or int(time.time()) + 3600
        return {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": str(remaining), "x-ratelimit-used":
                str(5000 - remaining), "x-ratelimit-reset": str(reset), "x-ratelimit-resource": "core",
                "x-github-api-version-selected": "2022-11-28"}

    # --- shapes -------------------------------------------------------------------------------------------------

    def _api(self, repo: Repository, rest: str = "") -> str:
        return f"{self.url}/repos/{repo.owner}/{repo.name}{rest}"

    def _html(self, repo: Repository, rest: str = "") -> str:
        return f"https://github.example/{repo.owner}/{repo.name}{rest}"

    def _owner(self, login: str) -> dict[str, Any]:
        return {"login": login, "id": 1, "node_id": "MDQ6VXNlcjE=", "type": "Organization",
                "url": f"{self.url}/users/{login}", "html_url": f"https://github.example/{login}", "site_admin": False}

    def _repository_json(self, repo: Repository) -> dict[str, Any]:
        return {"id": 1296269, "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5", "name": repo.name,
                "full_name": f"{repo.owner}/{repo.name}", "owner": self._owner(repo.owner), "private": True,
                "html_url": self._html(repo), "url": self._api(repo), "default_branch": repo.default_branch,
                "fork": False, "archived": False, "visibility": "private",
                "permissions": {"admin": False, "maintain": False, "push": True, "triage": True, "pull": True}}

    def _commit_json(self, repo: Repository, sha: str) -> dict[str, Any]:
        raw = repo.git("cat-file", "commit", sha)
        header, _, message = raw.partition("\n\n")
        fields: dict[str, list[str]] = {}
        for line in header.splitlines():
            key, _, value = line.partition(" ")
            fields.setdefault(key, []).append(value)

        def person(value: str) -> dict[str, str]:
            match = re.match(r"(.*) <(.*)> (\d+) ([+-]\d{4})", value)
            at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(match[3])))
            return {"name": match[1], "email": match[2], "date": at}

        return {"sha": sha, "node_id": f"C_{sha[:8]}", "url": self._api(repo, f"/git/commits/{sha}"),
                "html_url": self._html(repo, f"/commit/{sha}"), "author": person(fields["author"][0]),
                "committer": person(fields["committer"][0]), "message": message.rstrip("\n"),
                "tree": {"sha": fields["tree"][0], "url": self._api(repo, f"/git/trees/{fields['tree'][0]}")},
                "parents": [{"sha": p, "url": self._api(repo, f"/git/commits/{p}"),
                             "html_url": self._html(repo, f"/commit/{p}")} for p in fields.get("parent", [])],
                "verification": {"verified": False, "reason": "unsigned", "signature": None, "payload": None}}

    def _ref_json(self, repo: Repository, ref: str, sha: str) -> dict[str, Any]:
        return {"ref": ref, "node_id": f"REF_{sha[:8]}", "url": self._api(repo, f"/git/{ref}"),
                "object": {"type": "commit", "sha": sha, "url": self._api(repo, f"/git/commits/{sha}")}}

    def _pull_json(self, repo: Repository, pull: dict[str, Any]) -> dict[str, Any]:
        number = pull["number"]

        def end(branch: str) -> dict[str, Any]:
            return {"label": f"{repo.owner}:{branch}", "ref": branch, "sha": repo.ref(f"refs/heads/{branch}"),
                    "user": self._owner(repo.owner), "repo": self._repository_json(repo)}

        return {"id": 1000 + number, "node_id": f"PR_{number}", "number": number, "state": pull["state"],
                "locked": False, "title": pull["title"], "body": pull["body"], "draft": False,
                "url": self._api(repo, f"/pulls/{number}"), "html_url": self._html(repo, f"/pull/{number}"),
                "issue_url": self._api(repo, f"/issues/{number}"), "user": self._owner("incident-copilot"),
                "labels": [self._label_json(repo, name) for name in pull["labels"]],
                "head": end(pull["head"]), "base": end(pull["base"]), "merged": False,
                "created_at": pull["created_at"], "updated_at": pull["created_at"]}

    def _label_json(self, repo: Repository, name: str) -> dict[str, Any]:
        return {"id": abs(hash(name)) % 10**9, "node_id": f"LA_{name}", "name": name, "color": "ededed",
                "default": False, "description": None, "url": self._api(repo, f"/labels/{name}")}

    # --- handlers -----------------------------------------------------------------------------------------------

    def get_repository(self, request: Request, repo: Repository) -> Reply:
        return Reply(200, self._repository_json(repo))

    def get_branch(self, request: Request, repo: Repository, branch: str) -> Reply:
        sha = repo.ref(f"refs/heads/{branch}")
        if sha is None:
            return error(404, "Branch not found", f"{DOCS}/branches/branches#get-a-branch")
        commit = self._commit_json(repo, sha)
        links = {"self": self._api(repo, f"/branches/{branch}"), "html": self._html(repo, f"/tree/{branch}")}
        return Reply(200, {"name": branch, "protected": False, "_links": links, "commit": {
            "sha": sha, "node_id": commit["node_id"], "url": self._api(repo, f"/commits/{sha}"),
            "html_url": commit["html_url"], "commit": commit, "parents": commit["parents"]}})

    def get_ref(self, request: Request, repo: Repository, ref: str) -> Reply:
        sha = repo.ref(f"refs/{ref}")
        if sha is None:
            return error(404, "Not Found", f"{DOCS}/git/refs#get-a-reference")
        return Reply(200, self._ref_json(repo, f"refs/{ref}", sha))

    def get_commit(self, request: Request, repo: Repository, sha: str) -> Reply:
        if repo.object_type(sha) != "commit":
            return error(404, "Not Found", f"{DOCS}/git/commits#get-a-commit-object")
        return Reply(200, self._commit_json(repo, sha))

    def get_contents(self, request: Request, repo: Repository, path: str) -> Reply:
        ref = request.params.get("ref") or repo.default_branch
        try:
            entry = repo.git("ls-tree", "--full-tree", ref, "--", path).split()
        except LookupError:
            entry = []
        if not entry or entry[1] != "blob":
            return error(404, "Not Found", f"{DOCS}/repos/contents#get-repository-content")
        blob = entry[2]
        data = subprocess.run(["git", "--git-dir", str(repo.git_dir), "cat-file", "blob", blob], capture_output=True,
                              check=True).stdout
        return Reply(200, {"type": "file", "encoding": "base64", "size": len(data), "name": path.rsplit("/", 1)[-1],
                           "path": path, "content": base64.encodebytes(data).decode(), "sha": blob,
                           "url": self._api(repo, f"/contents/{path}?ref={ref}"),
                           "git_url": self._api(repo, f"/git/blobs/{blob}"),
                           "html_url": self._html(repo, f"/blob/{ref}/{path}"), "download_url": None,
                           "_links": {"self": self._api(repo, f"/contents/{path}")}})

    def _write_blob(self, repo: Repository, content: bytes) -> str:
        return repo.git("hash-object", "-w", "--stdin", input=content).strip()

    def create_blob(self, request: Request, repo: Repository) -> Reply:
        body = request.json()
        data = base64.b64decode(body["content"]) if body.get("encoding") == "base64" else body["content"].encode()
        sha = self._write_blob(repo, data)
        return Reply(201, {"url": self._api(repo, f"/git/blobs/{sha}"), "sha": sha})

    def create_tree(self, request: Request, repo: Repository) -> Reply:
        body = request.json()
        with tempfile.TemporaryDirectory() as tmp:
            env = {"GIT_INDEX_FILE": os.path.join(tmp, "index")}
            if body.get("base_tree"):
                if repo.object_type(body["base_tree"]) != "tree":
                    return error(422, "Invalid tree info", f"{DOCS}/git/trees#create-a-tree")
                repo.git("read-tree", body["base_tree"], env=env)
            for entry in body["tree"]:
                if "content" in entry:
                    sha = self._write_blob(repo, entry["content"].encode())
                elif entry.get("sha") is None:
                    repo.git("update-index", "--force-remove", "--", entry["path"], env=env)
                    continue
                else:
                    sha = entry["sha"]
                    if repo.object_type(sha) is None:
                        return error(422, "Invalid tree info", f"{DOCS}/git/trees#create-a-tree")
                repo.git("update-index", "--add", "--cacheinfo", f"{entry['mode']},{sha},{entry['path']}", env=env)
            tree = repo.git("write-tree", env=env).strip()
        entries = [{"path": line.split("\t")[1], "mode": line.split()[0], "type": line.split()[1],
                    "sha": line.split()[2]} for line in repo.git("ls-tree", tree).splitlines()]
        return Reply(201, {"sha": tree, "url": self._api(repo, f"/git/trees/{tree}"), "tree": entries,
                           "truncated": False})

    def create_commit(self, request: Request, repo: Repository) -> Reply:
        body = request.json()
        author = body.get("author") or {"name": "incident-copilot[bot]", "email": "bot@users.noreply.example"}
        committer = body.get("committer") or author
        env = {"GIT_AUTHOR_NAME": author["name"], "GIT_AUTHOR_EMAIL": author["email"],
               "GIT_COMMITTER_NAME": committer["name"], "GIT_COMMITTER_EMAIL": committer["email"]}
        if author.get("date"):
            env["GIT_AUTHOR_DATE"] = author["date"]
        if committer.get("date"):
            env["GIT_COMMITTER_DATE"] = committer["date"]
        parents = [arg for p in body.get("parents", []) for arg in ("-p", p)]
        try:
            sha = repo.git("commit-tree", body["tree"], *parents, "-F", "-", input=body["message"], env=env).strip()
        except LookupError:
            return error(422, "Tree SHA does not exist", f"{DOCS}/git/commits#create-a-commit")
        return Reply(201, self._commit_json(repo, sha))

    def create_ref(self, request: Request, repo: Repository) -> Reply:
        body = request.json()
        ref, sha = body["ref"], body["sha"]
        if not re.fullmatch(r"refs/[^/]+/.+", ref):
            return error(422, "Reference name is not valid", f"{DOCS}/git/refs#create-a-reference")
        if repo.ref(ref) is not None:
            return error(422, "Reference already exists", f"{DOCS}/git/refs#create-a-reference")
        if repo.object_type(sha) != "commit":
            return error(422, "Object does not exist", f"{DOCS}/git/refs#create-a-reference")
        repo.git("update-ref", ref, sha, "")
        return Reply(201, self._ref_json(repo, ref, sha))

    def list_pulls(self, request: Request, repo: Repository) -> Reply:
        state, head, base = (request.params.get(k) for k in ("state", "head", "base"))
        found = [p for p in repo.pulls
                 if (state in (None, "all") or p["state"] == (state or "open"))
                 and (head is None or f"{repo.owner}:{p['head']}" == head)
                 and (base is None or p["base"] == base)]
        return Reply(200, [self._pull_json(repo, p) for p in found])

    def create_pull(self, request: Request, repo: Repository) -> Reply:
        body = request.json()
        head = body["head"].split(":", 1)[-1]
        docs = f"{DOCS}/pulls/pulls#create-a-pull-request"
        if repo.ref(f"refs/heads/{body['base']}") is None or repo.ref(f"refs/heads/{head}") is None:
            return error(422, "Validation Failed", docs, errors=[
                {"resource": "PullRequest", "field": "head" if repo.ref(f"refs/heads/{head}") is None else "base",
                 "code": "invalid"}])
        if any(p["head"] == head and p["base"] == body["base"] and p["state"] == "open" for p in repo.pulls):
            return error(422, "Validation Failed", docs, errors=[
                {"resource": "PullRequest", "code": "custom",
                 "message": f"A pull request already exists for {repo.owner}:{head}."}])
        pull = {"number": self._next_number, "state": "open", "title": body.get("title", ""),
                "body": body.get("body"), "head": head, "base": body["base"], "labels": [],
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self._next_number += 1
        repo.pulls.append(pull)
        return Reply(201, self._pull_json(repo, pull))

    def add_labels(self, request: Request, repo: Repository, number: str) -> Reply:
        pull = next((p for p in repo.pulls if p["number"] == int(number)), None)
        if pull is None:
            return error(404, "Not Found", f"{DOCS}/issues/labels#add-labels-to-an-issue")
        body = request.json()
        names = body["labels"] if isinstance(body, dict) else body
        pull["labels"] += [n for n in names if n not in pull["labels"]]
        return Reply(200, [self._label_json(repo, n) for n in pull["labels"]])

    # --- deployments, releases and tags (deploys told by the code host) -------------------------------------

    def list_deployments(self, request: Request, repo: Repository) -> Reply:
        environment = request.params.get("environment")
        found = [d for d in reversed(repo.deployments) if environment in (None, d["environment"])]
        return Reply(200, [self._deployment_json(repo, d) for d in found])

    def _deployment_json(self, repo: Repository, deployment: dict[str, Any]) -> dict[str, Any]:
        url = self._api(repo, f"/deployments/{deployment['id']}")
        return {"url": url, "id": deployment["id"], "node_id": f"DE_{deployment['id']}", "sha": deployment["sha"],
                "ref": deployment["ref"], "task": "deploy", "payload": {}, "original_environment":
                deployment["environment"], "environment": deployment["environment"], "description": None,
                "creator": self._owner("ci-deployer"), "created_at": deployment["created_at"],
                "updated_at": deployment["created_at"], "statuses_url": f"{url}/statuses",
                "repository_url": self._api(repo), "transient_environment": False,
                "production_environment": deployment["environment"] == "production"}

    def list_deployment_statuses(self, request: Request, repo: Repository, id: str) -> Reply:  # noqa: A002
        deployment = next((d for d in repo.deployments if d["id"] == int(id)), None)
        if deployment is None:
            return error(404, "Not Found", f"{DOCS}/deployments/statuses#list-deployment-statuses")
        url = self._api(repo, f"/deployments/{id}")
        return Reply(200, [{"url": f"{url}/statuses/{s['id']}", "id": s["id"], "node_id": f"DES_{s['id']}",
                            "state": s["state"], "creator": self._owner("ci-deployer"), "description": "",
                            "environment": deployment["environment"], "target_url": "", "log_url": "",
                            "created_at": s["created_at"], "updated_at": s["created_at"], "deployment_url": url,
                            "repository_url": self._api(repo)} for s in reversed(deployment["statuses"])])

    def list_releases(self, request: Request, repo: Repository) -> Reply:
        return Reply(200, [{"url": self._api(repo, f"/releases/{r['id']}"), "id": r["id"], "node_id":
                            f"RE_{r['id']}", "tag_name": r["tag_name"], "target_commitish": repo.default_branch,
                            "name": r["tag_name"], "body": "", "draft": r["draft"], "prerelease": False,
                            "created_at": r["published_at"], "published_at": None if r["draft"] else
                            r["published_at"], "author": self._owner("release-bot"), "assets": [],
                            "html_url": self._html(repo, f"/releases/tag/{r['tag_name']}")}
                           for r in reversed(repo.releases)])

    def list_tags(self, request: Request, repo: Repository) -> Reply:
        tags = []
        for line in repo.git("for-each-ref", "--sort=-creatordate", "--format=%(refname:strip=2) %(*objectname) "
                             "%(objectname)", "refs/tags").splitlines():
            name, *shas = line.split()
            sha = shas[0]
            tags.append({"name": name, "commit": {"sha": sha, "url": self._api(repo, f"/commits/{sha}")},
                         "zipball_url": self._api(repo, f"/zipball/refs/tags/{name}"),
                         "tarball_url": self._api(repo, f"/tarball/refs/tags/{name}"), "node_id": f"TAG_{name}"})
        return Reply(200, tags)


def pull_body(request: Request) -> dict[str, Any]:
    """The JSON body of a recorded request."""
    return json.loads(request.body)
