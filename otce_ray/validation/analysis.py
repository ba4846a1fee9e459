"""From the per-cell table of validation v3 to every number of its report, by the rules of ``protocol``.

A cell is one (benchmark seed, experiment, target): its source models ranked by each metric and by the ground truth
(the mean over replicates of the fine-tuned log-likelihood, mIoU and pixel accuracy). Every mean over cells is taken
over the cells whose ground truth is reliable enough (noise ceiling >= ``MIN_CEILING``), with hierarchical bootstrap
BCa intervals (``otce_ray.evaluation.inference``); comparisons are paired on the same resamples. Pure functions over
the table: nothing here reads anything else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from otce_ray.evaluation import kendall, pearson
from otce_ray.evaluation.across_targets import Reliability, fisher_z_mean, replicate_reliability
from otce_ray.evaluation.inference import (
    DECISIONS,
    Cells,
    Comparison,
    Estimate,
    bca_interval,
    compare,
    draw_plans,
    over_cells,
    random_pick,
    weighted_pearson,
)
from otce_ray.leaderboard.consensus import consensus
from otce_ray.scoring.baselines import BASELINES
from otce_ray.validation import protocol
from otce_ray.validation.plan import INTER, SETTINGS
from otce_ray.validation.tables import MEASURES, score_column, seconds_column

CELL = ["seed", "experiment", "target"]


def with_truth(cells: pd.DataFrame) -> pd.DataFrame:
    """The table with each measure's mean over the ground-truth replicates (NaN when a replicate failed) and the
    consensus ordering built on ``otce``, the OTCE setting the choice rule picked (set by ``with_chosen``)."""
    out = cells.copy()
    for measure in MEASURES:
        replicates = [c for c in cells.columns if c.startswith(f"{measure}@")]
        out[measure] = cells[replicates].mean(axis=1, skipna=False)
    return out


def with_chosen(cells: pd.DataFrame, setting: str) -> pd.DataFrame:
    """``otce`` := the chosen setting's score; ``consensus`` per cell over it and the consensus baselines."""
    out = cells.assign(otce=cells[score_column(setting)])
    ranks = [consensus(group) for _, group in out.groupby(CELL, sort=False)]
    return out.assign(**{protocol.CONSENSUS: pd.concat(ranks)})


def reliability(cells: pd.DataFrame) -> pd.DataFrame:
    """Per cell: how repeatable the log-likelihood is over replicates (ICC of their mean), its noise ceiling
    sqrt(ICC), and the spread of the ground truth over the cell's models (nats of log-likelihood, points of mIoU)."""
    rows = []
    for key, group in cells.groupby(CELL, sort=False):
        replicates = group[[c for c in group.columns if c.startswith("log_likelihood@")]].dropna()
        try:
            result = replicate_reliability(replicates.to_numpy().T)
        except ValueError:  # too few models or replicates to tell: not reliable, so left out
            result = Reliability(float("nan"), float("nan"), float("nan"), replicates.shape[1])
        rows.append({**dict(zip(CELL, key)), "models": len(group), "icc": result.icc, "ceiling": result.ceiling,
                     "pairwise_pearson": result.pairwise_pearson,
                     "spread_nats": float(np.ptp(group.log_likelihood.dropna())),
                     "spread_miou": float(np.ptp(group.miou.dropna()))})
    return pd.DataFrame(rows)


def reliable(cells: pd.DataFrame, reliability_table: pd.DataFrame) -> pd.DataFrame:
    """The rows of the cells whose noise ceiling reaches ``MIN_CEILING``."""
    kept = reliability_table[reliability_table.ceiling >= protocol.MIN_CEILING][CELL]
    return cells.merge(kept, on=CELL)


def metrics(cells: pd.DataFrame) -> list[str]:
    """What the report judges: every OTCE setting, every baseline, the consensus (when built), the reference lines."""
    found = [score_column(name) for name in SETTINGS if score_column(name) in cells]
    found += [name for name in BASELINES if name in cells]
    found += [protocol.CONSENSUS] if protocol.CONSENSUS in cells else []
    return found + [name for name in protocol.REFERENCE_LINES if name in cells]


