"""Conditional entropy H(Yt|Ys) of a label joint, checked on tables whose value is known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scoring_cases import loop_conditional_entropy

from otce_ray.scoring.entropy import conditional_entropy


def test_independent_labels_leave_all_target_entropy():
    p_source, p_target = np.array([0.2, 0.3, 0.5]), np.array([0.1, 0.6, 0.3])
    expected = -(p_target * np.log(p_target)).sum()
    assert conditional_entropy(np.outer(p_source, p_target)) == pytest.approx(expected, abs=1e-14)


def test_deterministic_labels_have_zero_entropy():
    """Each source class sends all its mass to one target class (two sources share a target)."""
    joint = np.array([[0.3, 0.0], [0.0, 0.5], [0.2, 0.0]])
    assert conditional_entropy(joint) == 0.0


def test_zero_cells_count_as_zero():
    """Source 0 splits evenly (log 2 bits of doubt on half the mass); source 1 is certain."""
    joint = np.array([[0.25, 0.25], [0.5, 0.0]])
    assert conditional_entropy(joint) == pytest.approx(0.5 * math.log(2), abs=1e-15)


def test_empty_source_row_is_ignored():
    joint = np.array([[0.25, 0.25], [0.0, 0.0], [0.0, 0.5]])
    assert conditional_entropy(joint) == pytest.approx(0.5 * math.log(2), abs=1e-15)


def test_mass_is_renormalised_and_rounding_negatives_dropped():
    joint = np.array([[0.25, 0.25], [0.5, -1e-19]])
    assert conditional_entropy(7.0 * joint) == pytest.approx(0.5 * math.log(2), abs=1e-15)


def test_matches_a_plain_loop_on_a_random_table():
    rng = np.random.default_rng(3)
    table = rng.random((5, 4)) * (rng.random((5, 4)) > 0.3)
    # As a "plan" between 5 source and 4 target pixels, each its own class, the loop sums the same table.
    expected = loop_conditional_entropy(table, np.arange(5), np.arange(4))
    assert conditional_entropy(table) == pytest.approx(expected, abs=1e-14)


@pytest.mark.parametrize("table", [np.zeros((2, 2)), np.array([[np.nan, 0.5], [0.1, 0.4]])])
def test_table_without_positive_finite_mass_is_rejected(table):
    with pytest.raises(ValueError, match="joint"):
        conditional_entropy(table)


def test_class_contributions_split_the_conditional_entropy_by_target_class():
    from otce_ray.scoring.entropy import class_contributions

    joint = np.array([[0.3, 0.1, 0.0], [0.0, 0.2, 0.4]])
    parts = class_contributions(joint)
    assert parts.shape == (3,) and parts.sum() == pytest.approx(conditional_entropy(joint))
    assert parts[0] == pytest.approx(-0.3 * np.log(0.3 / 0.4))  # only source row 0 sends mass to target class 0
    assert class_contributions(np.diag([0.5, 0.5])).tolist() == [0.0, 0.0]  # a perfect label map explains all
