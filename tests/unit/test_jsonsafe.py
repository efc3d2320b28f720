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
    ],
)
def test_bad_input_is_one_error_in_our_words(data: bytes | str, wording: str) -> None:
    with pytest.raises(msgspec.DecodeError, match=wording):
        jsonsafe.decode(data)


def test_valid_utf8_keeps_the_parse_error() -> None:
    with pytest.raises(msgspec.DecodeError) as info:
        jsonsafe.decode(b'{"a": }')
    assert "UTF-8" not in str(info.value)


def test_validation_errors_pass_through() -> None:
    decoder = msgspec.json.Decoder(dict[str, int])
    with pytest.raises(msgspec.ValidationError):
        jsonsafe.decode(b'{"a": "x"}', decoder)
    assert jsonsafe.decode(b'{"a": 1}', decoder) == {"a": 1}
