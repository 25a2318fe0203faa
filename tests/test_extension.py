"""Loading of ``fastdistill._C``: not at import time, and with the fake kernels that torch.compile needs."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from fastdistill import _extension
from fastdistill.ops.rerank_bound import score_slack

needs_cpp = pytest.mark.skipif(not _extension.available(), reason="fastdistill._C is not built")


def run_python(code: str) -> None:
    """Run ``code`` in a fresh interpreter (from the repository root, as the tests are) and fail on its error."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_import_does_not_load_the_extension():
    run_python("""
        import sys
        import fastdistill, fastdistill.ops
        assert "fastdistill._C" not in sys.modules, "import fastdistill loaded _C"
    """)


@needs_cpp
def test_loading_registers_the_fakes_for_torch_compile():
    """Loading _C (here: asking whether it is available) registers the fakes: a caller of the raw ops compiles whole."""
    run_python("""
        import torch
        from fastdistill import _extension
        from fastdistill.ops.rerank_bound import score_slack

        assert _extension.available()
        for op in ("assign_modes", "kmeans_step", "group_dots"):
            assert torch._C._dispatch_pystub(f"fastdistill::{op}", "")[0] == "fastdistill.ops._fake", op

        def nearest_then_dots(x, c, g):
            index, dist = torch.ops.fastdistill.assign_modes(x, c, g, slack=score_slack(x.shape[1]))
            _, _, sums, counts = torch.ops.fastdistill.kmeans_step(x, c, g, slack=score_slack(x.shape[1]))
            return index, dist, sums, counts, torch.ops.fastdistill.group_dots(x, c, g)

        gen = torch.Generator().manual_seed(3)
        x, c = torch.randn(40, 5, generator=gen), torch.randn(2, 3, 5, generator=gen)
        g = torch.randint(0, 2, (40,), generator=gen)
        got = torch.compile(nearest_then_dots, backend="aot_eager", fullgraph=True)(x, c, g)
        for a, b in zip(got, nearest_then_dots(x, c, g), strict=True):
            assert torch.equal(a, b)
        want = ((x[:, None] - c[g]) ** 2).sum(-1).argmin(1)
        assert torch.equal(got[0], want)
    """)


@needs_cpp
@pytest.mark.parametrize("slack", [-1.0, float("nan"), float("inf")])
def test_compiled_ops_reject_a_bad_slack(slack):
    points, centroids = torch.randn(4, 3), torch.randn(2, 3)
    for op in (torch.ops.fastdistill.assign_modes, torch.ops.fastdistill.kmeans_step):
        with pytest.raises(RuntimeError, match="slack"):
            op(points, centroids, slack=slack)


def test_slack_is_the_bound_of_fp32_inner_products():
    """slack = 4.5 (gamma_{D+2} + 2.01 r): exact fp32 inputs (r = 0) by default, TF32 / bfloat16 inputs widen it."""
    u = 2.0 ** -24
    assert score_slack(1024) == 4.5 * (1026 * u / (1 - 1026 * u))
    assert score_slack(1024, 2.0 ** -10) > score_slack(1024) + 4.5 * 2 * 2.0 ** -10
