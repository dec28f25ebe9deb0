"""Data containers and loaders: labelled text (or text pairs) for training and evaluating a
BayesianModel, with class labels or real-valued targets."""

from bayeshead.data.dataset import TextBatch, TextDataset
from bayeshead.data.scaling import TargetScaler

__all__ = ["TextDataset", "TextBatch", "TargetScaler"]
