"""The chat template in a real browser: two headless Chromium pages talk through ``ampt-sandbox dev``.

Needs Debian's ``chromium`` and ``chromium-driver`` packages and the
``selenium`` package; without them the test is skipped. Chromium loads only
pages of the sandbox this test starts on 127.0.0.1: every other host name
fails to resolve, and background network features are off.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
CHROMIUM_NAMES = ("chromium", "chromium-browser")
DRIVER_NAME = "chromedriver"
WAIT_SECONDS = 15


def find_browser() -> tuple[str, str]:
    """Return the paths of Chromium and chromedriver, or skip the test."""
    browser = next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)
    driver = shutil.which(DRIVER_NAME)
    if browser is None or driver is None:
        pytest.skip(
            "chromium and chromedriver are not installed; install them with "
            "apt-get install chromium chromium-driver (.ci/run does this)"
        )
    return browser, driver


@pytest.fixture
def chromium(tmp_path: Path):
    """A headless Chromium driven through chromedriver, with a fresh profile."""
    pytest.importorskip("selenium", reason="selenium is not installed; pip install -e '.[test]'")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = find_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--no-first-run",
        "--no-default-browser-check",
        "--window-size=1000,800",
        # Every host name fails to resolve; the test loads only http://127.0.0.1 pages.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-profile-', dir=tmp_path)}",
    ):
        options.add_argument(argument)
    # An explicit driver path: Selenium Manager never runs, so nothing is downloaded.
    service = Service(executable_path=driver_path, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(WAIT_SECONDS)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for_status(driver, text: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT_SECONDS).until(
        expected_conditions.text_to_be_present_in_element((By.ID, "status"), text),
        message=f"status never showed {text!r}",
    )


def messages_on_page(driver) -> list[tuple[str, str]]:
    """Return (from, text) of each chat message shown on the current page."""
    from selenium.webdriver.common.by import By

    messages = []
    for item in driver.find_elements(By.CSS_SELECTOR, "#messages li.message"):
        sender = item.find_element(By.CLASS_NAME, "from").text
        text = item.find_element(By.CLASS_NAME, "text").text
        messages.append((sender, text))
    return messages


def wait_for_message(driver, expected: tuple[str, str]) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT_SECONDS).until(
        lambda current: expected in messages_on_page(current),
        message=f"message {expected!r} never appeared; page shows {messages_on_page(driver)!r}",
    )


def test_message_reaches_other_page(run_sandbox, chromium, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    shutil.copytree(TEMPLATES / "chat" / "public", tmp_path / "app" / "public")
    sandbox = run_sandbox(template="chat")
    page_url = sandbox.url.replace("ws://", "http://", 1)
    assert page_url.startswith("http://127.0.0.1:")

    chromium.get(f"{page_url}/?name=ann&room=browser")
    wait_for_status(chromium, "Connected as ann in room browser")
    ann_tab = chromium.current_window_handle

    chromium.switch_to.new_window("tab")
    chromium.get(f"{page_url}/?name=bob&room=browser")
    wait_for_status(chromium, "Connected as bob in room browser")
    bob_tab = chromium.current_window_handle

    text_box = chromium.find_element(By.ID, "text")
    text_box.send_keys("hello from bob <b>not bold</b>", Keys.ENTER)
    wait_for_message(chromium, ("bob", "hello from bob <b>not bold</b>"))

    chromium.switch_to.window(ann_tab)
    wait_for_message(chromium, ("bob", "hello from bob <b>not bold</b>"))
    # Message text is shown as text, never parsed as HTML.
    assert chromium.find_elements(By.CSS_SELECTOR, "#messages b") == []

    chromium.find_element(By.ID, "text").send_keys("hi bob", Keys.ENTER)
    chromium.switch_to.window(bob_tab)
    wait_for_message(chromium, ("ann", "hi bob"))
    assert messages_on_page(chromium) == [
        ("bob", "hello from bob <b>not bold</b>"),
        ("ann", "hi bob"),
    ]
