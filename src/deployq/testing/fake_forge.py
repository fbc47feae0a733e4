"""A fake forge for tests: the commit status endpoints of GitHub's and GitLab's REST APIs.

Not GitHub or GitLab: a small aiohttp app that answers as their published APIs do for what
deployq sends (``POST /repos/{owner}/{repo}/statuses/{sha}``, also under ``/api/v3`` as
GitHub Enterprise serves it, and ``POST /api/v4/projects/{id}/statuses/{sha}``), records each
accepted status, and answers with a scripted error or rate limit when a test asks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from aiohttp import web

GITHUB_STATES = frozenset({"error", "failure", "pending", "success"})
GITLAB_STATES = frozenset({"pending", "running", "success", "failed", "canceled", "skipped"})
_SHA = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class Recorded:
    forge: str
    project: str
    sha: str
    state: str
    context: str
    target_url: str | None
    description: str | None


@dataclass
class FakeForge:
    """``web_app()`` serves both APIs; ``statuses`` is what was accepted, in order."""

    tokens: set[str]
    projects: set[str]
    statuses: list[Recorded] = field(default_factory=list)
    #: answered instead of the next requests, in order: (status, headers)
    scripted: list[tuple[int, dict[str, str]]] = field(default_factory=list)

    def web_app(self) -> web.Application:
        app = web.Application()
        for prefix in ("", "/api/v3"):
            app.router.add_post(prefix + "/repos/{owner}/{repo}/statuses/{sha}", self._github)
        app.router.add_post("/api/v4/projects/{project}/statuses/{sha}", self._gitlab)
        return app

    def _scripted(self) -> web.Response | None:
        if not self.scripted:
            return None
        code, headers = self.scripted.pop(0)
        return web.json_response({"message": "scripted by the test"}, status=code, headers=headers)

    async def _github(self, request: web.Request) -> web.Response:
        if (answer := self._scripted()) is not None:
            return answer
        auth = request.headers.get("Authorization", "")
        if auth.removeprefix("Bearer ").removeprefix("token ") not in self.tokens:
            return web.json_response({"message": "Bad credentials"}, status=401)
        project = f"{request.match_info['owner']}/{request.match_info['repo']}"
        if project not in self.projects:
            return web.json_response({"message": "Not Found"}, status=404)
        body = await request.json()
        sha = request.match_info["sha"]
        if not _SHA.match(sha):
            return web.json_response({"message": f"No commit found for SHA: {sha}"}, status=422)
        if body.get("state") not in GITHUB_STATES:
            return web.json_response({"message": "Validation Failed"}, status=422)
        if len(body.get("description") or "") > 140:
            return web.json_response({"message": "description is too long"}, status=422)
        return self._record(
            "github", project, sha, body["state"], body.get("context", "default"), body
        )

    async def _gitlab(self, request: web.Request) -> web.Response:
        if (answer := self._scripted()) is not None:
            return answer
        if request.headers.get("PRIVATE-TOKEN") not in self.tokens:
            return web.json_response({"message": "401 Unauthorized"}, status=401)
        project = unquote(request.match_info["project"])
        if project not in self.projects:
            return web.json_response({"message": "404 Project Not Found"}, status=404)
        body = await request.json()
        sha = request.match_info["sha"]
        if not _SHA.match(sha):
            return web.json_response({"message": "404 Commit Not Found"}, status=404)
        if body.get("state") not in GITLAB_STATES:
            return web.json_response({"error": "state does not have a valid value"}, status=400)
        return self._record(
            "gitlab", project, sha, body["state"], body.get("name", "default"), body
        )

    def _record(
        self, forge: str, project: str, sha: str, state: str, context: str, body: dict[str, str]
    ) -> web.Response:
        recorded = Recorded(
            forge, project, sha, state, context, body.get("target_url"), body.get("description")
        )
        self.statuses.append(recorded)
        return web.json_response(
            {"id": len(self.statuses), "state": state, "context": context, "sha": sha},
            status=201,
        )
