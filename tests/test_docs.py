"""The documentation site builds strictly and renders in a real browser: a page, its figure, the
search and an API page."""

from __future__ import annotations

import functools
import http.server
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.browser import BROWSER_MISSING

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("mkdocs")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(folder)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return folder


@pytest.fixture(scope="module")
def served(site):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_every_page_and_every_method_is_built(site):
    for page in ("index", "getting-started", "guide/methods", "guide/transformers", "api/methods"):
        assert (site / page / "index.html").exists() or (site / f"{page}.html").exists(), page
    api = (site / "api" / "methods" / "index.html").read_text()
    import camscope

    for name in camscope.list_methods():
        assert f'id="camscope.methods.{name}"' in api, name
    top = (site / "api" / "camscope" / "index.html").read_text()
    assert 'id="camscope.explain.explain"' in top  # the function, not its module
    for name in ("explain_scan", "Explanation", "tokens", "smooth", "ScanExplanation"):
        assert f'id="camscope.{name}"' in top, name


@pytest.mark.slow
@BROWSER_MISSING
def test_the_site_renders_with_its_figure_search_and_api(served, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 20)
    browser.get(f"{served}/getting-started/")
    assert "Getting started" in browser.title
    figure = browser.find_element(By.CSS_SELECTOR, "img[src*='tomogram_slices']")
    wait.until(lambda _: browser.execute_script("return arguments[0].naturalWidth", figure) > 0)
    # search: the index is loaded by a web worker; a query lists the page that has the word
    browser.get(f"{served}/?q=rollout")
    wait.until(
        lambda _: any(
            "transformers" in (link.get_attribute("href") or "")
            for link in browser.find_elements(By.CSS_SELECTOR, ".md-search-result__link")
        )
    )
    browser.get(f"{served}/api/camscope/")
    heading = browser.find_element(By.ID, "camscope.explain.explain")
    assert "explain" in heading.text
