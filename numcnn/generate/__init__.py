"""Generation with a classifier's own input gradient: class images, DeepDream, texture "artwork"."""

from .artwork import artwork_grid, generate_artwork, generate_artworks
from .class_images import Prior, class_image, class_images
from .dream import deep_dream
from .generative import interpolate, load_generator, restyle, sample, sample_grid, train_generator
from .robust import robust_fit
from .texture import multiscale_filter_bank, random_filter_bank, style_transfer, texture

__all__ = ["Prior", "class_image", "class_images", "deep_dream", "texture", "style_transfer", "random_filter_bank",
           "multiscale_filter_bank", "robust_fit", "train_generator", "sample", "sample_grid", "interpolate", "restyle", "load_generator",
           "generate_artwork", "generate_artworks", "artwork_grid"]
