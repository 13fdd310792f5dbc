"""Papermill parameters written as Rust, for ferrocell notebooks.

Papermill runs a notebook with new parameters by adding a cell (tagged
`injected-parameters`) right after the cell tagged `parameters`, written in the
notebook's language by a *translator*. For ferrocell that language is Rust: each
parameter becomes a `let` binding, which ferrocell keeps as a session variable for
every later cell, shadowing the default of the same name.

Every value is written with the Rust type of the value itself, so later cells see
the same types in a run with parameters as in a run with the defaults as long as
the parameters cell writes its defaults the same way:

==========  =================================================  ====================
Python      Rust                                               type
==========  =================================================  ====================
``4``       ``4`` (a value outside i32: ``3000000000_i64``)    i32, else the first
                                                               of i64, u64, i128,
                                                               u128 that holds it
``0.5``     ``0.5``, ``3.0``, ``1e-9``, ``f64::INFINITY``,     f64
            ``f64::NEG_INFINITY``, ``f64::NAN``
``True``    ``true``                                           bool
``"a"``     ``String::from("a")``                              String
``[1, 2]``  ``vec![1, 2]``                                     Vec<T>
``{k: v}``  ``std::collections::BTreeMap::from([(k, v)])``     BTreeMap<K, V>
``None``    ``None``                                           Option<T>
==========  =================================================  ====================

Decisions, and why:

* Text is an owned ``String``, never ``&str``: both live on as session variables,
  but ferrocell cannot restore a ``&'static str`` from its snapshot after the
  runner restarts. Literals use ``"..."`` with escapes (``\\\\ \\" \\n \\r \\t \\0``
  and ``\\u{..}`` for every character that is not printable, bidirectional controls
  included, which rustc refuses to see unescaped), so quotes, backslashes, ``"#``,
  newlines and any Unicode text come through unchanged.
* A list has one element type. Integers and floats together become f64; ``None``
  among values of type T makes ``Option<T>`` (``vec![Some(1), None]``); nested lists
  and maps unify the same way. Any other mixture (text and numbers, say) has no
  Rust type and is refused with a RustTranslationError before the notebook runs.
* A dict is a ``BTreeMap``: its keys are sorted, so what a notebook prints is the
  same on every run (a ``HashMap`` would change its order from run to run). Keys
  may be text, integers, booleans; float keys are refused (f64 is not ``Ord``).
* ``None``, ``[]`` and ``{}`` say nothing about the type they stand for, so the
  binding takes its type from the parameter's default: ``let x = if false { x }
  else { None };`` turns a default ``let x: Option<f64> = Some(0.5);`` into a
  ``None`` that is still an ``Option<f64>``. Such a parameter therefore needs a
  default in the parameters cell (otherwise the cell fails with rustc's
  "cannot find value `x`").
* Names are Rust identifiers; keywords are written raw (``type`` becomes
  ``r#type``); any other name is refused.
* Values of other Python types are written as the text of ``str(value)``, as
  papermill's own translators do.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import reduce
from typing import Any

from papermill.exceptions import PapermillException
from papermill.models import Parameter
from papermill.translators import Translator, papermill_translators

KERNEL_NAME = "ferrocell"
LANGUAGE = "rust"


class RustTranslationError(PapermillException):
    """A parameter that has no Rust form: a mixed list, a float key, a bad name."""


# ---------------------------------------------------------------------------
# Rust types of Python values


@dataclass(frozen=True)
class _Int:
    """An integer type wide enough for every value in [low, high]."""

    low: int
    high: int


@dataclass(frozen=True)
class _Scalar:
    name: str  # "f64", "bool", "String", or "_" for a type nothing says anything about


@dataclass(frozen=True)
class _Option:
    inner: Any


@dataclass(frozen=True)
class _Vec:
    item: Any


@dataclass(frozen=True)
class _Map:
    key: Any
    value: Any


_F64, _BOOL, _STRING, _UNKNOWN = (_Scalar(n) for n in ("f64", "bool", "String", "_"))

_INT_KINDS = [
    ("i32", -(2**31), 2**31 - 1),
    ("i64", -(2**63), 2**63 - 1),
    ("u64", 0, 2**64 - 1),
    ("i128", -(2**127), 2**127 - 1),
    ("u128", 0, 2**128 - 1),
]


def _int_kind(t: _Int) -> str:
    for kind, low, high in _INT_KINDS:
        if low <= t.low and t.high <= high:
            return kind
    raise RustTranslationError(f"the integer {t.high if t.high > 2**127 else t.low} does not "
                               "fit any Rust integer type (i32 to u128)")


def _describe(t: Any) -> str:
    if isinstance(t, _Int):
        return _int_kind(t) if t.low >= -(2**127) and t.high < 2**128 else "integer"
    if isinstance(t, _Option):
        return f"Option<{_describe(t.inner)}>"
    if isinstance(t, _Vec):
        return f"Vec<{_describe(t.item)}>"
    if isinstance(t, _Map):
        return f"BTreeMap<{_describe(t.key)}, {_describe(t.value)}>"
    return t.name


def _inner(t: Any) -> Any:
    return t.inner if isinstance(t, _Option) else t


def _unify(a: Any, b: Any) -> Any:
    """The one Rust type that holds values of both types a and b."""
    if a == _UNKNOWN:
        return b
    if b == _UNKNOWN:
        return a
    if isinstance(a, _Option) or isinstance(b, _Option):
        return _Option(_unify(_inner(a), _inner(b)))
    if isinstance(a, _Int) and isinstance(b, _Int):
        return _Int(min(a.low, b.low), max(a.high, b.high))
    if {type(a), type(b)} == {_Int, _Scalar} and _F64 in (a, b):
        return _F64
    if isinstance(a, _Vec) and isinstance(b, _Vec):
        return _Vec(_unify(a.item, b.item))
    if isinstance(a, _Map) and isinstance(b, _Map):
        return _Map(_unify(a.key, b.key), _unify(a.value, b.value))
    if a == b:
        return a
    raise RustTranslationError(
        f"values of types {_describe(a)} and {_describe(b)} cannot share one Rust type: "
        "a list (or the keys or values of a dict) must hold values of one type")


def _type_of(value: Any) -> Any:
    if value is None:
        return _Option(_UNKNOWN)
    if isinstance(value, bool):
        return _BOOL
    if isinstance(value, int):
        return _Int(value, value)
    if isinstance(value, float):
        return _F64
    if isinstance(value, list):
        return _Vec(reduce(_unify, map(_type_of, value), _UNKNOWN))
    if isinstance(value, dict):
        key = reduce(_unify, map(_type_of, value), _UNKNOWN)
        if _inner(key) == _F64:
            raise RustTranslationError(
                f"dict keys of type {_describe(key)}: f64 cannot be a map key in Rust")
        return _Map(key, reduce(_unify, map(_type_of, value.values()), _UNKNOWN))
    return _STRING


def _complete(t: Any) -> bool:
    """Whether the type is known all through (no None, [] or {} standing alone)."""
    if isinstance(t, _Option):
        return _complete(t.inner)
    if isinstance(t, _Vec):
        return _complete(t.item)
    if isinstance(t, _Map):
        return _complete(t.key) and _complete(t.value)
    return t != _UNKNOWN


# ---------------------------------------------------------------------------
# Rust source


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0"}


def string_literal(text: str) -> str:
    """A Rust string literal `"..."` whose value is exactly `text`."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            raise RustTranslationError(
                f"the text {text!r} holds a lone surrogate, which a Rust string cannot")
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(f"\\u{{{ord(ch):x}}}")
    return '"' + "".join(out) + '"'


