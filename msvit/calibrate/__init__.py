"""msvit.calibrate: choose the operating point (threshold, optionally temperature) on the user's
own labelled footage, with bootstrap intervals, and carry it in a new artifact or a sidecar
(``msvit-calibrate`` is its CLI; :mod:`msvit.calibrate.stats` works on scores alone)."""
from .collect import Scored, run_pipeline, scores
from .publish import publish_calibrated, write_sidecar
from .report import Outcome, write_report
from .stats import (Rate, auc, fit_temperature, log_loss, min_inputs, operating_point, threshold_at_fpr,
                    threshold_at_tpr, tpr_at_fpr)

__all__ = ["Outcome", "Rate", "Scored", "auc", "fit_temperature", "log_loss", "min_inputs", "operating_point",
           "publish_calibrated", "run_pipeline", "scores", "threshold_at_fpr", "threshold_at_tpr", "tpr_at_fpr",
           "write_report", "write_sidecar"]
