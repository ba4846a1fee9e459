"""``otce-ray calibrate``: check a leaderboard's orderings on the user's own target with a handful of fine-tunings.

The leaderboard's scores were validated on a benchmark; calibration asks the user's data. It picks K scored models
spread over the OTCE ranking (``pick_models``: the top one always, then one drawn from each of K - 1 equal strata of
the rest, seeded), fine-tunes them on the labelled target images scoring used (``target.max_images``) and evaluates
them on other labelled target images: the validation's leakage-free split (``otce_ray.finetune.split``), as Ray
tasks (``otce_ray.finetune.run.finetune_each``). Each model's record goes to ``output/calibration/{model}.json`` as
soon as it is in, keyed by what decides it (the model, its files, the schedule, the images), so a killed run resumes
and a rerun fine-tunes nothing it already has.

The report (``calibration_table``) holds, per ordering (OTCE, each baseline, the consensus, params, prior): Pearson
and Kendall with the fine-tuned result over the K models, each with a 95% interval on Fisher's z and an exact
permutation p-value, whether the ordering's best of the K is the fine-tuned best, and which ordering
agreed best. K models decide little and the report says how little (``kendall_needed``). Written as
``calibration.csv``, ``calibration_models.csv`` and a self-contained ``calibration.html``, which the leaderboard page
then links.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import logging
import math
import os
from typing import Any, Mapping

import numpy as np
import pandas as pd
import ray

from otce_ray import fs
from otce_ray.config import RunConfig, as_config
from otce_ray.evaluation.evaluate import read_table
from otce_ray.evaluation.measures import fisher_interval, kendall, kendall_needed, pearson, permutation_p
from otce_ray.evaluation.report import STYLE
from otce_ray.finetune import FineTuneRecord, FineTuneSettings, TargetSplit, split_target
from otce_ray.finetune.run import finetune_each
from otce_ray.leaderboard import load_results
from otce_ray.leaderboard.decisions import REFERENCES, orderings
from otce_ray.leaderboard.decisions_view import CALIBRATION_PAGE
from otce_ray.leaderboard.render import html_page
from otce_ray.leaderboard.writers import csv_bytes
from otce_ray.models import ModelError, ModelSpec
from otce_ray.models.identity import model_identity
from otce_ray.pipeline.run import connect, publish

logger = logging.getLogger("otce_ray")
CALIBRATION_DIR = "calibration"
CALIBRATION_CSV = "calibration.csv"
MODELS_CSV = "calibration_models.csv"
DEFAULT_MODELS = 6
MIN_MODELS = 3  # a correlation needs three
ALPHA = 0.05
STATISTICS = {"pearson": pearson, "kendall": kendall}
COLUMNS = ("ordering", "n_models",
           *(f"{name}{suffix}" for name in STATISTICS for suffix in ("", "_low", "_high", "_p")),
           "picks", "top1", "agreed_best", "note")


def pick_models(board: pd.DataFrame, count: int, seed: int = 0) -> list[str]:
    """``count`` scored models spread over OTCE's ranking, best first: the top one, then one drawn at random
    (``seed``) from each of ``count - 1`` consecutive, equal strata of the others, so the middle and the bottom are
    represented; every scored model when there are no more than ``count``."""
    ranked = list(board[board["status"] == "ok"].sort_values("rank")["model"].astype(str))
    if count >= len(ranked):
        return ranked
    rng = np.random.default_rng(seed)
    strata = np.array_split(np.arange(1, len(ranked)), count - 1) if count > 1 else []
    return [ranked[0], *(ranked[int(rng.choice(stratum))] for stratum in strata)]


def _record_key(spec: Mapping[str, Any], split: TargetSplit, settings: FineTuneSettings) -> str:
    """What decides a model's fine-tuned result: the model (spec and the content of its files and code), the
    schedule and the exact training and evaluation images."""
    model = ModelSpec.from_dict(spec)
    try:
        identity: Any = model_identity(model)
    except ModelError as error:  # its task will fail and say why; such a record is never reused
        identity = str(error)
    content = {"model": model.fingerprint(), "identity": identity, "settings": dataclasses.asdict(settings),
               "train": [item.image_id for item in split.train], "test": [item.image_id for item in split.test]}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _record_uri(output: str, model: str) -> str:
    return fs.join(output, CALIBRATION_DIR, f"{model}.json")


def _recorded(output: str, model: str, key: str) -> FineTuneRecord | None:
    """The model's ok record of the same ``key``, or None (absent, another key, failed, unreadable)."""
    try:
        data = json.loads(fs.read_bytes(_record_uri(output, model)))
        record = FineTuneRecord(**data["record"])
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, KeyError, UnicodeDecodeError) as error:
        logger.warning("calibration record of model %r unreadable (%s): fine-tuned again", model, error)
        return None
    return record if data.get("key") == key and record.status == "ok" else None


