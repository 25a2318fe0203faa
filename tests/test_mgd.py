"""MGD3 on tiny random-init diffusers models built from config (no downloads, CPU, a few seconds each)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

diffusers = pytest.importorskip("diffusers")

from fastdistill.cli import main  # noqa: E402
from fastdistill.data import load_dataset  # noqa: E402
from fastdistill.data.base import Split, to_float  # noqa: E402
from fastdistill.errors import FastDistillError  # noqa: E402
from fastdistill.ops import kmeans  # noqa: E402
from fastdistill.pipelines.mgd import (  # noqa: E402
    GuidanceConfig,
    build_tables,
    discover_modes,
    guided_step_count,
    load_generator,
    load_mapping,
    map_classes,
    row_noise,
    row_seed,
    sample,
    sample_rows,
    stop_index,
)
from fastdistill.pipelines.mgd import latents as latents_module  # noqa: E402
from fastdistill.pipelines.mgd._deps import require_diffusers  # noqa: E402
from fastdistill.pipelines.mgd.convert import convert_state_dict  # noqa: E402
from fastdistill.pipelines.mgd.latents import content_hash, encode_cached  # noqa: E402
from fastdistill.pipelines.mgd.models import DiTDenoiser, PixelCodec  # noqa: E402
from fastdistill.pipelines.mgd.pixel_diffusion import PixelTrainConfig, train_pixel_diffusion  # noqa: E402
from fastdistill.pipelines.mgd.step import cfg_combine, ddim_step, ddpm_step  # noqa: E402

SCHED = {"num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02, "beta_schedule": "linear"}
CPU = torch.device("cpu")


def tiny_dit(seed: int = 0, in_channels: int = 4, sample_size: int = 8):
    """Spec §5.4's tiny DiT; the output layer is scaled down so random weights give a tame sampler (|v| < 1)."""
    torch.manual_seed(seed)
    net = diffusers.DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=in_channels,
                                          out_channels=2 * in_channels, num_layers=2, sample_size=sample_size,
                                          patch_size=2, num_embeds_ada_norm=1000).eval()
    with torch.no_grad():
        net.proj_out_2.weight.mul_(0.2)
    return net


def tiny_vae(latent_channels: int = 4):
    torch.manual_seed(1)
    return diffusers.AutoencoderKL(block_out_channels=(32, 32), down_block_types=("DownEncoderBlock2D",) * 2,
                                   up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1,
                                   latent_channels=latent_channels, norm_num_groups=32, sample_size=16).eval()


@pytest.fixture(scope="module")
def dit():
    return DiTDenoiser(tiny_dit(), torch.float32)


def ddpm_scheduler(steps: int):
    s = diffusers.DDPMScheduler(**SCHED, variance_type="learned_range", clip_sample=False, timestep_spacing="linspace")
    s.set_timesteps(steps)
    return s


# --- schedule and step -------------------------------------------------------------------------------------------

def test_timesteps_and_stop_units_match_dit_respacing():
    tables = build_tables(SCHED, 50, "ddpm", True, 0.1, stop_index(50, 0.5))
    assert tables.timesteps[:3] == [999, 979, 958] and tables.timesteps[-2:] == [20, 0]
    guided = [s.t for s in tables.steps if s.guidance]
    assert len(guided) == 24 and guided[0] == 999 and guided[-1] == 530
    assert tables.steps[24].t == 510 and tables.steps[24].guidance == 0
    ddim = build_tables(SCHED, 50, "ddim", True, 0.1, 25)
    assert ddim.timesteps[0] == 980 and ddim.timesteps[-1] == 0


