"""leaderboard.html as data (no browser): one self-contained file whose table carries what sorting and filtering
need, whose drill-down data is each record's breakdown with class names, and whose best-source table picks the
model with the least uncertainty per pixel of each class; the plot stays one labelled row per model at 500."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest

from otce_ray.leaderboard import ModelResult, build_leaderboard
from otce_ray.leaderboard.drilldown import best_sources, model_details
from otce_ray.leaderboard.plot import ROW
from otce_ray.leaderboard.render import leaderboard_html
from leaderboard_html_cases import CLASS_NAMES, zoo_results


class _Page(HTMLParser):
    """Rows of the board table (cells' text and data-v), the JSON block, select options, plot rows."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[tuple[str, str | None]]] = []
        self.options: dict[str, list[str]] = {}
        self.plot_rows: list[str] = []
        self.details = ""
        self._where: list[str] = []
        self._select = None
        self._cell: list | None = None
        self._in_board = False
        self._in_json = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._in_board = attrs.get("id") == "board"
        if self._in_board and tag == "tr" and self._where != ["thead"]:
            self.rows.append([])
        if tag in ("thead", "tbody"):
            self._where = [tag]
        if self._in_board and tag == "td":
            self._cell = ["", attrs.get("data-v")]
        if tag == "select":
            self._select = attrs["id"]
            self.options[self._select] = []
        if tag == "option" and self._select:
            self.options[self._select].append(attrs["value"])
        if tag == "g" and attrs.get("class") == "plot-row":
            self.plot_rows.append(attrs["data-model"])
        self._in_json = tag == "script" and attrs.get("id") == "otce-details"

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.rows[-1].append((self._cell[0], self._cell[1]))
            self._cell = None
        if tag == "table":
            self._in_board = False
        if tag == "select":
            self._select = None
        if tag == "script":
            self._in_json = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[0] += data
        if self._in_json:
            self.details += data


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    return parser


def test_the_page_is_one_self_contained_file():
    results = zoo_results(60)
    page = leaderboard_html(build_leaderboard(results), results, CLASS_NAMES)
    for external in ("http://", "https://", "src=", "<link", "url(", "@import", "@font-face"):
        assert external not in page
    assert re.findall(r"<script[^>]*>", page) == ['<script type="application/json" id="otce-details">', "<script>"]


def test_table_cells_carry_full_values_for_sorting_and_the_filters_list_every_value():
    results = zoo_results(60)
    board = build_leaderboard(results)
    parsed = _parse(leaderboard_html(board, results, CLASS_NAMES))
    assert len(parsed.rows) == len(board) == 60
    first = dict(zip(["rank", "group", "model", "architecture", "source", "otce"], parsed.rows[0]))
    assert first["model"][0] == board["model"][0]
    assert float(first["otce"][1]) == board["otce"][0]  # the exact value, not the 4 shown digits
    assert first["otce"][0] == f"{board['otce'][0]:.4f}"
    failed = [row for row in parsed.rows if row[-2][0] == "failed"]  # status, then error
    assert len(failed) == 1 and failed[0][5] == ("", "")  # no score: sorts last
    assert parsed.options["f-architecture"] == ["", *sorted(board["architecture"].unique())]
    assert parsed.options["f-source"] == ["", *sorted(board["source"].unique())]
    assert parsed.options["f-status"] == ["", "failed", "ok"]


def test_drilldown_data_is_each_records_breakdown_with_class_names():
    results = zoo_results(5, failed_every=0)
    parsed = _parse(leaderboard_html(build_leaderboard(results), results, CLASS_NAMES))
    details = json.loads(parsed.details)
    assert sorted(details) == sorted(r.model for r in results)
    record = results[0]
    shown = details[record.model]
    assert [c[:2] for c in shown["classes"]] == [[0, "road"], [1, "sidewalk"], [2, "building"], [11, "person"],
                                                 [13, "car"]]
    assert sum(c[3] for c in shown["classes"]) == pytest.approx(-sum(record.scores) / len(record.scores), rel=1e-3)
    assert shown["label_map"]["source"][-1] == [18, "18"]  # no name known: the id
    assert shown["label_map"]["p"][0] == pytest.approx(record.label_map["p_target_given_source"][0], rel=1e-3)


def test_a_class_name_cannot_end_the_data_block():
    results = zoo_results(2, failed_every=0)
    page = leaderboard_html(build_leaderboard(results), results, {0: "</script><b>x"})
    assert page.count("</script>") == 2
    assert json.loads(_parse(page).details)[results[0].model]["classes"][0][1] == "</script><b>x"


def test_best_source_per_class_is_the_least_uncertainty_per_pixel():
    def record(name, road, car, status="ok"):
        return ModelResult(model=name, source="s", scores=(-(road[1] + car[1]),) * 2,
                           per_class={"0": {"share": road[0], "contribution": road[1]},
                                      "13": {"share": car[0], "contribution": car[1]}})

    results = [record("a", (0.8, 0.40), (0.2, 0.30)), record("b", (0.7, 0.28), (0.3, 0.60)),
               record("c", (0.8, 0.10), (0.2, 0.01))]
    results[2] = ModelResult(model="c", source="s", status="failed", error="x", per_class=results[2].per_class)
    rows = best_sources(results, CLASS_NAMES)
    assert [(r.class_name, r.model, r.runner_up) for r in rows] == [("road", "b", "a"), ("car", "a", "b")]
    assert rows[0].per_pixel == pytest.approx(0.4) and rows[1].per_pixel == pytest.approx(1.5)
    page = leaderboard_html(build_leaderboard(results), results, CLASS_NAMES)
    assert "<h2>Best source per target class</h2>" in page


def test_records_without_a_breakdown_render_without_one():
    old = ModelResult(model="old", source="s", scores=(-1.0, -1.1))
    assert model_details([old]) == {} and best_sources([old]) == []
    page = leaderboard_html(build_leaderboard([old]))
    assert "Best source per target class" not in page and json.loads(_parse(page).details) == {}


def test_the_plot_keeps_one_labelled_row_per_scored_model_at_500():
    results = zoo_results(500)
    page = leaderboard_html(build_leaderboard(results), results, CLASS_NAMES)
    parsed = _parse(page)
    scored = [r.model for r in results if r.status == "ok"]
    assert sorted(parsed.plot_rows) == sorted(scored)
    assert f'class="plot-rows" data-row="{ROW}" width="860" height="{ROW * len(scored)}"' in page
    assert page.count("<circle") == len(scored)
    offsets = [int(y) for y in re.findall(r'class="plot-row" data-model="[^"]+" transform="translate\(0,(\d+)\)"',
                                          page)]
    assert offsets == [ROW * i for i in range(len(scored))]  # one row each, none overlapping


def test_long_names_are_shortened_on_the_plot_and_whole_in_its_tooltip():
    name = "org-" + "x" * 80
    results = [ModelResult(model=name, source="s", scores=(-1.0, -1.1))]
    page = leaderboard_html(build_leaderboard(results))
    assert f">{name[:39]}\u2026</text>" in page and f"<title>{name}: " in page
