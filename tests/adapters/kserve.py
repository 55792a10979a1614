"""A small KServe v2 (Triton) HTTP server running a real onnxruntime session, for the triton
adapter's tests. It implements what ``tritonclient.http`` calls: readiness, model metadata and
``POST /v2/models/{name}/infer`` with JSON tensors and the binary-tensor extension
(``Inference-Header-Content-Length``) both ways."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import numpy as np

_DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}
_ORT_TYPES = {"tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(int64)": "INT64", "tensor(int32)": "INT32"}
_INFER = re.compile(r"/v2/models/([^/]+)(?:/versions/[^/]+)?/infer")


class KServeServer:
    """Serve ``session`` as model ``name`` on 127.0.0.1 (``url`` is host:port, as tritonclient wants)."""

    def __init__(self, name: str, session: Any) -> None:
        self.name = name
        self.session = session
        self.requests = 0
        handler = type("Handler", (_Handler,), {"app": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)

    def metadata(self) -> dict[str, Any]:
        def tensors(items: Any) -> list[dict[str, Any]]:
            return [{"name": t.name, "datatype": _ORT_TYPES[t.type], "shape": [d if isinstance(d, int) else -1 for d in t.shape]}
                    for t in items]  # fmt: skip

        return {"name": self.name, "versions": ["1"], "platform": "onnxruntime_onnx",
                "inputs": tensors(self.session.get_inputs()), "outputs": tensors(self.session.get_outputs())}  # fmt: skip

    def infer(self, body: bytes, header_length: int | None) -> tuple[bytes, int | None]:
        self.requests += 1
        header = json.loads(body[:header_length] if header_length else body)
        binary = memoryview(body)[header_length:] if header_length else memoryview(b"")
        feed = {}
        for tensor in header["inputs"]:
            dtype = _DTYPES[tensor["datatype"]]
            size = (tensor.get("parameters") or {}).get("binary_data_size")
            if size is not None:
                values = np.frombuffer(binary[:size], dtype=dtype)
                binary = binary[size:]
            else:
                values = np.asarray(tensor["data"], dtype=dtype)
            feed[tensor["name"]] = values.reshape(tensor["shape"])
        all_binary = (header.get("parameters") or {}).get("binary_data_output", False)
        requested = header.get("outputs") or [{"name": o.name, "parameters": {"binary_data": all_binary}}
                                              for o in self.session.get_outputs()]  # fmt: skip
        names = [o["name"] for o in requested]
        results = self.session.run(names, feed)
        outputs, chunks = [], []
        for spec, value in zip(requested, results, strict=True):
            value = np.ascontiguousarray(value)
            out: dict[str, Any] = {"name": spec["name"], "datatype": _NAMES[value.dtype], "shape": list(value.shape)}
            if (spec.get("parameters") or {}).get("binary_data", False):
                raw = value.tobytes()
                out["parameters"] = {"binary_data_size": len(raw)}
                chunks.append(raw)
            else:
                out["data"] = value.reshape(-1).tolist()
            outputs.append(out)
        head = json.dumps({"model_name": self.name, "model_version": "1", "outputs": outputs}).encode()
        return head + b"".join(chunks), len(head) if chunks else None


class _Handler(BaseHTTPRequestHandler):
    app: KServeServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", header_length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if header_length is None else "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        if header_length is not None:
            self.send_header("Inference-Header-Content-Length", str(header_length))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path in ("/v2/health/ready", "/v2/health/live", f"/v2/models/{self.app.name}/ready"):
            self._send(200)
        elif path in (f"/v2/models/{self.app.name}", f"/v2/models/{self.app.name}/versions/1"):
            self._send(200, json.dumps(self.app.metadata()).encode())
        else:
            self._send(404, json.dumps({"error": f"unknown path {path}"}).encode())

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        match = _INFER.fullmatch(self.path.split("?")[0])
        if not match or match[1] != self.app.name:
            self._send(404, json.dumps({"error": f"unknown model path {self.path}"}).encode())
            return
        length = self.headers.get("Inference-Header-Content-Length")
        try:
            out, header_length = self.app.infer(body, int(length) if length else None)
        except Exception as exc:
            self._send(400, json.dumps({"error": repr(exc)}).encode())
            return
        self._send(200, out, header_length)