def test_posterior_matches_dit_spaced_diffusion_in_float64():
    """DiT's SpacedDiffusion("50") re-derived in float64 (respaced betas, posterior mean coefficients, clipped
    posterior log-variance): the fp32 tables agree within 1e-3 on every step that adds noise."""
    betas = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
    ac_full = np.cumprod(1 - betas)
    stride = (1000 - 1) / (50 - 1)
    used = sorted({round(i * stride) for i in range(50)})
    ac = ac_full[used]
    ac_prev = np.append(1.0, ac[:-1])
    b = 1 - ac / ac_prev
    post_var = b * (1 - ac_prev) / (1 - ac)
    post_log = np.log(np.append(post_var[1], post_var[1:]))
    coef1, coef2 = b * np.sqrt(ac_prev) / (1 - ac), (1 - ac_prev) * np.sqrt(1 - b) / (1 - ac)
    tables = build_tables(SCHED, 50, "ddpm", True, 0.1, 25)
    for j, c in enumerate(tables.steps[:-1]):
        i = 49 - j
        assert c.t == used[i]
        np.testing.assert_allclose([c.coef_x0.item(), c.coef_xt.item(), c.min_log.item(), c.max_log.item()],
                                   [coef1[i], coef2[i], post_log[i], np.log(b[i])], atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("steps", [50, 7])
def test_guided_step_count_for_every_stop(steps):
    for stop in range(steps + 2):
        tables = build_tables(SCHED, steps, "ddpm", True, 0.1, stop)
        assert tables.guided_steps == max(0, steps - 1 - stop) == guided_step_count(steps, stop)
        # guidance is on for a prefix of the loop only
        flags = [s.guidance != 0 for s in tables.steps]
        assert flags == sorted(flags, reverse=True)
    assert stop_index(steps, 1.0) == steps and guided_step_count(steps, steps) == 0
    assert guided_step_count(steps, stop_index(steps, 0.0)) == steps - 1
    with pytest.raises(FastDistillError, match="fraction"):
        stop_index(steps, 1.5)


def _learned_sigma(ac: torch.Tensor, t: int, prev: int, v: torch.Tensor) -> torch.Tensor:
    """Spec §5.3 written independently: f·log β'_t + (1−f)·log max(β'_t (1−ᾱ_p)/(1−ᾱ_t), 1e-20)."""
    a_t, a_p = ac[t].double(), (ac[prev].double() if prev >= 0 else torch.tensor(1.0, dtype=torch.float64))
    beta = 1 - a_t / a_p
    post = torch.clamp(beta * (1 - a_p) / (1 - a_t), min=1e-20)
    f = (v.double() + 1) / 2
    return torch.exp(0.5 * (f * torch.log(beta) + (1 - f) * torch.log(post))).float()


def test_ddpm_step_equals_scheduler_step_plus_guidance():
    sched = ddpm_scheduler(50)
    tables = build_tables(SCHED, 50, "ddpm", True, 0.1, -1)
    torch.manual_seed(0)
    x, out, mode = torch.randn(3, 4, 8, 8), torch.randn(3, 8, 8, 8), torch.randn(3, 4, 8, 8)
    for j in (0, 10, 30, 48, 49):
        c = tables.steps[j]
        ref = sched.step(out, c.t, x, generator=torch.Generator().manual_seed(j))
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(j))
        prev = int(sched.previous_timestep(c.t))
        sigma = _learned_sigma(sched.alphas_cumprod, c.t, prev, out[:, 4:])
        expected = ref.prev_sample + 0.1 * sigma * (mode - ref.pred_original_sample)
        got, x0 = ddpm_step(x, out[:, :4], out[:, 4:], c, mode, noise)
        torch.testing.assert_close(x0, ref.pred_original_sample, atol=0, rtol=0)
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=2e-5)  # |x0| reaches ~1e3 at t = 999
        unguided, _ = ddpm_step(x, out[:, :4], out[:, 4:], build_tables(SCHED, 50, "ddpm", True, 0.0, 0).steps[j],
                                mode, noise)
        assert torch.equal(unguided, ref.prev_sample)


def test_ddim_step_equals_scheduler_with_guided_epsilon():
    sched = diffusers.DDIMScheduler(**SCHED, timestep_spacing="leading", steps_offset=0, set_alpha_to_one=True,
                                    clip_sample=False)
    sched.set_timesteps(50)
    tables = build_tables(SCHED, 50, "ddim", False, 0.1, -1)
    torch.manual_seed(1)
    x, eps, mode = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    for c in tables.steps[::7]:
        a = sched.alphas_cumprod[c.t]
        x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
        eps_hat = eps - (1 - a).sqrt() * 0.1 * (mode - x0)
        expected = sched.step(eps_hat, c.t, x, eta=0.0).prev_sample
        got, _ = ddim_step(x, eps, c, mode)
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6)


def test_cfg_on_a_subset_of_channels():
    torch.manual_seed(2)
    cond, uncond = torch.randn(2, 4, 4, 4), torch.randn(2, 4, 4, 4)
    three = cfg_combine(cond, uncond, 4.0, 3)
    assert torch.equal(three[:, 3], cond[:, 3])
    torch.testing.assert_close(three[:, :3], uncond[:, :3] + 4.0 * (cond[:, :3] - uncond[:, :3]))
    torch.testing.assert_close(cfg_combine(cond, uncond, 4.0, None), uncond + 4.0 * (cond - uncond))
    assert not torch.allclose(three[:, 3], cfg_combine(cond, uncond, 4.0, None)[:, 3])


# --- sampler -----------------------------------------------------------------------------------------------------

def _reference_unguided(net, labels, steps, x_t, g, cfg_scale=4.0):
    """The plain diffusers loop: DiT forward_with_cfg semantics (CFG on channels 0-2) + DDPMScheduler.step."""
    sched = ddpm_scheduler(steps)
    x = x_t.clone()
    both = torch.cat([labels, torch.full_like(labels, 1000)])
    with torch.no_grad():
        for t in sched.timesteps.tolist():
            out = net(torch.cat([x, x]), timestep=torch.full((2 * len(labels),), t), class_labels=both).sample
            cond, uncond = out.chunk(2)
            eps = cond[:, :4].clone()
            eps[:, :3] = uncond[:, :3] + cfg_scale * (cond[:, :3] - uncond[:, :3])
            x = sched.step(torch.cat([eps, cond[:, 4:]], 1), t, x, generator=g).prev_sample
    return x


