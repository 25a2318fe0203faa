"""Published normalization statistics."""

# ImageNet-1k per-channel mean and std of RGB pixels in [0, 1], as torchvision's pretrained models use them
# (https://pytorch.org/vision/stable/models.html); the DELT/SRe2L reference code normalizes with them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