def _leaderboard(config: RunConfig) -> pd.DataFrame:
    uri = fs.join(config.output, "leaderboard.parquet")
    if not fs.exists(uri):
        raise ValueError(f"no leaderboard at {uri}: run `otce-ray score --config ...` first")
    return read_table(uri)


def _split(config: RunConfig, settings: FineTuneSettings) -> TargetSplit:
    """The leakage-free split, or a ValueError saying why the target cannot give one."""
    target = config.one_target("calibrate")
    name = target.get("name")
    if target.get("max_images") is None:
        raise ValueError(f"cannot calibrate on target {name!r}: it sets no max_images, so its scores saw every target "
                         "image and none is left to check them on; set target.max_images (e.g. 20) and score again")
    try:
        return split_target(target, settings.train_images, settings.eval_images)
    except ValueError as error:
        raise ValueError(f"cannot calibrate: {error}; label more target images, or score on fewer "
                         "(target.max_images)") from None


def finetuned(config: RunConfig, models: list[str], split: TargetSplit, settings: FineTuneSettings
              ) -> pd.DataFrame:
    """One row per model of ``models`` (in order): its fine-tuning record, recorded ones reused (``reused``)."""
    specs = {spec["name"]: spec for spec in config.models}
    keys = {name: _record_key(specs[name], split, settings) for name in models}
    records = {name: record for name in models if (record := _recorded(config.output, name, keys[name]))}
    reused = set(records)

    def keep(record: FineTuneRecord) -> None:
        records[record.model] = record
        body = {"key": keys[record.model], "record": dataclasses.asdict(record)}
        fs.write_bytes_atomic(_record_uri(config.output, record.model), json.dumps(body, indent=1).encode())

    todo = [specs[name] for name in models if name not in records]
    if todo:
        finetune_each(config, todo, split, settings, keep)
    rows = [{**dataclasses.asdict(records[name]), "reused": name in reused} for name in models]
    return pd.DataFrame(rows)


def _ordering_row(name: str, merged: pd.DataFrame, measure: str, seed: int) -> dict[str, Any]:
    values = merged[[name, measure]].apply(pd.to_numeric, errors="coerce").astype("float64")
    keep = np.isfinite(values.to_numpy()).all(axis=1)
    x, y = values[name].to_numpy()[keep], values[measure].to_numpy()[keep]
    models = merged["model"].to_numpy()[keep]
    row: dict[str, Any] = {"ordering": name, "n_models": len(x)}
    for statistic, measure_of in STATISTICS.items():
        value = measure_of(x, y)
        low, high = fisher_interval(value, len(x), rank=statistic == "kendall")
        row.update({statistic: value, f"{statistic}_low": low, f"{statistic}_high": high,
                    f"{statistic}_p": permutation_p(measure_of, x, y, seed=seed)})
    if len(x):
        row["picks"] = str(models[np.argmax(x)])
        row["top1"] = bool(y[np.argmax(x)] == y.max())
    notes = [f"{int((~keep).sum())} model(s) without a value left out"] if not keep.all() else []
    return {**row, "note": "; ".join(notes)}


