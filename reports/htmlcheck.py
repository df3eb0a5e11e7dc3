"""Check that a report page draws its plotly figures offline, in a real browser.

Headless Chromium opens the page with every network request made to fail (unresolvable hosts,
a dead proxy), runs its scripts for a virtual time budget, and dumps the rendered DOM. Each
plotly figure container (``div.plotly-graph-div``) must then hold the SVG that plotly.js draws
(``svg.main-svg``); a page whose script did not run, or that needed a CDN, fails.

``python -m reports.htmlcheck PAGE.html [...]`` prints one line per page and exits 1 if any
figure did not draw.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
_VOID = {
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
    "track", "wbr",
}  # fmt: skip


def find_chromium() -> str:
    """Path of a Chromium executable; ValueError saying how to install one when there is none."""
    for candidate in CHROMIUM_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    raise ValueError(
        "no Chromium found (looked for " + ", ".join(CHROMIUM_CANDIDATES) + "); "
        "install Debian's package with `apt-get install -y chromium`."
    )


def render_dom(page: str | Path, budget_ms: int = 20000, timeout_s: float = 120.0) -> str:
    """The DOM of ``page`` after headless Chromium ran its scripts, with the network unreachable."""
    path = Path(page).resolve()
    if not path.is_file():
        raise ValueError(f"page {path} does not exist.")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        command = [
            find_chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            # The network is unreachable: no host resolves and every proxied request goes nowhere.
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--proxy-server=http://127.0.0.1:9",
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
            "--dump-dom",
            path.as_uri(),
        ]
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    if completed.returncode != 0 or "<html" not in completed.stdout.lower():
        raise RuntimeError(
            f"chromium failed on {path} (exit {completed.returncode}): {completed.stderr.strip()[-2000:]}"
        )
    return completed.stdout


@dataclass(frozen=True)
class FigureState:
    """One plotly figure container in a rendered DOM and whether plotly drew its SVG."""

    div_id: str
    drawn: bool


class _FigureFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.open_figures: list[tuple[int, str]] = []  # (stack depth of the div, id)
        self.drawn: dict[str, bool] = {}
        self.order: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if tag == "div" and "plotly-graph-div" in classes:
            div_id = attributes.get("id") or f"figure-{len(self.order) + 1}"
            self.order.append(div_id)
            self.drawn[div_id] = False
            self.open_figures.append((len(self.stack), div_id))
        if tag == "svg" and "main-svg" in classes:
            for _, div_id in self.open_figures:
                self.drawn[div_id] = True
        if tag not in _VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID and self.stack and self.stack[-1] == tag:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.stack:
            return
        while self.stack:
            closed = self.stack.pop()
            if closed == tag:
                break
        depth = len(self.stack)
        self.open_figures = [(d, i) for d, i in self.open_figures if d < depth]


def figure_states(dom: str) -> list[FigureState]:
    """Every plotly figure container in a DOM, in page order, with whether it holds a drawn SVG."""
    finder = _FigureFinder()
    finder.feed(dom)
    finder.close()
    return [FigureState(div_id, finder.drawn[div_id]) for div_id in finder.order]


def check_page(page: str | Path) -> list[FigureState]:
    """Render ``page`` offline and return its figures; ValueError when any did not draw."""
    states = figure_states(render_dom(page))
    undrawn = [s.div_id for s in states if not s.drawn]
    if undrawn:
        raise ValueError(f"{page}: {len(undrawn)} of {len(states)} plotly figures did not draw: {undrawn}")
    return states


def main(argv: list[str] | None = None) -> int:
    pages = sys.argv[1:] if argv is None else argv
    if not pages:
        print("usage: python -m reports.htmlcheck PAGE.html [...]", file=sys.stderr)
        return 2
    failed = False
    for page in pages:
        try:
            states = check_page(page)
            print(f"ok {page}: {len(states)} figures drawn")
        except (ValueError, RuntimeError) as error:
            failed = True
            print(f"FAILED {error}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
