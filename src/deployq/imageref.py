"""Image references by Docker's grammar: ``[host[:port]/]path[:tag][@digest]``.

A port of the reference grammar of distribution (github.com/distribution/reference,
``regexp.go``), and of the rule Docker uses to tell a registry host from the first path
component (``normalize.go``, ``splitDockerDomain``): the first component is a host when it
contains ``.`` or ``:`` or is ``localhost``. Docker also takes an upper-case first component
for a host; deployq refuses it instead (``Team/web`` is a typo far more often than a registry).

The CLI (``app add --image``), the API and the console all parse with :func:`parse` and
:func:`parse_repository`, and the worker builds the pushed reference with :func:`qualify`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from deployq.errors import InvalidInput

# -- the grammar (names as in distribution's regexp.go) ------------------------------------------
ALPHANUMERIC = r"[a-z0-9]+"
SEPARATOR = r"(?:[._]|__|[-]+)"
PATH_COMPONENT = ALPHANUMERIC + rf"(?:{SEPARATOR}{ALPHANUMERIC})*"
REMOTE_NAME = PATH_COMPONENT + rf"(?:/{PATH_COMPONENT})*"
DOMAIN_NAME_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
DOMAIN_NAME = DOMAIN_NAME_COMPONENT + rf"(?:\.{DOMAIN_NAME_COMPONENT})*"
IPV6_ADDRESS = r"\[(?:[a-fA-F0-9:]+)\]"
HOST = rf"(?:{DOMAIN_NAME}|{IPV6_ADDRESS})"
DOMAIN_AND_PORT = HOST + r"(?::[0-9]+)?"
TAG = r"[\w][\w.-]{0,127}"
DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"
IDENTIFIER = r"[a-f0-9]{64}"
#: the whole reference, anchored: name, then an optional tag, then an optional digest
REFERENCE = rf"(?:{DOMAIN_AND_PORT}/)?{REMOTE_NAME}(?::{TAG})?(?:@{DIGEST})?"

_DOMAIN_RE = re.compile(rf"^{DOMAIN_AND_PORT}\Z", re.ASCII)
_REMOTE_NAME_RE = re.compile(rf"^{REMOTE_NAME}\Z", re.ASCII)
_TAG_RE = re.compile(rf"^{TAG}\Z", re.ASCII)
_DIGEST_RE = re.compile(rf"^{DIGEST}\Z", re.ASCII)
_IDENTIFIER_RE = re.compile(rf"^{IDENTIFIER}\Z", re.ASCII)
_COMPONENT_RE = re.compile(rf"^{PATH_COMPONENT}\Z", re.ASCII)

#: distribution's RepositoryNameTotalLengthMax (the path, without the host)
MAX_REPOSITORY_CHARS = 255
#: the longest tag the grammar allows
MAX_TAG_CHARS = 128
_TAG_BAD_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")
LOCALHOST = "localhost"


class InvalidImageRef(InvalidInput):
    """An image reference that Docker would refuse; the message names the rule it breaks."""


@dataclass(frozen=True)
class ImageRef:
    """A parsed reference. ``domain`` is the registry host[:port], or None when the reference
    names none (Docker would then use Docker Hub; deployq uses its configured registry)."""

    domain: str | None
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``host/path`` (or ``path``): the reference without tag and digest."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def docker_tag(name: str) -> str:
    """A branch or tag name as a valid docker tag: ``feature/x`` -> ``feature-x``."""
    tag = _TAG_BAD_CHARS.sub("-", name).lstrip(".-")[:MAX_TAG_CHARS]
    return tag or "unnamed"


def split_domain(name: str) -> tuple[str | None, str]:
    """``127.0.0.1:5000/team/web`` -> (``127.0.0.1:5000``, ``team/web``); ``team/web`` ->
    (None, ``team/web``). Docker's rule: the first component is a host when it contains a
    ``.`` or a ``:`` or is ``localhost``."""
    first, slash, rest = name.partition("/")
    if slash and (first == LOCALHOST or "." in first or ":" in first):
        return first, rest
    return None, name


def parse(text: str) -> ImageRef:
    """Parse a full reference (tag and digest allowed); raise :class:`InvalidImageRef`."""
    if not text:
        raise InvalidImageRef("image reference is empty: give a name such as team/web")
    if _IDENTIFIER_RE.match(text):
        raise InvalidImageRef(
            f"image {text!r} is a 64-hex image id, not a name: give a name such as team/web"
        )
    domain, remainder = split_domain(text)
    name_part, at, digest = remainder.partition("@")
    path, colon, tag = name_part.partition(":")
    if domain is not None and not _DOMAIN_RE.match(domain):
        raise InvalidImageRef(
            f"image {text!r}: {domain!r} is not a valid registry host[:port] "
            "(letters, digits, '-' and '.', then an optional :PORT)"
        )
    _check_path(text, path)
    if colon and not _TAG_RE.match(tag):
        raise InvalidImageRef(
            f"image {text!r}: tag {tag!r} is invalid (1-128 letters, digits, '_', '.' or '-', "
            "not starting with '.' or '-')"
        )
    if at and not _DIGEST_RE.match(digest):
        raise InvalidImageRef(
            f"image {text!r}: digest {digest!r} is invalid (ALGORITHM:HEX, e.g. sha256:…)"
        )
    return ImageRef(domain, path, tag if colon else None, digest if at else None)


def _check_path(text: str, path: str) -> None:
    if not path:
        raise InvalidImageRef(f"image {text!r} has no repository name after the registry host")
    if len(path) > MAX_REPOSITORY_CHARS:
        raise InvalidImageRef(
            f"image {text!r}: the repository name is longer than {MAX_REPOSITORY_CHARS} characters"
        )
    if _REMOTE_NAME_RE.match(path):
        return
    if path != path.lower() and _REMOTE_NAME_RE.match(path.lower()):
        raise InvalidImageRef(
            f"image {text!r}: repository name {path!r} must be lowercase (try {path.lower()!r})"
        )
    for component in path.split("/"):
        if not _COMPONENT_RE.match(component.lower()):
            shown = component or "(empty)"
            raise InvalidImageRef(
                f"image {text!r}: path component {shown!r} is invalid: components are lowercase "
                "letters and digits, separated by one '.', one or two '_', or '-'s, and do not "
                "start or end with a separator"
            )
    raise InvalidImageRef(f"image {text!r} is not a valid repository name")  # pragma: no cover


def parse_repository(text: str) -> ImageRef:
    """An app's ``--image``: a repository, optionally with its registry host, without a tag
    or digest (deployq tags each build with its commit and branch)."""
    ref = parse(text.strip())
    if ref.tag is not None or ref.digest is not None:
        given = f":{ref.tag}" if ref.tag is not None else f"@{ref.digest}"
        raise InvalidImageRef(
            f"image {text!r} names a {'tag' if ref.tag is not None else 'digest'} ({given}): "
            f"give the repository only ({ref.name}); each build is tagged with its commit and "
            "branch"
        )
    return ref


def registry_host(registry_url: str) -> str:
    """``http://127.0.0.1:5000/`` -> ``127.0.0.1:5000``: the registry part of image refs."""
    return registry_url.split("://", 1)[-1].strip("/").split("/", 1)[0]