def test_lambda_zero_is_the_unguided_sampler_bit_exactly(dit):
    steps, labels = 6, torch.tensor([3, 217, 5])
    g = torch.Generator().manual_seed(7)
    x_t = torch.randn(3, 4, 8, 8, generator=g)
    noise = torch.stack([torch.randn(3, 4, 8, 8, generator=g) for _ in range(steps - 1)] + [torch.zeros(3, 4, 8, 8)])
    reference = _reference_unguided(dit.net, labels, steps, x_t, _replay(7, (3, 4, 8, 8)))
    modes = torch.randn(3, 4, 8, 8)
    for scale, stop in ((0.0, 0.5), (0.1, 1.0)):  # lambda = 0, or t_stop = T: no guided step
        cfg = GuidanceConfig(steps=steps, guidance_scale=scale, stop_guidance=stop, cfg_channels=3)
        got = sample(dit, cfg.tables(SCHED, True), labels, modes, x_t, noise, 4.0, 3)
        assert torch.equal(got, reference)
    guided = sample(dit, GuidanceConfig(steps=steps, cfg_channels=3).tables(SCHED, True), labels, modes, x_t, noise,
                    4.0, 3)
    assert not torch.allclose(guided, reference)


def _replay(g_seed: int, shape: tuple[int, ...]) -> torch.Generator:
    """A generator positioned after drawing x_T, so the scheduler's per-step draws match the pre-drawn noise."""
    g = torch.Generator().manual_seed(g_seed)
    torch.randn(shape, generator=g)
    return g


def test_batched_equals_row_by_row(dit):
    cfg = GuidanceConfig(steps=5, cfg_channels=3)
    labels = torch.tensor([1, 1, 2, 2, 9])
    modes = torch.randn(5, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    seeds = [row_seed(0, c, k) for c, k in [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)]]
    batched = sample_rows(dit, cfg, SCHED, labels, modes, seeds, batch_size=5)
    rows = sample_rows(dit, cfg, SCHED, labels, modes, seeds, batch_size=1)
    # same per-row noise; only GEMM blocking differs between batch 5 and batch 1 (fp32)
    torch.testing.assert_close(batched, rows, atol=1e-4, rtol=1e-4)
    assert len(set(seeds)) == len(seeds)


def test_guidance_pulls_x0_toward_the_mode(dit):
    steps = 20
    labels = torch.tensor([0, 1, 2, 3])
    modes = 1.5 * torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    x_t, noise = row_noise([row_seed(0, i, 0) for i in range(4)], (4, 8, 8), steps)
    stop = stop_index(steps, 0.5)
    last_guided = guided_step_count(steps, stop) - 1
    dist = {}
    for scale in (0.0, 0.1):
        seen = {}
        cfg = GuidanceConfig(steps=steps, guidance_scale=scale, cfg_channels=3)
        sample(dit, cfg.tables(SCHED, True), labels, modes, x_t, noise, 4.0, 3,
               callback=lambda j, x, x0, seen=seen: seen.setdefault(j, x0.clone()))
        dist[scale] = (seen[last_guided + 1] - modes).flatten(1).norm(dim=1)  # x0_hat at the stop step
    assert (dist[0.1] < 0.5 * dist[0.0]).all(), (dist[0.1], dist[0.0])


# --- mode discovery, latents, mapping ----------------------------------------------------------------------------

def test_modes_random_gmm_and_closest_real():
    torch.manual_seed(5)
    latents = torch.cat([torch.randn(30, 1, 2, 2) + 5, torch.randn(30, 1, 2, 2) - 5])
    labels = torch.tensor([0] * 30 + [1] * 30)
    rnd = discover_modes(latents, labels, ("a", "b"), 3, "random", seed=0)
    assert rnd.shape == (2, 3, 1, 2, 2)
    flat = latents.flatten(1)
    for c in range(2):  # random modes are real latents of the right class
        for m in rnd[c].flatten(1):
            assert ((flat[labels == c] - m).abs().sum(1) == 0).any()
    gmm = discover_modes(latents, labels, ("a", "b"), 2, "gmm", seed=0)
    assert gmm[0].mean() > 3 and gmm[1].mean() < -3
    with pytest.raises(FastDistillError, match="larger than class 'b'"):
        discover_modes(latents[:35], labels[:35], ("a", "b"), 6, "random")


