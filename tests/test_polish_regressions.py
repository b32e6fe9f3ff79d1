"""Regressions found in the last quality pass over the Python layer."""

from __future__ import annotations

import pytest

import ratekeeper as rk


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after": "²"},
        {"retry-after-ms": "³"},
        {"x-ratelimit-remaining-requests": "²"},
        {"x-ratelimit-limit-tokens": "1²"},
        {"x-ratelimit-reset-tokens": "²s"},
        {"x-ratelimit-reset-requests": "²ms"},
        {b"retry-after": b"\xb2"},  # latin-1 bytes that decode to "²"
    ],
)
def test_header_of_digits_float_refuses_is_ignored_not_raised(headers: dict) -> None:
    # "²" passes str.isdigit() but float() refuses it: such a value is
    # nonsense, to be skipped like any other, never an exception.
    assert rk.read_limits(headers) == rk.ServerLimits()
    assert rk.retry_after(headers) is None


def test_unicode_decimal_digits_still_read_as_numbers() -> None:
    assert rk.retry_after({"retry-after": "٣"}) == 3.0
    assert rk.read_limits({"x-ratelimit-reset-tokens": "٣s"}).tokens_reset == 3.0
