"""Driving the Prefect UI in a real Chromium: the distribution's browser, through Playwright's Python package.

Used by test_prefect_ui.py and scripts/ui_screenshots.py. Never `playwright install`: it downloads a browser build of
its own (offline machines cannot); `chromium()` finds the system one, and callers skip without it.

The UI is a single-page app: after each navigation, wait for the network to go quiet and a moment more
(ENGINEERING.md, "Testing the Prefect UI in a real browser").
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SETTLE_MS = 1500
VIEWPORT = {"width": 1400, "height": 1000}
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu"]
# An artifact page's tables (past_edge > 0 or scrolls: wider than the box they are in, cut or scrolled) and pictures
# (natural_width 0: broken), in either UI: their markdown box, or the table's own scrolling box.
LAYOUT_JS = """() => {
  const tables = [...document.querySelectorAll('table')].map(table => {
    const box = table.parentElement;
    return {columns: table.rows.length ? table.rows[0].cells.length : 0,
            past_edge: Math.round(table.getBoundingClientRect().right - box.getBoundingClientRect().right),
            scrolls: box.scrollWidth > box.clientWidth + 1};
  });
  const images = [...document.images].map(image => ({
    alt: image.alt, loaded: image.complete, natural_width: image.naturalWidth,
    shown_width: Math.round(image.getBoundingClientRect().width)}));
  return {tables, images, text: document.body.innerText};
}"""


def chromium() -> str | None:
    """The system Chromium's executable, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextlib.contextmanager
def browser_page(viewport: dict[str, int] | None = None) -> Iterator[Any]:
    """A Playwright page in a headless system Chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport=viewport or VIEWPORT)
        finally:
            browser.close()


def settle(page: Any) -> None:
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(SETTLE_MS)


def visit(page: Any, url: str) -> None:
    page.goto(url)
    settle(page)


def ui_address(env: dict[str, str]) -> str:
    """The UI's address: the API's, without /api."""
    return env["PREFECT_API_URL"].removesuffix("/api")


class PrefectUI:
    """One of the server's two UIs in a browser page: "v2" (React, under /v2, where the server's root address leads
    in Prefect 3.9) or "v1" (Vue, at /). Their pages have the same paths and differ in markup."""

    def __init__(self, page: Any, address: str, version: str = "v2") -> None:
        self.page, self.version = page, version
        self.base = f"{address}/v2" if version == "v2" else address

    # -- a deployment's Custom run form (Deployments > the deployment > Run > Custom run) --------------------------

    def open_run_form(self, deployment_id: str) -> None:
        visit(self.page, f"{self.base}/deployments/deployment/{deployment_id}/run")

    def parameter_labels(self) -> list[str]:
        """The form's parameter names, in order."""
        labels = self.page.locator("label").filter(has_text=_PARAMETER_LABEL).all_inner_texts()
        return [_PARAMETER_LABEL.match(label).group(1) for label in labels]

    def field(self, name: str) -> Any:
        """The input of parameter NAME (a text box, a number box or a textarea)."""
        label = re.compile(rf"^{name}( \(Optional\))?$")
        if self.version == "v2":
            return self.page.get_by_label(label)
        caption = self.page.locator(".schema-form-property__label", has_text=label)
        return self.page.locator(".schema-form-property").filter(has=caption).locator("input, textarea").first

    def fill(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            self.field(name).fill(str(value))

    def submit(self) -> str:
        """Press Submit; what the form answers: the new run's toast ("<run> scheduled to start now") or the error
        (v2: the messages under the fields, then the toast's)."""
        toasts = self.page.locator(_TOAST[self.version])
        # an earlier submit's toast would be read as this one's: wait until it has timed out (a pointer resting on
        # a toast holds it open)
        self.page.mouse.move(0, 0)
        self.page.wait_for_function(f"() => !document.querySelector('{_TOAST[self.version]}')", timeout=60_000)
        for _ in range(3):  # v2, after a rejected submit: the next press only validates again, the one after submits
            self.page.get_by_role("button", name="Submit").click()
            with contextlib.suppress(Exception):
                toasts.first.wait_for(timeout=10_000)
            if toasts.count():
                errors = self.page.locator(".text-destructive").all_inner_texts() if self.version == "v2" else []
                return "\n".join(errors + [toasts.first.inner_text()])
        raise AssertionError("the form answered a submit with neither a new run nor an error")

    def submitted_run_id(self) -> str:
        """After a submit that worked: the new flow run's id, from the toast's "View run"."""
        button = self.page.locator(_TOAST[self.version]).get_by_text("View run").first
        if self.version == "v2":
            link = self.page.locator(_TOAST["v2"]).locator("a", has_text="View run").first.get_attribute("href")
        else:  # a router button; the toast layer takes the pointer, so the click is dispatched
            button.dispatch_event("click")
            self.page.wait_for_url(re.compile(r".*/runs/flow-run/[0-9a-f-]{36}.*"))
            link = self.page.url
        return re.search(r"/runs/flow-run/([0-9a-f-]{36})", link).group(1)

    # -- a flow run's page and its artifacts ---------------------------------------------------------------------

    def run_artifact_pages(self, run_id: str) -> list[str]:
        """Open the run's page, its Artifacts tab; the artifact pages its cards link to."""
        visit(self.page, f"{self.base}/runs/flow-run/{run_id}")
        self.page.get_by_text("Artifacts", exact=True).first.click()
        settle(self.page)
        links = self.page.evaluate("() => [...document.querySelectorAll('a')].map(a => a.getAttribute('href'))"
                                   ".filter(href => href && href.includes('/artifacts/artifact/'))")
        origin = self.base.removesuffix("/v2")
        return [origin + link for link in dict.fromkeys(links)]

    def artifact_layout(self, url: str) -> dict[str, Any]:
        """Open an artifact's page; its tables' and pictures' state (LAYOUT_JS), once every picture has loaded."""
        visit(self.page, url)
        self.page.wait_for_function("() => [...document.images].every(image => image.complete)", timeout=30_000)
        return self.page.evaluate(LAYOUT_JS)


_PARAMETER_LABEL = re.compile(r"^\s*([a-z_]+)( \(Optional\))?\s*$")  # also a JavaScript regular expression
_TOAST = {"v1": ".p-toast__message", "v2": "[data-sonner-toast]"}


def screenshot(page: Any, path: Path, max_bytes: int = 400_000) -> Path:
    """The whole page as PNG (both UIs scroll inside a container of their own, so the viewport is grown to its height),
    reduced to a palette and, if still larger than MAX_BYTES, scaled down until it fits."""
    from PIL import Image

    height = page.evaluate("() => Math.max(document.body.scrollHeight, "
                           "...[...document.querySelectorAll('main, .app-router-view')].map(box => box.scrollHeight))")
    page.set_viewport_size({"width": page.viewport_size["width"], "height": max(VIEWPORT["height"], height + 40)})
    page.wait_for_timeout(500)
    picture = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    path.parent.mkdir(parents=True, exist_ok=True)
    scale = 1.0
    while True:
        size = (round(picture.width * scale), round(picture.height * scale))
        small = picture.resize(size, Image.Resampling.LANCZOS) if scale < 1 else picture
        buffer = io.BytesIO()
        small.quantize(128).save(buffer, format="PNG", optimize=True)
        if buffer.tell() <= max_bytes or scale < 0.3:
            path.write_bytes(buffer.getvalue())
            page.set_viewport_size(VIEWPORT)
            return path
        scale *= 0.85