def test_modes_kmeans_uses_the_ops_kmeans():
    pytest.importorskip("fastdistill.ops.kmeans")
    torch.manual_seed(6)
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    latents = (centers.repeat_interleave(20, 0) + 0.1 * torch.randn(60, 2)).view(60, 2, 1, 1)
    modes = discover_modes(latents, torch.zeros(60, dtype=torch.long), ("a",), 3, "kmeans", seed=0)
    found = modes[0].flatten(1)
    assert torch.cdist(centers, found).min(1).values.max() < 0.2
    snapped = discover_modes(latents, torch.zeros(60, dtype=torch.long), ("a",), 3, "kmeans", closest_real=True)
    # exact distances: cdist's matrix-product form leaves ~1e-3 of rounding between identical rows of norm 10
    dist = torch.cdist(snapped[0].flatten(1), latents.flatten(1), compute_mode="donot_use_mm_for_euclid_dist")
    assert (dist.min(1).values == 0).all()


class _CountingCodec(PixelCodec):
    """A pixel codec that counts its calls and can be stopped (like a killed run) after ``stop_after`` of them."""

    def __init__(self, stop_after: int | None = None):
        super().__init__(1, 4)
        self.calls, self.stop_after = 0, stop_after

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.stop_after is not None and self.calls == self.stop_after:
            raise KeyboardInterrupt
        self.calls += 1
        return super().encode(pixels)


def test_latent_cache_resumes_and_refuses_other_data(tmp_path):
    images = torch.randint(0, 256, (2500, 1, 4, 4), dtype=torch.uint8)
    split = Split(images, torch.zeros(2500, dtype=torch.long))
    data_id = f"sha1:{content_hash(split)}"
    with pytest.raises(KeyboardInterrupt):  # killed while encoding the second chunk (batches of 512: 2 per chunk)
        encode_cached(_CountingCodec(stop_after=3), split, tmp_path, 512, CPU, data_id)
    assert sorted(p.name for p in tmp_path.glob("chunk_*.pt")) == ["chunk_00000.pt"]
    assert not list(tmp_path.glob(".*.tmp"))  # chunks are written atomically
    kept = (tmp_path / "chunk_00000.pt").stat().st_mtime_ns
    codec = _CountingCodec()
    first = encode_cached(codec, split, tmp_path, 512, CPU, data_id)  # continues at the first unfinished chunk
    assert codec.calls == 3 and (tmp_path / "chunk_00000.pt").stat().st_mtime_ns == kept  # 2 + 1 batches
    assert sorted(p.name for p in tmp_path.glob("chunk_*.pt")) == ["chunk_00000.pt", "chunk_00001.pt", "chunk_00002.pt"]
    assert len(first) == 2500 and first.shape[1:] == (1, 4, 4)
    if Path("/proc/self/maps").exists():  # the chunks are memory-mapped, not read into memory
        maps = Path("/proc/self/maps").read_text()
        assert all(str(tmp_path / f"chunk_0000{k}.pt") in maps for k in range(3))
    rows = torch.tensor([2499, 0, 1500, 1024, 7])
    expected = images[rows].float() / 255 * 2 - 1
    assert first.take(rows).dtype == torch.float16
    torch.testing.assert_close(first.take(rows).float(), expected, atol=1e-3, rtol=0)
    reference = first.take(torch.arange(2500))
    del first  # unmap before a chunk is truncated in place below (a mapped file must not shrink)
    (tmp_path / "chunk_00001.pt").unlink()
    (tmp_path / "chunk_00002.pt").write_bytes(b"")  # unreadable: redone
    again = encode_cached(codec := _CountingCodec(), split, tmp_path, 100, CPU, data_id)
    assert codec.calls == 11 + 5  # chunk 1 (1024 images) and chunk 2 (452) in batches of 100
    assert torch.equal(again.take(torch.arange(2500)), reference)
    flipped = Split(images.flip(0), split.labels)
    with pytest.raises(FastDistillError, match="latent cache .* \\(data differ\\)"):
        encode_cached(codec, flipped, tmp_path, 512, CPU, f"sha1:{content_hash(flipped)}")
    with pytest.raises(FastDistillError, match="\\(codec differ\\)"):
        encode_cached(PixelCodec(1, 8), split, tmp_path, 512, CPU, data_id)


def test_modes_read_class_by_class_from_the_cache_equal_modes_of_the_whole_tensor(tmp_path, monkeypatch):
    monkeypatch.setattr(latents_module, "CHUNK", 16)  # 90 images: 6 chunks, classes straddle them
    gen = torch.Generator().manual_seed(5)
    images = torch.randint(0, 256, (90, 1, 4, 4), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 3, (90,), generator=gen)
    labels[:9] = torch.arange(3).repeat(3)  # every class has enough images
    cache = encode_cached(PixelCodec(1, 4), Split(images, labels), tmp_path, 7, CPU, "test")
    whole = cache.take(torch.arange(90)).float()  # what the pipeline held before: every latent as fp32
    for method, closest in (("kmeans", False), ("kmeans", True), ("random", False), ("gmm", True)):
        got = discover_modes(cache, labels, ("a", "b", "c"), 3, method, closest, seed=2)
        assert torch.equal(got, discover_modes(whole, labels, ("a", "b", "c"), 3, method, closest, seed=2)), method
    centroids, _ = kmeans(whole.flatten(1), 3, groups=labels, seed=2)  # the one batched call it replaces
    assert torch.equal(discover_modes(cache, labels, ("a", "b", "c"), 3, seed=2), centroids.view(3, 3, 1, 4, 4))


