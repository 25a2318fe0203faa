"""DM (Zhao & Bilen, WACV 2023): match per-class mean embeddings of real and synthetic images.

L = Σ_c ‖ mean_i ψ(A_c(x_{c,i})) − mean_j ψ(A_c(s_{c,j})) ‖², ψ = the ConvNet's features (before the classifier) of a
fresh random, frozen network each iteration (a conditioned pool member under PDD), A_c = siamese DSA drawn per class.
The reference loops over classes; here the real images of all classes go through one no-grad forward and the
synthetic images through one forward with gradients.

Under torchrun each rank takes a contiguous block of classes: every rank makes all the random draws (network, real
batches, DSA) but reads, augments and embeds only its classes, and the image gradients (each class's non-zero on one
rank only) are summed over the ranks, so every rank takes the same image step as one process.
"""

from __future__ import annotations

import torch

from fastdistill.methods.base import PooledMethod
from fastdistill.methods.siamese import siamese_per_class
from fastdistill.methods.synset import StageImages
from fastdistill.utils import distributed


def dm_loss(real_emb: torch.Tensor, syn_emb: torch.Tensor) -> torch.Tensor:
    """Σ_c ‖mean(real_emb[c]) − mean(syn_emb[c])‖² for class-major embeddings ``[C, n, D]`` and ``[C, k, D]``."""
    return (real_emb.mean(1) - syn_emb.mean(1)).pow(2).sum()


class DM(PooledMethod):
    name = "dm"

    def step(self, images: StageImages) -> float:
        flat = self.network()
        mine = distributed.block(images.num_classes)
        real = self.data.per_class(self.cfg.batch_real, self.generator, mine)
        syn = images.union()[mine.start:mine.stop]
        if self.dsa is not None:
            real, syn = siamese_per_class(real, syn, self.generator, self.dsa, images.num_classes, mine)
        with torch.no_grad():
            real_emb = self.fm.features(flat, real.flatten(0, 1)).view(*real.shape[:2], -1)
        syn_emb = self.fm.features(flat, syn.flatten(0, 1)).view(*syn.shape[:2], -1)
        loss = dm_loss(real_emb, syn_emb)
        images.zero_grad()
        loss.backward()
        images.sum_grads()
        images.step()
        return float(distributed.sum_shares_(loss.detach()))
