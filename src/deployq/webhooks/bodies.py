"""Request bodies from strangers: counted while they stream, bounded in total, decoded safely.

A body is read chunk by chunk and refused (413) the moment it passes the per-request limit,
so an oversized upload is never buffered past it. Every body in flight draws on one budget
(``DEPLOYQ_BODY_MEMORY_BYTES``); a request that would overdraw it gets 503 with
``Retry-After`` instead of growing the process. JSON is decoded with a bound on nesting
depth and on the size of numbers, so no payload can raise ``RecursionError`` or spend
seconds converting a million-digit integer.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from deployq.webhooks.events import BadPayload

#: bytes read from the socket at a time
CHUNK_BYTES = 64 * 1024
#: deepest nesting of arrays and objects a JSON body may have (forge payloads use < 10)
MAX_JSON_DEPTH = 64
#: longest number literal accepted in a JSON body
MAX_NUMBER_CHARS = 64
#: most fields in a form-encoded body (GitHub sends one: payload)
MAX_FORM_FIELDS = 16
#: what a client is told to wait before retrying when the body budget is spent
RETRY_AFTER_S = 2

BODY_KEY = web.RequestKey("deployq_body", bytes)


class BodyTooLarge(Exception):
    """The body passed the per-request limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the body is larger than {limit} bytes")
        self.limit = limit


class BodyBudgetSpent(Exception):
    """Too many bodies are being received at once; the client should retry shortly."""

    def __init__(self) -> None:
        super().__init__(
            "the service is receiving too many large bodies at once; "
            f"retry in {RETRY_AFTER_S}s (DEPLOYQ_BODY_MEMORY_BYTES)"
        )


class BadJson(BadPayload):
    """The body is not JSON deployq accepts (syntax, encoding, depth or number size)."""