def same_host(a: str, b: str) -> bool:
    """Host names compare without case (DNS does), ports exactly."""
    return a.lower() == b.lower()


def check_registry(ref: ImageRef, registry_url: str) -> None:
    """Refuse a reference whose host is not the configured registry (one registry per
    deployment for now), saying which one is configured."""
    if ref.domain is None:
        return
    configured = registry_host(registry_url) if registry_url else ""
    if configured and same_host(ref.domain, configured):
        return
    where = f"the configured registry is {configured}" if configured else "no registry is set"
    raise InvalidImageRef(
        f"image {ref.name!r} is on registry {ref.domain}, but {where} "
        "(DEPLOYQ_REGISTRY_URL): name the image without a host, or with that one"
    )


def qualify(image: str, registry_url: str) -> ImageRef:
    """The reference an app's image is pushed as: ``image`` on the configured registry,
    never prefixed twice (``127.0.0.1:5000/team/web`` stays as it is)."""
    ref = parse_repository(image)
    check_registry(ref, registry_url)
    return ImageRef(registry_host(registry_url), ref.path)


def pull_reference(image_ref: str | None, digest: str | None) -> str | None:
    """``host/repo@sha256:…``: what ``docker pull`` takes to get exactly the pushed image."""
    if not image_ref or not digest:
        return None
    try:
        ref = parse(image_ref)
    except InvalidImageRef:
        return None
    return str(ImageRef(ref.domain, ref.path, digest=digest))
