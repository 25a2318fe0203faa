"""Datasets held in memory as uint8 tensors, with class names, geometry and normalization."""

from fastdistill.data.base import Dataset, DatasetInfo, Split, to_float, to_uint8
from fastdistill.data.registry import DATASETS, load_dataset

__all__ = ["DATASETS", "Dataset", "DatasetInfo", "Split", "load_dataset", "to_float", "to_uint8"]
