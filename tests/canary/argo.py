"""What Argo Rollouts does with a ``web`` metric's answer, for the tests (Argo itself is Go).

* :func:`condition`: the subset of the expr language (github.com/expr-lang/expr) that conditions
  on a JSON ``result`` use: member access, string / number / bool / nil literals, == != < <= > >=,
  && || ! (and / or / not), parentheses. Anything else raises, so a template using more fails.
* :func:`measurement_phase`: Argo's ``EvaluateResult`` (utils/evaluate/evaluate.go): success only
  -> fail when not met; failure only -> success when not met; both -> inconclusive when neither.
* :func:`metric_phase`: ``assessMetricStatus`` (analysis/analysis.go) over a run of measurements:
  Failed past ``failureLimit``, Inconclusive past ``inconclusiveLimit``, Successful at ``count``.
* :func:`strict_schema`: a CRD's openAPIV3Schema with unknown fields refused, as
  ``kubectl apply --validate=strict`` does (fields under x-kubernetes-preserve-unknown-fields stay open).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

_TOKEN = re.compile(r"\s*(?:(\d+\.\d*|\d+)|(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')|(&&|\|\||==|!=|<=|>=|[<>!().])|([A-Za-z_]\w*))")


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise SyntaxError(f"cannot read {text[pos:]!r}")
        number, string, op, name = m.groups()
        if number:
            out.append(("num", number))
        elif string:
            out.append(("str", string[1:-1].encode().decode("unicode_escape")))
        elif op:
            out.append(("op", op))
        else:
            out.append(("name", name))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str, env: dict[str, Any]) -> None:
        self.tokens = _tokens(text)
        self.i = 0
        self.env = env

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (value is not None and token[1] != value):
            raise SyntaxError(f"expected {value!r}, got {token}")
        self.i += 1
        return token

    def parse(self) -> Any:
        value = self.or_()
        if self.peek() is not None:
            raise SyntaxError(f"unexpected {self.peek()}")
        return value

    def or_(self) -> Any:
        value = self.and_()
        while self.peek() in (("op", "||"), ("name", "or")):
            self.take()
            right = self.and_()
            value = bool(value) or bool(right)
        return value

    def and_(self) -> Any:
        value = self.compare()
        while self.peek() in (("op", "&&"), ("name", "and")):
            self.take()
            right = self.compare()
            value = bool(value) and bool(right)
        return value

    def compare(self) -> Any:
        left = self.unary()
        token = self.peek()
        if token and token[0] == "op" and token[1] in ("==", "!=", "<", "<=", ">", ">="):
            self.take()
            right = self.unary()
            op = token[1]
            if op == "==":
                return left == right
            if op == "!=":
                return left != right
            if not (isinstance(left, int | float) and isinstance(right, int | float)):
                raise TypeError(f"invalid operation: {left!r} {op} {right!r}")
            return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]
        return left

    def unary(self) -> Any:
        if self.peek() in (("op", "!"), ("name", "not")):
            self.take()
            value = self.unary()
            if not isinstance(value, bool):
                raise TypeError(f"invalid operation: ! {value!r}")
            return not value
        return self.primary()

    def primary(self) -> Any:
        kind, text = self.take()
        if kind == "num":
            value: Any = float(text) if "." in text else int(text)
        elif kind == "str":
            value = text
        elif (kind, text) == ("op", "("):
            value = self.or_()
            self.take(")")
        elif kind == "name" and text in ("true", "false", "nil"):
            value = {"true": True, "false": False, "nil": None}[text]
        elif kind == "name":
            if text not in self.env:
                raise NameError(f"unknown name {text}")
            value = self.env[text]
        else:
            raise SyntaxError(f"unexpected {text!r}")
        while self.peek() == ("op", "."):
            self.take(".")
            _, member = self.take()
            if not isinstance(value, dict) or member not in value:
                raise KeyError(f"no member {member!r} in {value!r}")
            value = value[member]
        return value


def condition(expression: str, result: Any) -> bool:
    value = _Parser(expression, {"result": result}).parse()
    if not isinstance(value, bool):
        raise TypeError(f"condition {expression!r} is {value!r}, not a boolean")
    return value


def measurement_phase(metric: dict[str, Any], result: Any) -> str:
    success = metric.get("successCondition", "")
    failure = metric.get("failureCondition", "")
    ok = condition(success, result) if success else False
    bad = condition(failure, result) if failure else False
    if not success and not failure:
        return "Successful"
    if success and not failure:
        bad = not ok
    if failure and not success:
        ok = not bad
    if bad:
        return "Failed"
    if not ok:
        return "Inconclusive"
    return "Successful"


def metric_phase(metric: dict[str, Any], phases: Sequence[str]) -> str:
    """The metric's phase after these measurements (Running while neither limit nor count is hit)."""
    failed = inconclusive = 0
    for n, phase in enumerate(phases, start=1):
        failed += phase == "Failed"
        inconclusive += phase == "Inconclusive"
        if failed > int(metric.get("failureLimit", 0)):
            return "Failed"
        if inconclusive > int(metric.get("inconclusiveLimit", 0)):
            return "Inconclusive"
        if n >= int(metric.get("count", 1)):
            return "Successful"
    return "Running"


def strict_schema(schema: Any) -> Any:
    """``schema`` with ``additionalProperties: false`` on every object that lists its properties."""
    if isinstance(schema, list):
        return [strict_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict_schema(v) for k, v in schema.items()}
    if "properties" in out and not out.get("x-kubernetes-preserve-unknown-fields") and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out
