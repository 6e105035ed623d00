"""Ranking metrics for predictors (host numpy / scipy)."""

from __future__ import annotations

import numpy as np
from scipy import stats


def ranking_metrics(pred, true, top: int = 10) -> dict[str, float]:
    """Kendall tau-b, Spearman rho and precision@top (overlap of predicted and true top-``top``, / top)."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    ok = np.isfinite(pred) & np.isfinite(true)
    pred, true = pred[ok], true[ok]
    tau = stats.kendalltau(pred, true).statistic
    rho = stats.spearmanr(pred, true).statistic
    top_pred = set(np.argsort(-pred, kind="stable")[:top])
    top_true = set(np.argsort(-true, kind="stable")[:top])
    return {"kendall_tau": float(tau), "spearman_rho": float(rho), f"precision_at_{top}": len(top_pred & top_true) / top}
