"""jsonsafe.decode: every kind of bad outside JSON is one DecodeError, worded by us."""

from __future__ import annotations

import msgspec
import pytest

from visionflow import jsonsafe


@pytest.mark.parametrize(
    ("data", "wording"),
    [
        (b'{"method": "\xff\xfe"}', "JSON text is not valid UTF-8"),  # inside a string
        (b'{"a": 1, \xc3}', "JSON text is not valid UTF-8"),  # truncated sequence outside one
        ('{"a": "\ud800"}', "JSON text is not valid UTF-8"),  # lone surrogate in a str
        (b"[" * 5000 + b"]" * 5000, "JSON nested too deeply"),
        # an escaped high surrogate with no low one after it: msgspec said "Input data was
        # truncated" of a whole document
        (b'{"a": "\\ud800"}', r"a lone UTF-16 surrogate \\ud800 \(byte 7\)"),
        (b'["x\\uDBFFy"]', r"a lone UTF-16 surrogate \\uDBFF \(byte 3\)"),
    ],
)
def test_bad_input_is_one_error_in_our_words(data: bytes | str, wording: str) -> None:
    with pytest.raises(msgspec.DecodeError, match=wording):
        jsonsafe.decode(data)


def test_an_escaped_pair_and_real_truncation_keep_their_meaning() -> None:
    assert jsonsafe.decode(b'["\\ud83d\\ude00"]') == ["\U0001f600"]
    with pytest.raises(msgspec.DecodeError, match="truncated"):
        jsonsafe.decode(b'{"a": "abc')


def test_valid_utf8_keeps_the_parse_error() -> None:
    with pytest.raises(msgspec.DecodeError) as info:
        jsonsafe.decode(b'{"a": }')
    assert "UTF-8" not in str(info.value)


def test_validation_errors_pass_through() -> None:
    decoder = msgspec.json.Decoder(dict[str, int])
    with pytest.raises(msgspec.ValidationError):
        jsonsafe.decode(b'{"a": "x"}', decoder)
    assert jsonsafe.decode(b'{"a": 1}', decoder) == {"a": 1}


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b"", 0),
        (b"1", 0),
        (b"[]", 1),
        (b'{"a": [1, {"b": []}]}', 4),
        (b'["[[[[", "]]]]]]]]", [["{"]]]', 3),  # brackets inside strings do not count
        (b'["\\"[[[", [1]]', 2),  # nor after an escaped quote
        (b'["\\\\", [[1]]]', 3),  # an escaped backslash ends before the closing quote
    ],
)
def test_nesting_depth_ignores_strings(text: bytes, depth: int) -> None:
    assert jsonsafe.nesting_depth(text) == depth


def test_depth_limit_is_the_same_on_every_python() -> None:
    at_limit = b"[" * jsonsafe.MAX_DEPTH + b"]" * jsonsafe.MAX_DEPTH
    assert jsonsafe.decode(at_limit) is not None
    assert jsonsafe.decode(at_limit.decode()) is not None
    over = b"[" * (jsonsafe.MAX_DEPTH + 1) + b"]" * (jsonsafe.MAX_DEPTH + 1)
    for data in (over, over.decode()):
        with pytest.raises(msgspec.DecodeError, match="nested too deeply"):
            jsonsafe.decode(data)
    # Many brackets, shallow: a wide document is fine.
    wide = b"[" + b",".join([b"[1]"] * 5000) + b"]"
    assert len(jsonsafe.decode(wide)) == 5000
