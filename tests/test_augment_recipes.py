"""The named protocols' augmentations: RandAugment (per image, seeded), RDED's ShufflePatches, IDC's ColorJitter and
PCA lighting: values on tiny inputs, permutation properties, and same seed -> same output."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2

from fastdistill.augment.color_jitter import ColorJitterParams, apply_color_jitter, color_jitter, grayscale
from fastdistill.augment.lighting import EIGVAL, EIGVEC, apply_lighting, lighting
from fastdistill.augment.randaugment import MAGNITUDE_BINS, rand_augment
from fastdistill.augment.shuffle_patches import PatchShuffle, apply_shuffle_patches, shuffle_patches


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int = 6, c: int = 3, size: int = 8, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 256, (n, c, size, size), generator=gen(seed), dtype=torch.uint8)


def test_rand_augment_is_torchvision_per_image_under_a_drawn_seed():
    x = images()
    g = gen(3)
    seed = int(torch.randint(0, 2**62, (1,), generator=gen(3)))
    op = v2.RandAugment(num_ops=2, magnitude=6, num_magnitude_bins=MAGNITUDE_BINS, fill=[10.0, 20.0, 30.0])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        expected = torch.stack([op(image) for image in x])
    state = torch.get_rng_state()
    out = rand_augment(x, g, 6, 2, fill=(10, 20, 30))
    assert torch.equal(out, expected) and out.dtype == torch.uint8
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is untouched


def test_rand_augment_same_seed_same_images_other_seed_other_images():
    x = images(16, 1)
    a, b, c = rand_augment(x, gen(0)), rand_augment(x, gen(0)), rand_augment(x, gen(1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not all(torch.equal(a[i], x[i]) for i in range(len(x)))  # it does change images
    with pytest.raises(ValueError, match="uint8"):
        rand_augment(x.float(), gen(0))


def test_shuffle_patches_permutes_the_quadrants():
    x = torch.arange(2 * 16, dtype=torch.float32).view(2, 1, 4, 4)
    params = PatchShuffle(cols=torch.tensor([[1, 0], [0, 1]]), rows=torch.tensor([[0, 1], [1, 0]]))
    out = apply_shuffle_patches(x, params)
    for b in range(2):
        for i in range(2):
            for j in range(2):
                r, c = int(params.rows[b, i]), int(params.cols[b, j])
                block = out[b, 0, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
                assert torch.equal(block, x[b, 0, 2 * r:2 * r + 2, 2 * c:2 * c + 2])
    assert torch.equal(apply_shuffle_patches(x, PatchShuffle(torch.tensor([[0, 1]] * 2), torch.tensor([[0, 1]] * 2))),
                       x)


def test_shuffle_patches_keeps_every_pixel_and_is_seeded():
    x = torch.rand(5, 3, 7, 9, generator=gen(0))  # sizes the factor does not divide: the last strip is wider
    out = shuffle_patches(x, 3, gen(4))
    assert out.shape == x.shape
    for a, b in zip(out, x, strict=True):
        assert torch.equal(a.flatten().sort().values, b.flatten().sort().values)
    assert torch.equal(out, shuffle_patches(x, 3, gen(4)))
    assert torch.equal(shuffle_patches(x, 1, gen(4)), x)


def _idc_jitter(img: torch.Tensor, order: list[int], alpha: list[float]) -> torch.Tensor:
    """IDC's ColorJitter on one [3, H, W] image with given draws (brightness, contrast, saturation lerps)."""
    def gray(t):
        g = t[0] * 0.299 + t[1] * 0.587 + t[2] * 0.114
        return g.expand_as(t)

    for op in order:
        a = alpha[op]
        target = torch.zeros_like(img) if op == 0 else gray(img).mean().expand_as(img) if op == 1 else gray(img)
        img = img.lerp(target, a)
    return img


def test_color_jitter_equals_idc_sequential_lerps():
    x = torch.rand(4, 3, 5, 5, generator=gen(2))
    order = torch.tensor([[0, 1, 2], [2, 1, 0], [1, 0, 2], [2, 0, 1]])
    alpha = torch.tensor([[0.3, -0.2, 0.4], [-0.4, 0.1, 0.25], [0.0, 0.35, -0.3], [0.2, 0.2, 0.2]])
    out = apply_color_jitter(x, ColorJitterParams(order, alpha))
    for i in range(4):
        torch.testing.assert_close(out[i], _idc_jitter(x[i], order[i].tolist(), alpha[i].tolist()))


def test_color_jitter_extremes_and_seed():
    x = torch.rand(1, 3, 4, 4, generator=gen(0))
    black = apply_color_jitter(x, ColorJitterParams(torch.tensor([[0, 1, 2]]), torch.tensor([[1.0, 0.0, 0.0]])))
    assert torch.equal(black, torch.zeros_like(x))
    flat = apply_color_jitter(x, ColorJitterParams(torch.tensor([[1, 0, 2]]), torch.tensor([[0.0, 1.0, 0.0]])))
    torch.testing.assert_close(flat, grayscale(x).mean().expand_as(x))
    gray = torch.rand(3, 1, 4, 4, generator=gen(1))
    params = ColorJitterParams(torch.tensor([[2, 0, 1]] * 3), torch.tensor([[0.0, 0.0, 0.5]] * 3))
    sat = apply_color_jitter(gray, params)
    assert torch.equal(sat, gray)  # a one-channel image is its own grayscale
    assert torch.equal(color_jitter(x, 0.4, gen(5)), color_jitter(x, 0.4, gen(5)))


def test_lighting_adds_the_pca_offset():
    x = torch.zeros(2, 3, 2, 2)
    alpha = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    out = apply_lighting(x, alpha)
    vec = torch.tensor(EIGVEC)
    torch.testing.assert_close(out[0, :, 0, 0], EIGVAL[0] * vec[:, 0])
    torch.testing.assert_close(out[1, :, 1, 1], 2 * EIGVAL[2] * vec[:, 2])
    one = apply_lighting(torch.zeros(1, 1, 2, 2), alpha[:1])
    torch.testing.assert_close(one[0, 0, 0, 0], (EIGVAL[0] * vec[:, 0] * torch.tensor([0.299, 0.587, 0.114])).sum())
    y = torch.rand(3, 3, 4, 4, generator=gen(0))
    assert torch.equal(lighting(y, 0.1, gen(7)), lighting(y, 0.1, gen(7)))
    with pytest.raises(ValueError, match="channels"):
        apply_lighting(torch.zeros(1, 2, 2, 2), alpha[:1])
