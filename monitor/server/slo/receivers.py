"""The built-in notifier's settings: the ``notifier:`` key of cvmon.yaml and ``CVMON_NOTIFIER_*``.

::

    notifier:
      page:                               # where page alerts go (Alertmanager webhook format)
        url: https://pager.example/hooks/cvmon
        timeout_seconds: 5                # per attempt (default 5)
        headers: {Authorization: "Bearer ..."}   # optional, sent with every request
      ticket:
        url: https://tickets.example/hooks/cvmon
      repeat_interval: 4h                 # send a still-firing incident again this often (default: never)
      send_resolved: true                 # send a resolved notification when it stops (default true)
      retries: 2                          # extra attempts within one run on network errors / 5xx
      retry_backoff_seconds: 1            # first pause between attempts, doubled each time
      external_url: https://cvmon.example # links in the payload (externalURL, generatorURL)

``CVMON_NOTIFIER_PAGE_URL`` and ``CVMON_NOTIFIER_TICKET_URL`` set or override the two URLs (so a
URL holding a token need not sit in the file); either alone turns the notifier on. A severity
without a receiver is not notified. Errors name the file and line, as for the SLOs. Whether alerts
are decided per model version is the SLO's ``per_version`` (``slo_alerting``), which the rendered
rules follow too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final
from urllib.parse import urlsplit

from monitor.errors import ConfigError
from monitor.server.slo.burnrate import Severity
from monitor.server.slo.spec import _Reader

_NOTIFIER_KEYS: Final = (
    "page", "ticket", "repeat_interval", "send_resolved", "retries", "retry_backoff_seconds", "external_url",
)  # fmt: skip
_RECEIVER_KEYS: Final = ("url", "timeout_seconds", "headers")
ENV_URLS: Final = {"page": "CVMON_NOTIFIER_PAGE_URL", "ticket": "CVMON_NOTIFIER_TICKET_URL"}
_MAX_RETRIES: Final = 10


@dataclass(frozen=True, slots=True)
class Receiver:
    """A webhook that takes Alertmanager-format notifications."""

    #: ``page`` or ``ticket``: the severity it receives (also the payload's ``receiver``).
    name: Severity
    url: str
    timeout_seconds: float = 5.0
    #: Extra request headers (e.g. Authorization); kept out of reprs and logs.
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)


@dataclass(frozen=True, slots=True)
class NotifierConfig:
    """Validated ``notifier:`` settings."""

    page: Receiver | None = None
    ticket: Receiver | None = None
    #: Send a firing notification again after this many seconds while it fires (None: never).
    repeat_interval_s: int | None = None
    send_resolved: bool = True
    retries: int = 2
    retry_backoff_seconds: float = 1.0
    external_url: str = ""

    def receiver(self, severity: str) -> Receiver | None:
        """The receiver of a severity, or None when that severity is not notified."""
        return self.page if severity == "page" else self.ticket if severity == "ticket" else None


def _check_url(url: str, where: str, source: str | None, line: int | None) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{where} must be an http:// or https:// URL, not {url!r}", source=source, line=line)
    return url


def load_notifier(text: str, source: str = "cvmon.yaml") -> NotifierConfig | None:
    """The ``notifier`` key of a cvmon.yaml document, validated; None when it has none."""
    import yaml

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is None:
        return None
    reader = _Reader(source)
    top = reader.mapping(root, "the top level of the file", allowed=None)
    if "notifier" not in top:
        return None
    node = top["notifier"][1]
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
        return NotifierConfig()
    if isinstance(node, yaml.MappingNode):
        for key_node, _ in node.value:
            if key_node.value == "group_by_version":
                raise reader.error(
                    key_node,
                    "notifier.group_by_version moved to slo_alerting.per_version (or an SLO's "
                    "alerting.per_version), so the rendered Prometheus rules decide the same way",
                )
    keys = reader.mapping(node, "notifier", allowed=_NOTIFIER_KEYS)
    values: dict[str, Any] = {}
    severity: Severity
    for severity in ("page", "ticket"):
        if severity in keys:
            values[severity] = _receiver(reader, severity, keys[severity][1])
    if "repeat_interval" in keys:
        seconds = reader.duration(keys["repeat_interval"][1], "notifier.repeat_interval")
        if seconds < 60:
            raise reader.error(keys["repeat_interval"][1], "notifier.repeat_interval must be at least 1m")
        values["repeat_interval_s"] = seconds
    if "send_resolved" in keys:
        values["send_resolved"] = reader.boolean(keys["send_resolved"][1], "notifier.send_resolved")
    if "retries" in keys:
        values["retries"] = reader.count(keys["retries"][1], "notifier.retries")
        if values["retries"] > _MAX_RETRIES:
            raise reader.error(keys["retries"][1], f"notifier.retries must be at most {_MAX_RETRIES}")
    if "retry_backoff_seconds" in keys:
        backoff = reader.number(keys["retry_backoff_seconds"][1], "notifier.retry_backoff_seconds")
        if not 0 <= backoff <= 60:
            raise reader.error(keys["retry_backoff_seconds"][1], "notifier.retry_backoff_seconds must be in [0, 60]")
        values["retry_backoff_seconds"] = backoff
    if "external_url" in keys:
        url_node = keys["external_url"][1]
        values["external_url"] = _check_url(
            reader.text(url_node, "notifier.external_url"),
            "notifier.external_url",
            source,
            url_node.start_mark.line + 1,
        )
    return NotifierConfig(**values)


def _receiver(reader: _Reader, severity: Severity, node: Any) -> Receiver:
    where = f"notifier.{severity}"
    keys = reader.mapping(node, where, allowed=_RECEIVER_KEYS)
    if "url" not in keys:
        raise reader.error(node, f"{where} needs url: the webhook to POST {severity} notifications to")
    url_node = keys["url"][1]
    url = _check_url(reader.text(url_node, f"{where}.url"), f"{where}.url", reader.source, url_node.start_mark.line + 1)
    timeout = 5.0
    if "timeout_seconds" in keys:
        timeout = reader.number(keys["timeout_seconds"][1], f"{where}.timeout_seconds")
        if not 0 < timeout <= 120:
            raise reader.error(keys["timeout_seconds"][1], f"{where}.timeout_seconds must be in (0, 120]")
    headers: list[tuple[str, str]] = []
    if "headers" in keys:
        for name, (_, value_node) in reader.mapping(keys["headers"][1], f"{where}.headers", allowed=None).items():
            headers.append((name, reader.text(value_node, f"{where}.headers.{name}", numbers_ok=True)))
    return Receiver(severity, url, timeout, tuple(headers))


def with_env(config: NotifierConfig | None, env: Mapping[str, str]) -> NotifierConfig | None:
    """``config`` with the receiver URLs of ``CVMON_NOTIFIER_PAGE_URL`` / ``_TICKET_URL`` applied."""
    for severity, name in ENV_URLS.items():
        url = env.get(name, "").strip()
        if not url:
            continue
        _check_url(url, name, None, None)
        config = config or NotifierConfig()
        current = config.receiver(severity)
        receiver = Receiver(severity, url) if current is None else replace(current, url=url)  # type: ignore[arg-type]
        config = replace(config, page=receiver) if severity == "page" else replace(config, ticket=receiver)
    return config
