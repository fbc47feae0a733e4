"""Webhook bodies are judged from the JSON text (deployq.webhooks.bodies): brackets inside
strings, escaped quotes and escaped backslashes never count towards the nesting limit, and
numbers are refused past their limits whether or not the number hooks run."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from deployq.webhooks.bodies import MAX_JSON_DEPTH, MAX_NUMBER_CHARS, BadJson, decode_json


def nesting(value: Any, depth: int = 1) -> int:
    """The reference: how deep the decoded containers go (0 for a scalar)."""
    if isinstance(value, dict):
        return max([depth, *(nesting(v, depth + 1) for v in value.values())])
    if isinstance(value, list):
        return max([depth, *(nesting(v, depth + 1) for v in value)])
    return depth - 1


def random_value(rnd: random.Random, depth: int = 0) -> Any:
    roll = rnd.random()
    if depth > 8 or roll < 0.3:
        return rnd.choice(['a"[{\\', "\\\\", '"', "}]", 'é\\"', "\\u005b", 1, 2.5, None, True])
    if roll < 0.65:
        return [random_value(rnd, depth + 1) for _ in range(rnd.randint(0, 3))]
    keys = ["k", "[", '{"', "\\", "]}"]
    size = rnd.randint(0, 3)
    return {rnd.choice(keys) + str(i): random_value(rnd, depth + 1) for i in range(size)}


def test_the_limit_matches_the_decoded_nesting_of_any_document() -> None:
    rnd = random.Random(20261203)
    for _ in range(2000):
        value = random_value(rnd)
        text = json.dumps(value, ensure_ascii=rnd.random() < 0.5)
        deep = {"x": value}
        for _ in range(MAX_JSON_DEPTH - nesting(deep)):
            deep = {"x": deep}  # exactly at the limit
        at_limit = json.dumps(deep)
        assert decode_json(text.encode()) == value
        assert decode_json(at_limit) == deep
        with pytest.raises(BadJson, match="nested deeper than 64 levels"):
            decode_json(f"[{at_limit}]".encode())


@pytest.mark.parametrize(
    "body",
    [
        b'["[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["]',
        b'["\\\\", ' + b"[" * 63 + b"]" * 63 + b"]",
        b'["\\\\\\"' + b"[" * 100 + b'"]',
    ],
)
def test_brackets_in_strings_do_not_count(body: bytes) -> None:
    decode_json(body)


def test_a_lone_surrogate_is_refused_and_a_pair_is_not() -> None:
    assert decode_json(b'{"k": "\\ud83d\\ude00"}') == {"k": "\U0001f600"}
    with pytest.raises(BadJson, match="not valid Unicode"):
        decode_json(b'{"\\ud800": 1}')


@pytest.mark.parametrize(
    "body",
    [
        b'{"n": ' + b"9" * MAX_NUMBER_CHARS + b"}",
        b'{"n": -' + b"1" * (MAX_NUMBER_CHARS - 3) + b".5}",
        b'{"n": 1e308, "m": -1.5E-999, "k": 2e+99}',
        b'{"digits": "' + b"9" * 500 + b'", "s": "NaN Infinity 1e999"}',
        b'{"n": [' + b", ".join([b"1234567890123"] * 50) + b"]}",
    ],
)
def test_numbers_within_the_limits_decode_as_json_does(body: bytes) -> None:
    assert decode_json(body) == json.loads(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"n": ' + b"9" * (MAX_NUMBER_CHARS + 1) + b"}",
        b'{"n": 1.' + b"5" * 30 + b"e" + b"1" * 40 + b"}",
        b'{"n": 1e309}',
        b'{"n": 0.00001e00400}',
        b'{"n": NaN}',
        b'{"n": -Infinity}',
        '{"n": 1e999}'.encode("utf-16"),
    ],
)
def test_numbers_past_the_limits_are_refused(body: bytes) -> None:
    with pytest.raises(BadJson):
        decode_json(body)
