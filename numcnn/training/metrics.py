"""The metrics ``compile(metrics=[...])`` accepts, by their Keras names, with Keras 3's formulas.

Each metric gives one value per example; the value logged for an epoch (or an ``evaluate``) is their mean over
every example seen, as Keras's ``Mean`` metrics accumulate it. The log name is the name given to ``compile``
("acc" logs as "acc"), as in Keras. ``metrics`` are **not** weighted by ``sample_weight`` / ``class_weight``;
``compile(weighted_metrics=[...])`` are, as Keras 3 weights them: ``sum_n w_n v_n / sum_n w_n`` (0 when the
weights sum to 0), plain means when no weights are given. A weighted metric logs under its own name, or as
``weighted_<name>`` when ``metrics`` has the same name (``weighted_log_names``).

With labels ``y`` and outputs ``p`` (one row per example):

* ``sparse_categorical_accuracy``        ``argmax(p) == y``  (the first maximum wins a tie)
* ``categorical_accuracy``               ``argmax(p) == argmax(y)``
* ``sparse_top_k_categorical_accuracy``  ``y`` is among the top k (k=5) of ``p``: fewer than k classes score
                                         strictly higher, so ties at the boundary count as in (``tf.math.in_top_k``)
* ``top_k_categorical_accuracy``         the same with ``argmax(y)``
* ``binary_accuracy``                    ``(p > 0.5) == y`` per output, averaged over the example's outputs
* ``mse`` / ``mean_squared_error``       ``mean((p - y)^2)`` over the example's outputs
* ``mae`` / ``mean_absolute_error``      ``mean(|p - y|)``
* ``accuracy`` / ``acc``                 resolved from the shapes, as Keras does: binary accuracy for a
                                         1-output model, sparse categorical accuracy for labels with fewer axes
                                         than the output, else categorical accuracy
"""

from __future__ import annotations

import numpy as np

TOP_K = 5  # Keras's default k for the top-k accuracies


def _rows(values: np.ndarray) -> np.ndarray:
    """Per-example means over every axis but the first (Keras's ``reduce_to_samplewise_values``)."""
    values = np.asarray(values, dtype=np.float64)
    return values.reshape(len(values), -1).mean(axis=1) if values.ndim > 1 else values


