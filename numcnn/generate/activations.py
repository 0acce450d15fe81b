"""Input gradients of objectives on *intermediate* activations (DeepDream, texture synthesis).

``Sequential.backward`` starts at the output; these objectives live on inner layers, possibly several at
once. One forward pass keeps every layer's output; the backward pass walks down from the deepest chosen layer
and, at each chosen layer, adds that layer's own ``dObjective/d(activation)`` to the gradient flowing down.
"""

from __future__ import annotations

import numpy as np


def layer_index(model, layer) -> int:
    """Accept a layer's name or index."""
    if isinstance(layer, (int, np.integer)):
        if not -len(model.layers) <= layer < len(model.layers):
            raise ValueError(f"layer index {layer} out of range for {len(model.layers)} layers")
        return int(layer) % len(model.layers)
    names = [l.name for l in model.layers]
    if layer not in names:
        raise ValueError(f"no layer named {layer!r}; layers are {names}")
    return names.index(layer)


def forward_activations(model, x, deepest: int) -> list[np.ndarray]:
    """Outputs of layers ``0..deepest`` for input ``x`` (each layer keeps its cache for the backward)."""
    outputs = []
    h = np.asarray(x, dtype=model.dtype)
    for layer in model.layers[:deepest + 1]:
        h = layer.forward(h)
        outputs.append(h)
    return outputs


def objective_input_gradient(model, x, objective_gradients) -> tuple[dict, np.ndarray]:
    """``objective_gradients`` maps layer index -> function(activation) -> (value, dValue/dActivation).
    Returns the per-layer values and ``d(sum of values)/dx``."""
    deepest = max(objective_gradients)
    outputs = forward_activations(model, x, deepest)
    values, grad = {}, None
    for index in range(deepest, -1, -1):
        if index in objective_gradients:
            value, local = objective_gradients[index](outputs[index])
            values[index] = value
            grad = local if grad is None else grad + local
        grad = model.layers[index].backward(grad)
    return values, grad
