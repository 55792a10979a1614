"""The ``samples:`` section of cvmon.yaml: where sample images go, how they are protected, for how long.

::

    samples:
      models:                     # opt-in: only these models may store samples ("*": every model)
        "*": {faces: mask, plates: mask}
        shelf: {faces: keep, plates: drop, retention: 7d}
      store: ./cvmon-samples      # CVMON_SAMPLES_STORE  a directory, file:///path or s3://bucket/prefix
      store_options:              # S3: endpoint, region, access_key_id, secret_access_key, allow_http, ...
        endpoint: http://minio:9000
      keys: {k2: "<base64 of 32 bytes>", k1: "..."}   # CVMON_SAMPLES_KEYS="k2:<base64>,k1:<base64>"
      key_file: /etc/cvmon/sample-keys                 # CVMON_SAMPLES_KEY_FILE: lines "<id> <base64>"
      active_key: k2              # CVMON_SAMPLES_ACTIVE_KEY  new samples are sealed with it (default: the first)
      mask: pixelate              # pixelate | blur
      retention: 30d              # CVMON_SAMPLES_RETENTION  default of every model
      audit_retention: 400d       # the access log
      max_bytes: 1048576          # per image, as received
      max_side: 2048              # pixels, longest side

``faces`` / ``plates``: ``mask`` blurs or pixelates what OpenCV's Haar cascades find before the
bytes are stored; ``drop`` stores no image where one is found; ``keep`` stores it as it is (its
views count as PII exposures). ``CVMON_SAMPLES_MODELS=digits,shelf`` opts models in with the
defaults (mask, mask). Pure: no I/O (the key file is read by the samples service).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from monitor.errors import ConfigError

PRIVACY_MODES: Final = ("mask", "drop", "keep")
MASK_METHODS: Final = ("pixelate", "blur")
_KEYS: Final = (
    "models", "store", "store_options", "keys", "key_file", "active_key", "mask", "retention", "audit_retention",
    "max_bytes", "max_side",
)  # fmt: skip
_MODEL_KEYS: Final = ("faces", "plates", "retention")
_DAY: Final = 86400
KEY_BYTES: Final = 32


@dataclass(frozen=True, slots=True)
class ModelSamplePolicy:
    """How one model's samples are protected and kept."""

    faces: str = "mask"
    plates: str = "mask"
    #: seconds; None: forever
    retention: int | None = 30 * _DAY

    @property
    def exposes(self) -> bool:
        """Whether a stored image may show a face or a plate unmasked (``keep``): its views are
        PII exposures."""
        return "keep" in (self.faces, self.plates)


@dataclass(frozen=True)
class SampleSettings:
    """The samples feature; ``enabled`` once a model opts in."""

    models: Mapping[str, ModelSamplePolicy] = field(default_factory=dict)
    store: str = "./cvmon-samples"
    store_options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    #: key id -> 32-byte AES-256 key, in the order given (the first is active unless ``active_key``)
    keys: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    key_file: str | None = None
    active_key: str | None = None
    mask: str = "pixelate"
    audit_retention: int | None = 400 * _DAY
    max_bytes: int = 1024 * 1024
    max_side: int = 2048

    @property
    def enabled(self) -> bool:
        return bool(self.models)

    def policy(self, model: str) -> ModelSamplePolicy | None:
        """The model's policy; None when it has not opted in."""
        return self.models.get(model) or self.models.get("*")


def parse_keys(text: str, *, source: str | None) -> dict[str, bytes]:
    """``id:base64,id:base64`` (the environment) or ``id base64`` lines (a key file)."""
    keys: dict[str, bytes] = {}
    for part in text.replace(",", "\n").splitlines():
        part = part.strip()
        if not part or part.startswith("#"):
            continue
        key_id, _, value = part.replace(":", " ", 1).partition(" ")
        keys[_key_id(key_id.strip(), source)] = _key(value.strip(), key_id, source)
    return keys


def _key_id(key_id: str, source: str | None) -> str:
    if not key_id or len(key_id) > 32 or not all(c.isalnum() or c in "-_." for c in key_id):
        raise ConfigError(f"samples: key id {key_id[:40]!r} must be 1 to 32 letters, digits, '-', '_' or '.'", source=source)
    return key_id


def _key(value: str, key_id: str, source: str | None) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != KEY_BYTES:
        raise ConfigError(
            f"samples: key {key_id!r} must be {KEY_BYTES} bytes in base64 (make one with `cvmon samples keygen`)", source=source
        )
    return raw


