"""A PNG of an HTML page as headless Chromium renders it (``flaimsim report DIR --png F``).

Uses the system's Chromium and chromedriver (Debian: ``chromium``, ``chromium-driver``; other
paths through ``FLAIMSIM_CHROMIUM`` and ``FLAIMSIM_CHROMEDRIVER``) driven by selenium with an
explicit driver path, so that nothing is downloaded. The PNG is reduced to a 256-colour
palette (text and flat charts survive it), which keeps a full report near 100 kB.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


class ScreenshotError(ValueError):
    """No browser to take the picture with, or the page failed in it (a ValueError, so that
    the command line prints it as one line)."""


def chromium(width: int = 1280, height: int = 900):
    """A headless Chromium WebDriver on the system's browser, or a clear error."""
    binary = os.environ.get("FLAIMSIM_CHROMIUM", CHROMIUM)
    driver = os.environ.get("FLAIMSIM_CHROMEDRIVER", CHROMEDRIVER)
    if not (shutil.which(binary) and shutil.which(driver)):
        raise ScreenshotError(f"no Chromium at {binary} with {driver}: install Debian's "
                              "chromium and chromium-driver (or set FLAIMSIM_CHROMIUM and "
                              "FLAIMSIM_CHROMEDRIVER)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise ScreenshotError("--png needs selenium: pip install -e '.[test]'") from None
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--hide-scrollbars", f"--window-size={width},{height}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def screenshot(page: str | Path, png: str | Path, width: int = 1280,
               max_height: int | None = None, fragment: str = "") -> Path:
    """Render ``page`` (at ``#fragment``) at ``width`` CSS pixels, the whole page (or its
    top ``max_height`` pixels), into ``png``; raises if the page logs a console error."""
    from PIL import Image

    driver = chromium(width)
    try:
        driver.get(Path(page).resolve().as_uri() + (f"#{fragment}" if fragment else ""))
        errors = [m["message"] for m in driver.get_log("browser") if m["level"] == "SEVERE"]
        if errors:
            raise ScreenshotError(f"{page}: the browser logged errors: {errors}")
        height = int(driver.execute_script("return document.documentElement.scrollHeight"))
        target = min(height, max_height or height)
        # The window's outer size includes the browser's own bars: ask for more, crop after.
        driver.set_window_size(width, target + 300)
        raw = driver.get_screenshot_as_png()
    finally:
        driver.quit()
    image = Image.open(io.BytesIO(raw)).convert("RGB")
    image = image.crop((0, 0, image.width, min(image.height, target)))
    out = Path(png)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.quantize(256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    return out


__all__ = ["screenshot", "chromium", "ScreenshotError"]
