"""The stopping rule of `repetitions = "auto"`: stop when every speed-up is known well enough.

The scheduler asks after each block; the rule looks only at the records, so a resumed
study stops where it first stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from cloudbench.analysis.power import ratio_halfwidth

STOP_METRIC = "train_s"


def stopping_state(frame: pd.DataFrame, environments: Sequence[str], datasets: Sequence[str],
                   block: int, target_halfwidth: float, max_repetitions: int,
                   metric: str = STOP_METRIC) -> dict[str, Any] | None:
    """None to go on; else why the study stops after `block` (the rule met, or the maximum).

    The rule: every 95 % interval of the ratio of medians of `metric`, for every pair of
    environments on every dataset, is within `target_halfwidth`. Only blocks up to `block`
    count.
    """
    if frame.empty:
        return None
    frame = frame[(frame["status"] == "ok") & (frame["warmup"] != True)  # noqa: E712
                  & (frame["block"] <= block)]
    widths = {}
    envs = list(environments)
    for ds in datasets:
        sub = frame[frame["dataset"] == ds]
        for i, a in enumerate(envs):
            for b in envs[i + 1:]:
                xa = sub.loc[sub["environment"] == a, metric].dropna().to_numpy(float)
                xb = sub.loc[sub["environment"] == b, metric].dropna().to_numpy(float)
                if len(xa) < 2 or len(xb) < 2:
                    return None
                widths[f"{ds}: {a} vs {b}"] = ratio_halfwidth(xa, xb)
    if not widths:
        return None
    worst = max(widths, key=widths.get)
    met = widths[worst] <= target_halfwidth
    if not met and block < max_repetitions:
        return None
    reason = (f"every 95 % interval of the ratio of median {metric} was within "
              f"±{target_halfwidth:.1%} (widest: {worst}, ±{widths[worst]:.1%})"
              if met else f"the maximum of {max_repetitions} repetitions was reached; "
              f"the widest interval ({worst}) was still ±{widths[worst]:.1%}, "
              f"above the target ±{target_halfwidth:.1%}")
    return {"rule": "ratio_ci_halfwidth", "metric": metric,
            "target_halfwidth": target_halfwidth, "repetitions": block,
            "met": met, "halfwidths": widths, "reason": reason}
