"""Data containers and loaders: labelled text for training and evaluating a BayesianModel."""

from bayeshead.data.dataset import TextDataset

__all__ = ["TextDataset"]
