"""The report of validation v3, in Markdown, computed from the committed tables alone (``cells.csv``, ``meta.json``).

Correlations are Pearson with the mean fine-tuned log-likelihood unless a table says otherwise; a mean is the
Fisher-z mean over the cells (seed, target) whose ground truth is reliable (noise ceiling >= the protocol's
minimum), and its interval the 95% BCa interval of the hierarchical bootstrap over seeds, targets and source models
(``otce_ray.evaluation.inference``). Decisions (top-1 hit, regret, top-3 recall) are plain means over cells.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from otce_ray.evaluation import pearson
from otce_ray.evaluation.across_targets import fisher_z_mean
from otce_ray.evaluation.inference import DECISIONS, holm
from otce_ray.scoring.baselines import BASELINES
from otce_ray.validation import analysis, protocol
from otce_ray.validation.plan import EXPERIMENTS, INTER, SETTINGS
from otce_ray.validation.tables import META, read_cells, score_column, seconds_column

REPORT = "report.md"


def markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(str(value) for value in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _r(value: float, digits: int = 2) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:+.{digits}f}"


def _p(value: float) -> str:
    return "n/a" if not np.isfinite(value) else "< 0.001" if value < 0.001 else f"{value:.3f}"


def name_of(metric: str) -> str:
    """A metric's name in the report: an OTCE setting by its name and label, others as they are."""
    for setting in SETTINGS:
        if metric == score_column(setting):
            return f"OTCE {setting} ({SETTINGS[setting].label})"
    return metric


def correlation_table(d: analysis.Design, names: list[str], chosen: str) -> tuple[pd.DataFrame, list[float]]:
    """Per metric: mean Pearson [BCa], mean Kendall, and the chosen OTCE minus the metric (paired); the raw p-values
    of those differences, for the Holm family."""
    rows, p_values = [], []
    for metric in names:
        estimate = analysis.correlation(d, metric)
        kendall = float(np.nanmean([pd.Series(d.x[metric][key]).corr(pd.Series(d.y[key]), method="kendall")
                                    for key in d.y]))
        row = {"metric": name_of(metric), "mean Pearson [95% BCa]": f"{_r(estimate.value)} [{_r(estimate.low)}, "
               f"{_r(estimate.high)}]", "mean Kendall": _r(kendall)}
        if metric != chosen:
            test = analysis.difference(d, chosen, metric)
            row["chosen minus metric [95%]"] = f"{_r(test.difference)} [{_r(test.low)}, {_r(test.high)}]"
            p_values.append(test.p_value)
            row["p"] = test.p_value
        else:
            row["chosen minus metric [95%]"], row["p"] = "", float("nan")
            p_values.append(float("nan"))
        rows.append(row)
    return pd.DataFrame(rows), p_values


def decision_table(d: analysis.Design, names: list[str]) -> pd.DataFrame:
    rows = [{"ordering": "pick at random (expected)",
             **{statistic: _r(analysis.random_reference(d, statistic)) for statistic in DECISIONS}}]
    for metric in names:
        row = {"ordering": name_of(metric)}
        for statistic in DECISIONS:
            estimate = analysis.decision(d, metric, statistic)
            row[statistic] = f"{_r(estimate.value)} [{_r(estimate.low)}, {_r(estimate.high)}]"
        rows.append(row)
    return pd.DataFrame(rows)


def write_report(tables: Path, out: Path | None = None, resamples: int = protocol.RESAMPLES) -> Path:
    """Compute every table from ``tables`` (cells.csv, meta.json) and write ``report.md`` (to ``out``, default
    beside the tables). ``resamples``: the bootstrap's (the protocol's unless a test asks for fewer)."""
    tables = Path(tables)
    meta = json.loads((tables / META).read_text())
    cells = analysis.with_truth(read_cells(tables))
    fresh = cells[cells.seed.isin(protocol.FRESH_SEEDS)]
    judged = fresh if len(fresh) else cells  # a shakedown of other seeds is reported the same way, and says so
    reliability = analysis.reliability(judged)
    kept = analysis.reliable(judged, reliability)
    primary = analysis.design(kept, protocol.PRIMARY_EXPERIMENT,
                              [score_column(s) for s in protocol.CANDIDATE_SETTINGS], resamples=resamples)
    choice = analysis.choose(kept, primary)
    chosen = score_column(choice.chosen)
    kept = analysis.with_chosen(kept, choice.chosen)
    names = [m for m in analysis.metrics(kept) if m != "otce"]
    lines = ["# Validation v3 report", "", _provenance(meta, judged), ""]
    lines += _ground_truth(reliability)
    lines += ["## The choice among the pre-registered settings (primary endpoint)", "",
              f"Primary endpoint: mean Pearson with the mean fine-tuned log-likelihood over the "
              f"`{protocol.PRIMARY_EXPERIMENT}` cells; equivalence: TOST at +-{protocol.MARGIN} (90% BCa interval of "
              "the paired difference).", "",
              markdown(choice.table.assign(
                  seconds_per_repeat=choice.table.seconds_per_repeat.map("{:.3f}".format),
                  **{c: choice.table[c].map(_r) for c in ("pearson", "low", "high", "tost_low90", "tost_high90")})),
              "",
              f"**Chosen: {choice.chosen}** ({SETTINGS[choice.chosen].label}); best point estimate: {choice.best}.",
              ""]
    family, sections = [], []
    for experiment in EXPERIMENTS:
        listed = [m for m in names if m in kept and kept.loc[kept.experiment == experiment, m].notna().any()
                  and kept.loc[kept.experiment == experiment, m].nunique() > 1]
        d = analysis.design(kept, experiment, list(dict.fromkeys([chosen, *listed])), resamples=resamples)
        if d is None:
            continue
        table, p_values = correlation_table(d, list(dict.fromkeys([chosen, *listed])), chosen)
        family.append((experiment, table, p_values))
        sections.append((experiment, d, listed))
    adjusted = iter(holm([p for _, _, ps in family for p in ps]))
    for experiment, table, p_values in family:
        table["Holm p"] = [_p(next(adjusted)) for _ in p_values]
        table["p"] = table["p"].map(_p)
        lines += [f"## Correlations: `{experiment}`", "", markdown(table), ""]
    for experiment, d, listed in sections:
        lines += [f"## Decisions: `{experiment}`", "",
                  "top1_hit: the top-ranked model is the best; regret: ground-truth gap (nats) between the model "
                  "picked and the best; relative_regret: that over the gap a random pick leaves (1: no better than "
                  "random); top3_recall: share of the 3 best among the 3 ranked highest.", "",
                  markdown(decision_table(d, list(dict.fromkeys([chosen, *listed])))), ""]
    lines += _consensus(kept, chosen, resamples)
    lines += _inter(kept, [chosen, *[m for m in names if m in BASELINES]])
    lines += _other_measures(kept, [chosen, *names])
    lines += _costs(judged)
    path = Path(out or tables) / REPORT
    path.write_text("\n".join(lines) + "\n")
    return path


