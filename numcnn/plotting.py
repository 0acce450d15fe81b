"""Small helpers to write matplotlib figures atomically (headless: the Agg backend)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no display needed; must be chosen before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402

from .io import atomic_write_bytes  # noqa: E402


def save_figure(figure, path, dpi: int = 120) -> None:
    """Render ``figure`` to PNG in memory, write it atomically to ``path`` and close it."""
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=dpi)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