@dataclass
class Design:
    """One experiment's cells, their values per metric, and the resamples every comparison shares."""

    cells: Cells
    x: dict[str, dict]
    y: dict
    plans: list
    seeds: tuple[int, ...]
    _memo: dict = field(default_factory=dict)

    def resampled(self, metric: str, statistic, pearson_mean: bool) -> tuple[float, np.ndarray, np.ndarray]:
        """(value, resampled values, leave-one-seed-out values) of a statistic over cells (computed once)."""
        key = (metric, statistic)
        if key not in self._memo:
            x = self.x[metric]
            value = over_cells(self.cells, x, self.y, statistic, pearson_mean)
            boot = over_cells(self.cells, x, self.y, statistic, pearson_mean, self.plans)
            jack = np.array([over_cells(self.cells, x, self.y, statistic, pearson_mean,
                                        keep=[s for s in self.seeds if s != out]) for out in self.seeds])
            self._memo[key] = (value, boot, jack)
        return self._memo[key]


def design(cells: pd.DataFrame, experiment: str, metric_names: Sequence[str], measure: str = protocol.PRIMARY_MEASURE,
           resamples: int = protocol.RESAMPLES) -> Design | None:
    """The cells of ``experiment`` over the rows every listed metric and the measure have (so every metric is judged
    on the same models)."""
    rows = cells[cells.experiment == experiment]
    rows = rows[rows[[measure]].notna().all(axis=1) & rows.status.eq("ok")]
    if rows.empty:
        return None
    seeds = tuple(sorted(rows.seed.unique()))
    targets, models, positions, y = {}, {}, {}, {}
    x: dict[str, dict] = {metric: {} for metric in metric_names}
    for seed in seeds:
        mine = rows[rows.seed == seed]
        models[seed] = tuple(dict.fromkeys(mine.model))
        targets[seed] = tuple(dict.fromkeys(mine.target))
        index = {model: i for i, model in enumerate(models[seed])}
        for target, part in mine.groupby("target", sort=False):
            positions[(seed, target)] = np.array([index[m] for m in part.model])
            y[(seed, target)] = part[measure].to_numpy(float)
            for metric in metric_names:
                x[metric][(seed, target)] = part[metric].to_numpy(float)
    structure = Cells(seeds, targets, models, positions)
    return Design(structure, x, y, draw_plans(structure, resamples, protocol.BOOTSTRAP_SEED), seeds)


def correlation(d: Design, metric: str) -> Estimate:
    """Fisher-z mean Pearson over the design's cells, with its BCa interval."""
    value, boot, jack = d.resampled(metric, weighted_pearson, True)
    return bca_interval(value, boot, jack, protocol.CONFIDENCE)


def difference(d: Design, a: str, b: str) -> Comparison:
    """Mean Pearson of metric ``a`` minus that of ``b``, paired on the same resamples."""
    value_a, boot_a, jack_a = d.resampled(a, weighted_pearson, True)
    value_b, boot_b, jack_b = d.resampled(b, weighted_pearson, True)
    return compare(value_a - value_b, boot_a - boot_b, jack_a - jack_b)


def decision(d: Design, metric: str, statistic: str) -> Estimate:
    value, boot, jack = d.resampled(metric, DECISIONS[statistic], False)
    return bca_interval(value, boot, jack, protocol.CONFIDENCE)


def random_reference(d: Design, statistic: str) -> float:
    """What picking at random gives on average over the design's cells."""
    return float(np.mean([random_pick(statistic, d.y[key], np.ones(len(d.y[key]))) for key in d.y]))


@dataclass(frozen=True)
class Choice:
    chosen: str  # a name of ``CANDIDATES``
    best: str
    table: pd.DataFrame  # per candidate: endpoint, interval, cost, eligibility, equivalence to the best


