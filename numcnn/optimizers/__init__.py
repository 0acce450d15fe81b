"""Optimizers with Keras 3's exact update rules (keras/src/optimizers/*.py), updating arrays in place.

Every step follows Keras's base optimizer (``base.py``): clip the gradients (``clipnorm`` per tensor,
``global_clipnorm`` or ``clipvalue``), apply decoupled weight decay ``w -= w * weight_decay * lr``, apply the
update, then ``iterations += 1``. Scalars are cast to the variable's dtype, as Keras does; the learning rate is
first rounded to float32 (Keras stores it in a float32 variable: 0.001 becomes 0.0010000000475). The learning
rate may be a schedule (``numcnn.optimizers.schedules``), evaluated at ``iterations`` each step.

* ``SGD``      ``w -= lr * g``; momentum ``v = momentum * v - lr * g``, ``w += v`` (Nesterov:
               ``w += momentum * v - lr * g``)                                                      (sgd.py)
* ``Adam``     ``m += (1 - b1)(g - m)``, ``v += (1 - b2)(g^2 - v)``, ``alpha = lr sqrt(1 - b2^t) / (1 - b1^t)``,
               ``w -= alpha m / (sqrt(v) + eps)``; ``amsgrad``: ``sqrt(max over steps of v)``         (adam.py)
* ``AdamW``    Adam with ``weight_decay=0.004`` by default                                         (adam.py)
* ``Nadam``    Adam with Nesterov momentum and the momentum schedule ``u_t = b1 (1 - 0.5 * 0.96^t)`` (nadam.py)
* ``RMSprop``  ``s = rho s + (1 - rho) g^2``, ``w -= lr g / sqrt(s + eps)``; centered; momentum   (rmsprop.py)
* ``Adagrad``  ``A += g^2`` (from 0.1), ``w -= lr g / sqrt(A + eps)``                             (adagrad.py)

``get("adamw")`` builds one by its Keras name; ``from_config(name, config)`` rebuilds a saved one.
"""

from __future__ import annotations

from . import schedules
from .adagrad import Adagrad
from .adam import Adam, AdamW, _adam_step, _amsgrad_step  # noqa: F401  (the kernels, for tests)
from .base import Optimizer
from .nadam import Nadam
from .rmsprop import RMSprop
from .sgd import SGD

OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "nadam": Nadam, "rmsprop": RMSprop, "adagrad": Adagrad}

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Nadam", "RMSprop", "Adagrad", "schedules", "OPTIMIZERS", "get",
           "from_config"]


def get(identifier) -> Optimizer:
    """An optimizer instance: given one, or built with default arguments from its Keras name ("adam")."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in OPTIMIZERS:
        return OPTIMIZERS[identifier.lower()]()
    raise ValueError(f"unknown optimizer {identifier!r}; choose one of {sorted(OPTIMIZERS)} or pass an Optimizer")


def from_config(name: str, config: dict) -> Optimizer:
    """Rebuild an optimizer from its ``name`` and ``get_config()`` (a schedule comes back as a schedule)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; numcnn has {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[name].from_config(config)