def _provenance(meta: dict, cells: pd.DataFrame) -> str:
    runs = []
    while meta:
        code = meta.get("code", {})
        runs.append(f"seeds {meta.get('seeds')}: code {code.get('commit')} "
                    f"({'clean tree' if code.get('clean') else 'NOT a clean tree'}), pre-registration commit "
                    f"{meta.get('preregistration')}, machine {meta.get('machine', {}).get('platform')} with "
                    f"{meta.get('machine', {}).get('cpus')} CPUs, ran {meta.get('started')} to {meta.get('finished')}")
        meta = meta.get("earlier")
    return (f"Seeds {sorted(int(seed) for seed in cells.seed.unique())} ({len(cells)} rows). "
            + "; earlier, ".join(runs) + ".")


def _ground_truth(reliability: pd.DataFrame) -> list[str]:
    excluded = reliability[reliability.ceiling < protocol.MIN_CEILING]
    per = reliability.groupby("experiment").agg(cells=("target", "size"), mean_icc=("icc", "mean"),
                                                min_ceiling=("ceiling", "min"), spread_nats=("spread_nats", "mean"),
                                                spread_miou=("spread_miou", "mean")).reset_index()
    listed = ", ".join(f"seed {r.seed} {r.experiment} {r.target} ({r.ceiling:.2f})" for r in excluded.itertuples())
    return ["## Ground truth", "",
            "Replicate 0 fine-tunes on the 20 scored images; replicates 1-2 on bootstrap draws of them with other "
            "seeds. ICC: reliability of the mean over replicates; spread: best minus worst model of a cell.", "",
            markdown(per.round(3)), "",
            f"Cells left out (noise ceiling < {protocol.MIN_CEILING}): {listed or 'none'}.", ""]


def _consensus(cells: pd.DataFrame, chosen: str, resamples: int) -> list[str]:
    d = analysis.design(cells, protocol.PRIMARY_EXPERIMENT, [chosen, protocol.CONSENSUS], resamples=resamples)
    test = analysis.difference(d, protocol.CONSENSUS, chosen)
    verdict = ("consensus" if test.low > 0 else "OTCE" if test.high < 0 else
               "neither over the other (indistinguishable on the primary endpoint)")
    return ["## Consensus of metrics against OTCE (pre-registered)", "",
            f"Consensus minus chosen OTCE on the primary endpoint: {_r(test.difference)} [{_r(test.low)}, "
            f"{_r(test.high)}] (p {_p(test.p_value)}). Recommended ordering by the pre-registered rule: "
            f"**{verdict}**.", ""]


def _inter(cells: pd.DataFrame, names: list[str]) -> list[str]:
    inter = cells[cells.experiment == INTER]
    if inter.empty:
        return []
    within = analysis.within_family(inter, names).round(2)
    by_city = analysis.by_source_city(inter, names).round(2)
    return ["## Inter: within each source family, and per source city (the paper's Figs. 4-5)", "",
            markdown(within), "", markdown(by_city), "",
            "### What OTCE's errors go with (per architecture; residual: standardised OTCE minus standardised "
            "ground truth)", "", markdown(analysis.diagnosis(cells).round(3)), ""]


def _other_measures(cells: pd.DataFrame, names: list[str]) -> list[str]:
    rows = []
    for experiment, part in cells.groupby("experiment"):
        for measure in ("miou", "pixel_accuracy"):
            row = {"experiment": experiment, "measure": measure}
            for metric in names[:6]:
                row[name_of(metric)] = _r(fisher_z_mean(
                    [pearson(*analysis.finite_pairs(g[metric], g[measure])) for _, g in part.groupby(analysis.CELL)]))
            rows.append(row)
    return ["## Other ground-truth measures (mean Pearson, point estimates)", "", markdown(pd.DataFrame(rows)), ""]


def _costs(cells: pd.DataFrame) -> list[str]:
    rows = [{"setting": name, "label": SETTINGS[name].label,
             "seconds per repeat (mean)": f"{cells[seconds_column(name)].mean():.3f}"}
            for name in SETTINGS if seconds_column(name) in cells]
    return ["## Cost (one torch thread, two solves side by side on 2 cores)", "", markdown(pd.DataFrame(rows)), ""]
