"""The INT8 accuracy guard's rule (issue 14): the |ΔP| gate is applied to a bound for unseen
images, not to the max of the few images verified; every calibration image is verified on;
small verification sets are marked. Fast: synthetic numbers and recorded measurements."""
from __future__ import annotations

import math

import numpy as np
import pytest

from msvit.errors import UsageError
from msvit.quantize import Int8Options, verify_set
from msvit.quantize.guard import (DPROB_FLOOR, MIN_TAIL_INDEX, Gate, GuardResult, GuardReport, dprob_bound,
                                  evaluate)
from msvit.quantize.sensitivity import KERNEL_ROOM, QuantPlan

#: |ΔP| of the OpenVINO INT8 artifact of issue 14 (demo weights; blocks.5/6 + patch-embed convs
#: int8) on the 15 held-out calibration images, the old default verification set: max 0.0078,
#: passed at 0.05. The same artifact reached 0.0566 on eval/ (research/guard_holdout.py).
ISSUE14_HOLDOUT = [0.00523, 0.00167, 0.00037, 0.00081, 0.00722, 0.00087, 0.00205, 0.00117, 0.00093, 0.0002,
                   0.00017, 1e-05, 0.00017, 4e-05, 0.00775]


def _judge(dprob, gate: Gate, labels=None) -> GuardReport:
    """evaluate() on synthetic logits whose P(fake) differ from FP32 by exactly ``dprob``."""
    d = np.asarray(dprob, np.float64)
    p32 = np.where(np.arange(len(d)) % 2 == 0, 0.3, 0.7)  # away from 0.5 and from the clip at 0/1
    p8 = p32 + d
    fp32 = np.log(p32 / (1 - p32)).reshape(-1, 1)
    int8 = np.log(p8 / (1 - p8)).reshape(-1, 1)
    idx = np.arange(len(d), dtype=np.float32).reshape(-1, 1, 1, 1)
    return evaluate(fp32, lambda x: int8[x[:, 0, 0, 0].astype(int)], idx, labels, gate, "synthetic")


def test_fifteen_images_that_passed_are_now_refused_and_marked():
    old = _judge(ISSUE14_HOLDOUT, Gate(bound_method="max"))
    assert old.passed and old.max_abs_dprob == pytest.approx(0.00775, abs=1e-6)  # what shipped as ✅
    new = _judge(ISSUE14_HOLDOUT, Gate())
    assert not new.passed and new.weakly_verified
    assert new.bound_dprob > 0.05 > new.max_abs_dprob
    assert any("max|ΔP|" in r and "tail bound" in r for r in new.reasons), new.reasons
    assert new.bound["n"] == 15 and new.bound["method"] == "tail"


def test_few_images_are_marked_even_when_they_pass():
    rep = _judge(np.full(15, 2e-4), Gate())
    assert rep.passed and rep.weakly_verified and "weakly verified" in rep.summary()
    rep = _judge(np.full(150, 2e-4), Gate())
    assert rep.passed and not rep.weakly_verified
    assert _judge(np.full(50, 2e-4), Gate(min_verify_images=40)).weakly_verified is False


def test_bound_is_never_below_the_measured_max_and_at_most_one():
    rng = np.random.default_rng(0)
    for _ in range(20):
        d = rng.pareto(1.5, int(rng.integers(5, 300))) * 0.01
        b = dprob_bound(d)
        assert np.max(d) <= b["bound"] <= 1.0 or (np.max(d) > 1.0 and b["bound"] == 1.0)
    assert dprob_bound([0.9, 0.5, 0.4, 0.3, 0.2, 0.1])["bound"] == 1.0
    assert dprob_bound([0.01, 0.002])["method"] == "max"  # too few for a tail
    with pytest.raises(ValueError):
        dprob_bound([])


def test_bound_narrows_with_more_images_and_widens_with_a_heavier_tail():
    rng = np.random.default_rng(1)

    def median_ratio(n, draw):
        return np.median([dprob_bound(d)["bound"] / d.max() for d in (draw(n) for _ in range(200))])

    half_normal = lambda n: np.abs(rng.normal(0, 0.004, n))  # noqa: E731
    assert median_ratio(15, half_normal) > median_ratio(75, half_normal) > median_ratio(500, half_normal)
    d = np.abs(rng.normal(0, 0.004, 75))
    outlier = d.copy()
    outlier[np.argsort(d)[-2:]] *= 8  # two images far beyond the rest: what clipped activations do
    light, heavy = dprob_bound(d), dprob_bound(outlier)
    assert light["tail_index"] == MIN_TAIL_INDEX < heavy["hill_index"] == heavy["tail_index"]
    assert heavy["bound"] > max(light["bound"], outlier.max())  # extrapolated beyond the outliers


@pytest.mark.parametrize("index, coverage", [(0.2, 0.99), (0.4, 0.99), (0.7, 0.35)])
def test_bound_vs_the_one_in_a_thousand_level_of_power_law_errors(index, coverage):
    """|ΔP| with a power-law tail (what clipping produces). Up to MIN_TAIL_INDEX (the tails measured
    within one image source needed <= 0.41) the bound from 75 images reaches the true 1-in-1000
    level in (nearly) every draw; beyond it the Hill estimate takes over, which is about even odds
    (a known limit: the README says to verify on more images and every source)."""
    rng = np.random.default_rng(2)
    scale = 0.002
    q999 = scale * (1000 ** index)  # P(X > scale * t^index) = 1/t for X = scale * U^-index
    hits = [dprob_bound(scale * rng.random(75) ** -index)["bound"] >= q999 for _ in range(300)]
    assert np.mean(hits) >= coverage


