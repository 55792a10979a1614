"""Headless Chromium driven over the DevTools protocol on a pipe: load a file, record every
request the *page* makes, take a screenshot.

Why the protocol and not ``chromium --screenshot``: the browser itself phones home (component
updates, time sync, account checks) even with the usual ``--disable-*`` flags, so watching the
network from outside cannot tell the page's requests from the browser's. The protocol's Network
domain reports the requests of the page's own target only. Every host name also resolves to
nothing (``--host-resolver-rules``), so a request that slipped through would still go nowhere.

Plus a small PNG decoder (zlib and numpy, no Pillow) to check that a screenshot is not blank.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import queue
import shutil
import struct
import subprocess
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--force-device-scale-factor=1",
)


def find_chromium() -> str | None:
    return CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")


@dataclass
class PageLoad:
    """What loading one page did."""

    url: str
    #: URLs of every request the page made (the document itself included)
    requests: list[str] = field(default_factory=list)
    png: bytes = b""
    console: list[str] = field(default_factory=list)
    #: what ``expression`` (given to ``load``) evaluated to once the page settled
    value: Any = None

    @property
    def subresources(self) -> list[str]:
        return [u for u in self.requests if u != self.url]


class Chromium:
    """One headless browser process; ``load(path)`` as often as needed; ``close()`` in finally."""

    def __init__(self, *, width: int = 1280, height: int = 2000, timeout: float = 60.0, reachable: str | None = None) -> None:
        """``reachable``: the one host (e.g. ``127.0.0.1``, a test server) the browser may reach."""
        binary = find_chromium()
        if binary is None:
            raise FileNotFoundError("chromium is not installed (Debian: apt-get install chromium)")
        self.width, self.height, self.timeout = width, height, timeout
        self._profile = tempfile.mkdtemp(prefix="cvmon-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def fds() -> None:  # the protocol pipe is fds 3 (commands in) and 4 (answers out)
            write = os.dup(from_child_w) if from_child_w == 3 else from_child_w
            os.dup2(to_child_r, 3)
            os.dup2(write, 4)

        self.proc = subprocess.Popen(
            [
                binary,
                *(f"{f}, EXCLUDE {reachable}" if f.startswith("--host-resolver-rules") and reachable else f for f in FLAGS),
                "--remote-debugging-pipe",
                f"--user-data-dir={self._profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # 3 and 4 survive the close of inherited descriptors that follows preexec_fn
            pass_fds=(3, 4),
            preexec_fn=fds,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    def _read(self) -> None:
        buffer = b""
        with os.fdopen(self._from_child, "rb", buffering=0) as pipe:
            while chunk := pipe.read(1 << 16):
                buffer += chunk
                while b"\0" in buffer:
                    message, buffer = buffer.split(b"\0", 1)
                    self._messages.put(json.loads(message))
        self._messages.put(None)

    def _send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        self._next_id += 1
        ident = self._next_id
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._messages.get(timeout=max(0.1, deadline - time.monotonic()))
            if reply is None:
                raise RuntimeError("chromium exited")
            if reply.get("id") == ident:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})  # type: ignore[no-any-return]
            self._events.append(reply)

    def _wait_for(self, method: str, session: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not any(e.get("method") == method and e.get("sessionId") == session for e in self._events):
            message = self._messages.get(timeout=max(0.1, deadline - time.monotonic()))
            if message is None:
                raise RuntimeError("chromium exited")
            self._events.append(message)

    def load(self, path: Path | str, *, settle: float = 0.3, expression: str | None = None) -> PageLoad:
        """Open ``path`` (a file, or a URL as text) in a fresh tab; the requests it made, a
        full-window screenshot and the value of ``expression`` evaluated in the page."""
        target = self._send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self._send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        try:
            self._events.clear()
            self._send("Network.enable", session=session)
            self._send("Page.enable", session=session)
            self._send("Runtime.enable", session=session)
            self._send(
                "Emulation.setDeviceMetricsOverride",
                {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False},
                session,
            )
            url = path if isinstance(path, str) else path.resolve().as_uri()
            self._send("Page.navigate", {"url": url}, session)
            self._wait_for("Page.loadEventFired", session)
            time.sleep(settle)  # a late request (a lazy image, a timer) would show up in this time
            shot = self._send("Page.captureScreenshot", {"format": "png"}, session)
            evaluated = self._send("Runtime.evaluate", {"expression": expression or "1", "returnByValue": True}, session)
            load = PageLoad(url, value=evaluated.get("result", {}).get("value") if expression else None)
            for event in self._events:
                if event.get("sessionId") != session:
                    continue
                if event.get("method") == "Network.requestWillBeSent":
                    load.requests.append(event["params"]["request"]["url"])
                elif event.get("method") == "Runtime.consoleAPICalled":
                    load.console.append(str(event["params"].get("args")))
            load.png = base64.b64decode(shot["data"])
            return load
        finally:
            self._send("Target.closeTarget", {"targetId": target})

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                with contextlib.suppress(RuntimeError, queue.Empty, OSError):
                    self._send("Browser.close")
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
        finally:
            os.close(self._to_child)
            shutil.rmtree(self._profile, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# PNG


def decode_png(data: bytes) -> np.ndarray:
    """An 8-bit, non-interlaced RGB or RGBA PNG (what Chromium writes) as a (h, w, channels) array."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, header = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
    if header is None:
        raise ValueError("PNG without IHDR")
    width, height, depth, colour, _, _, interlace = header
    channels = {2: 3, 6: 4}.get(colour)
    if depth != 8 or channels is None or interlace:
        raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour}, interlace {interlace}")
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(height, 1 + width * channels)
    out = np.zeros((height, width * channels), np.uint8)
    prev = np.zeros(width * channels, np.int32)
    for y in range(height):
        kind, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        if kind == 0:
            row = line
        elif kind == 1:  # Sub: a running sum per channel
            row = np.cumsum(line.reshape(width, channels), axis=0).reshape(-1) % 256
        elif kind == 2:  # Up
            row = (line + prev) % 256
        elif kind in (3, 4):  # Average, Paeth: sequential along the row
            row = _unfilter_sequential(kind, line, prev, channels)
        else:
            raise ValueError(f"bad PNG filter {kind}")
        out[y] = row
        prev = row.astype(np.int32)
    return out.reshape(height, width, channels)


def _unfilter_sequential(kind: int, line: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    cur = line.tolist()
    up = prev.tolist()
    for i in range(len(cur)):
        a = cur[i - bpp] if i >= bpp else 0
        b = up[i]
        if kind == 3:
            cur[i] = (cur[i] + (a + b) // 2) & 255
        else:
            c = up[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
            cur[i] = (cur[i] + pred) & 255
    return np.array(cur, np.int32)


def ink(image: np.ndarray) -> tuple[float, int]:
    """(share of pixels that are not near-white, number of distinct colours) of a screenshot."""
    rgb = image[..., :3].astype(np.int32)
    not_white = (rgb < 235).any(axis=-1).mean()
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    return float(not_white), int(np.unique(packed).size)
