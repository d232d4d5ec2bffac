"""The house style every analysis figure shares: a headless backend, labelled gridded axes with a
small legend, a title over the panels, one dpi. One place, so the plots of runs and of probes stay
alike."""

from __future__ import annotations

from typing import Any


def pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend (works on machines without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def label_axes(ax: Any, xlabel: str, ylabel: str, *, grid: bool = True) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if grid:
        ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def save_figure(fig: Any, out: str, title: str) -> None:
    """Title, tight layout, write `out`, and free the figure (long sweeps plot many)."""
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    pyplot().close(fig)