def _labels(y, n: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    return y.reshape(n)


def _same_shape(y, p) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    if y.size != p.size:
        raise ValueError(f"targets of shape {y.shape} do not fit outputs of shape {p.shape}")
    return y.reshape(p.shape)


def sparse_categorical_accuracy(y, p):
    return (np.argmax(p, axis=-1) == _labels(y, len(p))).astype(np.float64)


def categorical_accuracy(y, p):
    return (np.argmax(p, axis=-1) == np.argmax(np.asarray(y), axis=-1)).astype(np.float64)


def in_top_k(labels, p, k: int) -> np.ndarray:
    """Whether each label's score is among the ``k`` highest of its row, ties included (``tf.math.in_top_k``):
    fewer than ``k`` scores are strictly higher, and the label's own score is finite."""
    labels = labels.astype(np.int64)
    target = p[np.arange(len(p)), labels]
    higher = np.sum(p > target[:, None], axis=-1)
    return ((higher < k) & np.isfinite(target)).astype(np.float64)


def sparse_top_k_categorical_accuracy(y, p, k: int = TOP_K):
    return in_top_k(_labels(y, len(p)), p, k)


def top_k_categorical_accuracy(y, p, k: int = TOP_K):
    return in_top_k(np.argmax(np.asarray(y), axis=-1), p, k)


def binary_accuracy(y, p, threshold: float = 0.5):
    y = _same_shape(y, p)
    return _rows((p > threshold) == y)


def mean_squared_error(y, p):
    return _rows(np.square(p.astype(np.float64) - _same_shape(y, p)))


def mean_absolute_error(y, p):
    return _rows(np.abs(p.astype(np.float64) - _same_shape(y, p)))


# name -> (per-example function, direction: "up" when larger is better, as Keras's ``_direction``)
METRICS = {
    "sparse_categorical_accuracy": (sparse_categorical_accuracy, "up"),
    "categorical_accuracy": (categorical_accuracy, "up"),
    "sparse_top_k_categorical_accuracy": (sparse_top_k_categorical_accuracy, "up"),
    "top_k_categorical_accuracy": (top_k_categorical_accuracy, "up"),
    "binary_accuracy": (binary_accuracy, "up"),
    "mse": (mean_squared_error, "down"),
    "mean_squared_error": (mean_squared_error, "down"),
    "mae": (mean_absolute_error, "down"),
    "mean_absolute_error": (mean_absolute_error, "down"),
}
ACCURACY_NAMES = ("accuracy", "acc")
NAMES = (*ACCURACY_NAMES, *METRICS)


def check_names(metrics) -> list[str]:
    """The metric names ``compile`` was given, checked, without repeats; a clear error lists what exists."""
    if metrics is None:
        return []
    if isinstance(metrics, str):
        raise ValueError(f"metrics must be a list of names, e.g. [{metrics!r}], got the string {metrics!r}")
    names = []
    for metric in metrics:
        if not isinstance(metric, str) or metric not in NAMES:
            raise ValueError(f"unknown metric {metric!r}; numcnn supports {list(NAMES)}")
        if metric not in names:
            names.append(metric)
    return names


def weighted_log_names(metric_names, weighted_names) -> dict[str, str]:
    """``{log name: metric name}`` of the weighted metrics: Keras logs a weighted metric under its own name unless
    an unweighted one has it, then as ``weighted_<name>`` (``CompileMetrics.result``)."""
    return {(f"weighted_{name}" if name in metric_names else name): name for name in weighted_names}


def direction(name: str) -> str:
    """``"up"`` if a larger value of metric ``name`` is better, ``"down"`` if smaller is."""
    name = name.removeprefix("weighted_") if name not in NAMES else name
    return "up" if name in ACCURACY_NAMES else METRICS[name][1]


def resolve(name: str, y, p):
    """The per-example function behind ``name``; "accuracy" depends on the shapes of ``y`` and ``p``."""
    if name not in ACCURACY_NAMES:
        return METRICS[name][0]
    y = np.asarray(y)
    if p.shape[-1] == 1:
        return binary_accuracy
    if y.ndim < p.ndim or (y.shape[-1] == 1 and p.shape[-1] > 1):
        return sparse_categorical_accuracy
    return categorical_accuracy


class RunningMeans:
    """Keras's logs over a run of batches: ``loss`` is the mean of the batch losses weighted by batch size,
    each metric the mean of its per-example values over every example seen, each weighted metric the
    ``sample_weight``-weighted mean (``totals`` holds ``[sum of values, count]`` per log name; for a weighted
    metric the sums of ``w_n v_n`` and of ``w_n``)."""

    def __init__(self, metric_names=(), weighted_names=(), loss_sum: float = 0.0, seen: int = 0,
                 totals: dict | None = None):
        self.metric_names = list(metric_names)
        self.weighted = weighted_log_names(self.metric_names, weighted_names)  # {log name: metric name}
        self.loss_sum, self.seen = float(loss_sum), int(seen)
        totals = totals or {}
        self.totals = {name: [float(totals.get(name, (0.0, 0))[0]), float(totals.get(name, (0.0, 0))[1])]
                       for name in [*self.metric_names, *self.weighted]}

    def update(self, loss: float, size: int, y, output, sample_weight=None) -> None:
        """Add one batch: its loss (a mean over its ``size`` examples), its metrics and weighted metrics."""
        self.loss_sum += float(loss) * size
        self.seen += size
        for name in self.metric_names:
            values = resolve(name, y, output)(y, output)
            self.totals[name][0] += float(np.sum(values))
            self.totals[name][1] += len(values)
        for log_name, name in self.weighted.items():
            values = resolve(name, y, output)(y, output)
            w = np.ones(len(values)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
            self.totals[log_name][0] += float(np.sum(values * w))
            self.totals[log_name][1] += float(np.sum(w))

    def results(self) -> dict:
        """``{"loss": ..., <metric>: ...}`` so far (the loss and metrics NaN before the first batch; a weighted
        metric whose weights sum to 0 is 0, Keras's ``divide_no_nan``)."""
        logs = {"loss": self.loss_sum / self.seen if self.seen else float("nan")}
        for name, (total, count) in self.totals.items():
            if name in self.weighted:
                logs[name] = total / count if count else 0.0
            else:
                logs[name] = total / count if count else float("nan")
        return logs

    def to_json(self) -> dict:
        return {"loss_sum": self.loss_sum, "seen": self.seen, "totals": self.totals}

    @classmethod
    def from_json(cls, metric_names, weighted_names, saved: dict) -> "RunningMeans":
        return cls(metric_names, weighted_names, saved.get("loss_sum", 0.0), saved.get("seen", 0),
                   saved.get("totals"))
