"""Small PromQL helpers for checking generated queries against the names table.

Not a parser: promtool parses (tests/grafana writes every dashboard query into a rules file and
runs ``promtool check rules``). This finds the series names an expression reads, which is all the
names-table check needs, and expands Grafana's template variables into plain PromQL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_COMMENT = re.compile(r"#[^\n]*")
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_TOKEN = re.compile(
    r"(?P<duration>\d+(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)(?![A-Za-z0-9_:])"
    r"|(?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)"
)
_KEYWORDS: Final = frozenset(
    {
        "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
        "offset", "inf", "nan", "atan2",
    }
)  # fmt: skip

#: Values Grafana variables are replaced by before a query is checked.
DEFAULT_VARIABLES: Final[Mapping[str, str]] = {
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "1d",
    "model": ".*",
    "version": ".*",
    "slo": ".*",
    "class": ".*",
    "window": "1h",
}


def referenced_series(expr: str) -> frozenset[str]:
    """The series (metric) names ``expr`` selects: identifiers that are not functions, keywords,
    label names, durations or numbers. ``{__name__=...}`` selectors are refused (a name hidden in
    a matcher would escape the names-table check)."""
    if "__name__" in expr:
        raise ValueError(f"select series by name, not with __name__: {expr}")
    text = _STRING.sub('""', expr)
    text = _COMMENT.sub("", text)
    text = _BRACES.sub("{}", text)
    text = _BRACKETS.sub("[]", text)
    text = _GROUPING.sub(" ", text)  # `sum by (a) (x)` -> `sum   (x)`: sum stays a function
    names = set()
    for match in _TOKEN.finditer(text):
        ident = match.group("ident")
        if ident is None or ident.lower() in _KEYWORDS:
            continue
        rest = text[match.end() :].lstrip()
        if rest.startswith("("):
            continue  # a function or an aggregation
        names.add(ident)
    return frozenset(names)


_VARIABLE = re.compile(r"\$\{([A-Za-z0-9_]+)(?::[a-z]+)?\}|\$([A-Za-z0-9_]+)")


def expand_variables(expr: str, values: Mapping[str, str] = DEFAULT_VARIABLES) -> str:
    """``expr`` with Grafana's ``$name`` / ``${name}`` variables replaced from ``values``.

    An unknown variable raises KeyError, so a dashboard cannot use a variable it does not define
    without a test noticing.
    """

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"unknown Grafana variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(replace, expr)
