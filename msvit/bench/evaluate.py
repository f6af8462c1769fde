"""Evaluate: each row's outputs on the evaluation data against PyTorch FP32."""
from __future__ import annotations

import numpy as np

from ..errors import MsvitError
from ..metrics import sigmoid, tpr_at_fpr
from ..export.validate import compare, default_atol
from .metrics import evaluate
from .plan import Candidate


def evaluate_row(c: Candidate, x_eval: np.ndarray, ref: np.ndarray, labels: np.ndarray | None,
                 real_data: bool = True) -> None:
    """Accuracy (with labels), agreement and |ΔP| vs the FP32 reference; then the artifact's
    own promises: its INT8 gate on this data, and logit parity as ``msvit-export`` judges it."""
    row = c.row
    try:
        if row.target == "torch" and row.device == "cpu":
            logits = ref  # the CPU FP32 reference itself
        else:  # the batch-N session when it holds a whole batch of the data, else batch 1
            s = c.sn if (c.sn is not None and c.sn.batch is not None and c.sn.batch <= len(x_eval)) else (c.s1 or c.sn)
            logits = s.run(x_eval)
    except MsvitError as e:
        row.fail(str(e), "unavailable")
        return
    except Exception as e:
        row.fail(f"{type(e).__name__}: {e}"[:300])
        return
    acc = evaluate(logits, ref, labels)
    row.n_eval = acc.n
    for k in ("accuracy", "auc", "log_loss", "agreement", "max_abs_dprob", "mean_abs_dprob", "max_abs_dlogit"):
        v = getattr(acc, k)
        setattr(row, k, None if v is None else round(float(v), 6 if k.startswith(("max", "mean")) else 5))
    if row.target != "torch":
        row.max_abs_dlogit = float(acc.max_abs_dlogit)
    operating_point(c, row, logits, ref, labels)
    if row.target != "torch":
        sess = c.s1 or c.sn
        share = sess.metadata.get("int8_mac_share")
        row.int8_mac_share = float(share) if share is not None else None
        row.exec_precision = sess.exec_precision
        row.precision_choice = sess.metadata.get("precision_choice") or None
    main = c.a1 or c.an
    if main is not None and main.status == "failed" and row.status == "ok":
        row.fail(main.message)
    # built-in synthetic images are no face crops: the gate speaks of face data only (--data)
    gate = (c.s1 or c.sn).metadata.get("guard_max_dprob") if row.target != "torch" and real_data else None
    if gate is not None and row.status == "ok" and c.judge_parity and row.max_abs_dprob is not None:
        # the INT8 guard's promise, checked on this data: |ΔP| within the gate recorded in the artifact
        if row.max_abs_dprob > float(gate):
            row.fail(f"INT8 max|ΔP| {row.max_abs_dprob:.3f} on this data > the artifact's own gate "
                     f"{float(gate):g} (guard_max_dprob)")
    atol = default_atol(row.precision, ref)
    if row.status == "ok" and row.target != "torch" and c.judge_parity and atol is not None:
        parity = compare(ref, logits, atol)  # the export's own check, tolerances and all
        row.parity_atol, row.parity_passed = parity.atol, parity.passed
        if not parity.passed:
            row.fail(f"parity: max|Δlogit| {parity.max_abs_dlogit:.2e} > atol {atol:g}")


def operating_point(c: Candidate, row, logits: np.ndarray, ref: np.ndarray, labels: np.ndarray | None) -> None:
    """At the artifact's own operating point (msvit-calibrate's threshold and temperature, else
    0.5 and 1): agreement of its decisions with FP32 torch's; with labels, log loss of its P(fake),
    and the TPR at FPR 1% and 5% of the real inputs (thresholds chosen on these scores)."""
    sess = c.s1 or c.sn
    op = getattr(sess, "operating_point", None) if row.target != "torch" else None
    t, temp = (op.threshold, op.temperature) if op is not None else (0.5, 1.0)
    p, pr = sigmoid(np.asarray(logits).reshape(-1) / temp), sigmoid(np.asarray(ref).reshape(-1) / temp)
    row.threshold = round(float(t), 6)
    row.agreement_at_threshold = round(float(np.mean((p >= t) == (pr >= t))), 5)
    if labels is None:
        return
    y = np.asarray(labels).reshape(-1)
    for fpr, key in ((0.01, "tpr_at_fpr1"), (0.05, "tpr_at_fpr5")):
        v = tpr_at_fpr(p, y, fpr)
        setattr(row, key, None if v is None else round(v, 5))
    if temp != 1.0:  # log loss of the P(fake) the artifact states
        from ..metrics import label_metrics

        row.log_loss = round(float(label_metrics(np.asarray(logits).reshape(-1) / temp, y)["log_loss"]), 5)