def test_shipped_mappings():
    nette = load_mapping("imagenette")
    assert len(nette) == 10 and nette["n01440764"] == 0 and nette["n03888257"] == 701
    for name in ("imagewoof", "imageidc"):
        ids = load_mapping(name)
        assert len(set(ids.values())) == 10
        assert [ids[w] for w in sorted(ids)] == sorted(ids.values())  # ImageNet ids follow sorted WNIDs
    assert map_classes(["n02086240", "n13037406"], 1000, None) == [155, 993]


def test_mapping_that_misses_a_folder_is_an_error(tmp_path):
    with pytest.raises(FastDistillError, match="'?cats'? not covered|cats not covered"):
        map_classes(["n01440764", "cats"], 1000, "imagenette")
    bad = tmp_path / "map.json"
    bad.write_text(json.dumps({"classes": {"cats": 1000}}))
    with pytest.raises(FastDistillError, match="outside"):
        map_classes(["cats"], 1000, str(bad))
    with pytest.raises(FastDistillError, match="not a shipped mapping"):
        map_classes(["cats"], 1000, str(tmp_path / "nope.json"))


# --- real-model path: tiny local diffusers folders ---------------------------------------------------------------

def _imagefolder(root: Path, classes: list[str], per_class: int = 3, size: int = 20, suffix: str = ".png",
                 seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for c in classes:
            folder = root / split / c
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}{suffix}")
    return root


@pytest.fixture(scope="module")
def dit_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("dit")
    tiny_dit().save_pretrained(root / "transformer")
    tiny_vae().save_pretrained(root / "vae")
    return root


def test_dit_pipeline_end_to_end_from_saved_folders(dit_dir, tmp_path):
    data_root = _imagefolder(tmp_path / "nette", ["n01440764", "n03888257"])
    out = tmp_path / "run"
    rc = main(["mgd", "--dataset", "imagefolder", "--data-root", str(data_root), "--diffusion", str(dit_dir),
               "--ipc", "2", "--steps", "4", "--modes", "random", "--no-eval", "--output", str(out)])
    assert rc == 0
    record = torch.load(out / "distilled.pt", weights_only=True)
    assert record["images"].shape == (4, 3, 16, 16) and record["labels"].tolist() == [0, 0, 1, 1]
    assert record["class_ids"] == [0, 701] and record["guided_steps"] == 1
    for c in ("000_n01440764", "001_n03888257"):
        assert len(list((out / "images" / c).glob("*.png"))) == 2
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["diffusion"] == str(dit_dir) and config["generator"] == "dit"


