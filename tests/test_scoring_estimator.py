"""``otce_score``: the default solve against POT, invariances, reproducibility, degenerate inputs, non-convergence."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import ot
import pytest
import torch
from scoring_cases import clouds, label_entropy, label_joint, one_torch_thread, squared_distances  # noqa: F401

from otce_ray import otce_score
from otce_ray.scoring.cost_scale import normalise
from otce_ray.scoring.entropy import conditional_entropy
from otce_ray.scoring.settings import DEFAULT_EPSILON
from otce_ray.scoring.inputs import pixel_set, standardised
from otce_ray.bench.stress import stress_case


def _numbers(result) -> list[tuple]:
    """Every number of every repeat but its wall time."""
    return [dataclasses.astuple(dataclasses.replace(record, seconds=0.0)) for record in result.repeats]


def test_default_solve_matches_pot_on_the_same_normalised_cost():
    """The float32 streamed solve vs POT's float64 log-domain Sinkhorn at the default relative eps (raw features:
    the z-scoring that is on by default is tested on its own)."""
    xs, ys, xt, yt = clouds(80, d=6, classes=4, seed=5, m=70)
    record = otce_score(xs, ys, xt, yt, n_pixels=80, repeats=1, tolerance=1e-5, standardise=False).repeats[0]
    raw = squared_distances(xs, xt)
    x, y, scale = normalise(torch.from_numpy(xs), torch.from_numpy(xt))
    plan = ot.sinkhorn(np.full(80, 1 / 80), np.full(70, 1 / 70), ot.dist(x.numpy(), y.numpy()), DEFAULT_EPSILON,
                       method="sinkhorn_log", stopThr=1e-14, numItermax=100_000)
    assert record.converged and record.marginal_error <= 1e-5
    assert record.conditional_entropy == pytest.approx(conditional_entropy(label_joint(plan, ys, yt)), abs=1e-5)
    assert record.transport_cost == pytest.approx(float((plan * raw).sum()), rel=1e-4)
    assert record.cost_scale == scale
    assert record.epsilon == pytest.approx(DEFAULT_EPSILON * scale, rel=1e-12)
    ordered = np.sort(raw.ravel())  # the scale is a median of the raw costs (all pairs at this size)
    assert ordered[(len(ordered) - 1) // 2] * (1 - 1e-9) <= scale <= ordered[len(ordered) // 2] * (1 + 1e-9)


def _relabel(xs, ys, xt, yt):
    return xs, np.array([7, 3, 100])[ys], xt, np.array([42, 0, 9])[yt]


def _scale(xs, ys, xt, yt):
    return xs * 7.3, ys, xt * 7.3, yt


def _translate(xs, ys, xt, yt):
    shift = np.random.default_rng(9).normal(scale=10.0, size=xs.shape[1])
    return xs + shift, ys, xt + shift, yt


@pytest.mark.parametrize("solver", ["sinkhorn", "emd"])
@pytest.mark.parametrize("transform, tolerance", [(_relabel, 1e-12), (_scale, 1e-5), (_translate, 1e-5)])
def test_score_is_invariant(solver, transform, tolerance):
    """Relabelled classes, features * 7.3, features + a constant vector: same samples, same score."""
    case = clouds(80, d=6, seed=2)
    options = {"n_pixels": 60, "repeats": 2, "solver": solver, "seed": 3}
    before = otce_score(*case, **options)
    after = otce_score(*transform(*case), **options)
    assert after.score == pytest.approx(before.score, abs=tolerance)
    assert abs(before.score) > 0.1  # a non-trivial score, so equality says something


def test_same_seed_same_numbers_bit_for_bit():
    case = clouds(80, d=6, seed=1)
    first = otce_score(*case, n_pixels=50, repeats=3, seed=11)
    again = otce_score(*case, n_pixels=50, repeats=3, seed=11)
    as_torch = otce_score(*(torch.from_numpy(array) for array in case), n_pixels=50, repeats=3, seed=11)
    assert first.score == again.score == as_torch.score
    assert _numbers(first) == _numbers(again) == _numbers(as_torch)


def test_same_seed_same_numbers_bit_for_bit_on_flat_colour_relu_features():
    """Duplicates merged, groups clustered, z-scored sides at a small eps: still the same bits from the same seed."""
    case = stress_case("relu_flat_standardised_eps0.01", 600)
    arrays = (case.source_features, case.source_labels, case.target_features, case.target_labels)
    first = otce_score(*arrays, n_pixels=400, repeats=2, seed=5, **case.options)
    again = otce_score(*arrays, n_pixels=400, repeats=2, seed=5, **case.options)
    assert first.converged and _numbers(first) == _numbers(again)


def test_each_repeat_draws_its_own_sample_from_seed_and_index():
    case = clouds(80, d=6, seed=1)
    three = otce_score(*case, n_pixels=50, repeats=3, seed=11)
    one = otce_score(*case, n_pixels=50, repeats=1, seed=11)
    other = otce_score(*case, n_pixels=50, repeats=1, seed=12)
    assert _numbers(one)[0] == _numbers(three)[0]  # repeat k depends on (seed, k) only
    costs = [record.transport_cost for record in three.repeats] + [other.repeats[0].transport_cost]
    assert len(set(costs)) == 4  # different samples: repeats of a run, and another seed
    assert all((r.n_source, r.n_target) == (50, 50) for r in three.repeats)


def test_summary_is_mean_and_spread_of_the_repeats():
    result = otce_score(*clouds(80, d=6, seed=1), n_pixels=50, repeats=4)
    scores = np.array([record.score for record in result.repeats])
    assert result.score == pytest.approx(scores.mean(), abs=1e-15)
    assert result.std == pytest.approx(scores.std(ddof=1), abs=1e-15) and result.std > 0
    assert result.stderr == pytest.approx(result.std / 2, abs=1e-15)
    assert all(record.score == -record.conditional_entropy for record in result.repeats)
    assert otce_score(*clouds(80, d=6, seed=1), n_pixels=50, repeats=1).std == 0.0


def test_a_side_with_too_few_valid_pixels_is_used_whole():
    xs, ys, xt, yt = clouds(40, d=3, m=200)
    ys = np.where(np.arange(40) < 10, 255, ys)  # 30 valid source pixels
    result = otce_score(xs, ys, xt, yt, n_pixels=50, repeats=2)
    assert (result.used_all_source_pixels, result.used_all_target_pixels) == (True, False)
    assert (result.source_pixels_available, result.target_pixels_available) == (30, 200)
    assert all((r.n_source, r.n_target) == (30, 50) for r in result.repeats)
    whole = otce_score(xs, ys, xt[:30], yt[:30], n_pixels=30, repeats=2)  # exactly n_pixels on each side
    assert whole.used_all_source_pixels and whole.used_all_target_pixels
    assert whole.repeats[0].score == whole.repeats[1].score and whole.std == 0.0


def _degenerate(name: str):
    """(xs, ys, xt, yt) of a degenerate but valid problem; target labels are never all alike unless named."""
    xs, ys, xt, yt = clouds(40, d=5, seed=6)
    if name == "identical points":
        return np.ones_like(xs), ys, np.ones_like(xt), yt
    if name == "zero variance, sides apart":
        return np.zeros_like(xs), ys, np.full_like(xt, 3.0), yt
    if name == "one source class":
        return xs, np.zeros_like(ys), xt, yt
    if name == "one target class":
        return xs, ys, xt, np.full_like(yt, 4)
    if name == "two pixels per side":
        return xs[:2], ys[:2], xt[:2], yt[:2]
    raise KeyError(name)


DEGENERATE = ["identical points", "zero variance, sides apart", "one source class", "one target class",
              "two pixels per side"]


@pytest.mark.parametrize("solver", ["sinkhorn", "emd"])
@pytest.mark.parametrize("name", DEGENERATE)
def test_degenerate_inputs_give_finite_results(name, solver):
    xs, ys, xt, yt = _degenerate(name)
    result = otce_score(xs, ys, xt, yt, n_pixels=40, repeats=1, solver=solver)
    record = result.repeats[0]
    assert result.converged
    assert all(math.isfinite(value) for value in (result.score, record.transport_cost, record.marginal_error))
    # H(Yt|Ys) <= H(Yt) of the plan's target marginal, which is within the L1 tolerance (1e-3) of the labels'
    assert 0.0 <= record.conditional_entropy <= label_entropy(yt) + 1e-3


@pytest.mark.parametrize("name", ["identical points", "zero variance, sides apart"])
def test_equal_costs_give_the_independent_coupling(name):
    """All costs equal: the entropic plan is a b^T, so H(Yt|Ys) = H(Yt)."""
    xs, ys, xt, yt = _degenerate(name)
    result = otce_score(xs, ys, xt, yt, n_pixels=40, repeats=1)
    assert result.repeats[0].conditional_entropy == pytest.approx(label_entropy(yt), abs=1e-6)


@pytest.mark.parametrize("solver, tolerance", [("sinkhorn", 1e-3), ("emd", 1e-12)])
def test_single_class_sides(solver, tolerance):
    """One source class: H(Yt|Ys) = H(Yt) of the plan's target marginal; one target class: zero."""
    xs, ys, xt, yt = _degenerate("one source class")
    single_source = otce_score(xs, ys, xt, yt, n_pixels=40, repeats=1, solver=solver)
    assert single_source.repeats[0].conditional_entropy == pytest.approx(label_entropy(yt), abs=tolerance)
    assert otce_score(*_degenerate("one target class"), n_pixels=40, repeats=1, solver=solver).score == 0.0


