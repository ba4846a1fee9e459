"""leaderboard.html of a 500-model zoo in a real headless Chromium (Debian's chromium and chromium-driver, through
Selenium): sorting by a number and by a name, filtering by architecture, source and status, searching by name, the
plot following the filters, and a model's drill-down. Screenshots go to ``build/test-artifacts/`` (or
``$OTCE_TEST_ARTIFACTS``). Every step waits for a condition, never for a fixed time.

Skips where Chromium is absent, except under CI (``CI`` set), where `.ci/run` installs it and its absence fails.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from otce_ray.leaderboard import build_leaderboard
from otce_ray.leaderboard.render import leaderboard_html
from leaderboard_html_cases import CLASS_NAMES, SOURCE_CLASSES, TARGET_CLASSES, zoo_results

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = Path(os.environ.get("OTCE_TEST_ARTIFACTS") or Path(__file__).resolve().parent.parent / "build" /
                 "test-artifacts")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1000")
WAIT = 30  # seconds at most for any condition


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        message = f"needs Debian's chromium and chromium-driver ({', '.join(missing)} missing; .ci/run installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def zoo_page(tmp_path_factory):
    results = zoo_results(500)
    board = build_leaderboard(results)
    path = tmp_path_factory.mktemp("board") / "leaderboard.html"
    path.write_text(leaderboard_html(board, results, CLASS_NAMES))
    return path, board


def _wait(driver, condition, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT).until(lambda d: condition(d), message=f"waited {WAIT} s for {what}")


def _column(driver, index: int) -> list[str]:
    """The texts of one column in the rows shown, in their order on the page."""
    return driver.execute_script(
        "var index = arguments[0];"
        "return Array.from(document.querySelectorAll('#board tbody tr')).filter(function (r) { return !r.hidden; })"
        ".map(function (r) { return r.cells[index].textContent.trim(); });", index)


def _headers(driver) -> list[str]:
    return driver.execute_script("return Array.from(document.querySelectorAll('#board thead th'))"
                                 ".map(function (th) { return th.textContent.trim(); });")


def _click_header(driver, name: str) -> None:
    index = _headers(driver).index(name)
    driver.find_elements("css selector", "#board thead th button.sort")[index].click()


def _select(driver, element_id: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", element_id)).select_by_value(value)


def _shown(driver) -> str:
    return driver.find_element("id", "shown").text


def _visible_plot_rows(driver) -> int:
    return driver.execute_script("return Array.from(document.querySelectorAll('g.plot-row'))"
                                 ".filter(function (g) { return g.style.display !== 'none'; }).length;")


def test_sorting_filtering_and_drilldown_of_a_500_model_board(browser, zoo_page):
    path, board = zoo_page
    browser.get(path.as_uri())
    _wait(browser, lambda d: d.find_element("tag name", "body").get_attribute("data-ready") == "true",
          "the page script")
    headers = _headers(browser)
    model, otce = headers.index("model"), headers.index("OTCE")
    assert len(_column(browser, model)) == 500 and _shown(browser) == "500 of 500 models"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "leaderboard-500.png"))

    scored = board[board["status"] == "ok"]
    _click_header(browser, "OTCE")  # ascending: the worst score first, failed rows (no score) last
    _wait(browser, lambda d: _column(d, model)[0] == scored.sort_values("otce")["model"].iloc[0], "ascending OTCE")
    values = _column(browser, otce)
    assert [float(v) for v in values[:len(scored)]] == sorted(float(v) for v in values[:len(scored)])
    assert values[len(scored):] == [""] * (500 - len(scored))
    _click_header(browser, "OTCE")  # descending: the ranking again
    _wait(browser, lambda d: _column(d, model)[:5] == list(scored["model"][:5]), "descending OTCE")
    _click_header(browser, "model")
    _wait(browser, lambda d: _column(d, model) == sorted(board["model"]), "model names in order")

    architecture = "deeplabv3_resnet50"
    _select(browser, "f-architecture", architecture)
    expected = board[board["architecture"] == architecture]
    _wait(browser, lambda d: _shown(d) == f"{len(expected)} of 500 models", "the architecture filter")
    assert _column(browser, model) == sorted(expected["model"])
    assert _visible_plot_rows(browser) == int((expected["status"] == "ok").sum())
    _select(browser, "f-source", "gta5")
    expected = expected[expected["source"] == "gta5"]
    _wait(browser, lambda d: _shown(d) == f"{len(expected)} of 500 models", "the source filter")
    assert _column(browser, model) == sorted(expected["model"])
    _select(browser, "f-architecture", "")
    _select(browser, "f-source", "")
    _select(browser, "f-status", "failed")
    failed = board[board["status"] == "failed"]
    _wait(browser, lambda d: _shown(d) == f"{len(failed)} of 500 models", "the status filter")
    assert _column(browser, model) == sorted(failed["model"]) and _visible_plot_rows(browser) == 0
    _select(browser, "f-status", "")
    search = browser.find_element("id", "f-search")
    search.send_keys("model-04")
    expected = sorted(name for name in board["model"] if "model-04" in name)
    _wait(browser, lambda d: _column(d, model) == expected, "the name search")
    assert _shown(browser) == f"{len(expected)} of 500 models" and _visible_plot_rows(browser) == sum(
        1 for name in expected if name in set(scored["model"]))
    heights = browser.execute_script("return document.querySelector('svg.plot-rows').getAttribute('height');")
    assert int(heights) == 20 * _visible_plot_rows(browser)  # the visible rows stacked, no gaps
    browser.save_screenshot(str(ARTIFACTS / "leaderboard-500-searched.png"))

    chosen = next(name for name in expected if name in set(scored["model"]))
    next(b for b in browser.find_elements("css selector", "#board button.model") if b.text == chosen).click()
    _wait(browser, lambda d: d.find_element("id", "drilldown").is_displayed(), "the drill-down")
    assert browser.find_element("css selector", "#drilldown .drilldown-title").text == chosen
    assert len(browser.find_elements("css selector", "#drilldown rect.bar")) == len(TARGET_CLASSES)
    assert len(browser.find_elements("css selector", "#drilldown rect.cell")) == len(TARGET_CLASSES) * len(
        SOURCE_CLASSES)
    labels = browser.execute_script("return Array.from(document.querySelectorAll('#drilldown svg.per-class text'))"
                                    ".map(function (t) { return t.textContent; });")
    assert "0 road" in labels and "13 car" in labels
    browser.save_screenshot(str(ARTIFACTS / "leaderboard-500-drilldown.png"))


def test_the_interval_plot_scrolls_under_its_axis_at_500_models(browser, zoo_page):
    path, board = zoo_page
    browser.get(path.as_uri())
    _wait(browser, lambda d: d.find_element("tag name", "body").get_attribute("data-ready") == "true",
          "the page script")
    box = browser.execute_script(
        "var s = document.querySelector('.plot-scroll'); var a = document.querySelector('svg.plot-axis');"
        "return {client: s.clientHeight, scroll: s.scrollHeight, gap: s.getBoundingClientRect().top -"
        " a.getBoundingClientRect().bottom};")
    assert box["scroll"] == 20 * int((board["status"] == "ok").sum())
    assert box["client"] < box["scroll"]  # the rows scroll inside the box, 20 px each, the axis stays above it
    assert abs(box["gap"]) <= 2


@pytest.fixture(scope="module")
def calibrated_output(tmp_path_factory):
    """A leaderboard whose output holds a calibration page (``otce-ray calibrate``'s files, from known values)."""
    import pandas as pd

    from otce_ray.evaluation.calibration import calibration_html, calibration_table

    results = zoo_results(60, failed_every=20)
    board = build_leaderboard(results, priors={result.model: index / 60 for index, result in enumerate(results)})
    folder = tmp_path_factory.mktemp("calibrated")
    picked = board[board["status"] == "ok"]["model"].iloc[[0, 10, 20, 40]]
    models = pd.DataFrame({"model": picked, "log_likelihood": [-0.2, -0.3, -0.25, -0.5], "status": "ok"})
    (folder / "calibration.html").write_text(calibration_html(calibration_table(board, models), models,
                                                              "log_likelihood"))
    (folder / "leaderboard.html").write_text(leaderboard_html(board, results, CLASS_NAMES, calibration=True))
    return folder, board


def test_decision_columns_sort_and_the_calibration_page_opens(browser, calibrated_output):
    folder, board = calibrated_output
    browser.get((folder / "leaderboard.html").as_uri())
    _wait(browser, lambda d: d.find_element("tag name", "body").get_attribute("data-ready") == "true",
          "the page script")
    assert browser.find_element("id", "decisions").is_displayed()
    assert "Recommended ordering: the consensus column" in browser.find_element("id", "decisions").text
    headers = _headers(browser)
    assert headers[headers.index("95% interval") + 1] == "P(best)"  # shown next to the interval
    assert {"P(top k)", "consensus", "params", "prior"} <= set(headers)
    model, p_best = headers.index("model"), headers.index("P(best)")
    scored = board[board["status"] == "ok"]
    _click_header(browser, "P(best)")
    _click_header(browser, "P(best)")  # descending: the most likely best first, failed rows (no value) last
    expected = scored.sort_values(["p_best"], ascending=False, kind="stable")["model"].iloc[0]
    _wait(browser, lambda d: _column(d, model)[0] == expected, "descending P(best)")
    values = [float(v) for v in _column(browser, p_best)[:len(scored)]]
    assert values == sorted(values, reverse=True) and _column(browser, p_best)[len(scored):] == [""] * (
        len(board) - len(scored))
    rows = browser.execute_script("return document.querySelectorAll('#agreement tbody tr').length;")
    assert rows == 2  # otce and the consensus: these results hold no baseline metric
    browser.save_screenshot(str(ARTIFACTS / "leaderboard-decisions.png"))

    browser.find_element("css selector", "#calibration-link a").click()
    _wait(browser, lambda d: d.current_url.endswith("calibration.html"), "the calibration page")
    orderings = browser.execute_script(
        "return Array.from(document.querySelectorAll('#calibration-orderings tbody tr'))"
        ".map(function (r) { return r.cells[0].textContent; });")
    assert orderings == ["otce", "consensus", "prior"]
    assert browser.execute_script("return document.querySelectorAll('#calibration-models tbody tr').length;") == 4
    assert "K = 4 fine-tuned models can only show" in browser.find_element("tag name", "body").text
    browser.save_screenshot(str(ARTIFACTS / "calibration.png"))
    browser.find_element("link text", "Back to the leaderboard").click()
    _wait(browser, lambda d: d.current_url.endswith("leaderboard.html"), "the way back")
