"""Choosing the engine's defaults on the selection seeds only, by a rule fixed before any held-out seed is run.

Rule: among the estimator settings scored on every intra target of every selection seed with every repeat converged,
take the one with the highest Fisher-z mean intra Pearson correlation with the mean fine-tuned log-likelihood;
settings within ``TIE`` of it count as equal, and the cheapest of those (seconds per repeat) wins, since a default
that predicts as well at less cost is the better default. The held-out seeds then score the chosen setting beside
the paper's two estimators and the engine's current default, all fixed here, and nothing else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from otce_ray.validation.analysis import mean_correlations
from otce_ray.scoring.settings import OTCESettings
from otce_ray.validation.plan import INTRA

TIE = 0.01
CHOICE = "choice.json"
# the engine's defaults before this run, and the paper's two estimators
CURRENT_DEFAULT = OTCESettings(epsilon=0.05, cost_scale="median", standardise=False, n_pixels=2000, repeats=2)
PAPER = (OTCESettings(solver="emd", standardise=False, n_pixels=2000, repeats=2),
         OTCESettings(epsilon=0.1, cost_scale="none", standardise=False, n_pixels=2000, repeats=2))


def candidates(table: pd.DataFrame, scores: pd.DataFrame, settings: Sequence[OTCESettings]) -> pd.DataFrame:
    """Per setting: Fisher-z mean intra Pearson (with interval), seconds per repeat, and whether it is eligible
    (scored on every intra (seed, target, model) of ``table`` with no dropped repeat)."""
    intra = table[table.experiment == INTRA]
    rows = []
    for setting in settings:
        mine = scores[(scores.setting == setting.label) & (scores.experiment == INTRA)]
        complete = len(mine) == len(intra) and mine.score.notna().all() and (mine.dropped == 0).all()
        summary = mean_correlations(intra, [setting.label]).iloc[0] if complete else None
        rows.append({"setting": setting.label, **setting.to_dict(), "eligible": bool(complete),
                     "pearson": summary["pearson"] if complete else float("nan"),
                     "low": summary["low"] if complete else float("nan"),
                     "high": summary["high"] if complete else float("nan"),
                     "seconds_per_repeat": float(mine.seconds_per_repeat.mean()) if len(mine) else float("nan")})
    return pd.DataFrame(rows)


def choose(table: pd.DataFrame) -> pd.Series:
    """The row of ``candidates``' table that the rule picks."""
    eligible = table[table.eligible]
    if eligible.empty:
        raise ValueError("no setting was scored completely on the selection seeds")
    best = eligible.pearson.max()
    tied = eligible[eligible.pearson >= best - TIE]
    return tied.sort_values("seconds_per_repeat").iloc[0]


def held_out_settings(chosen: OTCESettings) -> list[OTCESettings]:
    """What the held-out seeds score: the chosen setting, the engine's current default and the paper's two."""
    return list(dict.fromkeys([chosen, CURRENT_DEFAULT, *PAPER]))


def write_choice(path: Path, table: pd.DataFrame, seeds: Sequence[int]) -> dict[str, Any]:
    """Apply the rule and record it, with every candidate, in ``path`` (written once: a rerun reads it back)."""
    row = choose(table)
    chosen = OTCESettings(solver=row.solver, epsilon=None if pd.isna(row.epsilon) else float(row.epsilon),
                          cost_scale=None if pd.isna(row.cost_scale) else row.cost_scale,
                          standardise=bool(row.standardise), n_pixels=int(row.n_pixels), repeats=int(row.repeats))
    record = {"rule": __doc__.split("\n\n")[1].replace("\n", " "), "selection_seeds": list(seeds),
              "chosen": chosen.to_dict(), "held_out": [s.to_dict() for s in held_out_settings(chosen)],
              "candidates": table.to_dict("records")}
    Path(path).write_text(json.dumps(record, indent=2, default=float) + "\n")
    return record


def read_choice(path: Path) -> tuple[OTCESettings, list[OTCESettings]]:
    record = json.loads(Path(path).read_text())
    return OTCESettings(**record["chosen"]), [OTCESettings(**s) for s in record["held_out"]]
