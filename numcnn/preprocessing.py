"""Turning images as stored (uint8, 0..255) into model inputs (float, 0..1, NHWC) and back."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def images_to_input(images, dtype=np.float32) -> np.ndarray:
    """uint8 images (N, H, W) or (N, H, W, C) in 0..255 -> float (N, H, W, C) in 0..1."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if images.ndim != 4:
        raise ValueError(f"expected images of shape (N, H, W) or (N, H, W, C), got {images.shape}")
    return images.astype(dtype) / dtype(255)


def input_to_uint8(x) -> np.ndarray:
    """Model input in 0..1 -> uint8 0..255 (clipped), for PNGs."""
    return np.clip(np.rint(np.asarray(x, dtype=np.float64) * 255), 0, 255).astype(np.uint8)


def load_image(path, shape=(28, 28, 1), invert: bool = False) -> np.ndarray:
    """Read an image file with Pillow into one model input (H, W, C) in 0..1, resized to ``shape``."""
    from PIL import Image, UnidentifiedImageError

    height, width, channels = shape
    try:
        with Image.open(Path(path)) as image:
            image = image.convert("L" if channels == 1 else "RGB").resize((width, height), Image.BILINEAR)
            array = np.asarray(image, dtype=np.float32) / np.float32(255)
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{path}: cannot read image ({error})") from None
    if invert:
        array = 1 - array
    return array.reshape(height, width, channels)
