"""Generation with a classifier's own input gradient: class images, DeepDream, texture "artwork"."""

from .class_images import Prior, class_image, class_images
from .dream import deep_dream
from .robust import robust_fit
from .texture import random_filter_bank, style_transfer, texture

__all__ = ["Prior", "class_image", "class_images", "deep_dream", "texture", "style_transfer", "random_filter_bank",
           "robust_fit"]
