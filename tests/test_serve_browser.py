"""The page in a real browser: Debian's Chromium, headless, driven by Selenium through Debian's chromedriver.

A LeNet-5 (modern form, a few seconds of training on an MNIST subset) is served; the test draws a "1", a dot and a
"0" with mouse events on the canvas and checks the page's answers (the dot: "draw a larger digit", no class), the ten
scores and the C1/C3 feature maps it painted, that Clear empties all of it, that a file that is not an image gets a
sentence in plain words, and that the page without a LeNet-5 run says how to make one. A screenshot goes to the test's
tmp folder, and to ``$MILESTONES_ARTIFACTS`` when set (the README's docs/serve.png comes from there).

A missing browser fails the test with the command that installs it (CI's ``.ci/run`` installs it): a browser test
that skips itself silently would never run.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from milestones.serve import create_app, load_runs, start_in_thread

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def mnist_run(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """lenet5_modern, 2 epochs over 12,000 MNIST training images (about 97% test accuracy, ~7 s of CPU time)."""
    from milestones.config import build_config
    from milestones.train.run import run_training

    out = tmp_path_factory.mktemp("serve-mnist")
    cfg = build_config(model="lenet5_modern", data="mnist", overrides=[
        "--train.epochs=2", "--data.train_subset=12000", "--data.test_subset=500", "--train.progress=false",
        f"--data.root={data_root}", f"--out_dir={out}", "--name=lenet", "--train.seed=0"])
    result = run_training(cfg)
    assert result.summary["final_test_acc"] > 0.9, result.summary
    return out / "lenet"


@pytest.fixture(scope="module")
def browser():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).is_file()]
    if missing:
        pytest.fail(f"the browser test needs {' and '.join(missing)}: apt-get install -y chromium chromium-driver "
                    "(CI's .ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1000,1250", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, script: str, timeout: float = 20.0):
    """Poll a JavaScript expression until it is truthy; returns its value."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = driver.execute_script(f"return {script};")
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {script}")


def stroke(driver, canvas, points: list[tuple[int, int]], *, live: bool = False) -> None:
    """Press the mouse at the first point (canvas pixels, 280x280 from the top left), move through the rest, release.
    ``live``: before releasing, wait for an answer to arrive while the button is still down."""
    from selenium.webdriver.common.action_chains import ActionChains

    def offset(p: tuple[int, int]) -> tuple[int, int]:  # Selenium 4 offsets are from the element's centre
        return p[0] - 140, p[1] - 140

    chain = ActionChains(driver, duration=10).move_to_element_with_offset(canvas, *offset(points[0])).click_and_hold()
    for a, b in zip(points, points[1:]):
        chain.move_by_offset(b[0] - a[0], b[1] - a[1])
    if live:
        before = int(driver.execute_script("return Number(document.body.dataset.answers || 0);"))
        chain.perform()
        wait_for(driver, f"Number(document.body.dataset.answers || 0) > {before}")  # mid-stroke: answered live
        chain = ActionChains(driver, duration=10)
    chain.release().perform()


def answer_after(driver, draw) -> dict:
    """Clear the pad, draw, wait until the page has received the answer to the finished drawing; returns what the
    page shows."""
    driver.find_element("id", "clear").click()
    before = int(driver.execute_script("return Number(document.body.dataset.answers || 0);"))
    draw()
    wait_for(driver, f"Number(document.body.dataset.answers || 0) > {before} && document.body.dataset.busy === '0'")
    return driver.execute_script("""
        const rows = [...document.querySelectorAll('#scores tr')];
        const inked = (id) => [...document.querySelectorAll(`#${id} canvas`)].map((c) => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 0; i < d.length; i += 4) n += d[i] > 0 && d[i] < 255 ? 1 : 0; return n; });
        return {prediction: document.getElementById('prediction').textContent,
                scores: rows.map((r) => parseFloat(r.cells[2].textContent)),
                c1: inked('c1'), c3: inked('c3'),
                c1size: [...document.querySelectorAll('#c1 canvas')].map((c) => [c.width, c.height]),
                c3size: [...document.querySelectorAll('#c3 canvas')].map((c) => [c.width, c.height])};""")


