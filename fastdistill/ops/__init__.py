"""Public ops: fused kernels with pure-PyTorch fallbacks (see fastdistill.ops.registry for the backend of each op).

One op per file: ``<op>.py`` holds the public function, its input checks, autograd and backend dispatch;
``<op>_triton.py`` its Triton kernels and launchers; ``<op>_torch.py`` its torch backend; C++/CUDA kernels live in
``csrc/`` (``fastdistill._C``, loaded on first use), their fake kernels for torch.compile in ``_fake.py``.
``rerank_bound.py`` is the score error bound that every nearest-centroid path shares; ``reference.py`` the reference
(DELT-style) implementations used as test oracles and benchmark baselines.
"""

from fastdistill.ops.assign_modes import assign_modes
from fastdistill.ops.bn_stat_loss import bn_stat_loss
from fastdistill.ops.kmeans import kmeans, kmeans_grouped
from fastdistill.ops.stat_batchnorm import BNStatMatching, StatBatchNorm2d, bn_stat_matching, stat_batch_norm
from fastdistill.ops.subtask_adam import subtask_adam_step

__all__ = [
    "BNStatMatching",
    "StatBatchNorm2d",
    "assign_modes",
    "bn_stat_loss",
    "bn_stat_matching",
    "kmeans",
    "kmeans_grouped",
    "stat_batch_norm",
    "subtask_adam_step",
]
