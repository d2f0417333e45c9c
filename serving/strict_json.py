"""Strict JSON for request bodies: bounded before parsing, numbers only where numbers are wanted.

``load_json(body)`` parses with orjson (C, no per-number Python callback); a body orjson refuses goes through
``json.loads`` with callbacks, which says why or takes it (integers past 64 bits). It refuses, before either runs, a
document nested deeper than ``MAX_DEPTH`` (the C parser would recurse until RecursionError) or holding more than
``max_values`` values; ``NaN``/``Infinity`` literals are
refused, and integer literals too long to be a float are parsed as ``inf`` so they are reported as overflow.
``numbers_of(value)`` turns a nested list into a float64 array, refusing anything that is not a JSON number
(``true``, ``null``, ``"1.5"``) instead of letting numpy convert it. ``rows_of_three(body, doc)`` is its fast path for
the common ``/predict`` body, ``{"points": [[x, y, z], ...]}``: C-speed byte checks on the body stand in for the
per-value type checks, and the numbers go straight into an array (None: not that shape, take the general path).
"""

from __future__ import annotations

import json
import re
from itertools import chain

import numpy as np
import orjson

MAX_DEPTH = 32
MAX_INT_DIGITS = 300  # longer integer literals are parsed as floats: inf past float64's range, never OverflowError
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = bytes(sorted(set(range(256)) - set(b"[]{}")))
_NUMBER_OR_SPACE = b"0123456789.eE+- \t\n\r"  # what a JSON number (or the whitespace around it) is made of
_ARRAY_OF_NUMBERS = _NUMBER_OR_SPACE + b"[],"


class BadJSON(ValueError):
    """A body that is not acceptable JSON (a 400); the message says why."""


class BadNumbers(ValueError):
    """Valid JSON whose values are not the numbers asked for (a 422); the message says why."""


def load_json(body: bytes, max_values: int) -> object:
    """The parsed document, or :class:`BadJSON`."""
    if isinstance(body, str):
        body = body.encode()
    structure = _STRING.sub(b'""', body)
    brackets = np.frombuffer(structure.translate(None, _NOT_BRACKET), np.uint8)  # C passes; numpy sees brackets only
    steps = ((brackets == ord("[")) | (brackets == ord("{"))).astype(np.int32)
    steps -= (brackets == ord("]")) | (brackets == ord("}"))
    if steps.size and int(np.cumsum(steps).max(initial=0)) > MAX_DEPTH:
        raise BadJSON(f"body is not valid JSON for this server: nested deeper than {MAX_DEPTH} levels")
    values = structure.count(b",") + 1
    if values > max_values:
        raise BadJSON(f"body is not valid JSON for this server: over {max_values} values")
    try:
        return orjson.loads(body)  # RFC 8259 only, in C: no NaN/Infinity, no integer past 64 bits
    except orjson.JSONDecodeError:
        pass  # the slow path below says why (and takes what orjson refuses but JSON allows: huge integers)
    try:
        return json.loads(body, parse_int=_int, parse_constant=_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BadJSON(f"body is not valid JSON: {err}") from err
    except RecursionError as err:  # the depth check above should make this unreachable
        raise BadJSON("body is not valid JSON for this server: nested too deeply") from err


def _int(text: str) -> int | float:
    return int(text) if len(text) <= MAX_INT_DIGITS else float(text)


def _constant(name: str) -> float:
    raise BadJSON(f"body is not valid JSON: {name} is not a JSON number")


def numbers_of(value: object, what: str) -> np.ndarray:
    """A (nested) list of JSON numbers as a float64 array, or :class:`BadNumbers` naming what is wrong."""
    if type(value) is not list:
        raise BadNumbers(f"'{what}' must be a list of numbers")
    level = value
    for _ in range(MAX_DEPTH):
        kinds = set(map(type, level))
        if kinds <= {int, float}:
            break
        if kinds == {list}:
            level = list(chain.from_iterable(level))
            continue
        if list in kinds:
            raise BadNumbers(f"'{what}' must be a rectangular list of numbers (lists and numbers mixed in one list)")
        names = ", ".join(sorted(_json_name(k) for k in kinds if k not in (int, float)))
        raise BadNumbers(f"'{what}' must hold only numbers in rectangular lists, found {names}")
    try:
        with np.errstate(over="ignore"):
            return np.asarray(value, dtype=np.float64)
    except ValueError as err:
        raise BadNumbers(f"'{what}' must be a rectangular list of numbers ({err})") from err


def rows_of_three(body: bytes, doc: object, key: str = "points") -> np.ndarray | None:
    """``doc[key]`` as an ``[n, 3]`` float64 array when ``doc`` (``body`` as :func:`load_json` parsed it) is
    ``{key: [[x, y, z], ...]}`` with n >= 1 rows of three JSON numbers, exactly as :func:`numbers_of` would give it;
    None for any other document (the caller takes :func:`numbers_of`'s path, which says what is wrong).

    The document is valid JSON (parsed already), so its only array is the bytes from the first ``[`` to the last
    ``]`` (a one-key object: its key holds no bracket). If those bytes hold nothing but digits, ``.eE+-``,
    whitespace, brackets and commas, no value in them is ``true``, ``false``, ``null``, a string or an object; if
    their brackets and commas read ``[[,,],[,,],...]`` it is n rows of three numbers. Both are ``bytes.translate``
    passes in C, in place of a Python type check per value."""
    if type(doc) is not dict or len(doc) != 1 or type(value := doc.get(key)) is not list or not value:
        return None
    if isinstance(body, str):
        body = body.encode()
    array = bytes(body[body.find(b"[") : body.rfind(b"]") + 1])
    if array.translate(None, _ARRAY_OF_NUMBERS):
        return None
    if array.translate(None, _NUMBER_OR_SPACE) != b"[[,,]" + b",[,,]" * (len(value) - 1) + b"]":
        return None
    # Every value is a float or an int of at most MAX_INT_DIGITS digits (load_json's), so float() converts each.
    return np.fromiter(chain.from_iterable(value), np.float64, 3 * len(value)).reshape(-1, 3)


def _json_name(kind: type) -> str:
    names = {bool: "true/false", type(None): "null", str: "a string", dict: "an object", list: "a list"}
    return names.get(kind, kind.__name__)
