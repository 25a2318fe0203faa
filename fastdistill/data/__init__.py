"""Datasets held in memory as uint8 tensors, with class names, geometry and normalization."""

from fastdistill.data.base import Dataset, DatasetInfo, Split, to_float, to_uint8
from fastdistill.data.registry import load_dataset
from fastdistill.data.specs import DATASET_SPECS, DatasetPresets, DatasetSpec, dataset_presets, dataset_spec

__all__ = ["DATASET_SPECS", "Dataset", "DatasetInfo", "DatasetPresets", "DatasetSpec", "Split", "dataset_presets",
           "dataset_spec", "load_dataset", "to_float", "to_uint8"]
