"""Debian's Chromium driven by Playwright's Python package (never a downloaded browser), with every
request a page makes recorded, and checks a person would make: not blank, readable, no request
leaving this machine."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.reports.chromium import decode_png, ink

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]  # fmt: skip
IN_CI = os.environ.get("CI", "").lower() == "true"

#: WCAG contrast of every element with its own text against the background it is drawn on; the
#: smallest ratio and the element that has it.
CONTRAST_JS = """() => {
  const lin = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); };
  const rgb = s => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
  const background = el => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length >= 3 && (c.length < 4 || c[3] > 0.5)) return c;
    }
    return [255, 255, 255];
  };
  let worst = [99, ""];
  for (const el of document.querySelectorAll("body *")) {
    if (el.closest("svg") || el.hidden || !el.offsetParent && getComputedStyle(el).position !== "fixed") continue;
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own) continue;
    const a = lum(rgb(getComputedStyle(el).color)), b = lum(background(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < worst[0]) worst = [ratio, el.tagName + "." + el.className + ": " + el.textContent.trim().slice(0, 40)];
  }
  return worst;
}"""


@dataclass
class Tab:
    """A page with the URLs of every request it made."""

    page: Any
    requests: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def hosts(self) -> set[str]:
        return {urlsplit(u).netloc for u in self.requests if not u.startswith(("data:", "about:"))}


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        message = "chromium is not installed (Debian: apt-get install chromium; .ci/run does)"
        if IN_CI:
            pytest.fail(message + ": under CI=true the browser tests must run", pytrace=False)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def tab(browser: Any, *, width: int = 1280, height: int = 900) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    recorded = Tab(page)
    page.on("request", lambda request: recorded.requests.append(request.url))
    page.on("console", lambda message: recorded.console.append(f"{message.type}: {message.text}"))
    try:
        yield recorded
    finally:
        context.close()


def sign_in(t: Tab, url: str, key: str, path: str = "/") -> None:
    t.page.goto(url + path)
    assert "/login" in t.page.url
    t.page.fill("#key", key)
    with t.page.expect_navigation():
        t.page.click("form[action='/login'] button[type=submit]")


def not_blank(png: bytes) -> None:
    shown, colours = ink(decode_png(png))
    assert shown > 0.02 and colours > 30, (shown, colours)


def contrast(t: Tab) -> tuple[float, str]:
    ratio, where = t.page.evaluate(CONTRAST_JS)
    return float(ratio), str(where)
