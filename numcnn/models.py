"""Keras's ``keras.models`` spelling: ``numcnn.models.Sequential``, ``load_model`` and ``save_model``, so that code
written against ``keras.models`` ports by changing the import."""

from .io import load_model, save
from .model import Sequential


def save_model(model, filepath, overwrite: bool = True) -> None:
    """``keras.models.save_model``: the same as ``model.save(filepath)`` (the format from the file name)."""
    save(model, filepath, overwrite=overwrite)


__all__ = ["Sequential", "load_model", "save_model"]
