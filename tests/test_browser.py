"""Teaching pictures checked in a real browser: report.html and explain --html rendered by
headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by selenium with an
explicit driver path, so nothing is downloaded). The browser tests skip, with the reason, only
where no Chromium is installed; the structure of explain.html is checked without a browser.
"""

import io
import json
import os
import re
import shutil
from collections import defaultdict
from pathlib import Path

import pytest

from flaimsim.bench.cli import main
from flaimsim.bench.tiny import TINY, run_tiny
from flaimsim.bench.narration import phase_text
from flaimsim.bench.runs import TABLE_COLUMNS
from flaimsim.bench.sequence import sequence_html
from flaimsim.parties.transport import FRAME_HEADER_BYTES
from flaimsim.protocols.config import RunConfig

CHROMIUM = os.environ.get("FLAIMSIM_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("FLAIMSIM_CHROMEDRIVER", "/usr/bin/chromedriver")
SCREENSHOTS = os.environ.get("FLAIMSIM_SCREENSHOTS")  # keep the screenshots here if set
TINY_RUN = ["--dataset", "synthfs", "--clients", "4", "--synthfs-features", "4",
            "--synthfs-records", "60", "--synthfs-bins", "4", "--workload-marginals", "4",
            "--rounds", "2", "--participation", "1.0", "--iters-round", "50",
            "--iters-final", "100", "--mpc", "real"]
UNITS = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}


@pytest.fixture(scope="module")
def browser():
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip(f"no Chromium here ({CHROMIUM}, {CHROMEDRIVER}): install Debian's chromium "
                    "and chromium-driver (.ci/run does)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed "
                                    "(pip install -e '.[test]')")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--hide-scrollbars", "--window-size=1280,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def severe(driver) -> list[dict]:
    return [m for m in driver.get_log("browser") if m["level"] in ("SEVERE", "WARNING")]


def ink(png: bytes) -> float:
    """Share of pixels that are not the white background."""
    from PIL import Image

    im = Image.open(io.BytesIO(png)).convert("L")
    pixels = list(im.getdata())
    return sum(p < 235 for p in pixels) / len(pixels)


def keep(name: str, png: bytes, tmp: Path) -> Path:
    path = Path(SCREENSHOTS or tmp) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return path


def parse_shown(text: str, fmt: str) -> tuple[float, float]:
    """(number, half a unit of its last digit) of a table cell as printed."""
    if fmt == "bytes":
        value, unit = text.split()
        digits = len(value.split(".")[1]) if "." in value else 0
        return float(value) * UNITS[unit], 0.5 * 10 ** -digits * UNITS[unit]
    digits = len(text.split(".")[1]) if "." in text else 0
    if "e" in text or fmt == "{:.4g}":
        return float(text), abs(float(text)) * 5e-4 + 1e-300
    return float(text), 0.5 * 10 ** -digits


def with_server_side(record: dict) -> dict:
    """The table's server columns: the mean compute server (DistAIM), else the aggregator."""
    distaim = record["protocol"] == "distaim"
    return {**record, **{f"server_{way}": record.get(
        f"server_bytes_{way}_mean" if distaim else f"aggregator_bytes_{way}")
        for way in ("sent", "received")}}


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    assert main(["run", "--protocol", "central", "--protocol", "distaim", "--protocol",
                 "aug-flaim-private", *TINY_RUN, "--out", str(out)]) == 0
    return out


