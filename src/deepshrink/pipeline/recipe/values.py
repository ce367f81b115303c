"""Checks of single recipe values: each returns the (converted) value or raises :class:`BadValue`."""

from __future__ import annotations

import difflib
from typing import Any, Callable


class BadValue(Exception):
    """A value that fails its check; the message says why (the caller adds where)."""


def integer(low: int | None = None, high: int | None = None) -> Callable[[Any], int]:
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadValue(f"must be an integer, got {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"in {low}..{high}"
            raise BadValue(f"must be an integer {bounds}, got {value}")
        return value
    return check


def number(low: float | None = None, high: float | None = None, *, low_open: bool = False,
           high_open: bool = False) -> Callable[[Any], float]:
    def check(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadValue(f"must be a number, got {value!r}")
        below = low is not None and (value < low or (low_open and value == low))
        above = high is not None and (value > high or (high_open and value == high))
        if below or above or value != value:
            if high is None:
                bounds = f"{'>' if low_open else '>='} {low}"
            else:
                bounds = f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
            raise BadValue(f"must be a number {bounds}, got {value}")
        return float(value)
    return check


def choice(options, shown: str | None = None) -> Callable[[Any], Any]:
    def check(value):
        if value not in options or isinstance(value, bool):
            hint = did_you_mean(value, options)
            raise BadValue(f"must be one of {shown or ', '.join(map(str, options))}, got {value!r}{hint}")
        return value
    return check


def boolean(value):
    if not isinstance(value, bool):
        raise BadValue(f"must be true or false, got {value!r}")
    return value


def text(value):
    if not isinstance(value, str) or not value:
        raise BadValue(f"must be a non-empty string, got {value!r}")
    return value


def texts(value):
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadValue(f"must be a list of strings, got {value!r}")
    return tuple(value)


def numbers(value):
    if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                              for v in value):
        raise BadValue(f"must be a list of numbers, got {value!r}")
    return tuple(float(v) for v in value)


def integers(value):
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise BadValue(f"must be a non-empty list of integers, got {value!r}")
    return tuple(value)


def ratios(value):
    if not isinstance(value, dict):
        raise BadValue(f"must be a mapping of layer glob -> ratio, got {value!r}")
    return {str(k): number(0, 1, high_open=True)(v) for k, v in value.items()}


def mapping(value):
    if not isinstance(value, dict):
        raise BadValue(f"must be a mapping, got {value!r}")
    return dict(value)


def did_you_mean(value, options) -> str:
    close = difflib.get_close_matches(str(value), [str(o) for o in options], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
