"""A small PromQL reader for the monitoring-file tests: which series selectors an expression
uses (metric names and the labels they match on). Not a parser: it tokenizes, then tells
metric names from function names, aggregation operators, keywords and label lists by their
neighbours, which is enough for the expressions of dashboards and alert rules. Grafana's
``$variables`` are dropped; strings are kept apart so a regex like ``"([1-5]).."`` or a
replacement like ``"${1}xx"`` is never read as code."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Keywords and operators that look like identifiers. (Functions and aggregations are told by
# the "(" or the "by"/"without" that follows them, so no list of them is needed.)
KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"})
LABEL_LIST_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})

_TOKEN = re.compile(
    r"""
      (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    | (?P<comment>\#[^\n]*)
    | (?P<variable>\$\{[^}]*\}|\$\w+)
    | (?P<range>\[[^\]]*\])
    | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?:ms|[smhdwy])*)
    | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
    | (?P<matcher>=~|!~|!=|==|=|<=|>=|<|>)
    | (?P<punct>[(){},+\-*/%^@])
    | (?P<space>\s+)
    """,
    re.VERBOSE,
)


class PromQLSyntaxError(ValueError):
    pass


@dataclass
class Selector:
    name: str
    labels: set[str] = field(default_factory=set)  # the label names it matches on


def _tokens(expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if match is None:
            raise PromQLSyntaxError(f"cannot read {expr[pos : pos + 20]!r} in {expr!r}")
        kind = match.lastgroup or ""
        if kind not in ("space", "comment", "variable", "range"):  # a range or subquery: [5m], [10m:1m]
            out.append((kind, match.group()))
        pos = match.end()
    return out


def _matcher_block(tokens: list[tuple[str, str]], start: int) -> tuple[int, dict[str, str | None]]:
    """The labels of ``{...}`` starting at ``tokens[start]``; returns the index after ``}``
    and label -> matched string (None for a non-equality matcher)."""
    labels: dict[str, str | None] = {}
    index = start + 1
    while index < len(tokens) and tokens[index] != ("punct", "}"):
        kind, text = tokens[index]
        if kind == "ident":
            if index + 2 >= len(tokens) or tokens[index + 1][0] != "matcher" or tokens[index + 2][0] != "string":
                raise PromQLSyntaxError(f"bad label matcher at {text!r}")
            op, value = tokens[index + 1][1], tokens[index + 2][1][1:-1]
            labels[text] = value if op == "=" else None
            index += 3
        elif (kind, text) == ("punct", ","):
            index += 1
        else:
            raise PromQLSyntaxError(f"unexpected {text!r} in a label matcher")
    if index >= len(tokens):
        raise PromQLSyntaxError("unclosed {")
    return index + 1, labels


def selectors(expr: str) -> list[Selector]:
    """Every series selector in ``expr``, in order."""
    tokens = _tokens(expr)
    found: list[Selector] = []
    index = 0
    while index < len(tokens):
        kind, text = tokens[index]
        following = tokens[index + 1] if index + 1 < len(tokens) else ("", "")
        if kind == "ident" and text in LABEL_LIST_KEYWORDS:
            index += 1
            if following == ("punct", "("):  # a label list: skip to its ")"
                while index < len(tokens) and tokens[index] != ("punct", ")"):
                    index += 1
                index += 1
            continue
        if kind == "ident" and (following == ("punct", "(") or following[1] in ("by", "without")):
            index += 1  # a function or an aggregation
            continue
        if kind == "ident" and text in KEYWORDS:
            index += 1
            continue
        if kind == "ident":
            selector = Selector(text)
            index += 1
            if following == ("punct", "{"):
                index, labels = _matcher_block(tokens, index)
                selector.labels = set(labels)
            found.append(selector)
            continue
        if (kind, text) == ("punct", "{"):  # {__name__="..."}
            index, labels = _matcher_block(tokens, index)
            name = labels.pop("__name__", None)
            if not name:
                raise PromQLSyntaxError(f"a selector without a metric name in {expr!r}")
            found.append(Selector(name, set(labels)))
            continue
        index += 1
    return found


def metric_names(expr: str) -> set[str]:
    return {selector.name for selector in selectors(expr)}