def test_repeats_that_miss_the_tolerance_are_recorded_and_left_out_of_the_score():
    """One pass allowed: the float32 solve misses, so does its float64 retry; both repeats say so, and with no
    converged repeat left the score is NaN, with a warning naming the cap."""
    with pytest.warns(RuntimeWarning, match=r"2 of 2 repeats .* > tolerance 1e-03 \(at max_iterations=1.*NaN"):
        result = otce_score(*clouds(60, d=4, seed=2), n_pixels=50, repeats=2, epsilon=0.01, max_iterations=1)
    assert result.converged is False and result.to_dict()["converged"] is False
    assert result.dropped == 2 and result.to_dict()["dropped"] == 2
    assert all(not record.converged and record.marginal_error > record.tolerance == 1e-3
               for record in result.repeats)
    assert all(record.remedy == "float64" for record in result.repeats)
    assert math.isnan(result.score) and math.isnan(result.stderr)
    assert all(math.isfinite(record.score) for record in result.repeats)  # still there to inspect


def test_an_unconverged_repeat_never_enters_the_mean(monkeypatch):
    from otce_ray.scoring.backends.registry import BACKENDS

    real, calls = BACKENDS["torch_tiles"], []

    def second_one_unconverged(*args, **kwargs):
        solution = real.solve(*args, **kwargs)
        calls.append(1)
        return dataclasses.replace(solution, converged=False, marginal_error=5e-3) if len(calls) == 2 else solution

    monkeypatch.setitem(BACKENDS, "torch_tiles", dataclasses.replace(real, solve=second_one_unconverged))
    with pytest.warns(RuntimeWarning, match=r"1 of 3 repeats .* the score is the mean of the other 2"):
        result = otce_score(*clouds(80, d=6, seed=1), n_pixels=50, repeats=3)
    kept = [record.score for record in result.repeats if record.converged]
    assert result.dropped == 1 and len(kept) == 2 and not result.repeats[1].converged
    assert result.score == pytest.approx(np.mean(kept), abs=1e-15)
    assert result.std == pytest.approx(np.std(kept, ddof=1), abs=1e-15)


