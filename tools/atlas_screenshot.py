"""Screenshot of the glyph atlas for the README: serve a run, open it in headless Chromium,
pick a glyph, stream an expansion, hover a scene, save docs/atlas.png.

    python tools/atlas_screenshot.py                      # the embedded default run
    python tools/atlas_screenshot.py --run runs/mine --glyph 🜂 --register logic
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

from bench_serve import free_port, start_server  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=None)
    ap.add_argument("--glyph", default="⟁")
    ap.add_argument("--register", default="poetry")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "atlas.png")
    a = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from playwright.sync_api import sync_playwright

    from glyph import paths

    run = a.run or paths.default_run()
    port = free_port()
    proc = start_server(run, port, [], Path("/tmp") / f"atlas-{port}.log")
    url = f"http://127.0.0.1:{port}/"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 940})
            page.goto(url)
            page.wait_for_selector("#map circle.scene")
            page.click(f"#registry tbody tr[data-symbol='{a.glyph}']")
            page.wait_for_selector("#neighbors li[data-scene]")
            page.select_option("#expand-register", a.register)
            page.click("#expand-button")
            page.wait_for_selector("#expansion-text[data-finished=true]", timeout=120_000)
            # a scene in the left third of the map, so its tooltip covers no panel
            nth = page.evaluate("""() => { const c = [...document.querySelectorAll('#map circle.scene')];
                const xs = c.map(e => +e.getAttribute('cx')), lo = Math.min(...xs), hi = Math.max(...xs);
                return xs.findIndex(x => x > lo + 0.2 * (hi - lo) && x < lo + 0.3 * (hi - lo)); }""")
            page.hover(f"#map circle.scene >> nth={max(nth, 0)}")
            page.screenshot(path=str(a.out))
            browser.close()
    finally:
        proc.terminate()
        proc.wait(60)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
