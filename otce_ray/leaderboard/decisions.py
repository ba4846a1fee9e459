"""What a user choosing a model to fine-tune needs beyond one ordering: how sure its top is, whether the metrics
agree, and whether a metric says more than "bigger is better".

- ``top_probabilities``: per model, the probability of being the best (``p_best``) and of being in the top k
  (``p_top_k``) under the noise of the OTCE repeats, by a bootstrap of each model's repeat scores.
- ``summarise``: a run's decision summary (``DecisionSummary``): those probabilities at the top, each metric's
  top-k overlap with OTCE's ordering and a flag where OTCE's best model is not in a metric's top k, the rank
  correlation of every metric with the reference orderings (parameter count, the user's prior), and the ordering
  the leaderboard recommends (``RECOMMENDED``). It goes to ``run.json``, the Markdown summary and the page.

All pure functions over the leaderboard frame and the repeat scores; nothing here reads or writes files.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from numbers import Integral
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from otce_ray.leaderboard.columns import metric_columns
from otce_ray.leaderboard.consensus import CONSENSUS_METRICS
from otce_ray.schema import Interval, check_record, declared

# Which ordering the leaderboard recommends, and why, in one place: validation v3's Decision 2 (pre-registered, on
# fresh benchmark seeds; docs/validation.md).
RECOMMENDED = "consensus"
RECOMMENDATION = (
    "Recommended ordering: the consensus column (mean normalised rank over OTCE, H-score with shrinkage, LogME and "
    "N-LEEP; higher is better). Validation v3 (pre-registered, fresh seeds of the procedural benchmark, "
    "docs/validation.md) found it ahead of OTCE alone by +0.11 [+0.03, +0.20] in mean intra-dataset Pearson with "
    "fine-tuned transfer (0.88 against 0.77). The rank column is OTCE's own ordering. Without the baselines the "
    "consensus is OTCE's ranking."
)
REFERENCES = ("params", "prior")  # dataset-agnostic orderings every metric is held against
LEADERS = 3  # models the summary names under "how sure is the top"
MAX_RESAMPLES = 1_000_000
_CHUNK_CELLS = 1 << 22  # resample x model cells held at once


@dataclass(frozen=True)
class DecisionSettings:
    """The run config's ``decisions:`` section: how ``p_best``/``p_top_k`` are estimated and which k the top-k
    numbers use. None of it changes a score, so changing it rescores nothing."""

    top_k: int = declared(Interval(Integral, 1, 10_000), 5,
                          "k of `p_top_k` and of the metrics' top-k agreement (capped at the models scored)")
    resamples: int = declared(Interval(Integral, 100, MAX_RESAMPLES), 4000,
                              "bootstrap resamples of the repeat scores behind `p_best` and `p_top_k`")
    seed: int = declared(Interval(Integral, 0, 2**63 - 1), 0, "seeds those resamples")

    def __post_init__(self) -> None:
        check_record(self)


METHOD = (
    "p_best and p_top_k: the share of {resamples} bootstrap resamples (seed {seed}) in which a model is the best, or "
    "among the top {k}, when each model's score is the mean of its repeat scores drawn with replacement from its "
    "own; models with as many repeats draw the same repeat indices (repeat k of every model samples its pixels with "
    "the same seeds), ties split evenly. Repeat noise only: it says how sure the ranking is given these pixels, not "
    "whether OTCE predicts transfer."
)


def top_probabilities(scores: Mapping[str, Sequence[float]], k: int, *, resamples: int = 4000,
                      seed: int = 0) -> pd.DataFrame:
    """``p_best`` and ``p_top_k`` per model (index: the models of ``scores``, a model -> its repeat scores).

    Per resample, each model's score is the mean of K of its repeat scores drawn with replacement (the
    nonparametric bootstrap of its mean); the model is best, or in the top ``k`` (capped at the number of models),
    when its resampled score is. Models tied on a place share it evenly, so ``p_best`` sums to 1 and ``p_top_k`` to
    k over the models. Models with the same number of repeats draw the same repeat indices: their repeat k drew
    pixels with the same seeds, so the pairing is kept, and two models with identical repeats tie in every resample
    and share their probability exactly. A model whose repeats are identical (they drew the same pixels) is a point
    mass at its score. Deterministic for a given ``seed`` and set of models, whatever their order.

    >>> p = top_probabilities({"a": [-1.0, -1.1, -0.9], "b": [-5.0, -5.2, -4.8], "c": [-9.0, -9.1, -8.9]}, k=2)
    >>> p.loc[["a", "b", "c"], "p_best"].tolist(), p.loc[["a", "b", "c"], "p_top_k"].tolist()
    ([1.0, 0.0, 0.0], [1.0, 1.0, 0.0])
    """
    names = sorted(scores)
    if not names:
        return pd.DataFrame({"p_best": [], "p_top_k": []}, dtype="float64")
    k = max(1, min(k, len(names)))
    values = [np.asarray(scores[name], dtype=float) for name in names]
    rng = np.random.default_rng(seed)
    best, top = np.zeros(len(names)), np.zeros(len(names))
    step = max(1, _CHUNK_CELLS // len(names))
    for start in range(0, resamples, step):
        rows = min(step, resamples - start)
        draws: dict[int, np.ndarray] = {}
        for count in sorted({len(v) for v in values}):
            draws[count] = rng.integers(0, count, size=(rows, count))
        means = np.column_stack([v[draws[len(v)]].mean(axis=1) for v in values])
        best += _places(means, 1).sum(axis=0)
        top += _places(means, k).sum(axis=0)
    return pd.DataFrame({"p_best": best / resamples, "p_top_k": top / resamples}, index=names)


def _places(means: np.ndarray, k: int) -> np.ndarray:
    """Per resample (row) and model (column), its share of the top ``k`` places: 1 above the k-th best value, 0
    below it, and the models tied with it split the places left evenly."""
    kth = -np.partition(-means, k - 1, axis=1)[:, k - 1:k]
    above, tied = means > kth, means == kth
    left = k - above.sum(axis=1, keepdims=True)
    return np.where(above, 1.0, np.where(tied, left / np.maximum(tied.sum(axis=1, keepdims=True), 1), 0.0))


def orderings(board: pd.DataFrame) -> list[str]:
    """The ordering columns of a board: OTCE, each baseline metric it holds, then the consensus."""
    return ["otce", *metric_columns(board), *(["consensus"] if "consensus" in board.columns else [])]


def _finite(board: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """The scored rows where every one of ``columns`` holds a finite number, as floats."""
    scored = board[board["status"] == "ok"]
    values = scored[list(columns)].apply(pd.to_numeric, errors="coerce").astype("float64")
    keep = np.isfinite(values.to_numpy()).all(axis=1)
    return values[keep].assign(model=scored["model"][keep].astype(str))


def rank_correlations(board: pd.DataFrame, columns: Sequence[str], references: Sequence[str] = REFERENCES
                      ) -> list[dict[str, Any]]:
    """Kendall's tau-b and Spearman's rho between each of ``columns`` and each reference ordering that has values,
    over the scored models with both; NaN (with a note) when fewer than 3 models or either side is constant."""
    rows = []
    for reference in (name for name in references if name in board.columns):
        for column in columns:
            pair = _finite(board, column, reference)
            x, y = pair[column].to_numpy(), pair[reference].to_numpy()
            note = None
            if len(x) < 3:
                note = f"{len(x)} model(s) with both values: fewer than 3"
            elif np.ptp(x) == 0 or np.ptp(y) == 0:
                note = f"{reference if np.ptp(y) == 0 else column} is constant over these models"
            kendall = math.nan if note else float(stats.kendalltau(x, y).statistic)
            spearman = math.nan if note else float(stats.spearmanr(x, y).statistic)
            rows.append({"metric": column, "reference": reference, "n_models": len(x), "kendall": kendall,
                         "spearman": spearman, "note": note})
    return rows


def top_k_models(board: pd.DataFrame, column: str, k: int) -> list[str]:
    """The ``k`` scored models with the highest finite ``column`` (higher is better), ties by model name."""
    values = _finite(board, column)
    return list(values.sort_values([column, "model"], ascending=[False, True])["model"][:k])


def agreement(board: pd.DataFrame, k: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Each ordering (OTCE's own first) against OTCE's: the share of OTCE's top ``k`` in its top ``k`` and whether
    OTCE's best model is in it; and the flags, one line per ordering whose top ``k`` leaves OTCE's best model out."""
    reference = top_k_models(board, "otce", k)
    if not reference:
        return [], []
    rows, flags = [], []
    for column in orderings(board):
        chosen = top_k_models(board, column, k)
        if not chosen:
            continue
        holds_top1 = reference[0] in chosen
        rows.append({"metric": column, "top_k_overlap": len(set(chosen) & set(reference)) / k,
                     "otce_top1_in_top_k": holds_top1, "top1": chosen[0]})
        if not holds_top1:
            flags.append(f"OTCE's best model {reference[0]} is not in {column}'s top {k} (its best: {chosen[0]})")
    return rows, flags