def test_records_name_the_tolerance_and_the_remedy():
    case = clouds(80, d=6, seed=1)
    sinkhorn = otce_score(*case, n_pixels=50, repeats=2, tolerance=1e-4).repeats
    assert all((record.tolerance, record.remedy, record.converged) == (1e-4, None, True) for record in sinkhorn)
    [emd] = otce_score(*case, n_pixels=50, repeats=1, solver="emd").repeats
    assert (emd.tolerance, emd.remedy, emd.epsilon) == (None, None, None)


def test_the_docstring_example_runs():
    import doctest

    from otce_ray.scoring import estimator

    failures, tried = doctest.testmod(estimator)
    assert tried >= 5 and failures == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_agrees_with_cpu():
    case = clouds(500, d=16, classes=5, seed=8)
    cpu = otce_score(*case, n_pixels=400, repeats=2, device="cpu", tolerance=1e-5)
    cuda = otce_score(*case, n_pixels=400, repeats=2, device="cuda", tolerance=1e-5)
    assert cuda.device.startswith("cuda") and cuda.converged
    assert cuda.score == pytest.approx(cpu.score, abs=1e-4)


def test_standardise_makes_the_score_blind_to_one_side_being_moved_and_stretched():
    """Per-side z-scores undo any per-dimension affine map of one side (a domain-wide appearance shift); the raw
    score does not."""
    xs, ys, xt, yt = clouds(120, d=4, seed=3)
    stretch = np.array([3.0, 0.5, 1.0, 7.0])
    moved = xt * stretch + np.array([5.0, -2.0, 0.0, 1.0])
    plain = otce_score(xs, ys, xt, yt, n_pixels=100, repeats=2, epsilon=0.05, standardise=False)
    raw = otce_score(xs, ys, moved, yt, n_pixels=100, repeats=2, epsilon=0.05, standardise=False)
    before = otce_score(xs, ys, xt, yt, n_pixels=100, repeats=2, tolerance=1e-6, standardise=True)
    after = otce_score(xs, ys, moved, yt, n_pixels=100, repeats=2, tolerance=1e-6, standardise=True)
    default = otce_score(xs, ys, xt, yt, n_pixels=100, repeats=2, tolerance=1e-6)
    assert before.settings.standardise and not plain.settings.standardise
    assert default.settings.standardise and _numbers(default) == _numbers(before)  # on by default (docs/validation.md)
    assert after.score == pytest.approx(before.score, abs=1e-5)
    assert abs(raw.score - plain.score) > 1e-2


def test_standardised_pixels_have_zero_mean_unit_spread_and_a_constant_dimension_is_zero():
    features = np.column_stack([np.arange(10.0), np.full(10, 4.0)])
    pixels = standardised(pixel_set(features, np.zeros(10, dtype=int), None, "source"))
    assert torch.allclose(pixels.features.mean(0), torch.zeros(2, dtype=torch.float64), atol=1e-12)
    assert float(pixels.features[:, 0].std(unbiased=False)) == pytest.approx(1.0)
    assert torch.equal(pixels.features[:, 1], torch.zeros(10, dtype=torch.float64))
