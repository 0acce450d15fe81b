"""numcnn's exceptions. Each subclasses the built-in a Python user would expect (ValueError, TypeError,
RuntimeError), so ``except ValueError`` keeps working, and ``except NumcnnError`` catches them all."""


class NumcnnError(Exception):
    """Base class of every error numcnn raises on purpose."""


class ShapeError(NumcnnError, ValueError):
    """An array has the wrong shape or rank for a model or layer (the message names both shapes)."""


class InputDTypeError(NumcnnError, TypeError):
    """An array has a dtype numcnn refuses (object, strings, complex, integer images)."""


class NonFiniteError(NumcnnError, ValueError):
    """Inputs contain NaN or infinity."""


class LabelError(NumcnnError, ValueError):
    """Labels are out of range, not whole numbers, or do not match the examples."""


class ModelFileError(NumcnnError, ValueError):
    """A model or checkpoint file is missing, truncated, corrupted, of another version, or not numcnn's."""


class TrainingDivergedError(NumcnnError, RuntimeError):
    """The loss or a gradient became NaN or infinite; the model keeps the weights from before that step."""