def test_report_renders_in_chromium(browser, report_dir: Path, tmp_path: Path):
    browser.set_window_size(1280, 900)
    browser.get((report_dir / "report.html").as_uri())
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(height + 40, 8000))
    shot = keep("report.png", browser.get_screenshot_as_png(), tmp_path)
    assert shot.stat().st_size > 10_000
    assert severe(browser) == []
    # Every chart is drawn: its element's screenshot has ink, and each protocol with traffic
    # has one (central has none).
    charts = browser.find_elements("css selector", ".chart")
    assert [c.get_attribute("data-chart") for c in charts] == ["overview", "distaim",
                                                               "aug-flaim-private"]
    for c in charts:
        assert c.size["width"] > 300 and c.size["height"] > 150
        assert ink(c.screenshot_as_png) > 0.03, c.get_attribute("data-chart")
    for selector in ("#run-table", "section.protocol table.settings"):
        assert ink(browser.find_element("css selector", selector).screenshot_as_png) > 0.02
    # The table's numbers, as the browser shows them, equal result.json's.
    records = {r["protocol"]: with_server_side(r) for r in
               json.loads((report_dir / "result.json").read_text())["results"]}
    fmt = {k: f for k, _, f in TABLE_COLUMNS}
    rows = browser.find_elements("css selector", "#run-table tr[data-protocol]")
    assert [r.get_attribute("data-protocol") for r in rows] == list(records)
    checked = 0
    for row in rows:
        record = records[row.get_attribute("data-protocol")]
        for cell in row.find_elements("css selector", "td[data-key]"):
            key, text = cell.get_attribute("data-key"), cell.text.strip()
            value = record.get(key)
            assert json.loads(cell.get_attribute("data-value")) == value, key
            if value is None:
                assert text == "-", key
            elif isinstance(value, str):
                assert text == value, key
            else:
                shown, half = parse_shown(text, fmt[key])
                assert abs(shown - value) <= half * 1.0001, (key, text, value)
                checked += 1
    assert checked >= 25
    # The privacy panel shows, per protocol, what each party learns as result.json records
    # it: every recorded line is displayed, and none is reported missing.
    assert browser.find_elements("css selector", ".knows-missing") == []
    shown_lines = {li.text for li in browser.find_elements("css selector", "table.knows li")}
    recorded = {line for r in records.values() for lines in r["privacy"]["knowledge"].values()
                for line in lines}
    assert recorded and recorded <= shown_lines


@pytest.fixture(scope="module")
def tiny():
    return run_tiny(RunConfig(**TINY))


def blocks_of(page: str, protocol: str) -> dict[tuple[int, str], str]:
    column = page.split(f'<div class="col" data-protocol="{protocol}">')[1].split(
        '<div class="col"')[0]
    return {(int(r), p): body for r, p, body in re.findall(
        r'<section class="step block" id="[^"]+" data-key="\d+" data-round="(\d+)" '
        r'data-phase="([^"]+)">(.*?)</section>', column, flags=re.S)}


def arrows(block: str) -> list[tuple[str, str, int, int]]:
    return [(s, t, int(b), int(m)) for s, t, b, m in re.findall(
        r'<g class="arrow" data-from="([^"]+)" data-to="([^"]+)" data-bytes="(\d+)" '
        r'data-messages="(\d+)">', block)]


def test_explain_html_has_lanes_blocks_and_the_ledger_bytes(tiny):
    page = sequence_html(tiny)
    distaim, flaim = blocks_of(page, "distaim"), blocks_of(page, "aug-flaim-private")
    for phase in ("setup", "share-inputs", "score", "select", "measure"):
        assert any(p == phase for _, p in distaim), phase
    for phase in ("model-broadcast", "select", "secagg-keys", "secagg-masked-input",
                  "secagg-unmask"):
        assert any(p == phase for _, p in flaim), phase
    lanes = set(re.findall(r'<g class="lane" data-party="([^"]+)"', page))
    assert lanes == {f"client:{k}" for k in range(4)} | {f"server:{i}" for i in range(3)} | {
        "aggregator"}
    for label in ("SecAgg+ steps 1–2", "SecAgg+ step 3", "SecAgg+ step 4"):
        assert label in page
    # Every block's arrows are its ledger rows, summed per sender → receiver.
    for story, blocks in ((tiny.distaim, distaim), (tiny.flaim, flaim)):
        expected: dict = defaultdict(lambda: defaultdict(lambda: [0, 0]))
        for r in story.ledger.rows:
            expected[(r.round, r.phase)][(r.sender, r.receiver)][0] += r.bytes
            expected[(r.round, r.phase)][(r.sender, r.receiver)][1] += r.messages
        assert set(blocks) == set(expected)
        depth = story.ledger.rounds_by_step()
        for key, block in blocks.items():
            assert {(s, t): [b, m] for s, t, b, m in arrows(block)} == expected[key], key
            shown = int(re.search(r'<span class="depth">(\d+)</span>', block).group(1))
            assert shown == depth[key] > 0, key
    # Compact shares (the default): a packed vector to server 0 and a 16-byte seed (plus one
    # frame header) to each other server; the narration says so.
    ups = {t: b for s, t, b, _ in arrows(distaim[(0, "share-inputs")]) if s == "client:0"}
    assert ups["server:1"] == ups["server:2"] == 16 + FRAME_HEADER_BYTES < ups["server:0"]
    assert "16-byte seed" in distaim[(0, "share-inputs")]
    assert "Shamir shares" not in distaim[(0, "share-inputs")]
    assert "Opened to the aggregator: the sum over the session" in flaim[(1, "secagg-unmask")]
    assert "opened, and to whom" in page and "to the servers and the driver" in page