@dataclass(frozen=True)
class DecisionSummary:
    """A run's decisions in one record (``summarise``): for run.json (``to_dict``), the Markdown and the page."""

    recommended: str
    recommendation: str
    method: str
    top_k: int  # the k used: the configured one capped at the models scored
    chances: tuple[dict[str, Any], ...]  # every scored model, most likely best first: model, p_best, p_top_k
    point_masses: tuple[str, ...]  # models whose repeats drew the same pixels: no repeat noise to resample
    consensus_of: tuple[str, ...]  # the consensus members this run computed
    agreement: tuple[dict[str, Any], ...]
    flags: tuple[str, ...]
    reference_lines: tuple[dict[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        return json_safe(dataclasses.asdict(self))

    def by_ordering(self) -> list[dict[str, Any]]:
        """One row per ordering: its agreement with OTCE's top k and its rank correlations with each reference
        (``kendall_params``, ``spearman_prior``, ...)."""
        rows = {row["metric"]: dict(row) for row in self.agreement}
        for line in self.reference_lines:
            row = rows.setdefault(line["metric"], {"metric": line["metric"]})
            row.update({f"kendall_{line['reference']}": line["kendall"],
                        f"spearman_{line['reference']}": line["spearman"]})
        return list(rows.values())

    @property
    def leaders(self) -> tuple[dict[str, Any], ...]:
        """The models most likely best, as the summary's sentence lists them."""
        return self.chances[:LEADERS]



def summarise(board: pd.DataFrame, settings: DecisionSettings | None = None) -> DecisionSummary:
    """The decision summary of a leaderboard built by ``build_leaderboard`` (its ``p_best``/``p_top_k`` columns
    were estimated under the same ``settings``)."""
    settings = settings or DecisionSettings()
    scored = board[board["status"] == "ok"]
    k = max(1, min(settings.top_k, len(scored)))
    likely = scored.sort_values(["p_best", "rank"], ascending=[False, True])
    rows, flags = agreement(board, k)
    return DecisionSummary(
        recommended=RECOMMENDED,
        recommendation=RECOMMENDATION,
        method=METHOD.format(resamples=settings.resamples, seed=settings.seed, k=k),
        top_k=k,
        chances=tuple({"model": str(row.model), "p_best": float(row.p_best), "p_top_k": float(row.p_top_k)}
                      for row in likely.itertuples(index=False)),
        point_masses=tuple(str(name) for name in scored.loc[scored["otce_ci_low"].isna(), "model"]),
        consensus_of=tuple(name for name in CONSENSUS_METRICS if name in board.columns
                           and _finite(board, name).shape[0] > 0),
        agreement=tuple(rows),
        flags=tuple(flags),
        reference_lines=tuple(rank_correlations(board, orderings(board))),
    )


def json_safe(value: Any) -> Any:
    """``value`` with NaN as None, so run.json stays strict JSON."""
    if isinstance(value, Mapping):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