def test_mgd_on_an_imagefolder_through_the_latent_cache_and_a_resume(dit_dir, tmp_path, monkeypatch, capsys):
    """JPEG class folders: latents encoded in one streamed pass into the chunked fp16 cache, k-means modes read from
    it class by class; a run killed while encoding resumes at the first unfinished chunk, reusing the others."""
    monkeypatch.setattr(latents_module, "CHUNK", 4)  # 10 train images: chunks of 4, 4 and 2
    classes = ["n01440764", "n03888257"]
    root = _imagefolder(tmp_path / "nette", classes, per_class=5, suffix=".jpg")
    out = tmp_path / "run"
    argv = ["mgd", "--dataset", "imagefolder", "--data-root", str(root), "--diffusion", str(dit_dir), "--ipc", "2",
            "--steps", "2", "--batch-size", "3", "--no-eval", "--device", "cpu", "--seed", "1"]
    assert main([*argv, "--output", str(out)]) == 0
    record = torch.load(out / "distilled.pt", weights_only=True)
    assert record["images"].shape == (4, 3, 16, 16) and record["labels"].tolist() == [0, 0, 1, 1]
    cache = out / "latents"
    chunks = sorted(cache.glob("chunk_*.pt"))
    assert [p.name for p in chunks] == ["chunk_00000.pt", "chunk_00001.pt", "chunk_00002.pt"]
    meta = json.loads((cache / "meta.json").read_text())
    fingerprint = json.loads((out / "config.json").read_text())["inputs"]["data"]
    assert meta["count"] == 10 and meta["dtype"] == "float16" and meta["data"].startswith(fingerprint)
    assert "3x16x16" in meta["data"]  # the decode settings are part of the identity

    data = load_dataset("imagefolder", str(root), False, 16)
    gen = load_generator(str(dit_dir), None, CPU, torch.float32)
    cached = torch.cat([torch.load(p, weights_only=True) for p in chunks])
    assert cached.dtype == torch.float16 and cached.shape == (10, 4, 8, 8)
    torch.testing.assert_close(cached.float(), gen.codec.encode(to_float(data.train.images)), atol=2e-3, rtol=1e-3)
    modes = torch.load(out / "modes.pt", weights_only=True)
    assert torch.equal(modes, discover_modes(cached.float(), data.train.labels, classes, 2, seed=0))

    # killed while encoding the last chunk: nothing after it exists; --resume encodes only that chunk
    for name in ("distilled.pt", "grid.png", "modes.pt", "images", "samples", "latents/chunk_00002.pt"):
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    kept = [p.stat().st_mtime_ns for p in chunks[:2]]
    assert main([*argv, "--output", str(out), "--resume"]) == 0
    assert [p.stat().st_mtime_ns for p in chunks[:2]] == kept and chunks[2].exists()
    again = torch.load(out / "distilled.pt", weights_only=True)
    assert torch.equal(again["images"], record["images"])

    # the cache is reusable across runs of the same data, and refused (one line) for other data
    assert main([*argv, "--output", str(tmp_path / "ipc1"), "--ipc", "1", "--latent-cache", str(cache)]) == 0
    assert [p.stat().st_mtime_ns for p in chunks[:2]] == kept
    other = _imagefolder(tmp_path / "other", classes, per_class=5, suffix=".jpg", seed=1)
    capsys.readouterr()
    argv[argv.index(str(root))] = str(other)
    assert main([*argv, "--output", str(tmp_path / "o"), "--latent-cache", str(cache)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(err) == 1 and f"latent cache {cache} was made for other data" in err[0] and "(data differ)" in err[0]
    assert not (tmp_path / "o").exists()


def test_hub_layout_dit_pipeline_folder_loads(tmp_path):
    """facebook/DiT-XL-2-256's layout: transformer/ saved as Transformer2DModel, vae/, a DDIM scheduler/ config."""
    torch.manual_seed(0)
    diffusers.Transformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                 num_layers=2, sample_size=8, patch_size=2, num_embeds_ada_norm=1000,
                                 norm_type="ada_norm_zero", norm_elementwise_affine=False,
                                 activation_fn="gelu-approximate", attention_bias=True).save_pretrained(
        tmp_path / "transformer")
    tiny_vae().save_pretrained(tmp_path / "vae")
    diffusers.DDIMScheduler(**{**SCHED, "beta_end": 0.03}).save_pretrained(tmp_path / "scheduler")
    gen = load_generator(str(tmp_path), None, CPU, torch.float32)
    assert gen.kind == "dit" and gen.image_size == 16 and gen.default_cfg_channels == 3
    assert gen.denoiser.learned_sigma and gen.denoiser.null_label == 1000
    assert gen.scheduler_config == {**SCHED, "beta_end": 0.03}  # betas read; sampler rebuilt as DDPM learned-range
    assert build_tables(gen.scheduler_config, 50, "ddpm", True, 0.1, 25).variance == "learned_range"


def test_bad_generator_inputs_are_clear_errors(dit_dir, tmp_path, capsys):
    with pytest.raises(FastDistillError, match="not a folder"):
        load_generator(str(tmp_path / "missing"), None, CPU, torch.float32)
    with pytest.raises(FastDistillError, match="neither"):
        load_generator(str(tmp_path), None, CPU, torch.float32)
    bad_vae = tmp_path / "vae3"
    tiny_vae(latent_channels=3).save_pretrained(bad_vae)
    with pytest.raises(FastDistillError, match="VAE/latent shape mismatch"):
        load_generator(str(dit_dir), str(bad_vae), CPU, torch.float32)
    with pytest.raises(FastDistillError, match="no VAE"):
        load_generator(str(dit_dir), str(tmp_path / "novae"), CPU, torch.float32)
    gen = load_generator(str(dit_dir), None, CPU, torch.float32)
    digits = load_dataset("digits").info
    with pytest.raises(FastDistillError, match="makes 3x16px images"):
        gen.class_ids(digits, None)
    data_root = _imagefolder(tmp_path / "cats", ["cats", "n01440764"])
    rc = main(["mgd", "--dataset", "imagefolder", "--data-root", str(data_root), "--diffusion", str(dit_dir),
               "--no-eval", "--output", str(tmp_path / "r2")])
    assert rc == 2 and "cats not covered by the shipped mappings" in capsys.readouterr().err


def test_missing_diffusers_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)
    with pytest.raises(FastDistillError, match="pip install 'fastdistill\\[diffusion\\]'"):
        require_diffusers()


