"""Training loops: the small classifier loop the reproductions share."""

from .simple import TrainCurve as TrainCurve
from .simple import train_classifier as train_classifier

__all__ = ["TrainCurve", "train_classifier"]