@pytest.mark.parametrize("sharing, says, not_says", [
    ("compact", "compact additive shares mod 2^8", "Shamir"),
    ("shamir", "Shamir shares of degree t = 1, one full vector", "seed"),
    ("additive", "additive shares mod p", "Shamir shares of degree"),
])
def test_narration_follows_the_sharing_option(sharing, says, not_says):
    text = phase_text("distaim", "share-inputs", RunConfig(**{**TINY, "sharing": sharing}))
    assert says in text and not_says not in text


@pytest.mark.parametrize("option, phase, says", [
    ({"em": "rnm"}, "select", "report-noisy-max"),
    ({"em": "gumbel"}, "select", "Gumbel"),
    ({"score": "l2"}, "score", "L2 distance"),
    ({"score": "l1"}, "score", "L1 quality score"),
    ({"distaim_participation": "poisson", "participation": 0.5}, "share-inputs",
     "first sampled (Poisson p = 0.5)"),
    ({"servers": 2}, "share-inputs", "t = 0: with 2 servers"),
])
def test_narration_follows_the_other_options(option, phase, says):
    assert says in phase_text("distaim", phase, RunConfig(**{**TINY, **option}))


def test_flaim_narration_follows_dropout():
    calm = phase_text("aug-flaim-private", "secagg-unmask", RunConfig(**TINY))
    lossy = phase_text("aug-flaim-private", "secagg-unmask", RunConfig(**{**TINY,
                                                                         "dropout": 0.25}))
    assert "drop out at rate 0.25" in lossy and "drop out" not in calm
    assert "exact; the aggregator then adds" in calm  # central noise, today's only mode


def test_explain_html_steps_in_chromium(browser, tiny, tmp_path: Path):
    path = tmp_path / "explain.html"
    path.write_text(sequence_html(tiny))
    browser.set_window_size(1400, 900)
    browser.get(path.as_uri())
    assert severe(browser) == []
    where = browser.find_element("id", "where")
    total = int(re.search(r"of (\d+)", where.text).group(1))
    visible = lambda: sum(s.is_displayed() for s in  # noqa: E731
                          browser.find_elements("css selector", ".step"))
    first = visible()
    browser.find_element("id", "next").click()
    assert where.text == f"step 2 of {total}" and visible() > first
    browser.find_element("id", "all").click()
    assert visible() == len(browser.find_elements("css selector", ".step"))
    for svg in browser.find_elements("css selector", "svg.seq")[:4]:
        assert ink(svg.screenshot_as_png) > 0.01
    keep("explain.png", browser.get_screenshot_as_png(), tmp_path)
    browser.get(path.as_uri() + "#all-steps")  # an address that opens with every step shown
    assert browser.find_element("id", "where").text == "all steps shown"
    assert visible() == len(browser.find_elements("css selector", ".step"))
