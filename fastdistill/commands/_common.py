"""Arguments shared by the pipeline commands and the helpers that turn them into objects."""

from __future__ import annotations

import argparse

import torch

from fastdistill.data import DATASET_SPECS
from fastdistill.errors import FastDistillError


def add_dataset_arguments(p: argparse.ArgumentParser, default: str = "digits") -> None:
    p.add_argument("--dataset", default=default, choices=sorted(DATASET_SPECS), help=f"dataset (default {default})")
    p.add_argument("--data-root", default=None, help="dataset location (IDX files, torchvision root, ImageFolder)")
    p.add_argument("--download", action="store_true", help="let torchvision download the dataset into --data-root")
    p.add_argument("--image-size", type=int, default=None, help="resize+center-crop side for imagefolder data")


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", default=None, help="output folder (default: a new folder under runs/)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same result on CPU)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="compute device")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --output")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise FastDistillError("--device cuda was asked for but no CUDA device is visible; use --device cpu")
    return torch.device(name)


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value