def choose(cells: pd.DataFrame, d: Design) -> Choice:
    """The pre-registered rule: among the candidates with no unconverged repeat in the primary cells, the best
    primary endpoint; a cheaper candidate (measured seconds per repeat) equivalent to it by TOST at ``MARGIN`` is
    chosen instead, the cheapest such one."""
    rows = []
    primary = cells[cells.experiment == protocol.PRIMARY_EXPERIMENT]
    for name in protocol.CANDIDATE_SETTINGS:
        column = score_column(name)
        dropped = primary.get("dropped_in", pd.Series(dtype="string")).astype("string").fillna("").str.split(
            ",").apply(lambda names, name=name: name in names).any()
        estimate = correlation(d, column)
        rows.append({"setting": name, "label": SETTINGS[name].label, "pearson": estimate.value,
                     "low": estimate.low, "high": estimate.high,
                     "seconds_per_repeat": float(primary[seconds_column(name)].mean()),
                     "eligible": bool(not dropped and np.isfinite(estimate.value))})
    table = pd.DataFrame(rows)
    eligible = table[table.eligible]
    best = eligible.loc[eligible.pearson.idxmax(), "setting"]
    cost = table.set_index("setting").seconds_per_repeat
    tests = {name: difference(d, score_column(name), score_column(best)) for name in eligible.setting
             if name != best and cost[name] < cost[best]}
    table["tost_low90"] = table.setting.map(lambda n: tests[n].low90 if n in tests else np.nan)
    table["tost_high90"] = table.setting.map(lambda n: tests[n].high90 if n in tests else np.nan)
    table["equivalent_to_best"] = table.setting.map(
        lambda n: n == best or (n in tests and tests[n].equivalent(protocol.MARGIN)))
    cheaper = table[table.equivalent_to_best].sort_values("seconds_per_repeat")
    return Choice(str(cheaper.iloc[0].setting), str(best), table)


def within_family(cells: pd.DataFrame, metric_names: Sequence[str], measure: str = protocol.PRIMARY_MEASURE
                  ) -> pd.DataFrame:
    """Per metric: the Fisher-z mean over cells of the Pearson within each source family (inter), and their mean."""
    rows = []
    for metric in metric_names:
        per_family = {}
        for family, part in cells.groupby("source_family"):
            per_family[family] = fisher_z_mean([pearson(*finite_pairs(group[metric], group[measure]))
                                                for _, group in part.groupby(CELL, sort=False)])
        rows.append({"metric": metric, **{f"r_{family}": value for family, value in per_family.items()},
                     "within": fisher_z_mean(list(per_family.values()))})
    return pd.DataFrame(rows)


def by_source_city(cells: pd.DataFrame, metric_names: Sequence[str], measure: str = protocol.PRIMARY_MEASURE
                   ) -> pd.DataFrame:
    """The paper's Figs. 4-5: per (source family, metric), the Fisher-z mean over cells of the Pearson over the
    architectures trained on that family's source city, and the mean Kendall."""
    rows = []
    for family, part in cells.groupby("source_family"):
        for metric in metric_names:
            groups = [finite_pairs(group[metric], group[measure]) for _, group in part.groupby(CELL, sort=False)]
            rows.append({"source_family": family, "metric": metric,
                         "pearson": fisher_z_mean([pearson(x, y) for x, y in groups]),
                         "kendall": _mean([kendall(x, y) for x, y in groups])})
    return pd.DataFrame(rows)


def diagnosis(cells: pd.DataFrame, metric: str = "otce", measure: str = protocol.PRIMARY_MEASURE) -> pd.DataFrame:
    """The inter experiment per (source family, architecture): the metric's mean standardised residual against the
    ground truth within each cell (positive: ranked higher than its transfer deserves), beside the model's feature
    width, feature scale and accuracy on its own city, and the Pearson of the residual with each of those over the
    family's models: what OTCE's errors go with."""
    inter = cells[cells.experiment == INTER].copy()

    def standardised(column: pd.Series) -> pd.Series:
        return (column - column.mean()) / column.std(ddof=0)

    parts = []
    for _, group in inter.groupby([*CELL, "source_family"], sort=False):
        parts.append(group.assign(residual=standardised(group[metric]) - standardised(group[measure])))
    inter = pd.concat(parts)
    table = inter.groupby(["source_family", "architecture", "width", "feature_dim"], as_index=False).agg(
        residual=("residual", "mean"), feature_norm=("feature_norm", "mean"), source_miou=("source_miou", "mean"),
        params=("params", "mean"), truth=(measure, "mean"), score=(metric, "mean"))
    for family, part in inter.groupby("source_family"):
        for column in ("feature_dim", "feature_norm", "source_miou", "params"):
            table.loc[table.source_family == family, f"residual_vs_{column}"] = pearson(
                *finite_pairs(part["residual"], np.log(part[column]) if column in ("feature_norm", "params")
                         else part[column]))
    return table


def _mean(values: Sequence[float]) -> float:
    finite = [value for value in values if np.isfinite(value)]
    return float(np.mean(finite)) if finite else float("nan")


def finite_pairs(x: pd.Series, y: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]