def test_drawn_one_and_zero_are_read_live(browser, mnist_run: Path, tmp_path: Path) -> None:
    url, stop = start_in_thread(create_app(load_runs([mnist_run])))
    try:
        browser.get(url)
        wait_for(browser, "document.body.dataset.ready === 'true'")
        assert not browser.find_element("id", "no-lenet").is_displayed()
        canvas = browser.find_element("id", "pad")

        one = answer_after(browser, lambda: stroke(browser, canvas, [(150, 40 + 20 * i) for i in range(11)],
                                                        live=True))
        assert one["prediction"] == "1", one
        ring = [(140 + round(60 * math.sin(t * math.pi / 6)), 140 - round(95 * math.cos(t * math.pi / 6)))
                for t in range(13)]
        tiny = answer_after(browser, lambda: stroke(browser, canvas, [(140, 140)]))  # one click: an 18-pixel dot
        assert tiny["prediction"] == "-" and tiny["scores"] == [] and tiny["c1"] == [], tiny
        message = browser.find_element("id", "draw-message")
        assert message.is_displayed() and "draw a larger digit" in message.text, message.text
        zero = answer_after(browser, lambda: stroke(browser, canvas, ring))
        assert not message.is_displayed()
        assert zero["prediction"] == "0", zero

        for shown in (one, zero):
            assert len(shown["scores"]) == 10 and sum(shown["scores"]) == pytest.approx(100, rel=0.01)
            assert max(shown["scores"]) == shown["scores"][int(shown["prediction"])]
            assert shown["c1size"] == [[28, 28]] * 6 and shown["c3size"] == [[10, 10]] * 16
            # a painted map has grey levels; a blank canvas has none. Some ReLU maps may be all zero: most are not
            assert sum(n > 0 for n in shown["c1"]) >= 4 and sum(n > 0 for n in shown["c3"]) >= 8, shown

        digit = tmp_path / "seven.png"  # the upload panel: dark ink on white paper, as a photo of a digit would be
        img = Image.new("L", (120, 160), 255)
        ImageDraw.Draw(img).line([(20, 20), (100, 20), (50, 140)], fill=0, width=12)
        img.save(digit)
        browser.find_element("id", "file").send_keys(str(digit))
        wait_for(browser, "document.querySelectorAll('#top5 li').length === 5 && !document.getElementById('overlay')"
                 ".hidden && document.getElementById('overlay').complete")
        assert browser.find_element("id", "method").text.startswith("overlay: Grad-CAM")
        assert browser.execute_script("return document.getElementById('overlay').naturalWidth;") == 224

        shot = tmp_path / "serve.png"
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        if os.environ.get("MILESTONES_ARTIFACTS"):
            Path(os.environ["MILESTONES_ARTIFACTS"]).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(os.environ["MILESTONES_ARTIFACTS"]) / "serve.png")

        assert screen(browser) == {"prediction": "0", "rows": 10, "maps": 22, "seen_inked": True, "message": False}
        browser.find_element("id", "clear").click()  # Clear leaves nothing of the old answer on screen
        assert screen(browser) == {"prediction": "-", "rows": 0, "maps": 0, "seen_inked": False, "message": False}

        broken = tmp_path / "broken.png"  # a .png that is not one: the page words the API's 400 for a person
        broken.write_bytes(b"these are not the bytes of an image")
        browser.find_element("id", "file").send_keys(str(broken))
        wait_for(browser, "!document.getElementById('upload-message').hidden")
        said = browser.find_element("id", "upload-message").text
        assert said.startswith("That file could not be read as an image"), said
        assert "PNG image; send" not in said and "content type" not in said
        assert browser.execute_script("return document.querySelectorAll('#top5 li').length === 0 && "
                                      "document.getElementById('overlay').hidden;")  # the 7's answer is gone
    finally:
        stop()


def screen(driver) -> dict:
    """What the drawing panel shows: the class, score rows, feature-map canvases, any ink in the input preview."""
    return driver.execute_script("""
        const seen = document.getElementById('seen');
        const px = seen.getContext('2d').getImageData(0, 0, seen.width, seen.height).data;
        return {prediction: document.getElementById('prediction').textContent,
                rows: document.querySelectorAll('#scores tr').length,
                maps: document.querySelectorAll('#c1 canvas, #c3 canvas').length,
                seen_inked: px.some((v, i) => i % 4 !== 3 && v > 0),
                message: !document.getElementById('draw-message').hidden};""")


def test_page_without_a_lenet_run_says_how_to_make_one(browser) -> None:
    url, stop = start_in_thread(create_app([]))
    try:
        browser.get(url)
        wait_for(browser, "document.body.dataset.ready === 'true'")
        notice = browser.find_element("id", "no-lenet")
        assert notice.is_displayed() and "make demo" in notice.text
    finally:
        stop()
