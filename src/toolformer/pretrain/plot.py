"""The loss plot of a pretraining run: training loss and dev loss against the tokens seen (`loss.png`)."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def loss_plot(losses: list[dict[str, Any]], dev_curve: list[dict[str, Any]], path: Path, title: str) -> bool:
    """Draw train loss (line) and dev loss (dots, dev perplexity on the right axis) by tokens seen into `path`.

    Each point is a dict with "tokens" and "loss". Returns False when matplotlib is missing or nothing was logged.
    """
    if not losses and not dev_curve:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no loss plot (pip install matplotlib)")
        return False
    fig, ax = plt.subplots(figsize=(7, 4.2))
    if losses:
        ax.plot(
            [p["tokens"] / 1e6 for p in losses], [p["loss"] for p in losses], "-", lw=1.2, label="train loss"
        )
    if dev_curve:
        ax.plot(
            [p["tokens"] / 1e6 for p in dev_curve],
            [p["loss"] for p in dev_curve],
            "o-",
            ms=4,
            label="dev loss",
        )
        from matplotlib.ticker import LogLocator

        right = ax.secondary_yaxis("right", functions=(_exp, _log))
        right.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))  # ticks at every scale
        right.set_ylabel("dev perplexity")
    ax.set_xlabel("tokens seen (millions)")
    ax.set_ylabel("loss (nats per token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _exp(x: Any) -> Any:
    import numpy as np

    return np.exp(np.clip(x, -50, 50))


def _log(x: Any) -> Any:
    import numpy as np

    return np.log(np.clip(x, math.exp(-50), None))
