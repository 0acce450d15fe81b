"""PLACEHOLDER: re-exports the reference kernels until the fast kernels land."""
from .reference import *  # noqa: F401,F403
