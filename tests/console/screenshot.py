"""Make ``docs/console.png``: the demo's model page, photographed by Chromium through Playwright.

    .venv/bin/python -m tests.console.screenshot docs/console.png [--duration 90] [--height 1250]

Runs ``cvmon demo`` (a shorter stream, nothing kept) in a scratch directory, serves its database,
signs in with the key the demo printed and keeps the top of ``/models/digits?range=6h`` (controls, the
newest window, quality by version and by camera) as an 8-bit palette PNG.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.console.browser import ARGS, CHROMIUM
from tests.reports.chromium import decode_png
from tests.reports.screenshot import palette_png

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--duration", type=float, default=90.0, help="seconds of demo traffic")
    parser.add_argument("--height", type=int, default=1250, help="CSS pixels of the page to keep")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from monitor.server.app import create_app
    from monitor.server.settings import Settings
    from testkit.servers import ThreadServer, free_port

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CVMON_DATABASE_URL": f"sqlite:///{work / 'cvmon.db'}"}
        done = subprocess.run(
            [sys.executable, "-m", "monitor.server.cli", "demo", "--port", str(free_port()), "--duration", str(args.duration),
             "--no-keep-serving"], cwd=work, env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        key = re.search(r"^API key .*: (\S+)$", done.stdout, re.M).group(1)  # type: ignore[union-attr]
        app = create_app(Settings(database_url=f"sqlite:///{work / 'cvmon.db'}", scheduler=False))
        with ThreadServer(app) as server, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": args.height})
            page.goto(server.url + "/login?next=/models/digits%3Frange%3D6h")
            page.fill("#key", key)
            with page.expect_navigation():
                page.click("form[action='/login'] button[type=submit]")
            png = page.screenshot(full_page=False)
            browser.close()
    args.out.write_bytes(palette_png(decode_png(png)))
    print(f"{args.out}: {args.out.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
