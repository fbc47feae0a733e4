"""Image references are read by Docker's grammar (distribution/reference), in every client."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from deployq.imageref import (
    REFERENCE,
    ImageRef,
    InvalidImageRef,
    check_registry,
    parse,
    parse_repository,
    pull_reference,
    qualify,
    split_domain,
)

DIGEST_VALUE = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "domain", "path"),
    [
        ("web", None, "web"),
        ("team/web", None, "team/web"),
        ("registry.example.com/team/web", "registry.example.com", "team/web"),
        ("127.0.0.1:5000/team/web", "127.0.0.1:5000", "team/web"),
        ("localhost/web", "localhost", "web"),
        ("localhost:5000/a/b/c", "localhost:5000", "a/b/c"),
        ("registry:5000/web", "registry:5000", "web"),
        ("[::1]:5000/web", "[::1]:5000", "web"),
        ("a.b-c/e---f__g", "a.b-c", "e---f__g"),
        ("team-x/web_app.v2", None, "team-x/web_app.v2"),
    ],
)
def test_the_first_component_is_a_host_only_with_a_dot_a_colon_or_localhost(
    text: str, domain: str | None, path: str
) -> None:
    ref = parse_repository(text)
    assert (ref.domain, ref.path) == (domain, path)
    assert ref.name == text


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("", "empty"),
        ("team/web:1.0", "names a tag"),
        (f"team/web@{DIGEST_VALUE}", "names a digest"),
        ("Team/web", "must be lowercase"),
        ("team/Web", "must be lowercase"),
        ("127.0.0.1:5000/Team/web", "must be lowercase"),
        ("team//web", "path component '(empty)'"),
        ("team/web/", "path component '(empty)'"),
        ("-team/web", "path component '-team'"),
        ("team/web-", "path component 'web-'"),
        ("team/we..b", "path component 'we..b'"),
        ("team/we___b", "path component 'we___b'"),
        ("te am/web", "path component 'te am'"),
        ("reg_istry.example.com/web", "not a valid registry host"),
        ("127.0.0.1:port/web", "not a valid registry host"),
        ("127.0.0.1:5000/", "no repository name"),
        ("a" * 64, "64-hex image id"),
        ("team/" + "a" * 260, "longer than 255"),
    ],
)
def test_an_invalid_image_is_refused_with_the_rule_it_breaks(text: str, rule: str) -> None:
    with pytest.raises(InvalidImageRef, match=re.escape(rule)):
        parse_repository(text)


def test_tags_and_digests_are_read_in_full_references() -> None:
    ref = parse(f"127.0.0.1:5000/team/web:v1.2@{DIGEST_VALUE}")
    assert ref == ImageRef("127.0.0.1:5000", "team/web", "v1.2", DIGEST_VALUE)
    assert parse("localhost:5000") == ImageRef(None, "localhost", "5000")
    with pytest.raises(InvalidImageRef, match=re.escape("tag '.bad'")):
        parse("web:.bad")
    with pytest.raises(InvalidImageRef, match="digest 'sha256:xyz'"):
        parse("web@sha256:xyz")


def test_an_image_on_the_configured_registry_is_pushed_as_it_is() -> None:
    assert str(qualify("127.0.0.1:5000/team/demo", "127.0.0.1:5000")) == "127.0.0.1:5000/team/demo"
    assert str(qualify("team/demo", "http://127.0.0.1:5000/")) == "127.0.0.1:5000/team/demo"
    assert str(qualify("Harbor.Example.com/p/x", "harbor.example.com")) == "harbor.example.com/p/x"


def test_an_image_on_another_registry_is_refused_naming_the_configured_one() -> None:
    with pytest.raises(
        InvalidImageRef, match=re.escape("the configured registry is 127.0.0.1:5000")
    ):
        check_registry(parse_repository("ghcr.io/team/web"), "http://127.0.0.1:5000")
    with pytest.raises(InvalidImageRef, match=re.escape("127.0.0.1:5001")):
        qualify("127.0.0.1:5001/team/web", "127.0.0.1:5000")


def test_the_pull_reference_is_the_name_at_the_digest() -> None:
    assert pull_reference("127.0.0.1:5000/team/web:abc1234", DIGEST_VALUE) == (
        f"127.0.0.1:5000/team/web@{DIGEST_VALUE}"
    )
    assert pull_reference("127.0.0.1:5000/team/web:abc1234", None) is None
    assert pull_reference(None, DIGEST_VALUE) is None


# -- properties against the grammar ----------------------------------------------------------

LOWER_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
HEX = "0123456789abcdefABCDEF"
alnums = st.text(LOWER_ALNUM, min_size=1, max_size=6)
separators = st.sampled_from([".", "_", "__", "-", "--", "---"])
path_components = st.builds(
    lambda first, rest: first + "".join(sep + part for sep, part in rest),
    alnums,
    st.lists(st.tuples(separators, alnums), max_size=3),
)
components = st.lists(path_components, min_size=1, max_size=4).map("/".join)
labels = st.from_regex(r"\A[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?\Z", fullmatch=True)
domain_names = st.lists(labels, min_size=1, max_size=4).map(".".join)
ipv6 = st.ip_addresses(v=6).map(str).filter(lambda a: "." not in a).map(lambda a: f"[{a}]")
ports = st.none() | st.integers(0, 65535).map(lambda p: f":{p}")
# hosts Docker recognises as hosts: with a dot or a port, or localhost
hosts = st.builds(lambda h, p: h + (p or ""), domain_names | ipv6, ports).filter(
    lambda h: "." in h or ":" in h or h == "localhost"
)
tags = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(LOWER_ALNUM + "ABCXYZ_"),
    st.text(LOWER_ALNUM + "ABCXYZ_.-", max_size=20),
)
digests = st.builds(
    lambda algorithm, hexes: f"{algorithm}:{hexes}",
    st.from_regex(
        r"\A[A-Za-z][A-Za-z0-9]{0,6}(?:[-_+.][A-Za-z][A-Za-z0-9]{0,6}){0,2}\Z", fullmatch=True
    ),
    st.text(HEX, min_size=32, max_size=72),
)


@given(st.none() | hosts, components, st.none() | tags, st.none() | digests)
def test_every_reference_of_the_grammar_parses_back_to_its_parts(
    host: str | None, path: str, tag: str | None, digest: str | None
) -> None:
    ref = ImageRef(host, path, tag, digest)
    text = str(ref)
    if re.fullmatch(r"[a-f0-9]{64}", text):
        return  # an image id, refused on purpose
    assert re.fullmatch(REFERENCE, text, re.ASCII)
    if host is None and "/" in path:
        first = path.split("/", 1)[0]
        if "." in first or first == "localhost":
            return  # Docker reads this first component as a host too
    assert parse(text) == ref


@given(hosts, components)
def test_a_reference_on_the_registry_is_never_prefixed_twice(host: str, path: str) -> None:
    once = qualify(f"{host}/{path}", host)
    assert str(once) == f"{host}/{path}"
    assert str(qualify(str(once), host)) == str(once)


@given(components)
def test_a_name_without_a_host_goes_to_the_configured_registry(path: str) -> None:
    first = path.split("/", 1)[0]
    assume("/" not in path or ("." not in first and first != "localhost"))
    assert qualify(path, "127.0.0.1:5000") == ImageRef("127.0.0.1:5000", path)


@given(st.text(max_size=80))
def test_any_text_either_parses_by_the_grammar_or_is_refused_with_a_reason(text: str) -> None:
    try:
        ref = parse(text)
    except InvalidImageRef as exc:
        assert exc.message.startswith("image ")
        return
    assert str(ref) == text
    assert re.fullmatch(REFERENCE, text, re.ASCII)
    domain, _ = split_domain(ref.name)
    assert domain == ref.domain


@given(components)
def test_an_uppercase_repository_is_refused_and_the_lowercase_one_suggested(path: str) -> None:
    first = path.split("/", 1)[0]
    assume(any(c.isalpha() for c in path))
    assume("/" not in path or ("." not in first and first != "localhost"))
    with pytest.raises(InvalidImageRef, match=re.escape(f"try {path!r}")):
        parse_repository(path.upper())


@pytest.mark.parametrize("text", ["team/web\n", "0\n", "team/web:v1\n", "host:5000/a\n"])
def test_a_trailing_newline_is_refused(text: str) -> None:
    # `$` would match before a final newline; the grammar's anchors must not
    with pytest.raises(InvalidImageRef):
        parse(text)
