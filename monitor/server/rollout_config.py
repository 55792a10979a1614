"""The ``canary:`` and ``automation:`` sections of cvmon.yaml (docs/canary.md).

::

    canary:
      alpha: 0.05               # false-fail rate of a verdict, however often it is polled
      min_predictions: 100      # per version, before a label-free metric may decide
      min_labels: 30            # per version, before a labelled metric may decide
      max_predictions: 50000    # per version: the first N since `since` are read (~25 µs each)
      gates:                    # metric: tolerated regression (null: reported, not gating)
        accuracy: 0.01          # absolute (1 point)
        error_rate: 0.005       # absolute
        latency_p95: 0.10       # relative (10 % slower)
        confidence: 0.10        # Kolmogorov-Smirnov distance of the confidence distributions
        class_mix: 0.05         # largest change of one class's share of predictions
        agreement: null         # disagreement on mirrored inputs (same input_hash)
        map: 0.02               # detection models
        precision: {dent: 0.02} # per class
        recall: {dent: 0.02}
      models:                   # per-model overrides of any key above
        shelf: {gates: {accuracy: 0.02}}

    automation:
      webhooks:
        - name: deployer
          url: https://deployer.example/hooks/cvmon
          secret: "..."         # or secret_env: CVMON_WEBHOOK_SECRET (HMAC-SHA256 key, required)
          events: [canary.verdict, rollback.requested]   # default: every kind
          models: [shelf]       # default: every model
          timeout_seconds: 5
      max_attempts: 8           # then the delivery is marked failed
      retry_backoff_seconds: 10 # first retry after this, doubled each attempt, at most 1 h
      drift_windows: 3          # drift flagged in this many consecutive 1h windows: drift.persistent
      retraining_drop: 0.02     # ... with accuracy (realised or estimated) down this much: retraining.requested

Pure: no I/O (``Settings.load`` calls the loaders).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final
from urllib.parse import urlsplit

from monitor.errors import ConfigError

#: Metrics a canary can report, with what a regression is: ``lower`` (a lower value is worse) or
#: ``higher``, and whether the metric needs labels.
METRICS: Final[Mapping[str, tuple[str, bool]]] = {
    "accuracy": ("lower", True),
    "precision": ("lower", True),
    "recall": ("lower", True),
    "map": ("lower", True),
    "error_rate": ("higher", False),
    "latency_p95": ("higher", False),
    "confidence": ("higher", False),
    "class_mix": ("higher", False),
    "agreement": ("lower", False),
}
PER_CLASS: Final = ("precision", "recall")
DEFAULT_GATES: Final[Mapping[str, float | None]] = {
    "accuracy": 0.01, "map": 0.02, "error_rate": 0.005, "latency_p95": 0.10, "confidence": 0.10,
    "class_mix": 0.05, "agreement": None,
}  # fmt: skip
_CANARY_KEYS: Final = ("alpha", "min_predictions", "min_labels", "max_predictions", "gates", "models")

#: Event kinds an automation webhook receives (docs/canary.md, "Automation webhooks").
EVENT_KINDS: Final = (
    "slo.page", "slo.ticket", "drift.persistent", "canary.verdict", "rollback.requested",
    "retraining.requested", "labelling.ready", "report.ready",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class CanaryPolicy:
    """The canary settings of one model."""

    alpha: float = 0.05
    min_predictions: int = 100
    min_labels: int = 30
    max_predictions: int = 50_000
    #: metric (``precision:dent`` for a class) -> tolerated regression, None: reported only
    gates: Mapping[str, float | None] = field(default_factory=lambda: dict(DEFAULT_GATES))


@dataclass(frozen=True, slots=True)
class CanaryConfig:
    default: CanaryPolicy = field(default_factory=CanaryPolicy)
    models: Mapping[str, CanaryPolicy] = field(default_factory=dict)

    def policy(self, model: str) -> CanaryPolicy:
        return self.models.get(model, self.default)


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    name: str
    url: str
    secret: str = field(repr=False)
    #: event kinds it takes (empty: all)
    events: tuple[str, ...] = ()
    #: models it takes (empty: all)
    models: tuple[str, ...] = ()
    timeout_seconds: float = 5.0

    def takes(self, model: str, kind: str) -> bool:
        return (not self.events or kind in self.events) and (not self.models or model in self.models)


@dataclass(frozen=True, slots=True)
class AutomationConfig:
    webhooks: tuple[WebhookEndpoint, ...] = ()
    max_attempts: int = 8
    retry_backoff_seconds: float = 10.0
    max_backoff_seconds: float = 3600.0
    drift_windows: int = 3
    retraining_drop: float = 0.02


# --------------------------------------------------------------------------------------------
# loading


def load_canary(section: Any, *, source: str | None = None) -> CanaryConfig:
    """The ``canary:`` mapping (or None)."""
    if section is None:
        return CanaryConfig()
    base = _policy(section, CanaryPolicy(), "canary", source, allow_models=True)
    models = section.get("models") or {}
    if not isinstance(models, Mapping):
        raise ConfigError("canary.models must map model names to settings", source=source)
    return CanaryConfig(base, {str(m): _policy(v, base, f"canary.models.{m}", source) for m, v in models.items()})


def _policy(section: Any, base: CanaryPolicy, where: str, source: str | None, allow_models: bool = False) -> CanaryPolicy:
    if not isinstance(section, Mapping):
        raise ConfigError(f"{where} must be a mapping", source=source)
    keys = _CANARY_KEYS if allow_models else _CANARY_KEYS[:-1]
    unknown = sorted(set(section) - set(keys))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; keys: {', '.join(keys)}", source=source)
    policy = base
    if "alpha" in section:
        alpha = _number(section["alpha"], f"{where}.alpha", source)
        if not 0 < alpha <= 0.5:
            raise ConfigError(f"{where}.alpha must be in (0, 0.5], got {alpha}", source=source)
        policy = replace(policy, alpha=alpha)
    for key in ("min_predictions", "min_labels", "max_predictions"):
        if key in section:
            value = _number(section[key], f"{where}.{key}", source)
            if value != int(value) or value < 1:
                raise ConfigError(f"{where}.{key} must be a whole number >= 1, got {section[key]!r}", source=source)
            changes: dict[str, Any] = {key: int(value)}
            policy = replace(policy, **changes)
    if policy.max_predictions < policy.min_predictions:
        raise ConfigError(f"{where}.max_predictions must be at least min_predictions", source=source)
    if "gates" in section:
        policy = replace(policy, gates={**policy.gates, **_gates(section["gates"], f"{where}.gates", source)})
    return policy


def _gates(section: Any, where: str, source: str | None) -> dict[str, float | None]:
    if not isinstance(section, Mapping):
        raise ConfigError(f"{where} must map metrics to a tolerated regression (or null)", source=source)
    out: dict[str, float | None] = {}
    for metric, value in section.items():
        if metric not in METRICS:
            raise ConfigError(f"{where}: unknown metric {metric!r}; metrics: {', '.join(METRICS)}", source=source)
        if metric in PER_CLASS:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}.{metric} must map class names to a tolerated regression, e.g. {{dent: 0.02}}", source=source)
            for cls, tol in value.items():
                out[f"{metric}:{cls}"] = _tolerance(tol, f"{where}.{metric}.{cls}", source)
        else:
            out[metric] = _tolerance(value, f"{where}.{metric}", source)
    return out


def _tolerance(value: Any, where: str, source: str | None) -> float | None:
    if value is None:
        return None
    number = _number(value, where, source)
    if number < 0:
        raise ConfigError(f"{where} is a tolerated regression and must be >= 0 (or null: not gating), got {value!r}", source=source)
    return number


def _number(value: Any, where: str, source: str | None) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{where} must be a number, got {value!r}", source=source)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} must be a number, got {value!r}", source=source) from None


_AUTOMATION_KEYS: Final = ("webhooks", "max_attempts", "retry_backoff_seconds", "drift_windows", "retraining_drop")
_WEBHOOK_KEYS: Final = ("name", "url", "secret", "secret_env", "events", "models", "timeout_seconds")


def load_automation(section: Any, environ: Mapping[str, str] | None = None, *, source: str | None = None) -> AutomationConfig:
    """The ``automation:`` mapping (or None). A webhook's secret is ``secret`` or the variable named
    by ``secret_env``; one without a secret is refused (an unsigned webhook can be forged)."""
    env = os.environ if environ is None else environ
    if section is None:
        return AutomationConfig()
    if not isinstance(section, Mapping):
        raise ConfigError("automation must be a mapping", source=source)
    unknown = sorted(set(section) - set(_AUTOMATION_KEYS))
    if unknown:
        raise ConfigError(f"automation: unknown key {unknown[0]!r}; keys: {', '.join(_AUTOMATION_KEYS)}", source=source)
    config = AutomationConfig()
    for key in ("max_attempts", "drift_windows"):
        if key in section:
            value = _number(section[key], f"automation.{key}", source)
            if value != int(value) or value < 1:
                raise ConfigError(f"automation.{key} must be a whole number >= 1", source=source)
            whole: dict[str, Any] = {key: int(value)}
            config = replace(config, **whole)
    for key in ("retry_backoff_seconds", "retraining_drop"):
        if key in section:
            value = _number(section[key], f"automation.{key}", source)
            if value <= 0:
                raise ConfigError(f"automation.{key} must be positive", source=source)
            number: dict[str, Any] = {key: value}
            config = replace(config, **number)
    hooks = section.get("webhooks") or []
    if not isinstance(hooks, list):
        raise ConfigError("automation.webhooks must be a list of {name, url, secret}", source=source)
    endpoints = tuple(_endpoint(h, i, env, source) for i, h in enumerate(hooks))
    names = [e.name for e in endpoints]
    if len(set(names)) != len(names):
        raise ConfigError("automation.webhooks: two webhooks have the same name", source=source)
    return replace(config, webhooks=endpoints)


def _endpoint(hook: Any, index: int, env: Mapping[str, str], source: str | None) -> WebhookEndpoint:
    where = f"automation.webhooks[{index}]"
    if not isinstance(hook, Mapping):
        raise ConfigError(f"{where} must be a mapping with name, url and secret", source=source)
    unknown = sorted(set(hook) - set(_WEBHOOK_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; keys: {', '.join(_WEBHOOK_KEYS)}", source=source)
    name = str(hook.get("name") or "")
    if not name or len(name) > 64 or not all(c.isalnum() or c in "-_." for c in name):
        raise ConfigError(f"{where}.name must be 1-64 letters, digits, '-', '_' or '.'", source=source)
    url = str(hook.get("url") or "")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{where}.url must be an http:// or https:// URL, not {url!r}", source=source)
    secret = hook.get("secret")
    if secret is None and hook.get("secret_env"):
        secret = env.get(str(hook["secret_env"]))
        if not secret:
            raise ConfigError(f"{where}.secret_env names {hook['secret_env']}, which is not set", source=source)
    if not secret or len(str(secret)) < 16:
        raise ConfigError(f"{where} needs a secret of at least 16 characters (secret or secret_env): deliveries are signed with it", source=source)
    events = tuple(str(e) for e in (hook.get("events") or ()))
    for kind in events:
        if kind not in EVENT_KINDS:
            raise ConfigError(f"{where}.events: unknown event {kind!r}; events: {', '.join(EVENT_KINDS)}", source=source)
    models = tuple(str(m) for m in (hook.get("models") or ()))
    timeout = _number(hook.get("timeout_seconds", 5.0), f"{where}.timeout_seconds", source)
    if not 0 < timeout <= 60:
        raise ConfigError(f"{where}.timeout_seconds must be in (0, 60]", source=source)
    return WebhookEndpoint(name, url, str(secret), events, models, timeout)
