"""Convert an original facebookresearch/DiT checkpoint (``DiT-XL-2-256x256.pt``) into a diffusers folder, offline.

The renaming follows diffusers' ``scripts/convert_dit_to_diffusers.py``: ``x_embedder.proj`` -> ``pos_embed.proj``;
the shared ``t_embedder.mlp.{0,2}`` and ``y_embedder.embedding_table`` are copied into every block's
``norm1.emb``; ``blocks.i.adaLN_modulation.1`` -> ``norm1.linear``; ``attn.qkv`` is split into ``to_q/k/v``;
``attn.proj`` -> ``to_out.0``; ``mlp.fc1/fc2`` -> ``ff.net.0.proj`` / ``ff.net.2``; the final layer's
``adaLN_modulation.1`` / ``linear`` -> ``proj_out_1`` / ``proj_out_2``. The fixed sin-cos ``pos_embed`` is rebuilt by
diffusers. Architecture numbers are read from the weights; only the head count (16 for DiT-XL) cannot be.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch

from fastdistill.errors import FastDistillError
from fastdistill.pipelines.mgd._deps import require_diffusers
from fastdistill.utils.io import torch_load, write_json

SCHEDULER = {"_class_name": "DDPMScheduler", "num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02,
             "beta_schedule": "linear", "variance_type": "learned_range", "clip_sample": False,
             "timestep_spacing": "linspace"}


def _rename(sd: dict[str, torch.Tensor], depth: int) -> dict[str, torch.Tensor]:
    out = {"pos_embed.proj.weight": sd["x_embedder.proj.weight"], "pos_embed.proj.bias": sd["x_embedder.proj.bias"],
           "proj_out_1.weight": sd["final_layer.adaLN_modulation.1.weight"],
           "proj_out_1.bias": sd["final_layer.adaLN_modulation.1.bias"],
           "proj_out_2.weight": sd["final_layer.linear.weight"], "proj_out_2.bias": sd["final_layer.linear.bias"]}
    shared = {"norm1.emb.timestep_embedder.linear_1": "t_embedder.mlp.0",
              "norm1.emb.timestep_embedder.linear_2": "t_embedder.mlp.2"}
    for i in range(depth):
        dst, src = f"transformer_blocks.{i}.", f"blocks.{i}."
        for new, old in shared.items():
            for p in ("weight", "bias"):
                out[f"{dst}{new}.{p}"] = sd[f"{old}.{p}"]
        out[f"{dst}norm1.emb.class_embedder.embedding_table.weight"] = sd["y_embedder.embedding_table.weight"]
        for p in ("weight", "bias"):
            out[f"{dst}norm1.linear.{p}"] = sd[f"{src}adaLN_modulation.1.{p}"]
            for name, part in zip(("to_q", "to_k", "to_v"), sd[f"{src}attn.qkv.{p}"].chunk(3, dim=0), strict=True):
                out[f"{dst}attn1.{name}.{p}"] = part
            out[f"{dst}attn1.to_out.0.{p}"] = sd[f"{src}attn.proj.{p}"]
            out[f"{dst}ff.net.0.proj.{p}"] = sd[f"{src}mlp.fc1.{p}"]
            out[f"{dst}ff.net.2.{p}"] = sd[f"{src}mlp.fc2.{p}"]
    return out


def convert_state_dict(sd: dict[str, torch.Tensor], num_heads: int = 16):
    """A ``DiTTransformer2DModel`` holding the weights of an original DiT state dict."""
    diffusers = require_diffusers()
    if not isinstance(sd, dict):
        raise FastDistillError(f"not an original DiT checkpoint (it holds a {type(sd).__name__}, not a state dict)")
    if "ema" in sd:  # a training checkpoint: take the EMA weights, as DiT's sample.py does
        sd = sd["ema"]
    needed = ("x_embedder.proj.weight", "y_embedder.embedding_table.weight", "final_layer.linear.weight")
    missing = [k for k in needed if k not in sd]
    if missing:
        raise FastDistillError(f"not an original DiT checkpoint (missing {', '.join(missing)})")
    depth = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k)))
    hidden, in_channels, patch, _ = sd["x_embedder.proj.weight"].shape
    if hidden % num_heads:
        raise FastDistillError(f"hidden size {hidden} is not divisible by --num-heads {num_heads}")
    out_channels = sd["final_layer.linear.weight"].shape[0] // (patch * patch)
    grid = math.isqrt(sd["pos_embed"].shape[1]) if "pos_embed" in sd else None
    if grid is None:
        raise FastDistillError("the checkpoint has no pos_embed, so its input size is unknown")
    model = diffusers.DiTTransformer2DModel(
        num_attention_heads=num_heads, attention_head_dim=hidden // num_heads, in_channels=in_channels,
        out_channels=out_channels, num_layers=depth, sample_size=grid * patch, patch_size=patch,
        num_embeds_ada_norm=sd["y_embedder.embedding_table.weight"].shape[0] - 1)
    try:
        model.load_state_dict(_rename(sd, depth), strict=True)
        model.eval()
    except (KeyError, RuntimeError) as exc:
        raise FastDistillError(f"DiT weights do not fit the rebuilt model ({str(exc).splitlines()[0][:160]})") from exc
    return model


def convert_checkpoint(checkpoint: str | Path, output: str | Path, num_heads: int = 16,
                       vae: str | Path | None = None) -> Path:
    """Write ``output/transformer`` (+ ``scheduler``; + ``vae`` copied from a local diffusers VAE folder)."""
    checkpoint, output = Path(checkpoint), Path(output)
    if not checkpoint.is_file():
        raise FastDistillError(f"DiT checkpoint {checkpoint} not found (download DiT-XL-2-256x256.pt first)")
    model = convert_state_dict(torch_load(checkpoint, "pass the original DiT .pt file (e.g. DiT-XL-2-256x256.pt)"),
                               num_heads)
    model.save_pretrained(output / "transformer")
    write_json(output / "scheduler" / "scheduler_config.json", SCHEDULER)
    if vae is not None:
        diffusers = require_diffusers()
        diffusers.AutoencoderKL.from_pretrained(str(vae), local_files_only=True).save_pretrained(output / "vae")
    return output
