"""Dict options from the command line (``--llm_conf``, ``--model_conf``, ``--frontend_conf``, ...) read safely.

ESPnet's ``NestedDictAction`` reads ``--x_conf '{...}'`` with ``eval()`` first and ``yaml.load(Loader=yaml.Loader)``
after, and ``--x_conf key=value`` with ``yaml.Loader``: a value such as ``__import__('os').system('...')`` or
``!!python/object/apply:os.system [...]`` ran code. ``SafeNestedDictAction`` accepts the same syntax (``key=value``,
``a.b=value``, a YAML mapping, a Python dict literal) through ``yaml.safe_load`` and ``ast.literal_eval`` only.
``safe_dict_options(parser)`` swaps it in for every NestedDictAction of a parser (the task's and ESPnet's own).
"""
from __future__ import annotations

import argparse
import ast
import copy

import yaml
from espnet2.utils.nested_dict_action import NestedDictAction


def _yaml(text: str, option: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise argparse.ArgumentError(None, f"{option}: cannot read {text!r} as YAML ({error})") from None


class SafeNestedDictAction(NestedDictAction):
    """NestedDictAction without eval() or yaml.Loader (see module doc)."""

    def __call__(self, parser, namespace, values, option_strings=None):
        option = option_strings or "/".join(self.option_strings)
        if "=" in values and not values.lstrip().startswith("{"):
            key, value = values.split("=", maxsplit=1)
            if value.strip() != "":
                value = _yaml(value, option)
            indict = copy.deepcopy(getattr(namespace, self.dest, {}))
            if not isinstance(indict, dict):
                indict = {}
            keys = key.split(".")
            d = indict
            for k in keys[:-1]:
                if not isinstance(d.setdefault(k, {}), dict):
                    d[k] = {}
                d = d[k]
            d[keys[-1]] = value
            setattr(namespace, self.dest, indict)
            return
        try:
            value = ast.literal_eval(values)  # a Python dict literal: {'a': 3, 'b': True, 'c': None}
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            value = _yaml(values, option)
        if not isinstance(value, dict):
            syntax = self._syntax.format(op=option)
            raise argparse.ArgumentError(self, f"must be interpreted as dict: but got {values}\n{syntax}")
        d = getattr(namespace, self.dest, None)
        if isinstance(d, dict):
            d.update(value)
        else:
            setattr(namespace, self.dest, value)


def safe_dict_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Make every NestedDictAction of `parser` a SafeNestedDictAction (same options, same defaults)."""
    for action in parser._actions:
        if type(action) is NestedDictAction:
            action.__class__ = SafeNestedDictAction
    return parser
