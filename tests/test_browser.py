"""The attention explorer in a real browser: JupyterLab runs notebook 02 at profile smoke, headless Chromium
(Playwright) clicks a word, changes the head and the layer, and the heat map and the named object's dashed box
follow. The browser's copy leaves out section 6 (a pretraining run, minutes on a busy machine; test_notebooks
runs it): sections 4 and 5 hold the explorers.

Needs Playwright (the `dev` extra) and a Chromium binary ($VILBERT_LITE_CHROMIUM, else /usr/bin/chromium; CI
installs Debian's `chromium`); skipped without them. VILBERT_LITE_SAVE_SCREENSHOT=1 also writes the explorer's
screenshot to reports/figures/explorer_browser.png.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "02_co_attention.ipynb"
CHROMIUM = os.environ.get("VILBERT_LITE_CHROMIUM", "/usr/bin/chromium")
SCREENSHOT = ROOT / "reports" / "figures" / "explorer_browser.png"
pytestmark = pytest.mark.notebooks  # it runs notebook 02 at smoke: deselect with -m "not notebooks"
RUN_LIMIT_S = 90  # sections 1-5 at smoke, in the browser's kernel (~15 s on 2 cores)


def _free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pixels(png: bytes) -> np.ndarray:
    """A PNG screenshot as an (H, W, 3) int array."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def _heat_changed(a: np.ndarray, b: np.ndarray) -> int:
    """How many pixels of the heat-map panel (right of the image panel, under the title) differ between shots."""
    h, w = a.shape[:2]
    panel = np.s_[h // 8 :, w * 9 // 20 :]
    return int((np.abs(a[panel] - b[panel]).sum(-1) > 12).sum())


def _dashed_pixels(img: np.ndarray) -> int:
    """How many pixels of the left (image) panel are the dashed frame's pure cyan (the world's cyan is darker)."""
    left = img[:, : img.shape[1] * 2 // 5]
    return int(((left[..., 0] < 60) & (left[..., 1] > 230) & (left[..., 2] > 230)).sum())


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on 127.0.0.1 over a folder holding notebook 02 with profile = "smoke": (url, token)."""
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extra)")
    if not (shutil.which(CHROMIUM) or Path(CHROMIUM).is_file()):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    import nbformat
    import papermill as pm

    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "notebooks"
    root.mkdir()
    pm.execute_notebook(str(NOTEBOOK), str(root / NOTEBOOK.name), parameters={"profile": "smoke"},
                        prepare_only=True, kernel_name="python3", progress_bar=False)  # fmt: skip
    nb = nbformat.read(root / NOTEBOOK.name, as_version=4)
    heads = [c.source.split("\n")[0] for c in nb.cells]
    start = next((i for i, h in enumerate(heads) if h.startswith("## 6 ")), len(heads))
    end = next((i for i, h in enumerate(heads) if h.startswith("## Summary")), len(heads))
    del nb.cells[start:end]  # section 6: the pretraining run
    for cell in nb.cells:  # no stored prompts: a number in every prompt then means the cell ran here
        if cell.cell_type == "code":
            cell.execution_count, cell.outputs = None, []
    nbformat.write(nb, root / NOTEBOOK.name)
    settings = tmp / "settings" / "@jupyterlab"  # start the kernel, keep every cell in the page, no news
    for name, values in {
        "notebook-extension/tracker": {"autoStartDefaultKernel": True, "windowingMode": "none"},
        "apputils-extension/notification": {"fetchNews": "false"},
    }.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / f"{name}.jupyterlab-settings").write_text(json.dumps(values))
    port, token = _free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "VILBERT_LITE_RUNS": str(tmp / "runs"),
        "VILBERT_LITE_CACHE": str(tmp / "cache"),
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp / "settings"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    flags = {
        "ip": "127.0.0.1",
        "port": port,
        "ServerApp.root_dir": root,
        "IdentityProvider.token": token,
        "LabApp.news_url": "None",
        "LabApp.check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
        "LabApp.extension_manager": "readonly",
    }
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", *(f"--{k}={v}" for k, v in flags.items())]
    if os.geteuid() == 0:
        cmd.append("--allow-root")  # CI runs as root
    log = open(tmp / "lab.log", "w")  # closed with the server, below
    server = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                assert server.poll() is None, (tmp / "lab.log").read_text()[-3000:]
                time.sleep(0.25)
        else:
            pytest.fail(f"JupyterLab did not start:\n{(tmp / 'lab.log').read_text()[-3000:]}")
        yield url, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def test_explorer_in_the_browser(lab, tmp_path):
    from playwright.sync_api import sync_playwright

    url, token = lab
    errors: list[str] = []
    t0 = time.perf_counter()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(f"page: {e}"))
        try:
            ran = _drive(page, url, token)
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"))  # the page as it was, for the log
            print(f"page at failure: {tmp_path / 'failure.png'}; console errors: {errors}")
            raise
        finally:
            browser.close()
    assert not errors, "\n".join(errors)
    print(f"notebook opened and ran in {ran:.0f} s; browser part {time.perf_counter() - t0:.0f} s")


def _drive(page, url: str, token: str) -> float:
    """Open the notebook, run all cells, use the explorer and check what the page shows; -> seconds to run it."""
    from playwright.sync_api import expect

    t0 = time.perf_counter()
    page.goto(f"{url}/lab/tree/{NOTEBOOK.name}?token={token}")
    page.locator(".jp-Notebook .jp-CodeCell").first.wait_for(timeout=60_000)
    _wait_for_kernel(url, token)

    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()  # Run menu → Run All Cells
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    page.wait_for_function(  # every code cell ran: a number in its prompt, none busy
        """() => { const ps = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
                   return ps.length > 0 && ps.every(p => /\\[\\d+\\]/.test(p.textContent)); }""",
        timeout=RUN_LIMIT_S * 1000,
    )
    ran = time.perf_counter() - t0
    failed = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    tracebacks = [t for t in failed.all_inner_texts() if "Traceback" in t or "Error" in t]
    assert not tracebacks, f"a cell failed:\n{tracebacks[0][-2000:]}"

    for cell in page.locator(".jp-CodeCell", has=page.locator(".vl-explorer")).all():  # each shows once
        assert cell.locator(".jp-OutputArea-output").count() == 1, cell.inner_text()[:300]
        assert cell.locator(".jp-OutputArea-output[data-mime-type='image/png']").count() == 0
    assert page.locator(".vl-explorer").count() == 2  # the scene's and the photo's
    photo_regions = (
        page.locator(".vl-explorer").nth(1).locator("table.vl-explorer-pairs tbody tr td:nth-child(2)")
    )
    assert all(re.fullmatch(r"IMG|r\d+ \S.*", t) for t in photo_regions.all_inner_texts())  # ImageNet names

    ex = page.locator(".vl-explorer").first  # section 4's explorer, over the synthetic scene
    ex.scroll_into_view_if_needed()
    img, status = ex.locator("img.vl-explorer-map"), ex.locator(".vl-explorer-status")
    img.wait_for(timeout=30_000)
    assert "untrained model" in ex.locator(".vl-explorer-note").inner_text()
    assert status.get_attribute("data-direction") == "word → region"

    def shot() -> np.ndarray:
        page.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=img.element_handle())
        return _pixels(img.screenshot())

    def wait_for(attr: str, value: str) -> None:  # the status line is redrawn after the image
        expect(status).to_have_attribute(f"data-{attr}", value, timeout=30_000)

    # the image is shown 1:1, so 10-pt box labels are >= 10 px on screen
    natural, shown = img.evaluate("i => [i.naturalWidth, i.clientWidth]")
    assert shown >= 0.95 * natural, (shown, natural)

    # a word that names an object: its box is drawn dashed
    words = ex.locator(".vl-explorer-words button")
    plain_png, named_png, named_word, named_at = None, None, None, None
    for i in range(words.count()):
        word = words.nth(i).inner_text().strip()
        if [w.inner_text().strip() for w in words.all()].count(word) > 1:
            continue  # a repeated word ("a") cannot be told apart by its query name
        words.nth(i).click()
        wait_for("query", word)
        if status.get_attribute("data-dashed") and named_png is None:
            named_png, named_word, named_at = shot(), word, i
        elif not status.get_attribute("data-dashed") and plain_png is None:
            plain_png = shot()
        if named_png is not None and plain_png is not None:
            break
    assert named_png is not None, "no word button names an object of the scene"
    assert plain_png is not None, "every word names an object: no plain view to compare with"
    words.nth(named_at).click()  # whichever was found last, show the named word again
    wait_for("query", named_word)
    assert "dashed:" in status.inner_text() and named_word in status.inner_text()
    cyan = _dashed_pixels(named_png), _dashed_pixels(plain_png)
    assert cyan[0] > max(20, 2 * cyan[1]), f"no dashed frame in the image (cyan pixels named, plain: {cyan})"
    assert (np.abs(named_png - plain_png).sum(-1) > 30).mean() > 0.001  # the word's panel redrawn
    table = ex.locator("table.vl-explorer-pairs")
    assert f"strongest regions for “{named_word}”" in ex.inner_text()
    assert table.locator("thead tr").count() == 1 and "rank" in table.locator("thead").inner_text()

    # another head: the heat map changes
    words.nth(named_at).click()  # back to the named word: its dashed box stays in view
    wait_for("query", named_word)
    before = shot()
    ex.locator(".widget-dropdown select").first.select_option(label="head 1")
    wait_for("head", "1")
    after = shot()
    assert _heat_changed(before, after) > 100, f"the heat map did not change: {_heat_changed(before, after)}"

    # another layer (the slider, by keyboard): the map changes again
    layer = status.get_attribute("data-layer")
    ex.locator(".noUi-handle").first.focus()
    page.keyboard.press("ArrowLeft" if layer != "0" else "ArrowRight")
    expect(status).not_to_have_attribute("data-layer", layer, timeout=30_000)
    assert _heat_changed(after, shot()) > 100, "the layer did not change the heat map"

    widget_errors = page.locator(".jp-OutputArea-output", has_text="Error displaying widget")
    assert widget_errors.count() == 0 and page.get_by_text("Error rendering").count() == 0
    if os.environ.get("VILBERT_LITE_SAVE_SCREENSHOT") == "1":
        _save_screenshot(ex.screenshot())
    return ran


def _wait_for_kernel(url: str, token: str, timeout_s: float = 60) -> None:
    """Until the server holds one kernel, idle, with the page's websocket connected (cells run when sent)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        kernels = json.load(urllib.request.urlopen(f"{url}/api/kernels?token={token}", timeout=5))
        if kernels and kernels[0]["execution_state"] == "idle" and kernels[0]["connections"] > 0:
            return
        time.sleep(0.25)
    pytest.fail(f"no idle, connected kernel after {timeout_s:.0f} s: {kernels}")


def _save_screenshot(png: bytes) -> None:
    """The explorer's screenshot, shrunk to a palette PNG under 300 KB, in reports/figures."""
    from PIL import Image

    im = Image.open(io.BytesIO(png)).convert("RGB")
    if im.width > 1000:
        im = im.resize((1000, round(im.height * 1000 / im.width)), Image.LANCZOS)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    im.quantize(colors=128).save(SCREENSHOT, optimize=True)
    assert SCREENSHOT.stat().st_size < 300_000