def calibration_table(board: pd.DataFrame, models: pd.DataFrame, measure: str = "log_likelihood", *,
                      seed: int = 0) -> pd.DataFrame:
    """One row per ordering of ``board`` (OTCE, its baselines, the consensus) and per reference (params, prior) that
    has values: Pearson and Kendall with ``measure`` over the fine-tuned ok ``models`` (``finetuned``'s rows), each
    with a 95% interval on Fisher's z (``fisher_interval``: it widens with few models, where a bootstrap over them
    would not) and a one-sided exact permutation p-value (``seed``: beyond 8 models, Monte Carlo); the ordering's
    pick (its best of the models), whether it is the fine-tuned best (``top1``), and the ordering that agreed best
    (``agreed_best``: highest Kendall, then Pearson)."""
    ok = models.loc[models["status"] == "ok", ["model", measure]]
    names = [*orderings(board), *(name for name in REFERENCES if name in board.columns)]
    merged = board[["model", *names]].astype({"model": str}).merge(ok, on="model")
    rows = [_ordering_row(name, merged, measure, seed) for name in names]
    table = pd.DataFrame(rows, columns=list(COLUMNS)).dropna(subset=["picks"])
    ranking = table.sort_values(["kendall", "pearson"], ascending=False, na_position="last")
    table["agreed_best"] = False
    if len(ranking) and not math.isnan(ranking["kendall"].iloc[0]):
        best = ranking[["kendall", "pearson"]].iloc[0]
        table["agreed_best"] = (table["kendall"] == best["kendall"]) & (table["pearson"] == best["pearson"])
    return table.astype({"top1": bool}).reset_index(drop=True)


def limits(count: int) -> str:
    """What ``count`` fine-tuned models can show, in a sentence."""
    needed = kendall_needed(count, alpha=ALPHA)
    if math.isnan(needed):
        return (f"K = {count} fine-tuned models cannot tell any ordering from chance at the {ALPHA:.0%} level: even "
                "a perfect order is that likely at random. Calibrate more models.")
    return (f"K = {count} fine-tuned models can only show strong agreement: only a Kendall tau of {needed:.2f} or "
            f"more is rarer than {ALPHA:.0%} under random orderings (one-sided), so a lower tau cannot be told from "
            "chance here, and the intervals are wide. A check on your data, not a verdict.")


def summary_lines(table: pd.DataFrame, models: pd.DataFrame, measure: str) -> list[str]:
    """The report in sentences: what K models can show, the fine-tuned best, which ordering agreed best."""
    ok = models[models["status"] == "ok"]
    lines = [limits(len(ok))]
    if len(ok):
        best = ok.loc[ok[measure].idxmax(), "model"]
        lines.append(f"Fine-tuned best of the {len(ok)}: {best} ({measure}).")
    agreed = table[table["agreed_best"]]
    if len(agreed):
        row = agreed.iloc[0]
        chance = "" if row["kendall_p"] <= ALPHA else ": no better than chance could do with these models"
        lines.append(f"Agreed best on your data: {', '.join(agreed['ordering'])} (Kendall {row['kendall']:.2f}, "
                     f"Pearson {row['pearson']:.2f}{chance}).")
    failed = models[models["status"] != "ok"]
    lines += [f"Not fine-tuned: {row.model}: {row.error}" for row in failed.itertuples(index=False)]
    return lines


