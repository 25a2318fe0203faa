"""The report's plots as PNG bytes, drawn with matplotlib (extra ``report``) on its object API: no pyplot, so the
caller's backend and global figure state are left alone."""

from __future__ import annotations

import io
from collections.abc import Sequence

INSTALL_HINT = "plots need matplotlib: `pip install fastdistill[report]`"
COLORS = {"distilled": "#1f77b4", "random real": "#ff7f0e"}
MAX_TICK_LABELS = 30  # more classes than this: points without class names on the axis
DPI = 100


def available() -> bool:
    """Whether matplotlib can be imported."""
    try:
        import matplotlib.figure  # noqa: F401
    except ImportError:
        return False
    return True


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _figure(width: float, height: float, axes: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, [fig.add_subplot(1, axes, i + 1) for i in range(axes)]


def per_class(title: str, classes: Sequence[str], series: dict[str, Sequence[float | None]], ylabel: str) -> bytes:
    """Grouped bars per class (points along the class index for many classes), one colour per series."""
    n = len(classes)
    fig, (ax,) = _figure(min(14.0, max(6.0, 0.45 * n * len(series))) if n <= MAX_TICK_LABELS else 10.0, 3.6)
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        xs = [c for c in range(n) if values[c] is not None]
        ys = [values[c] for c in xs]
        color = COLORS.get(name)
        if n <= MAX_TICK_LABELS:
            ax.bar([x + (i - (len(series) - 1) / 2) * width for x in xs], ys, width, label=name, color=color)
        else:
            ax.plot(xs, ys, ".", markersize=3, label=name, color=color)
    if n <= MAX_TICK_LABELS:
        ax.set_xticks(range(n), [c if len(c) <= 12 else c[:11] + "…" for c in classes],
                     rotation=45 if any(len(c) > 3 for c in classes) else 0, ha="right" if n > 10 else "center")
    else:
        ax.set_xlabel("class index")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def curves(title: str, loss: dict[str, list[list[float]]], test: dict[str, list[list[list[float]]]]) -> bytes:
    """Training loss per epoch (left) and, where recorded, test top-1 during training (right); one thin line per
    seed, one colour per set."""
    from matplotlib.ticker import MaxNLocator

    fig, axes = _figure(10.0 if test else 5.5, 3.4, 2 if test else 1)
    for name, runs in loss.items():
        for i, values in enumerate(runs):
            axes[0].plot(range(1, len(values) + 1), values, color=COLORS.get(name), linewidth=1,
                         label=name if i == 0 else None)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("training loss (epoch mean)")
    axes[0].set_title(title)
    axes[0].legend(fontsize="small")
    if test:
        for name, runs in test.items():
            for i, points in enumerate(runs):
                axes[1].plot([p[0] for p in points], [p[1] for p in points], "o-", color=COLORS.get(name),
                             linewidth=1, markersize=3, label=name if i == 0 else None)
        axes[1].set_xlabel("epoch")
        axes[1].set_ylabel("test top-1 %")
        axes[1].set_title("test accuracy during training")
        axes[1].legend(fontsize="small")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _png(fig)