def test_zero_error_gives_a_small_bound_from_the_floor():
    b = dprob_bound(np.zeros(75))
    assert b["threshold"] == DPROB_FLOOR and b["bound"] < 0.05 / 2
    assert b["bound"] == pytest.approx(DPROB_FLOOR * (9 * 1000 / 75) ** MIN_TAIL_INDEX)


def test_max_rule_and_horizon():
    d = np.abs(np.random.default_rng(3).normal(0, 0.002, 100))
    assert dprob_bound(d, "max")["bound"] == d.max()
    assert dprob_bound(d, horizon=100)["bound"] < dprob_bound(d, horizon=10_000)["bound"]
    assert dprob_bound(d, horizon=10)["bound"] == pytest.approx(d.max())  # horizon within the sample: its max
    with pytest.raises(ValueError):
        dprob_bound(d, "quantile")


def test_int8_options_are_typed_and_validated():
    o = Int8Options()
    assert o.sensitivity_dprob is None and o.sensitivity_budget == pytest.approx(o.max_dprob / KERNEL_ROOM)
    assert Int8Options(max_dprob=0.03).sensitivity_budget == pytest.approx(0.01)
    assert Int8Options(sensitivity_dprob=0.02).sensitivity_budget == 0.02
    g = Int8Options(max_dprob=0.04, bound_method="max", bound_horizon=500, min_verify_images=50).gate
    assert (g.max_dprob, g.bound_method, g.bound_horizon, g.min_verify_images) == (0.04, "max", 500, 50)
    assert "1 unseen image in 1000" in Int8Options().gate.describe().replace("one unseen", "1 unseen")
    with pytest.raises(UsageError, match="--bound-method"):
        Int8Options(bound_method="bootstrap")
    with pytest.raises(UsageError):
        Int8Options(bound_horizon=0)


def test_guard_info_records_gate_bound_method_n_and_weak_flag():
    rep = _judge(np.full(20, 1e-3), Gate())
    plan = QuantPlan(["a"], {"a": 0.0}, ["a"], [], 0.0, 0.0, "asymmetric-act", "minmax", {"a": []})
    info = GuardResult(plan, rep, [], lambda x: x, None, Gate()).info()
    assert info["guard_max_dprob"] == 0.05 and info["guard_passed"] is True
    assert info["guard_bound_dprob"] == pytest.approx(rep.bound_dprob, abs=1e-6) and info["guard_n"] == 20
    assert info["guard_weakly_verified"] is True and info["guard_bound_method"].startswith("tail:")
    assert info["guard"]["bound"]["k"] == 4


def test_verify_set_is_every_calibration_image_plus_verify_data():
    from msvit.data import ImageSet
    from msvit.quantize.calib import CalibrationSet

    def imgs(n, label, v):
        return ImageSet([], np.full((n, 3, 4, 4), v, np.float32), np.full(n, label, np.int64), [], "mem")

    cal = CalibrationSet(imgs(12, 0, 0.0), imgs(3, 1, 1.0), "faces/calib", "sha", [])
    x, y, name = verify_set(cal, None, 4)
    assert len(x) == 15 and y.tolist() == [0] * 12 + [1] * 3
    assert name.startswith("15 calibration images (12 calibrated on, 3 held out)")
    x, y, name = verify_set(cal, imgs(5, 1, 2.0), 4)
    assert len(x) == 20 and (x[-5:] == 2.0).all() and name.endswith("+ 5 mem")
    unlabelled = ImageSet([], np.zeros((5, 3, 4, 4), np.float32), None, [], "mem")
    assert verify_set(cal, unlabelled, 4)[1] is None  # AUC needs labels on every image
    no_holdout = CalibrationSet(imgs(9, 0, 0.0), None, "small", "sha", [])
    assert verify_set(no_holdout, None, 4)[2] == "9 calibration images"


def test_recorded_measurements_the_rule_was_chosen_on():
    """The numbers behind MIN_TAIL_INDEX and KERNEL_ROOM, as recorded in the notes: if either
    constant is changed, this says what it was measured against."""
    assert MIN_TAIL_INDEX >= 0.41  # largest index needed (p95 of resamples, same source, 9 artifacts)
    assert KERNEL_ROOM >= 2.74  # largest real/simulated max|ΔP| above the 0.001 noise floor (openvino, eval/)
    assert math.isclose(Gate().max_dprob, 0.05)


def test_unknown_int8_method_is_a_clear_error_before_any_work(tmp_path):
    """A method the backend does not have is refused by name, listing the ones it has, before
    calibration, planning or any file is written."""
    from msvit.errors import CalibrationError
    from msvit.quantize.runner import Int8Adapter, Int8Job, run_int8

    class Never(Int8Adapter):
        target, methods = "onnx", ("minmax", "entropy", "percentile")

        def build(self, plan, method, attempt_dir):  # pragma: no cover - must not be reached
            raise AssertionError("built despite an unknown method")

    job = Int8Job(model=None, calib=None, options=Int8Options(calib_method="adaround"), work_dir=tmp_path,
                  metadata={}, log=None)
    with pytest.raises(CalibrationError, match="--calib-method adaround is not available for onnx: "
                                               "use minmax or entropy or percentile"):
        run_int8(Never(job), tmp_path / "out.onnx")
    assert list(tmp_path.iterdir()) == []
