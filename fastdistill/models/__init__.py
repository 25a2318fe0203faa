"""Classifiers (ConvNet-D, CIFAR ResNet-18, torchvision models) and teacher checkpoints."""

from fastdistill.models.registry import available_architectures, build_model

__all__ = ["available_architectures", "build_model"]
