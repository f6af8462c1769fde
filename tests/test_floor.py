"""The noise-floor gate (issue 21): a reduced-precision artifact keeps decisions when its max
|ΔP| and flips vs FP32 are within FP32's own under ±0.5 pixel-step input noise on the same
images, and AUC drops by at most max_auc_drop. Fast: toy models and synthetic logits."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from msvit.errors import UsageError
from msvit.model.variants import IMAGENET_MEAN, IMAGENET_STD
from msvit.quantize import Gate, Int8Options, NoiseFloor, noise_floor, quantize_with_guard
from msvit.quantize.guard import GuardResult, evaluate
from msvit.quantize.sensitivity import KERNEL_ROOM, QuantPlan


class Toy(torch.nn.Module):
    """logit = gain * (mean pixel value - centre): steeper gain, larger floor."""

    def __init__(self, gain: float, centre: float = 0.0) -> None:
        super().__init__()
        self.gain, self.centre = gain, centre

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gain * (x.mean(dim=(1, 2, 3)) - self.centre).reshape(-1, 1)


def _images(n: int = 12, size: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _normalised(u8: np.ndarray) -> np.ndarray:
    x = u8.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    return ((x - np.array(IMAGENET_MEAN, np.float32).reshape(1, 3, 1, 1))
            / np.array(IMAGENET_STD, np.float32).reshape(1, 3, 1, 1)).astype(np.float32)


def test_floor_is_deterministic_and_the_same_for_uint8_and_normalised_input():
    u8 = _images()
    m = Toy(40.0)
    a, b = noise_floor(m, u8), noise_floor(m, _normalised(u8))
    assert a.n == 12 and a.seeds == 3 and a.amplitude == 0.5 and len(a.per_seed) == 3
    assert a.max_abs_dprob == max(s["max_abs_dprob"] for s in a.per_seed) > 0
    assert a.max_abs_dprob == pytest.approx(b.max_abs_dprob, rel=1e-4)
    assert noise_floor(m, u8).to_dict() == a.to_dict()  # seeds 0..2: the same noise every time


def test_floor_scales_with_the_model_and_the_noise():
    u8 = _images()
    flat = noise_floor(Toy(0.0), u8)
    assert flat.max_abs_dprob == 0 and flat.flips == 0  # a model that ignores its input has no floor
    small, steep = noise_floor(Toy(10.0), u8), noise_floor(Toy(100.0), u8)
    assert 0 < small.max_abs_dprob < steep.max_abs_dprob
    # the noise of 0.5 pixel step is in [-0.5, 0.5] steps: the mean moves by less, the floor is small
    assert noise_floor(Toy(10.0), u8, amplitude=2.0).max_abs_dprob > small.max_abs_dprob
    with pytest.raises(ValueError):
        noise_floor(Toy(1.0), u8, seeds=0)
    with pytest.raises(ValueError, match="NHWC"):
        noise_floor(Toy(1.0), np.zeros((2, 3, 8, 8), np.uint8))


def test_floor_counts_flips_of_images_at_the_threshold():
    u8 = _images(20)
    u8[:6] = u8[0]  # six images right at P = 0.5: noise pushes about half of them below it
    centre = float(_normalised(u8[:1]).astype(np.float64).mean())
    fl = noise_floor(Toy(2000.0, centre), u8)
    assert fl.flips >= 1 and fl.flips == max(s["flips"] for s in fl.per_seed)
    assert noise_floor(Toy(2000.0, centre + 1.0), u8).flips == 0  # far from the threshold: none


def _judge(dprob, gate: Gate, labels=None, flip: int = 0):
    """evaluate() on synthetic logits whose P(fake) differ from FP32 by exactly ``dprob``;
    the first ``flip`` images cross P = 0.5."""
    d = np.asarray(dprob, np.float64)
    p32 = np.where(np.arange(len(d)) % 2 == 0, 0.3, 0.7)
    p8 = p32 + d
    p8[:flip] = 1 - p32[:flip]
    fp32 = np.log(p32 / (1 - p32)).reshape(-1, 1)
    int8 = np.log(p8 / (1 - p8)).reshape(-1, 1)
    idx = np.arange(len(d), dtype=np.float32).reshape(-1, 1, 1, 1)
    return evaluate(fp32, lambda x: int8[x[:, 0, 0, 0].astype(int)], idx, labels, gate, "synthetic")


def test_floor_gate_passes_within_the_floor_and_refuses_beyond_it():
    n = 30
    gate = Gate(max_dprob="floor").with_floor(NoiseFloor(0.04, 0, n))
    d = np.full(n, 0.002)
    d[[3, 5, 7, 9, 11]] = [0.039, 0.035, 0.03, 0.03, 0.025]
    inside = _judge(d, gate)
    # the fixed gate's tail bound on 30 images would refuse this; the floor gate compares like with like
    assert inside.passed and inside.bound_dprob > 0.05 and not _judge(d, Gate()).passed
    assert inside.floor_ratio == pytest.approx(0.039 / 0.04, abs=1e-3) and "noise floor 0.040" in inside.summary()
    d[3] = 0.041
    beyond = _judge(d, gate)
    assert not beyond.passed and any("noise floor 0.040" in r for r in beyond.reasons), beyond.reasons
    flips = _judge(np.full(n, 0.001), gate, flip=1)
    assert not flips.passed and any("1 flips > noise floor's 0" in r for r in flips.reasons)
    one_allowed = Gate(max_dprob="floor").with_floor(NoiseFloor(0.5, 1, n))
    assert _judge(np.full(n, 0.001), one_allowed, flip=1).passed


def test_floor_gate_still_holds_the_auc_drop():
    n = 40
    labels = (np.arange(n) % 2 == 1).astype(np.int64)  # p32 0.7 on the positives: AUC 1
    d = np.zeros(n)
    d[::2] = 0.45  # negatives up to 0.75: above every positive, within a generous floor
    gate = Gate(max_dprob="floor").with_floor(NoiseFloor(0.5, 0, n))
    rep = _judge(d, gate, labels)
    assert rep.auc_drop == pytest.approx(1.0) and not rep.passed and any("AUC drop" in r for r in rep.reasons)


def test_floor_gate_needs_its_floor_on_the_same_images():
    with pytest.raises(ValueError, match="no measured floor"):
        Gate(max_dprob="floor").dprob_limit
    with pytest.raises(ValueError, match="same images"):
        _judge(np.full(10, 0.001), Gate(max_dprob="floor").with_floor(NoiseFloor(0.04, 0, 11)))


def test_floor_option_is_validated_and_sets_the_plan_budget():
    o = Int8Options(max_dprob="floor")
    assert o.gate.uses_floor and o.gate.floor is None
    g = o.gate.with_floor(NoiseFloor(0.06, 1, 75))
    assert o.plan_budget(g) == pytest.approx(0.06 / KERNEL_ROOM)
    assert Int8Options(max_dprob="floor", sensitivity_dprob=0.03).plan_budget(g) == 0.03
    assert Int8Options().plan_budget(Gate()) == pytest.approx(0.05 / KERNEL_ROOM)
    with pytest.raises(UsageError, match="'floor'"):
        Int8Options(max_dprob="flor")


def test_guard_measures_the_floor_and_records_it():
    """quantize_with_guard on a toy model: the floor is measured on the verification images;
    an attempt beyond it is refused, the group goes back to float, the next attempt passes."""
    u8 = _images(20)
    x = _normalised(u8)
    model = Toy(60.0).eval()
    plan = QuantPlan(["hot", "cold"], {"hot": 0.3, "cold": 0.0}, ["cold", "hot"], [], 0.0, 0.0, "asymmetric-act",
                     "minmax", {"hot": ["a"], "cold": ["b"]})
    fl = noise_floor(model, x)

    def build(p: QuantPlan, attempt: int):
        shift = 0.5 * fl.max_abs_dprob if "hot" not in p.quantized else 20 * fl.max_abs_dprob

        def run(xx):
            with torch.no_grad():
                logit = model(torch.from_numpy(xx)).numpy()
            pr = 1 / (1 + np.exp(-logit))
            pr = np.clip(pr + np.where(pr >= 0.5, shift, -shift), 1e-6, 1 - 1e-6)  # away from 0.5: no flips
            return np.log(pr / (1 - pr))
        return run, attempt

    res = quantize_with_guard(model, plan, build, x, None, "toy", Gate(max_dprob="floor"), max_attempts=3)
    assert res.report.passed and res.plan.quantized == ["cold"] and res.artifact == 1
    assert [a["passed"] for a in res.attempts] == [False, True]
    info = res.info()
    assert info["guard_gate"] == "floor" and info["noise_floor_max_dprob"] == pytest.approx(fl.max_abs_dprob, abs=1e-6)
    assert info["guard_max_dprob"] == info["noise_floor_max_dprob"] and info["noise_floor_flips"] == fl.flips
    assert info["guard_floor_ratio"] == pytest.approx(0.5, abs=0.02) and info["guard_flips"] == 0
    assert info["guard_bound_method"].startswith("floor:")
    fixed = GuardResult(plan, res.report, [], res.runner, None, Gate()).info()
    assert fixed["guard_gate"] == "fixed" and fixed["guard_max_dprob"] == 0.05 and "noise_floor_flips" not in fixed


def test_cli_takes_floor_and_refuses_other_words(capsys):
    from msvit.export.cli import build_parser

    p = build_parser()
    assert p.parse_args(["--max-dprob", "floor"]).max_dprob == "floor"
    assert p.parse_args(["--max-dprob", "0.03"]).max_dprob == 0.03
    with pytest.raises(SystemExit) as e:
        p.parse_args(["--max-dprob", "flor"])
    assert e.value.code == 2 and "'floor'" in capsys.readouterr().err


CONFIDENT = "ms_eff_vit_b0_confident.bin"


@pytest.mark.slow
def test_openvino_int8_of_the_confident_fixture_keeps_decisions_under_the_floor_gate(
        demo_weights, calib_set, eval_set, tmp_path):
    """The floor gate end to end: the guard measures the floor on its verification images,
    the artifact records it, and the artifact also keeps decisions on eval/ (unseen)."""
    import msvit
    from msvit.export import ExportOptions, export
    from msvit.metrics import label_metrics
    from msvit.runtime import load

    weights = demo_weights.parent / CONFIDENT
    if not weights.is_file():
        pytest.skip(f"{weights} not found")
    model = msvit.ms_eff_vit_b0(weights=weights)
    res = export(model, "openvino", "int8", tmp_path, calib=calib_set, log=None, strict=False,
                 options=ExportOptions(int8=Int8Options(max_dprob="floor")))
    assert res.ok, res.message
    sess = load(res.path)
    meta = sess.metadata
    assert meta["guard_gate"] == "floor" and meta["guard_passed"] == "true"
    assert float(meta["guard_floor_ratio"]) <= 1.0 and float(meta["guard_max_dprob"]) == pytest.approx(
        float(meta["noise_floor_max_dprob"]))
    x, y = eval_set.x, eval_set.labels
    got = np.concatenate([np.asarray(sess(x[i:i + 1])).reshape(-1) for i in range(len(x))])
    sess.close()
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy().reshape(-1)
    fl = noise_floor(model, x)
    p32, p8 = 1 / (1 + np.exp(-ref.astype(np.float64))), 1 / (1 + np.exp(-got.astype(np.float64)))
    assert np.abs(p8 - p32).max() <= fl.max_abs_dprob
    assert np.sum((p8 >= 0.5) != (p32 >= 0.5)) <= fl.flips
    assert label_metrics(ref, y)["auc"] - label_metrics(got, y)["auc"] <= 0.005
    assert float(meta["int8_mac_share"]) > 0.3  # 0.378 on an AVX2 host (convs only): docs/int8.md
