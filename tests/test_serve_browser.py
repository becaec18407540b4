"""The playground in a real browser: headless Chromium (Debian's `chromium` + `chromium-driver`) driven by Selenium
asks a question that makes the model call the Calculator, and the call must be drawn inline with input and result.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from serve_helpers import MODEL, choose, running_server, scripted_backend
from toolformer.serve.app import create_app

CHROMIUM = os.environ.get("TOOLFORMER_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get(
    "TOOLFORMER_CHROMEDRIVER", shutil.which("chromedriver") or "/usr/bin/chromedriver"
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()),
        reason=f"needs Chromium and its driver ({CHROMIUM}, {CHROMEDRIVER}): apt-get install -y chromium chromium-driver",
    ),
]


@pytest.fixture
def browser(monkeypatch):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not try to download a browser or driver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--window-size=1100,800",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def test_playground_shows_the_calculator_call_inline(browser, smol_tokenizer, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    backend = scripted_backend(smol_tokenizer, choose, name=MODEL)
    with running_server(create_app(backend)) as url:
        browser.get(url + "/")
        wait = WebDriverWait(browser, 60)
        wait.until(ec.text_to_be_present_in_element((By.ID, "model"), MODEL))
        assert "Calculator" in browser.find_element(By.ID, "tools").text

        browser.find_element(By.ID, "prompt").send_keys("What is 23 times 47?")
        browser.find_element(By.ID, "send").click()
        reply = wait.until(
            ec.presence_of_element_located((By.CSS_SELECTOR, ".turn.assistant[data-done='true']"))
        )
        browser.save_screenshot(str(tmp_path / "playground.png"))

        [call] = reply.find_elements(By.CSS_SELECTOR, ".call")
        assert call.get_attribute("data-tool") == "Calculator"
        assert call.find_element(By.CSS_SELECTOR, ".input").text == "23 * 47"
        assert call.find_element(By.CSS_SELECTOR, ".output").text == "1081"
        assert call.find_element(By.CSS_SELECTOR, ".ms").text.endswith("ms")
        assert "23 times 47 is" in reply.text and "1081." in reply.text
        assert "finish: stop" in reply.find_element(By.CSS_SELECTOR, ".status").text
