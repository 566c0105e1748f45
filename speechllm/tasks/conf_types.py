"""The one key-checking helper of every ``*_conf`` option (``check_conf_keys``), and the type a config value must
have, judged from its default.

A default of ``None`` accepts anything (the key has no fixed type); ``True``/``False`` want a bool; an int wants an
int; a float wants a number (an int is fine, a bool is not); a str wants a str; a dict or a list wants one (or
nothing, ``key:`` with no value in YAML).
"""
from __future__ import annotations

from typing import Any, Optional

_NAMES = {bool: "a boolean (true or false)", int: "an integer", float: "a number", str: "a string",
          dict: "a mapping ({key: value, ...})", list: "a list ([a, b, ...])"}


def expected_type(default: Any) -> Optional[type]:
    if default is None:
        return None
    for kind in (bool, int, float, str, dict):
        if isinstance(default, kind):
            return kind
    if isinstance(default, (list, tuple)):
        return list
    return None


def matches(value: Any, kind: Optional[type]) -> bool:
    if kind is None:
        return True
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is str:
        return isinstance(value, str)
    if kind is dict:
        return value is None or isinstance(value, dict)
    if kind is list:
        return value is None or isinstance(value, (list, tuple))
    return True


def type_problem(key: str, value: Any, default: Any) -> Optional[str]:
    """'ctc_weight: expected a number (float, e.g. 0.0), got 'half' (str)', or None when `value` fits."""
    kind = expected_type(default)
    if matches(value, kind):
        return None
    return (f"{key}: expected {_NAMES[kind]} ({kind.__name__}, e.g. {default!r}), got {value!r} "
            f"({type(value).__name__})")


def check_conf_keys(option: str, conf: dict, defaults: dict) -> dict:
    """``{**defaults, **conf}``; an unknown key, or a value whose type differs from its default's, is an error."""
    if not isinstance(conf, dict):
        raise ValueError(f"{option}: expected a mapping of {sorted(defaults)}, got {conf!r}")
    unknown = sorted(set(conf) - set(defaults))
    if unknown:
        raise ValueError(f"{option}: unknown key(s) {unknown}; valid keys: {sorted(defaults)}")
    wrong = [p for p in (type_problem(k, v, defaults[k]) for k, v in conf.items()) if p]
    if wrong:
        raise ValueError(f"{option}.{wrong[0]}" + "".join(f"; {option}.{p}" for p in wrong[1:]))
    return {**defaults, **conf}