def _cell(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else f"{value:.3f}"
    return "" if value is None or value is pd.NA else str(value)


def _html_table(frame: pd.DataFrame, element_id: str) -> str:
    head = "".join(f"<th>{html.escape(str(column))}</th>" for column in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(value))}</td>" for value in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f'<table id="{element_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


LEGEND = ("Each ordering of the leaderboard against fine-tuning a few of its models on your own labelled target "
          "images (trained on the images the scores saw, evaluated on others). _low/_high: 95% interval on Fisher's "
          "z (Pearson from 4 models, Kendall from 5); _p: one-sided exact permutation p-value, the chance that a "
          "random ordering agrees as well; top1: the ordering's best of these models is the fine-tuned best.")


def calibration_html(table: pd.DataFrame, models: pd.DataFrame, measure: str) -> str:
    """``calibration.html``: self-contained, like the leaderboard page it links back to."""
    return html_page(
        f"Calibration on your data ({measure})", STYLE, LEGEND,
        *(f"<p>{html.escape(line)}</p>" for line in summary_lines(table, models, measure)),
        "<h2>Orderings</h2>", _html_table(table, "calibration-orderings"),
        "<h2>Fine-tuned models</h2>", _html_table(models, "calibration-models"),
        '<p><a href="leaderboard.html">Back to the leaderboard</a></p>')


def calibrate(config: RunConfig | Mapping[str, Any] | str | os.PathLike, models: int = DEFAULT_MODELS, seed: int = 0,
              settings: FineTuneSettings | None = None, measure: str = "log_likelihood") -> pd.DataFrame:
    """Check the leaderboard's orderings on your own data by fine-tuning a few of its models.

    Picks ``models`` scored models spread over the OTCE ranking (the top one, then one per stratum of the rest,
    drawn with ``seed``), fine-tunes them as Ray tasks on the labelled target images the scores saw and evaluates
    them on other labelled target images, then correlates every ordering with the result. Writes
    ``calibration.csv`` (the returned table), ``calibration_models.csv``, ``calibration.html`` and the per-model
    records (``calibration/``, so a rerun resumes) to the run's output, and links the page from the leaderboard.

    Parameters
    ----------
    config : RunConfig, mapping or path
        The run config that produced the leaderboard (as ``otce_ray.rank`` takes it); its target must set
        ``max_images``, the images scoring saw.
    models : int, default 6
        How many models to fine-tune (at least 3; all scored models when there are fewer).
    seed : int, default 0
        Draws the models within their strata and seeds the bootstrap.
    settings : FineTuneSettings, optional
        The fine-tuning schedule and how many evaluation images (default: ``FineTuneSettings()``).
    measure : {"log_likelihood", "miou", "pixel_accuracy"}, default "log_likelihood"
        The fine-tuned result the orderings are held against.

    Returns
    -------
    pandas.DataFrame
        One row per ordering (``COLUMNS``): ``pearson`` and ``kendall`` with ``_low``/``_high`` interval bounds and
        a permutation ``_p``, its ``picks``, ``top1``, ``agreed_best``. ``.attrs["models"]`` holds the fine-tuned
        models' rows and ``.attrs["summary"]`` the report's sentences.

    Raises
    ------
    ValueError
        No leaderboard in the output yet, fewer than 3 models asked for, or a target that cannot be split (no
        ``max_images``, or no labelled image left to evaluate on).

    Examples
    --------
    >>> import otce_ray
    >>> report = otce_ray.calibrate("run.yaml", models=6)  # doctest: +SKIP
    >>> report[["ordering", "kendall", "kendall_low", "kendall_high", "top1"]]  # doctest: +SKIP
    """
    config = as_config(config)
    settings = settings or FineTuneSettings()
    if models < MIN_MODELS:
        raise ValueError(f"calibration needs at least {MIN_MODELS} models, got {models}")
    if measure not in ("log_likelihood", "miou", "pixel_accuracy"):
        raise ValueError(f"measure: expected log_likelihood, miou or pixel_accuracy, got {measure!r}")
    board = _leaderboard(config)
    chosen = pick_models(board, models, seed)
    if len(chosen) < MIN_MODELS:
        raise ValueError(f"the leaderboard has {len(chosen)} scored model(s): calibration needs at least {MIN_MODELS}")
    split = _split(config, settings)
    owns_ray = connect()
    try:
        rows = finetuned(config, chosen, split, settings)
    finally:
        if owns_ray:
            ray.shutdown()
    rows = board[["model", "rank", "otce"]].astype({"model": str}).merge(rows, on="model")
    table = calibration_table(board, rows, measure, seed=seed)
    table.attrs.update(models=rows, summary=summary_lines(table, rows, measure))
    _write(config, table, rows, measure)
    return table


def _write(config: RunConfig, table: pd.DataFrame, rows: pd.DataFrame, measure: str) -> None:
    """The report's files, then the leaderboard again from its records so that its page links the report."""
    fs.write_bytes_atomic(fs.join(config.output, CALIBRATION_CSV), csv_bytes(table))
    fs.write_bytes_atomic(fs.join(config.output, MODELS_CSV), csv_bytes(rows))
    fs.write_bytes_atomic(fs.join(config.output, CALIBRATION_PAGE), calibration_html(table, rows, measure).encode())
    recorded = {result.model: result for result in load_results(config.output, damaged=[])}
    results = [recorded[spec["name"]] for spec in config.models if spec["name"] in recorded]
    if results:
        publish(config, results)
