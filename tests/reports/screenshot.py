"""Make ``docs/report.png``: the demo's week, reported and photographed by headless Chromium.

    .venv/bin/python -m tests.reports.screenshot docs/report.png [--html report.html] [--height 1900]

The same data and code path as ``test_chromium.py`` (demo traffic through the API, the real jobs,
``build_report_data``, ``render_report``); the top of the page (summary and quality) is kept, in
an 8-bit palette so the image stays under 300 KB.
"""

from __future__ import annotations

import argparse
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np

from tests.reports.chromium import Chromium, decode_png


def build_demo_html(work: Path) -> str:
    from monitor.server.reports.render import render_report
    from tests.reports import demo_week

    return render_report(demo_week.build_report(work))


def palette_png(image: np.ndarray) -> bytes:
    """An RGB image as an 8-bit palette PNG: each channel rounded to 6 / 7 / 6 levels would blur
    text, so the palette is the 256 most frequent colours and every other pixel takes the nearest."""
    rgb = image[..., :3].astype(np.int32)
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    colours, inverse, counts = np.unique(packed.reshape(-1), return_inverse=True, return_counts=True)
    keep = colours[np.argsort(-counts)[:256]]
    palette = np.stack([(keep >> 16) & 255, (keep >> 8) & 255, keep & 255], axis=1)
    all_rgb = np.stack([(colours >> 16) & 255, (colours >> 8) & 255, colours & 255], axis=1)
    nearest = np.empty(len(colours), np.uint8)
    for start in range(0, len(colours), 4096):  # distances to the palette, a block of colours at a time
        block = all_rgb[start : start + 4096, None, :] - palette[None, :, :]
        nearest[start : start + 4096] = np.argmin((block**2).sum(axis=2), axis=1)
    index = nearest[inverse].reshape(packed.shape)
    height, width = index.shape
    raw = b"".join(b"\x00" + index[y].tobytes() for y in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    plte = palette.astype(np.uint8).tobytes()
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"PLTE", plte)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--html", type=Path, help="also keep the report here")
    parser.add_argument("--height", type=int, default=1900, help="CSS pixels of the page to keep")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        html = build_demo_html(work)
        page = work / "report.html"
        page.write_text(html, encoding="utf-8")
        if args.html:
            args.html.write_text(html, encoding="utf-8")
        browser = Chromium(width=1280, height=args.height)
        try:
            load = browser.load(page)
        finally:
            browser.close()
    assert load.subresources == [], load.subresources
    png = palette_png(decode_png(load.png))
    args.out.write_bytes(png)
    print(
        f"{args.out}: {len(png) / 1024:.0f} KiB (report {len(html.encode()) / 1024:.0f} KiB, requests: {load.requests})"
    )


if __name__ == "__main__":
    main()