def _to_original_dit(sd: dict[str, torch.Tensor], depth: int) -> dict[str, torch.Tensor]:
    """The inverse renaming (diffusers -> facebookresearch/DiT key names), for a model whose blocks share one
    timestep/label embedder as DiT's do."""
    emb = "transformer_blocks.0.norm1.emb."
    out = {"pos_embed": torch.zeros(1, 16, 16), "y_embedder.embedding_table.weight":
           sd[emb + "class_embedder.embedding_table.weight"]}
    for p in ("weight", "bias"):
        out[f"x_embedder.proj.{p}"] = sd[f"pos_embed.proj.{p}"]
        out[f"t_embedder.mlp.0.{p}"] = sd[f"{emb}timestep_embedder.linear_1.{p}"]
        out[f"t_embedder.mlp.2.{p}"] = sd[f"{emb}timestep_embedder.linear_2.{p}"]
        out[f"final_layer.adaLN_modulation.1.{p}"] = sd[f"proj_out_1.{p}"]
        out[f"final_layer.linear.{p}"] = sd[f"proj_out_2.{p}"]
        for i in range(depth):
            b = f"transformer_blocks.{i}."
            out[f"blocks.{i}.attn.qkv.{p}"] = torch.cat([sd[f"{b}attn1.to_{n}.{p}"] for n in "qkv"])
            out[f"blocks.{i}.attn.proj.{p}"] = sd[f"{b}attn1.to_out.0.{p}"]
            out[f"blocks.{i}.mlp.fc1.{p}"] = sd[f"{b}ff.net.0.proj.{p}"]
            out[f"blocks.{i}.mlp.fc2.{p}"] = sd[f"{b}ff.net.2.{p}"]
            out[f"blocks.{i}.adaLN_modulation.1.{p}"] = sd[f"{b}norm1.linear.{p}"]
    return out


def test_convert_original_dit_checkpoint():
    net = tiny_dit(seed=3)
    net.transformer_blocks[1].norm1.emb.load_state_dict(net.transformer_blocks[0].norm1.emb.state_dict())
    converted = convert_state_dict(_to_original_dit(net.state_dict(), 2), num_heads=2)
    assert converted.config.num_layers == 2 and converted.config.sample_size == 8
    assert converted.config.out_channels == 8 and converted.config.num_embeds_ada_norm == 1000
    x, t, y = torch.randn(2, 4, 8, 8), torch.tensor([500, 20]), torch.tensor([1, 1000])
    with torch.no_grad():
        torch.testing.assert_close(converted(x, timestep=t, class_labels=y).sample,
                                   net(x, timestep=t, class_labels=y).sample)
    with pytest.raises(FastDistillError, match="not an original DiT"):
        convert_state_dict({"foo": torch.zeros(1)})
    with pytest.raises(FastDistillError, match="do not fit"):
        convert_state_dict({**_to_original_dit(net.state_dict(), 2), "blocks.2.mlp.fc1.weight": torch.zeros(1)}, 2)


# --- offline pixel path: train-diffusion + mgd -------------------------------------------------------------------

@pytest.fixture(scope="module")
def pixel_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("pixel")
    train_pixel_diffusion(load_dataset("digits"), run, PixelTrainConfig(steps=3, batch_size=8, width=8,
                                                                        checkpoint_every=2), CPU, progress=False)
    return run


def test_train_diffusion_resumes_from_its_checkpoint(pixel_run, tmp_path):
    data = load_dataset("digits")
    small = {"batch_size": 8, "width": 8, "checkpoint_every": 2}
    # stop after 2 of the 3 steps (inside the LR warm-up both configs share the schedule), then resume to 3
    train_pixel_diffusion(data, tmp_path, PixelTrainConfig(steps=2, **small), CPU, progress=False)
    meta = train_pixel_diffusion(data, tmp_path, PixelTrainConfig(steps=3, **small), CPU, progress=False)
    full = torch.load(pixel_run / "checkpoint.pt", weights_only=True)
    resumed = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert resumed["step"] == full["step"] == 3 and meta["kind"] == "pixel-unet"
    assert resumed["losses"] == pytest.approx(full["losses"], rel=1e-5)
    for k, v in full["ema"].items():
        torch.testing.assert_close(resumed["ema"][k], v, atol=1e-6, rtol=1e-5)
    assert (tmp_path / "unet" / "config.json").exists() and (tmp_path / "scheduler").is_dir()


def test_pixel_mgd_end_to_end_and_resume(pixel_run, tmp_path, capsys):
    out = tmp_path / "mgd"
    args = ["mgd", "--dataset", "digits", "--diffusion", str(pixel_run), "--ipc", "2", "--steps", "4",
            "--modes", "random", "--batch-size", "8", "--no-eval", "--output", str(out)]
    assert main(args) == 0
    record = torch.load(out / "distilled.pt", weights_only=True)
    assert record["images"].shape == (20, 1, 8, 8) and record["images"].dtype == torch.uint8
    assert torch.bincount(record["labels"]).tolist() == [2] * 10
    assert [len(list(p.glob("*.png"))) for p in sorted((out / "images").iterdir())] == [2] * 10
    assert (out / "grid.png").exists() and (out / "modes.pt").exists()
    assert len(list((out / "samples").glob("chunk_*.pt"))) == 3
    (out / "samples" / "chunk_00001.pt").unlink()
    assert main(args + ["--resume"]) == 0
    assert torch.equal(torch.load(out / "distilled.pt", weights_only=True)["images"], record["images"])
    off = tmp_path / "off"
    assert main(args[:-1] + [str(off), "--guidance-scale", "0"]) == 0
    unguided = torch.load(off / "distilled.pt", weights_only=True)
    assert unguided["guided_steps"] == 0 and record["guided_steps"] == 1 and not (off / "modes.pt").exists()
    assert not torch.equal(unguided["images"], record["images"])
    assert main(args[:-1] + [str(tmp_path / "x"), "--ipc", "1000"]) == 2
    assert "--ipc 1000 is larger than class '0'" in capsys.readouterr().err
    assert main(args[:-1] + [str(tmp_path / "z"), "--ipc", "1000", "--guidance-scale", "0"]) == 2
    assert main(["mgd", "--dataset", "digits", "--diffusion", str(pixel_run), "--vae", str(pixel_run),
                 "--no-eval", "--output", str(tmp_path / "y")]) == 2


