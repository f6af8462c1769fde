"""Short quantization-aware fine-tuning (QAT) with PT2E + XNNPACKQuantizer (issue 12, last resort):
can a few hundred CPU steps of distillation towards the FP32 model's own logits bring the
whole-network INT8 program back to the FP32 decisions?

    nice -n 10 .venv/bin/python research/int8_qat.py [--runs global k3] [--budget 900] [--json out.json]

Pipeline of one run:

1. ``torch.export.export`` of the FP32 model in eval mode (batch-dynamic), then BatchNorm folded
   into the convolutions in the graph (``_fuse_conv_bn_``, what ``prepare_pt2e`` does for PTQ):
   BN keeps its eval statistics for good, and the folded conv weights are what QAT trains and
   what the int8 kernels get (no train-mode BN, no re-estimated statistics on 500 frames).
2. ``prepare_qat_pt2e`` with ``XNNPACKQuantizer`` (per-channel symmetric int8 weights, per-tensor
   int8 activations, ``is_qat=True``: moving-average min/max fake quantizers). ``--runs k3`` keeps
   the stem and backbone blocks 0-1 float (``k1``: the stem only) (a filter function, as in msvit/quantize/executorch.py).
3. Calibration: one no-grad pass over ``--calib-n`` training images (observers on). The model is then
   converted as it stands: the "step 0" row, i.e. PTQ with the QAT observers on the same data.
4. Training (Adam, linear warm-up then cosine decay): loss = MSE(student logit, teacher logit) + ``--bce`` x BCE(student, label), teacher =
   the FP32 model's logits (precomputed, also for horizontally flipped images), Adam, batches of
   ``--batch`` drawn from train/ + calib/ (never eval/). Observers update for the first
   ``--freeze-obs`` share of the steps, then the quantization parameters are frozen. Stops at
   ``--steps`` or after ``--budget`` seconds of training.
5. ``convert_pt2e``; the converted program is run in torch on eval/ and compared with FP32
   PyTorch: agreement of decisions at P=0.5, max |ΔP|, AUC and its drop; MAC share in int8 from
   ``msvit.runtime.coverage.program_coverage`` on a batch-1 re-export.

Goal (issue 12): >= 95 % of MACs int8, agreement >= 0.99, max|ΔP| <= 0.02, AUC drop <= 0.005.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent

from msvit.data import load_images
from msvit.model import create_model

GOAL = {"mac_share": 0.95, "agreement": 0.99, "max_dp": 0.02, "auc_drop": 0.005}
BB = "feat_extractor.backbone."
FLOAT_GROUPS = {"global": [], "k1": [BB + "conv_stem", BB + "bn1"], "k3": [BB + "conv_stem", BB + "bn1", BB + "blocks.0.", BB + "blocks.1."]}


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


def one_line(e: BaseException) -> str:
    s = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {s}"[:300]


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def batched_logits(fn, x: np.ndarray, bs: int = 16) -> np.ndarray:
    import torch

    with torch.no_grad():
        return np.concatenate([fn(torch.from_numpy(np.ascontiguousarray(x[i:i + bs]))).detach().numpy().reshape(-1)
                               for i in range(0, len(x), bs)])


def quantizer(float_prefixes: list[str]):
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config)

    q = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=True))
    if float_prefixes:
        def keep_quantized(n) -> bool:
            if n.op != "call_function":  # weights/biases (get_attr) carry no module stack: the op decides
                return True
            stack = n.meta.get("nn_module_stack") or {}
            paths = [p.removeprefix("L['self'].").removeprefix("model.") for p, _ in stack.values()]
            return not any(p.startswith(f) or p + "." == f for p in paths for f in float_prefixes)

        q.set_filter_function(keep_quantized)
    return q


class Run:
    def __init__(self, a: argparse.Namespace, name: str, model, pool_x, pool_y, teacher, teacher_flip,
                 eval_x, eval_y, ref_logit) -> None:
        self.a, self.name, self.model = a, name, model
        self.pool_x, self.pool_y, self.teacher, self.teacher_flip = pool_x, pool_y, teacher, teacher_flip
        self.eval_x, self.eval_y, self.ref_logit = eval_x, eval_y, ref_logit
        self.rows: list[dict[str, Any]] = []
        self.cov = None

    def metrics(self, logits: np.ndarray) -> dict[str, float]:
        from sklearn.metrics import roc_auc_score

        p, ref_p = sigmoid(logits), sigmoid(self.ref_logit)
        try:
            auc_fp, auc = roc_auc_score(self.eval_y, ref_p), roc_auc_score(self.eval_y, p)
        except ValueError:  # one class only (a --limit smoke test)
            auc_fp = auc = float("nan")
        return {"agreement": float(np.mean((p > 0.5) == (ref_p > 0.5))),
                "max_dp": float(np.max(np.abs(p - ref_p))), "mean_dp": float(np.mean(np.abs(p - ref_p))),
                "max_dlogit": float(np.max(np.abs(np.asarray(logits) - self.ref_logit))),
                "auc": float(auc), "auc_fp32": float(auc_fp), "auc_drop": float(auc_fp - auc)}

    def evaluate(self, prepared, step: int, train_s: float) -> dict[str, Any]:
        """convert_pt2e on a copy, run the converted program on eval/, coverage on a batch-1 export."""
        import torch
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

        from msvit.runtime.coverage import program_coverage

        t0 = time.perf_counter()
        converted = convert_pt2e(copy.deepcopy(prepared))
        logits = batched_logits(converted, self.eval_x)
        if self.cov is None:  # training moves weights, not which layers are int8: measured once
            size = self.eval_x.shape[-1]
            self.cov = program_coverage(torch.export.export(converted, (torch.zeros(1, 3, size, size),)))
        cov = self.cov
        row = {"run": self.name, "steps": step, "train_s": round(train_s, 1), "mac_share": cov.mac_share,
               "layers": f"{cov.layers_int8}/{cov.layers_total}", **self.metrics(logits),
               "eval_s": round(time.perf_counter() - t0, 1)}
        row["goal_met"] = bool(row["mac_share"] >= GOAL["mac_share"] and row["agreement"] >= GOAL["agreement"]
                               and row["max_dp"] <= GOAL["max_dp"] and row["auc_drop"] <= GOAL["auc_drop"])
        log(f"  [{self.name} step {step}] {fmt_row(row)}  ({row['eval_s']} s)")
        self.rows.append(row)
        return row

    def go(self) -> list[dict[str, Any]]:
        import torch
        from torchao.quantization.pt2e import disable_observer
        from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e
        from torchao.quantization.pt2e.utils import _fuse_conv_bn_

        a = self.a
        size = self.eval_x.shape[-1]
        t0 = time.perf_counter()
        dyn = torch.export.Dim("batch", min=1, max=max(a.batch, 16))
        gm = torch.export.export(self.model.eval(), (torch.zeros(2, 3, size, size),),
                                 dynamic_shapes=({0: dyn},)).module()
        _fuse_conv_bn_(gm)  # BN folded with its eval statistics, as prepare_pt2e does for PTQ
        prepared = prepare_qat_pt2e(gm, quantizer(FLOAT_GROUPS[self.name]))
        log(f"[{self.name}] export + fold BN + prepare_qat_pt2e {time.perf_counter() - t0:.0f} s")

        t1 = time.perf_counter()
        cal = np.random.default_rng(a.seed).permutation(len(self.pool_x))[:a.calib_n]
        with torch.no_grad():  # calibration: observers on, no weight updates
            for i in range(0, len(cal), 16):
                prepared(torch.from_numpy(np.ascontiguousarray(self.pool_x[np.sort(cal[i:i + 16])])))
        log(f"[{self.name}] calibration on {len(cal)} training images {time.perf_counter() - t1:.0f} s")
        self.evaluate(prepared, 0, 0.0)
        if a.steps <= 0:
            return self.rows

        params = [p for p in prepared.parameters() if p.is_floating_point()]
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.Adam(params, lr=a.lr)
        # linear warm-up (Adam's first steps move every weight by ~lr whatever the gradient), then cosine
        # decay to 10 % over the run's progress: steps done / --steps or seconds / --budget, whichever
        # is further (so a time-boxed run still ends at a low lr)
        warm = max(1, a.warmup)

        def lr_at(step: int, progress: float) -> float:
            return a.lr * min(1.0, (step + 1) / warm) * (0.1 + 0.45 * (1 + np.cos(np.pi * min(1.0, progress))))

        rng = np.random.default_rng(a.seed)
        n = len(self.pool_x)
        order, pos = rng.permutation(n), 0
        eval_at = set(int(s) for s in a.eval_at)
        mid_done = False
        frozen, train_s, step, run_loss, t_start = False, 0.0, 0, [], time.perf_counter()
        while step < a.steps:
            progress = max(step / a.steps, train_s / a.budget)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, progress)
            if not frozen and progress >= a.freeze_obs:
                prepared.apply(disable_observer)
                frozen = True
                log(f"[{self.name}] observers frozen at step {step}")
            if pos + a.batch > n:
                order, pos = rng.permutation(n), 0
            idx = order[pos:pos + a.batch]
            pos += a.batch
            xb = self.pool_x[idx]
            tb = self.teacher[idx].copy()
            if a.flip:
                flip = rng.random(len(idx)) < 0.5
                xb = np.where(flip[:, None, None, None], xb[..., ::-1], xb)
                tb[flip] = self.teacher_flip[idx][flip]
            x = torch.from_numpy(np.ascontiguousarray(xb, dtype=np.float32))
            t = torch.from_numpy(tb.astype(np.float32))
            out = prepared(x).reshape(-1)
            loss = torch.nn.functional.mse_loss(out, t)
            if a.bce > 0:
                y = torch.from_numpy(self.pool_y[idx].astype(np.float32))
                loss = loss + a.bce * torch.nn.functional.binary_cross_entropy_with_logits(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            run_loss.append(float(loss.detach()))
            train_s = time.perf_counter() - t_start
            if step % a.log_every == 0 or step == 1:
                log(f"[{self.name}] step {step:4d}  lr {opt.param_groups[0]['lr']:.1e}  loss {np.mean(run_loss):.5f}  "
                    f"(rmse logit {np.sqrt(np.mean(run_loss)):.4f})  {train_s:.0f} s  "
                    f"{train_s / step:.1f} s/step")
                run_loss = []
            mid = a.eval_mid and not mid_done and max(step / a.steps, train_s / a.budget) >= 0.5
            if (step in eval_at or mid) and step < a.steps:
                mid_done = mid_done or mid
                t_ev = time.perf_counter()
                self.evaluate(prepared, step, train_s)
                t_start += time.perf_counter() - t_ev  # evaluation time is not training time
            if train_s > a.budget:
                log(f"[{self.name}] time budget {a.budget:.0f} s reached at step {step}")
                break
        self.evaluate(prepared, step, train_s)
        return self.rows


def fmt_row(r: dict[str, Any]) -> str:
    return (f"{r['run']:<8} {r['steps']:>5} {r['train_s']:>7.0f} {100 * r['mac_share']:>6.1f}% "
            f"{r['agreement']:>6.3f} {r['max_dp']:>7.4f} {r['auc']:>6.3f} {r['auc_drop']:>+7.4f} "
            f"{'yes' if r['goal_met'] else 'no':>4}")


HEADER = f"{'run':<8} {'steps':>5} {'train_s':>7} {'int8':>7} {'agree':>6} {'max|dP|':>7} {'AUC':>6} {'AUCdrop':>7} {'goal':>4}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    data = HERE.parent.parent / "shared" / "data" / "faces"
    ap.add_argument("--weights", required=True)
    ap.add_argument("--train", nargs="+", default=[str(data / "train"), str(data / "calib")],
                    help="training folders (never eval/)")
    ap.add_argument("--eval", default=str(data / "eval"))
    ap.add_argument("--runs", nargs="+", default=["global"], choices=list(FLOAT_GROUPS))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--budget", type=float, default=900.0, help="training seconds per run (time box)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-5,
                    help="Adam peak lr (int8 weight steps are ~1e-3..1e-2: much smaller updates rarely "
                         "move a rounded weight in a few hundred steps; biases and LayerNorms stay float)")
    ap.add_argument("--warmup", type=int, default=10, help="linear lr warm-up steps")
    ap.add_argument("--calib-n", type=int, default=256, help="training images for the step-0 calibration pass")
    ap.add_argument("--bce", type=float, default=0.0, help="weight of a BCE term on the labels")
    ap.add_argument("--freeze-obs", type=float, default=0.5, help="share of the run (steps or budget) with observers updating")
    ap.add_argument("--no-flip", dest="flip", action="store_false", help="no horizontal-flip augmentation")
    ap.add_argument("--eval-at", nargs="*", default=[], help="steps at which to also evaluate (reporting only)")
    ap.add_argument("--no-eval-mid", dest="eval_mid", action="store_false",
                    help="no evaluation half-way through the run (reporting only, not selection)")
    ap.add_argument("--log-every", type=int, default=20)
    ap.add_argument("--limit", type=int, default=None, help="images per folder (smoke tests)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)

    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    t0 = time.perf_counter()
    model = create_model("ms_eff_vit_b0", weights=a.weights).eval()
    sets = [load_images(f, limit=a.limit, seed=a.seed) for f in a.train]
    pool_x = np.concatenate([s.x for s in sets]).astype(np.float32)
    pool_y = np.concatenate([s.labels for s in sets])
    ev = load_images(a.eval, limit=a.limit, seed=a.seed)
    eval_x, eval_y = ev.x.astype(np.float32), ev.labels
    teacher = batched_logits(model, pool_x)
    teacher_flip = batched_logits(model, np.ascontiguousarray(pool_x[..., ::-1])) if a.flip else teacher
    ref_logit = batched_logits(model, eval_x)
    log(f"data: {len(pool_x)} training images ({', '.join(s.description for s in sets)}), {len(ev)} eval; "
        f"FP32 teacher logits {time.perf_counter() - t0:.0f} s; eval logit range "
        f"[{ref_logit.min():.2f}, {ref_logit.max():.2f}]")

    rows, errors = [], {}
    for name in a.runs:
        r = Run(a, name, model, pool_x, pool_y, teacher, teacher_flip, eval_x, eval_y, ref_logit)
        try:
            r.go()
        except Exception as e:  # a failed run prints its one-line error; the rows so far stay
            import traceback

            traceback.print_exc()
            errors[name] = one_line(e)
            log(f"[{name}] FAILED: {errors[name]}")
        rows += r.rows

    print()
    print(f"QAT (PT2E + XNNPACKQuantizer), lr {a.lr}, batch {a.batch}, bce {a.bce}, "
          f"{len(pool_x)} train imgs, {len(ev)} eval imgs")
    print(HEADER)
    for row in rows:
        print(fmt_row(row))
    for name, err in errors.items():
        print(f"{name:<8} ERROR {err}"[:100])
    print(f"goal: int8 >= {100 * GOAL['mac_share']:.0f}%, agree >= {GOAL['agreement']}, "
          f"max|dP| <= {GOAL['max_dp']}, AUC drop <= {GOAL['auc_drop']}")
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "rows": rows, "errors": errors}, indent=1))
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