def float_literal(x: float) -> str:
    """An f64 expression for x: the shortest decimal that reads back as x, always
    with a `.` or an exponent so that rustc types it f64, or an f64 constant."""
    if math.isnan(x):
        return "f64::NAN"
    if math.isinf(x):
        return "f64::INFINITY" if x > 0 else "f64::NEG_INFINITY"
    mantissa, e, exponent = repr(x).partition("e")  # repr: '3.0', '1e-09', '1.5e+16'
    return f"{mantissa}e{int(exponent)}" if e else mantissa


def _expr(value: Any, t: Any) -> str:
    """The Rust expression for `value`, as a value of the (unified) type t."""
    if isinstance(t, _Option):
        return "None" if value is None else f"Some({_expr(value, t.inner)})"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)) and t == _F64:
        try:
            return float_literal(float(value))
        except OverflowError:
            raise RustTranslationError(f"{value} is too large for an f64") from None
    if isinstance(value, int):
        kind = _int_kind(t)
        return str(value) if kind == "i32" else f"{value}_{kind}"
    if isinstance(value, list):
        if not value:
            return "Vec::new()"
        return "vec![" + ", ".join(_expr(item, t.item) for item in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "std::collections::BTreeMap::new()"
        pairs = ", ".join(f"({_expr(k, t.key)}, {_expr(v, t.value)})" for k, v in value.items())
        return f"std::collections::BTreeMap::from([{pairs}])"
    return f"String::from({string_literal(value if isinstance(value, str) else str(value))})"


_KEYWORDS = frozenset(
    "as async await break const continue dyn else enum extern false fn for if impl in let "
    "loop match mod move mut pub ref return static struct trait true type unsafe use where "
    "while abstract become box do final gen macro override priv try typeof unsized virtual "
    "yield".split())
_NOT_RAW = frozenset({"crate", "self", "super", "Self", "_"})


def rust_name(name: str) -> str:
    """The parameter's name as a Rust identifier (`r#type` for the keyword type)."""
    if not isinstance(name, str) or not name.isidentifier() or name in _NOT_RAW:
        raise RustTranslationError(f"the parameter name {name!r} is not a Rust variable name")
    return f"r#{name}" if name in _KEYWORDS else name


# ---------------------------------------------------------------------------
# Reading the parameters cell (papermill --help-notebook, unknown-parameter warnings)

_LET = re.compile(
    r"^\s*let\s+(?:mut\s+)?(?P<name>(?:r#)?[^\W\d]\w*)\s*(?::\s*(?P<type>[^=]+?))?\s*"
    r"=\s*(?P<value>.+?)\s*;\s*(?://+\s*(?P<help>.*?))?\s*$")
_INT_LITERAL = re.compile(r"^-?\d[\d_]*(?:_?(?P<suffix>[iu](?:8|16|32|64|128|size)))?$")
_FLOAT_LITERAL = re.compile(r"^-?(?:\d[\d_]*\.\d*(?:[eE][+-]?\d+)?|\d[\d_]*[eE][+-]?\d+)(?:_?f64)?$"
                            r"|^f64::[A-Z_]+$")


def _type_of_default(value: str) -> str:
    """Best guess at the type of a default written without an annotation; papermill
    reads "None" as unknown."""
    if value in ("true", "false"):
        return "bool"
    if match := _INT_LITERAL.match(value):
        return match["suffix"] or "i32"
    if _FLOAT_LITERAL.match(value) or value.endswith("_f32"):
        return "f32" if value.endswith("f32") else "f64"
    if value.startswith(("String::", "format!")) or value.endswith((".to_string()", ".to_owned()")):
        return "String"
    if value.startswith('"') or value.startswith('r"') or value.startswith("r#"):
        return "&str"
    if value.startswith(("vec!", "Vec::")):
        return "Vec"
    return "None"


# ---------------------------------------------------------------------------


class RustTranslator(Translator):
    """Papermill's translator for ferrocell: parameters as Rust `let` bindings."""

    @classmethod
    def translate(cls, val: Any) -> str:
        """The Rust expression for one parameter value (module docstring: how)."""
        return _expr(val, _type_of(val))

    # Papermill's Translator interface names one method a type; all go through translate.
    translate_none = translate_int = translate_float = translate_bool = translate
    translate_str = translate_list = translate_dict = translate

    @classmethod
    def comment(cls, cmt_str: str) -> str:
        return "\n".join(f"// {line}".rstrip() for line in (cmt_str.splitlines() or [""]))

    @classmethod
    def assign(cls, name: str, str_val: str) -> str:
        return f"let {rust_name(name)} = {str_val};"

    @classmethod
    def binding(cls, name: str, value: Any) -> str:
        """The `let` statement for one parameter. A value whose type it does not show
        (None, [], {}) takes the type of the parameter's default in the session."""
        rust_type = _type_of(value)
        expr = _expr(value, rust_type)
        if _complete(rust_type):
            return cls.assign(name, expr)
        ident = rust_name(name)
        return (f"let {ident} = if false {{ {ident} }} else {{ {expr} }};"
                f" // typed like the default of {ident}")

    @classmethod
    def codify(cls, parameters: dict, comment: str = "Parameters") -> str:
        lines = [cls.comment(comment)]
        lines += [cls.binding(name, value) for name, value in parameters.items()]
        return "\n".join(lines) + "\n"

    @classmethod
    def inspect(cls, parameters_cell: Any) -> list[Parameter]:
        """The parameters a cell declares, one single-line `let` each:
        `let name[: Type] = default; // help`. Other lines are skipped."""
        params = []
        for line in parameters_cell.source.splitlines():
            match = _LET.match(line)
            if match is None:
                continue
            name = match["name"].removeprefix("r#")
            value = match["value"]
            rust_type = match["type"].strip() if match["type"] else _type_of_default(value)
            params.append(Parameter(name=name, inferred_type_name=rust_type, default=value,
                                    help=match["help"] or ""))
        return params


def register() -> None:
    """Make papermill use RustTranslator for the kernel ferrocell, and for the
    language rust unless another package already translates it."""
    papermill_translators.register(KERNEL_NAME, RustTranslator)
    try:
        papermill_translators.find_translator(None, LANGUAGE)
    except PapermillException:
        papermill_translators.register(LANGUAGE, RustTranslator)


register()