def test_generation_seeds_share_the_modes_of_one_kmeans_seed(pixel_run, tmp_path):
    from fastdistill.pipelines.mgd import MGDConfig, run_mgd

    data, gen = load_dataset("digits"), load_generator(str(pixel_run), None, CPU, torch.float32)
    cache = str(tmp_path / "latents")

    def run(name: str, **kw) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = MGDConfig(ipc=2, guidance=GuidanceConfig(steps=4), batch_size=8, latent_cache=cache, **kw)
        record = run_mgd(data, gen, cfg, tmp_path / name, CPU, progress=False)
        assert record["mgd"]["kmeans_seed"] == cfg.kmeans_seed and record["mgd"]["seed"] == cfg.seed
        return torch.load(tmp_path / name / "modes.pt", weights_only=True), record["images"]

    modes_1, images_1 = run("seed1", seed=1)
    modes_2, images_2 = run("seed2", seed=2)
    assert torch.equal(modes_1, modes_2) and not torch.equal(images_1, images_2)
    modes_k, _ = run("kmeans1", seed=1, kmeans_seed=1)
    assert not torch.equal(modes_k, modes_1)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batched_rows_and_bf16():
    cuda = torch.device("cuda")
    fp32 = DiTDenoiser(tiny_dit().to(cuda), torch.float32)
    cfg = GuidanceConfig(steps=8, cfg_channels=3)
    labels = torch.tensor([1, 2, 3, 4])
    modes = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    seeds = [row_seed(0, c, 0) for c in range(4)]
    batched = sample_rows(fp32, cfg, SCHED, labels, modes, seeds, batch_size=4)
    torch.testing.assert_close(batched, sample_rows(fp32, cfg, SCHED, labels, modes, seeds, batch_size=1),
                               atol=1e-4, rtol=1e-4)
    cpu = sample_rows(DiTDenoiser(tiny_dit(), torch.float32), cfg, SCHED, labels, modes, seeds, batch_size=4)
    torch.testing.assert_close(batched, cpu, atol=1e-3, rtol=1e-3)  # same per-row noise on either device
    bf16 = sample_rows(DiTDenoiser(tiny_dit().to(cuda, torch.bfloat16), torch.bfloat16), cfg, SCHED, labels, modes,
                       seeds, batch_size=4)
    assert torch.isfinite(bf16).all()
    assert (bf16 - batched).norm() / batched.norm() < 0.1


def test_bf16_autocast_and_channels_last_sampling_match_fp32(pixel_run):
    """--precision bf16 (network under bf16 autocast, sampler math fp32) and --channels-last against fp32 on the CPU,
    for a DiT and a pixel UNet. Tolerances: channels-last reorders the same fp32 arithmetic (1e-3 after 6 steps, as
    between devices); bf16 keeps 8 mantissa bits, so the final latents within 10% relative norm (the CUDA
    bf16-weights test's bound)."""
    labels = torch.tensor([1, 2, 3, 4])
    seeds = [row_seed(0, c, 0) for c in range(4)]
    for denoiser in (DiTDenoiser(tiny_dit(), torch.float32),
                     load_generator(str(pixel_run), None, CPU, torch.float32).denoiser):
        dit = isinstance(denoiser, DiTDenoiser)
        modes = torch.randn(4, *denoiser.latent_shape, generator=torch.Generator().manual_seed(3))
        cfg = {"steps": 6, "cfg_channels": 3 if dit else None}

        def run(denoiser=denoiser, modes=modes, cfg=cfg, **kw):
            return sample_rows(denoiser, GuidanceConfig(**cfg, **kw), SCHED, labels, modes, seeds, batch_size=4)

        fp32 = run()
        bf16 = run(precision="bf16")
        assert bf16.dtype == torch.float32 and torch.isfinite(bf16).all()
        assert 0 < float((bf16 - fp32).norm() / fp32.norm()) < 0.1
        torch.testing.assert_close(run(channels_last=True), fp32, atol=1e-3, rtol=1e-3)
        assert 0 < float((run(precision="bf16", channels_last=True) - fp32).norm() / fp32.norm()) < 0.1
