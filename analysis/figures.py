"""The house style every analysis figure shares: a headless backend, labelled gridded axes with a
small legend, a title over the panels, one dpi. One place, so the plots of runs and of probes stay
alike. Also where a figure goes: `image_target` checks --out before any work, `save_figure` writes
it in one rename, so a failed write leaves an older figure as it was."""

from __future__ import annotations

import io
import os
import pathlib
import secrets
import sys
from typing import Any

DEFAULT_FORMAT = "png"  # what matplotlib writes for a name without an extension
DPI = 120


def pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend (works on machines without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def new_figure(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float], **kwargs: Any) -> tuple[Any, Any]:
    """(figure, 2-d array of axes) drawn without pyplot: the global backend is left as the caller
    (a notebook, a GUI) set it, and nothing is kept alive after the figure is dropped."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, squeeze=False, **kwargs)


def add_note(fig: Any, text: str) -> None:
    """A small grey line under the panels (e.g. which config fields differ between the curves)."""
    if text:
        fig.text(0.01, 0.005, text, fontsize=7, color="0.35", ha="left", va="bottom", wrap=True)


def png_bytes(fig: Any, title: str | None = None) -> bytes:
    """The figure as PNG bytes (for embedding in a report), titled and laid out like `save_figure`."""
    _finish(fig, title)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=DPI, format="png")
    _close(fig)
    return buffer.getvalue()


def _finish(fig: Any, title: str | None) -> None:
    if title:
        fig.suptitle(title)
    if fig.get_layout_engine() is None:  # a figure made with its own layout (constrained) keeps it
        bottom = 0.06 if any(t.get_position()[1] < 0.02 for t in fig.texts) else 0.0
        fig.tight_layout(rect=(0, bottom, 1, 1))


def _close(fig: Any) -> None:
    """Free a pyplot-managed figure (long sweeps plot many); a plain Figure needs nothing. pyplot
    is not imported for it, so the global backend stays as it was."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None and getattr(fig.canvas, "manager", None) is not None:
        plt.close(fig)


def image_formats() -> list[str]:
    """The file types the Agg backend writes (png, pdf, svg, ...)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    return sorted(FigureCanvasAgg.get_supported_filetypes())


def image_target(out: str | os.PathLike, flag: str = "--out") -> pathlib.Path:
    """The file a figure for `out` is written to: `out` itself, or `out`.png when the name has no
    extension (matplotlib's rule). A ValueError naming `flag` when the name is empty or a folder,
    its folder is missing or not a folder, or its extension is no image type."""
    text = os.fspath(out)
    if not text.strip():
        raise ValueError(f"{flag} {text!r}: give an image file name such as fig.png")
    path = pathlib.Path(text)
    if path.is_dir() or text.endswith(("/", os.sep)):
        raise ValueError(f"{flag} {text}: is a folder; give an image file name such as {path / 'fig.png'}")
    folder = path.parent
    if not folder.exists():
        raise ValueError(f"{flag} {text}: folder {folder} does not exist (create it first)")
    if not folder.is_dir():
        raise ValueError(f"{flag} {text}: {folder} is not a folder")
    if not path.suffix:
        return path.with_name(f"{path.name}.{DEFAULT_FORMAT}")
    kind = path.suffix[1:].lower()
    if kind not in image_formats():
        raise ValueError(f"{flag} {text}: '{path.suffix}' is no image type; use one of {', '.join(image_formats())}")
    return path


def label_axes(ax: Any, xlabel: str, ylabel: str, *, grid: bool = True) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if grid:
        ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def save_figure(fig: Any, out: str | os.PathLike, title: str | None) -> pathlib.Path:
    """Title, tight layout, write the figure to `image_target(out)` through a temporary file and one
    rename, free the figure (long sweeps plot many); returns the path written."""
    try:
        target = image_target(out)
        _finish(fig, title)
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
        try:
            fig.savefig(tmp, dpi=DPI, format=target.suffix[1:].lower())
            os.replace(tmp, target)
        except OSError as error:  # named after the figure asked for, not the temporary file
            raise OSError(error.errno, error.strerror or str(error), str(target)) from None
        finally:
            if tmp.exists():
                tmp.unlink()
    finally:
        _close(fig)
    return target
