"""``Client("mqtt://host:1883/<topic prefix>")``: batches published to an MQTT broker with QoS 1.

Each batch (the same gzip body as over HTTP) goes to ``<prefix>/predictions`` or
``<prefix>/ground-truth`` (prefix ``cvmon/ingest`` by default) and counts as delivered once the
broker acknowledges it (PUBACK). The broker keeps it for the persistent session of
``cvmon consume mqtt``, so start the consumer first: with MQTT 5 a broker says when no session
is subscribed (PUBACK "no matching subscribers"), and the batch is then kept in the spool and
retried instead of being lost; MQTT 3.1.1 has no way to tell.

URL forms: ``mqtt://host:1883``, ``mqtt://user:password@host``, ``mqtts://host:8883`` (TLS);
query options ``version=5`` (default) or ``version=3.1.1``, ``ca=/path/ca.pem``. Needs
``pip install 'cvmon[mqtt]'`` (paho-mqtt), imported only here.

The connection has no session of its own (clean start): a batch whose PUBACK does not come back
in time is handed back to the sender (retried, then spooled), and the connection is dropped with
paho's queue, so nothing is held twice; a batch that did reach the broker is a duplicate when
sent again, which the server ignores.
"""

from __future__ import annotations

import json
import secrets
import ssl
import threading
import urllib.parse
from collections.abc import Mapping
from typing import Any, Final

from monitor.errors import require
from monitor.sdk._records import GROUND_TRUTH, PATHS, PREDICTION
from monitor.sdk._transport import Response

DEFAULT_PREFIX: Final = "cvmon/ingest"
SUFFIX: Final = {PATHS[PREDICTION]: "predictions", PATHS[GROUND_TRUTH]: "ground-truth"}
#: MQTT 5 PUBACK reason "No matching subscribers": the broker dropped the message.
_NO_SUBSCRIBERS: Final = 16


class MQTTTransport:
    """Publishes batches with QoS 1; see the module docstring for the URL."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"url must look like mqtt://host:1883/topic/prefix, not {url!r}")
        self._mqtt = require("paho.mqtt.client", feature=f"Client('{parts.scheme}://...')", extra="mqtt")
        query = dict(urllib.parse.parse_qsl(parts.query))
        unknown = set(query) - {"version", "ca"}
        if unknown:
            raise ValueError(f"unknown option {sorted(unknown)[0]!r} in {url!r}; known: version, ca")
        if query.get("version", "5") not in ("5", "3.1.1"):
            raise ValueError(f"version must be 5 or 3.1.1 in {url!r}")
        self.prefix = parts.path.strip("/") or DEFAULT_PREFIX
        self._v5 = query.get("version", "5") == "5"
        self._tls = parts.scheme == "mqtts" or "ca" in query
        self._ca = query.get("ca")
        self._host = parts.hostname
        self._port = parts.port or (8883 if self._tls else 1883)
        self._user = urllib.parse.unquote(parts.username) if parts.username else None
        self._password = urllib.parse.unquote(parts.password) if parts.password else None
        self._timeout = timeout
        self._client: Any = None
        self._connected = threading.Event()
        self._refused: str | None = None
        self._reasons: dict[int, int] = {}

    def topic(self, path: str) -> str:
        return f"{self.prefix}/{SUFFIX[path]}"

    def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> Response:
        topic = self.topic(path)
        if self._client is None or not self._client.is_connected():
            self.close()
            refused = self._connect()
            if refused is not None:
                return Response(401, json.dumps({"detail": refused}).encode())
        info = self._client.publish(topic, body, qos=1)
        try:
            info.wait_for_publish(self._timeout)
        except (RuntimeError, ValueError) as exc:
            self.close()
            raise ConnectionError(f"publish to {topic} on {self._host}:{self._port}: {exc}") from exc
        if not info.is_published():
            self.close()  # drop paho's copy: the sender retries or spools this batch itself
            raise ConnectionError(f"publish to {topic} on {self._host}:{self._port}: no PUBACK in {self._timeout:g}s")
        reason = self._reasons.pop(info.mid, 0)
        if reason == _NO_SUBSCRIBERS:
            detail = (f"no session is subscribed to {topic!r} on {self._host}:{self._port}, so the broker dropped the "
                      "batch: start `cvmon consume mqtt` (its persistent session keeps messages); kept and retried")  # fmt: skip
            return Response(404, json.dumps({"detail": detail}).encode())
        if reason >= 0x80:
            return Response(503, json.dumps({"detail": f"the broker refused the batch (reason code {reason})"}).encode())
        return Response(202)

    def _connect(self) -> str | None:
        """Connect and wait for the CONNACK; the broker's refusal as text, or ConnectionError."""
        from paho.mqtt.client import CallbackAPIVersion, MQTTv5, MQTTv311

        client = self._mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"cvmon-sdk-{secrets.token_hex(6)}",
            protocol=MQTTv5 if self._v5 else MQTTv311, clean_session=None if self._v5 else True,
        )  # fmt: skip
        if self._user is not None:
            client.username_pw_set(self._user, self._password)
        if self._tls:
            client.tls_set_context(ssl.create_default_context(cafile=self._ca))
        client.connect_timeout = self._timeout
        self._connected.clear()
        self._refused = None
        self._reasons = {}
        reasons = self._reasons

        def on_connect(_c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
            if reason.is_failure:
                self._refused = f"{self._host}:{self._port} refused the connection: {reason}"
            self._connected.set()

        def on_publish(_c: Any, _u: Any, mid: int, reason: Any, _props: Any) -> None:
            reasons[mid] = int(getattr(reason, "value", 0) or 0)

        client.on_connect = on_connect
        client.on_publish = on_publish
        try:
            client.connect(self._host, self._port, keepalive=30)
        except OSError as exc:
            raise ConnectionError(f"connect to {self._host}:{self._port}: {exc}") from exc
        client.loop_start()
        self._client = client
        if not self._connected.wait(self._timeout):
            self.close()
            raise ConnectionError(f"connect to {self._host}:{self._port}: no CONNACK in {self._timeout:g}s")
        if self._refused is not None:
            refused = self._refused
            self.close()
            return refused
        return None

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.disconnect()
            finally:
                client.loop_stop()
