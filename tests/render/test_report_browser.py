"""The HTML report in a real browser: headless Chromium (Debian's chromium + chromium-driver,
which ./scripts/setup installs when it can) driven by Selenium, with the network off."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from camscope.render.report import ReportEntry, ReportMap, write_report
from tests.browser import BROWSER_MISSING

pytestmark = BROWSER_MISSING


def _report(tmp_path):
    rng = np.random.default_rng(0)
    volume = rng.standard_normal((1, 20, 24, 24)).astype(np.float32)
    heat = np.zeros((20, 24, 24), dtype=np.float32)
    heat[12, 5:15, 5:15] = 3.0  # a blob on slice 12 only
    heat[3, 10:20, 10:20] = -2.0
    image = rng.random((3, 32, 32)).astype(np.float32)
    entries = [
        ReportEntry("volume", volume, [ReportMap("respond_cam", "class1", heat, True)]),
        ReportEntry("image", image, [ReportMap("grad_cam", "class0", image[0], False)]),
    ]
    rows = [{"method": "respond_cam", "average_drop": 12.5, "kendall_tau": 0.99}]
    return write_report(tmp_path / "report.html", entries, title="test report", metrics=rows)


def test_report_is_self_contained(tmp_path):
    text = _report(tmp_path).read_text()
    body = text.split("<body>", 1)[1]
    assert "http://" not in body and "https://" not in body and "<link" not in text
    assert text.count("data:image/jpeg;base64,") == 20 + 1  # every slice inline, and the first
    assert text.count("data:image/png;base64,") >= 2  # the 2D map and the overview figures


def test_report_renders_and_the_slider_changes_the_slice(tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    path = _report(tmp_path)
    browser.get(path.as_uri())
    assert browser.title == "test report"
    screenshot = np.asarray(Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("RGB"))
    assert screenshot.std() > 10  # not a blank page
    reddish = (screenshot[..., 0] > 150) & (screenshot[..., 2] < 120)
    assert reddish.sum() > 50  # the positive blob in the diverging colour map is drawn
    table = browser.find_element(By.ID, "metrics")
    assert "average_drop" in table.text and "12.5" in table.text
    image = browser.find_element(By.ID, "v0-0-img")
    label = browser.find_element(By.ID, "v0-0-label")
    assert image.get_attribute("data-slice") == "12"  # opens at the map's peak slice
    assert image.get_property("naturalWidth") == 24
    before = image.get_attribute("src")
    slider = browser.find_element(By.ID, "v0-0-slider")
    slider.send_keys(Keys.HOME)
    assert image.get_attribute("data-slice") == "0" and label.text == "slice 0 / 19"
    assert image.get_attribute("src") != before
    for _ in range(3):
        slider.send_keys(Keys.ARROW_RIGHT)
    assert image.get_attribute("data-slice") == "3"
    assert (
        browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image)
        == 24
    )