class BodyBudget:
    """Bytes of request bodies held in memory at once, across every request."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.in_use = 0
        #: the most ever held at once (tests and /metrics read it)
        self.peak = 0

    def take(self, amount: int) -> None:
        if self.in_use + amount > self.limit_bytes:
            raise BodyBudgetSpent
        self.in_use += amount
        self.peak = max(self.peak, self.in_use)

    def give_back(self, amount: int) -> None:
        self.in_use -= amount

    @asynccontextmanager
    async def reading(self, request: web.Request, max_bytes: int) -> AsyncIterator[bytes]:
        """The whole body, held against the budget until the block ends."""
        held = 0
        chunks: list[bytes] = []
        try:
            if request.content_length is not None and request.content_length > max_bytes:
                raise BodyTooLarge(max_bytes)
            while True:
                chunk = await request.content.readany()
                if not chunk:
                    break
                if held + len(chunk) > max_bytes:
                    raise BodyTooLarge(max_bytes)
                self.take(len(chunk))
                held += len(chunk)
                chunks.append(chunk)
            body = b"".join(chunks)
            chunks.clear()
            yield body
        finally:
            self.give_back(held)


def too_large_response(exc: BodyTooLarge) -> web.Response:
    return web.json_response(
        {"error": {"code": "payload_too_large", "message": str(exc)}}, status=413
    )


def budget_response(exc: BodyBudgetSpent) -> web.Response:
    return web.json_response(
        {"error": {"code": "busy", "message": str(exc)}},
        status=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def _number(text: str) -> int | float:
    if len(text) > MAX_NUMBER_CHARS:
        raise BadJson(f"a number in the body has more than {MAX_NUMBER_CHARS} characters")
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise BadJson(f"the number {text} is out of range")
    return value


def _integer(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise BadJson(f"a number in the body has more than {MAX_NUMBER_CHARS} characters")
    return int(text)


def _constant(name: str) -> Any:
    raise BadJson(f"{name} is not valid JSON")


#: floats and NaN/Infinity always go through their hooks (a push has none); integers only
#: when the text has a run of digits long enough to be one past MAX_NUMBER_CHARS. Made once:
#: json.loads makes a decoder per call when it is given hooks.
_DECODER = json.JSONDecoder(parse_float=_number, parse_constant=_constant)
_INTEGERS_CHECKED = json.JSONDecoder(
    parse_int=_integer, parse_float=_number, parse_constant=_constant
)


#: an escape that may leave a lone surrogate in a decoded string
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_NOT_MARKS = bytes(b for b in range(256) if b not in b'[]{}"')
#: both kinds of brackets as one: ``(`` opens, ``)`` closes
_PARENS = bytes.maketrans(b"[{]}", b"(())")
#: a number past MAX_NUMBER_CHARS has a run of at least this many digits (it has at most
#: three runs, between a sign, a point, an e and the exponent's sign)
_LONG_DIGIT_RUN = b"0" * -(-(MAX_NUMBER_CHARS + 1 - 4) // 3)
#: every digit as 0, for the search of such a run at C speed (a regular expression took
#: ~0.1 ms on an 8 KB push)
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")


def _structure(text: bytes) -> bytes:
    """The brackets of a JSON document outside its strings (keys too). Once the escaped
    backslashes and quotes are gone, every other ``"`` opens or closes a string: with only
    the quotes and brackets left, the strings that hold no bracket are ``""`` pairs, and if
    dropping those leaves no quote, no string held a bracket (the first that did would
    leave an odd run of quotes before it); else the strings are cut out one by one. Exact
    for a valid UTF-8 document; json.loads refuses anything else."""
    if b"\\" in text:
        text = text.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = text.translate(None, _NOT_MARKS).replace(b'""', b"")
    if b'"' in structure:
        structure = b"".join(text.split(b'"')[::2]).translate(None, _NOT_BRACKETS)
    return structure


def _deeper_than(structure: bytes, limit: int) -> bool:
    """Whether the brackets nest deeper than ``limit``: each pass drops every innermost
    pair, so a document ``d`` deep is empty after ``d`` passes, each at C speed (~2 µs for
    an 8 KB push, whose brackets a Python loop took ~15 µs to count)."""
    brackets = structure.translate(_PARENS)
    for _ in range(limit):
        if not brackets:
            return False
        brackets = brackets.replace(b"()", b"")
    return bool(brackets)


def _check_strings(value: Any) -> None:
    """Every string (keys too) is valid Unicode: a lone ``\\ud800`` escape is not."""
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and not item.isascii():
            try:
                item.encode()
            except UnicodeEncodeError:
                raise BadJson("a string in the body is not valid Unicode") from None


def decode_json(raw: bytes | str) -> Any:
    """Parse JSON from a stranger; :class:`BadJson` says what is wrong with it.

    The integer hook (a Python call per integer, ~15 µs for a push) runs only when the text,
    strings included, has a run of digits that may be an integer past MAX_NUMBER_CHARS
    (or is not UTF-8, where that search would not see it)."""
    text = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    try:
        if isinstance(raw, bytes):  # as json.loads reads bytes
            encoding = json.detect_encoding(raw)
            raw = raw.decode(encoding, "surrogatepass")
        else:
            encoding = "utf-8"
        if encoding != "utf-8" or _LONG_DIGIT_RUN in text.translate(_DIGITS_AS_ZERO):
            value = _INTEGERS_CHECKED.decode(raw)
        else:
            value = _DECODER.decode(raw)
    except RecursionError:
        raise BadJson(f"the body is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except BadJson:
        raise
    except json.JSONDecodeError as exc:
        raise BadJson(f"the body is not valid JSON: {exc}") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadJson(f"the body is not valid JSON: {exc}") from exc
    if _deeper_than(_structure(text), MAX_JSON_DEPTH):
        raise BadJson(f"the body is nested deeper than {MAX_JSON_DEPTH} levels")
    if _SURROGATE_ESCAPE.search(text):
        _check_strings(value)
    return value


def decode_form_payload(raw: bytes) -> Any:
    """GitHub's form encoding: ``payload=<json>``."""
    try:
        form = parse_qs(raw.decode(), strict_parsing=True, max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadJson(f"the body is not a valid form: {exc}") from exc
    if "payload" not in form:
        raise BadJson("the form has no 'payload' field")
    return decode_json(form["payload"][0])
