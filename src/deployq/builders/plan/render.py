"""A plan becomes a multi-stage Dockerfile (jinja2 templates in builders/templates/).

Dependencies are installed from their manifests alone, so the layer is reused until a
manifest changes; the runtime stage gets /app (or the binary, or the site) without the
build's tools, runs as an unprivileged numeric user, and has ``PORT`` set.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import PurePosixPath

import jinja2

from deployq.builders.plan.model import RUNTIME_UID, Layout, Plan

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("deployq.builders", "templates"),
    autoescape=False,  # Dockerfiles, not HTML
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
)
#: a command that needs no shell: words of these characters only
_PLAIN = re.compile(r"^[A-Za-z0-9_./:=@%+,-]+$")
#: a command that needs a shell only to expand variables
_VARIABLES_ONLY = re.compile(r"^[A-Za-z0-9_./:=@%+,${} -]+$")
#: ``NAME=value`` before a command: only a shell understands it
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def command_form(command: str) -> str:
    """CMD's JSON form: exec form when no shell is needed, else ``sh -c`` (with ``exec`` when
    the shell is only there to expand ``$PORT``, so the app gets the stop signal)."""
    words = command.split()
    assigns = bool(words) and _ASSIGNMENT.match(words[0]) is not None  # PORT=9090 app
    if all(_PLAIN.match(w) for w in words) and not assigns:
        return json.dumps(words)
    if _VARIABLES_ONLY.match(command) and not assigns:  # `exec NAME=value` would fail
        return json.dumps(["/bin/sh", "-c", f"exec {command}"])
    return json.dumps(["/bin/sh", "-c", command])


def _copy_args(names: list[str]) -> list[str]:
    """COPY instructions' JSON arguments for files copied to the same place under /app."""
    top = [n for n in names if "/" not in n and not n.endswith("/")]
    lines = [json.dumps([*top, "./"])] if top else []
    for name in names:
        if name not in top:
            lines.append(json.dumps([name, f"./{PurePosixPath(name).as_posix()}"]))
    return lines


def _comment(line: str) -> str:
    return _CONTROL.sub("?", line)


def _env(values: dict[str, str]) -> list[str]:
    return [f"{k}={shlex.quote(v) if '$' not in v else v}" for k, v in values.items()]


def dockerfile(plan: Plan) -> str:
    """The Dockerfile text for ``plan``."""
    template = _TEMPLATES.get_template(f"{plan.layout.value}.Dockerfile.j2")
    output = plan.output_dir or "."
    from_build = plan.layout is Layout.STATIC and plan.install is not None
    return template.render(
        plan=plan,
        header=[_comment(line) for line in plan.describe()],
        copies=_copy_args(list(plan.dependency_files)),
        build_env=_env(plan.build_env),
        runtime_env=_env({**plan.runtime_env, "PORT": str(plan.port)}),
        tools=plan.build_tools,
        cmd=command_form(plan.start or ""),
        uid=RUNTIME_UID,
        site_from_build=from_build,
        site=json.dumps([output, "/www"]),
        site_in_build=("/app" if output == "." else f"/app/{output}") if from_build else "/www",
    )