def load_sample_settings(section: Any, environ: Mapping[str, str], *, source: str | None = None) -> SampleSettings:
    """The ``samples:`` mapping of cvmon.yaml (or None) with ``CVMON_SAMPLES_*`` variables on top."""
    from monitor.server.settings import parse_window

    if section is None:
        section = {}
    if not isinstance(section, Mapping):
        raise ConfigError("samples must be a mapping (models, store, keys, ...)", source=source)
    unknown = sorted(str(k) for k in set(section) - set(_KEYS))
    if unknown:
        raise ConfigError(f"samples: unknown key {unknown[0]!r}; keys: {', '.join(_KEYS)}", source=source)

    def duration(value: Any, name: str, where: str | None) -> int | None:
        if value is None or str(value).strip().lower() in ("forever", "off", "none", "never"):
            return None
        try:
            return parse_window(str(value).strip())
        except ConfigError:
            raise ConfigError(f"samples.{name}: {value!r} must look like 7d, 30d or 52w (or forever)", source=where) from None

    env_retention = environ.get("CVMON_SAMPLES_RETENTION", "")
    default_retention = (
        duration(env_retention, "retention", "CVMON_SAMPLES_RETENTION") if env_retention
        else duration(section.get("retention", "30d"), "retention", source)
    )  # fmt: skip
    mask = str(section.get("mask", "pixelate"))
    if mask not in MASK_METHODS:
        raise ConfigError(f"samples.mask must be one of {', '.join(MASK_METHODS)}, not {mask!r}", source=source)
    models = _models(section.get("models"), default_retention, duration, source)
    if environ.get("CVMON_SAMPLES_MODELS", ""):
        for name in environ["CVMON_SAMPLES_MODELS"].split(","):
            if name.strip():
                models.setdefault(name.strip(), ModelSamplePolicy(retention=default_retention))
    keys: dict[str, bytes] = {}
    if section.get("keys") is not None:
        raw = section["keys"]
        if not isinstance(raw, Mapping):
            raise ConfigError("samples.keys must map key ids to base64 keys", source=source)
        keys = {_key_id(str(k), source): _key(str(v), str(k), source) for k, v in raw.items()}
    if environ.get("CVMON_SAMPLES_KEYS", ""):
        keys = parse_keys(environ["CVMON_SAMPLES_KEYS"], source="CVMON_SAMPLES_KEYS")
    key_file = environ.get("CVMON_SAMPLES_KEY_FILE") or section.get("key_file")
    active = environ.get("CVMON_SAMPLES_ACTIVE_KEY") or section.get("active_key")
    if active is not None and keys and not key_file and str(active) not in keys:
        raise ConfigError(f"samples.active_key {active!r} is not among samples.keys ({', '.join(keys)})", source=source)
    if models and not keys and not key_file:
        raise ConfigError(
            "samples are enabled but no encryption key is configured: set samples.keys or samples.key_file "
            "(CVMON_SAMPLES_KEYS / CVMON_SAMPLES_KEY_FILE); `cvmon samples keygen` makes a key",
            source=source,
        )
    options = section.get("store_options") or {}
    if not isinstance(options, Mapping):
        raise ConfigError("samples.store_options must be a mapping (endpoint, region, ...)", source=source)
    max_bytes, max_side = _positive(section, "max_bytes", 1024 * 1024, source), _positive(section, "max_side", 2048, source)
    return SampleSettings(
        models=models, store=str(environ.get("CVMON_SAMPLES_STORE") or section.get("store") or "./cvmon-samples"),
        store_options=dict(options), keys=keys, key_file=str(key_file) if key_file else None,
        active_key=str(active) if active is not None else None, mask=mask,
        audit_retention=duration(section.get("audit_retention", "400d"), "audit_retention", source),
        max_bytes=max_bytes, max_side=max_side,
    )  # fmt: skip


def _models(raw: Any, default_retention: int | None, duration: Any, source: str | None) -> dict[str, ModelSamplePolicy]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError('samples.models must map model names (or "*") to {faces, plates, retention}', source=source)
    out: dict[str, ModelSamplePolicy] = {}
    for name, entry in raw.items():
        entry = entry or {}
        if not isinstance(entry, Mapping):
            raise ConfigError(f"samples.models.{name} must be a mapping of faces / plates / retention", source=source)
        bad = sorted(str(k) for k in set(entry) - set(_MODEL_KEYS))
        if bad:
            raise ConfigError(f"samples.models.{name}: unknown key {bad[0]!r}; keys: {', '.join(_MODEL_KEYS)}", source=source)
        modes = {}
        for kind in ("faces", "plates"):
            mode = str(entry.get(kind, "mask"))
            if mode not in PRIVACY_MODES:
                raise ConfigError(f"samples.models.{name}.{kind} must be mask, drop or keep, not {mode!r}", source=source)
            modes[kind] = mode
        retention = duration(entry["retention"], f"models.{name}.retention", source) if "retention" in entry else default_retention
        out[str(name)] = ModelSamplePolicy(modes["faces"], modes["plates"], retention)
    return out


def _positive(section: Mapping[str, Any], name: str, default: int, source: str | None) -> int:
    value = section.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"samples.{name} must be a positive whole number, not {value!r}", source=source)
    return value
