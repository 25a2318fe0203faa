"""assign_modes against a float64 brute-force oracle: shapes, groups, ties, dtypes, opcheck, compile, bad input.

Every test runs the torch backend; the ``cpp`` parametrisations run when ``fastdistill._C`` is built and are skipped
(with the reason) otherwise. CUDA tests are marked ``cuda``.
"""

from __future__ import annotations

import pytest
import torch

from fastdistill import _extension
from fastdistill.errors import FastDistillError
from fastdistill.ops import assign_modes
from fastdistill.ops.registry import describe
from fastdistill.ops.rerank_bound import score_slack

HAS_CPP = _extension.available()
needs_cpp = pytest.mark.skipif(not HAS_CPP, reason="fastdistill._C is not built: only the torch fallback is tested")
BACKENDS = ["torch", pytest.param("cpp", marks=needs_cpp)]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def oracle(points: torch.Tensor, centroids: torch.Tensor, groups: torch.Tensor | None = None):
    """Float64 brute force: argmin_k sum_d (x - c_k)^2, the first index on ties."""
    x, c = points.double().cpu(), centroids.double().cpu()
    if groups is None:
        c, groups = c[None], torch.zeros(len(x), dtype=torch.int64)
    dist, index = ((x[:, None, :] - c[groups.cpu()]) ** 2).sum(-1).min(1)
    return index, dist.float()


def check(points, centroids, groups=None, backend=None):
    index, dist = assign_modes(points, centroids, groups, backend=backend)
    want_index, want_dist = oracle(points, centroids, groups)
    assert index.dtype == torch.int64 and dist.dtype == torch.float32
    assert torch.equal(index.cpu(), want_index), f"{int((index.cpu() != want_index).sum())} rows differ"
    torch.testing.assert_close(dist.cpu(), want_dist, rtol=1e-6, atol=1e-6)
    return index, dist


SHAPES = {  # N, K, D, G (None: no groups)
    "single": (1, 1, 1, None),
    "D=1": (50, 5, 1, None),
    "K=1": (37, 1, 9, None),
    "K=N": (23, 23, 8, None),
    "N-not-multiple-of-blocks": (1001, 10, 37, None),
    "D-multi-chunk": (40, 7, 1100, None),
    "K=50": (300, 50, 64, None),
    "G=1": (64, 8, 16, 1),
    "G=100": (1000, 4, 12, 100),
    "G=7-K=17": (500, 17, 33, 7),
    "K-tail-half-vector": (97, 20, 40, None),  # 20 centroids: one full vector and a half one (AVX-512)
    "K-multi-tile": (150, 70, 33, None),  # more centroids than one register tile holds
    "K=130-D=1100-G=3": (300, 130, 1100, 3),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", list(SHAPES), ids=list(SHAPES))
def test_matches_float64_oracle(backend, shape):
    n, k, d, g = SHAPES[shape]
    gen = torch.Generator().manual_seed(hash(shape) % 1000)
    points = torch.randn(n, d, generator=gen)
    if g is None:
        check(points, torch.randn(k, d, generator=gen), backend=backend)
    else:
        groups = torch.randint(0, g, (n,), generator=gen)
        check(points, torch.randn(g, k, d, generator=gen), groups, backend=backend)


def _isas() -> list[str]:
    order = ["avx512", "avx2", "generic"]
    best = _extension.build_info().get("cpu_isa", "generic")
    return order[order.index(best):] if best in order else ["generic"]


@needs_cpp
@pytest.mark.parametrize("isa", ["avx512", "avx2", "generic"])
def test_every_cpu_instruction_set(isa, monkeypatch):
    if isa not in _isas():
        pytest.skip(f"this CPU has no {isa}")
    monkeypatch.setenv("FASTDISTILL_CPU_ISA", isa)
    gen = torch.Generator().manual_seed(3)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        points = torch.randn(203, 45, generator=gen).to(dtype)
        groups = torch.randint(0, 3, (203,), generator=gen)
        check(points, torch.randn(3, 13, 45, generator=gen).to(dtype), groups, backend="cpp")


@pytest.mark.parametrize("backend", BACKENDS)
def test_duplicate_centroids_go_to_the_lowest_index(backend):
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(4, 32, generator=gen)
    centroids = base[[2, 0, 1, 0, 3, 2, 1, 3]]  # every centroid twice; first copies at 1, 2, 0, 4
    points = torch.cat([base, base + 0.01 * torch.randn(4, 32, generator=gen), torch.randn(50, 32, generator=gen)])
    index, dist = check(points, centroids, backend=backend)
    first = {0: 1, 1: 2, 2: 0, 3: 4}
    assert all(int(i) in first.values() for i in index)
    assert dist[:4].abs().max() == 0  # exact copies of a centroid are at distance 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_survive_cancellation_far_from_the_origin(backend):
    # ||x||^2 - 2 x.c + ||c||^2 cancels catastrophically here: fp32 scores alone cannot rank these centroids.
    gen = torch.Generator().manual_seed(1)
    offset = torch.full((1, 64), 3000.0)
    centroids = offset + torch.randn(6, 64, generator=gen) * 0.05
    centroids = torch.cat([centroids, centroids[[4, 1]]])  # duplicates of 4 and 1 at 6 and 7
    points = offset + torch.randn(400, 64, generator=gen) * 0.05
    index, _ = check(points, centroids, backend=backend)
    assert int(index.max()) < 6


@pytest.mark.parametrize("backend", BACKENDS)
def test_distances_equal_in_float32_are_ranked_exactly(backend):
    # ||0 - c||^2 is 1 + 2^-24 for the first centroid and 1 for the second: equal once rounded to fp32 (the two
    # non-zero coordinates of the first, 16 apart, share a SIMD lane in the kernels' partial sums).
    centroids = torch.zeros(3, 19)
    centroids[0, 0], centroids[0, 16], centroids[1, 0], centroids[2, 5] = 1.0, 2.0**-12, 1.0, 3.0
    index, dist = check(torch.zeros(5, 19), centroids, backend=backend)
    assert index.tolist() == [1] * 5 and dist.tolist() == [1.0] * 5


@pytest.mark.parametrize("backend", BACKENDS)
def test_equidistant_centroids_and_duplicate_points(backend):
    centroids = torch.cat([torch.eye(5), -torch.eye(5)])  # all 10 at squared distance 1 from the origin
    index, dist = check(torch.zeros(3, 5), centroids, backend=backend)
    assert index.tolist() == [0, 0, 0] and dist.tolist() == [1.0, 1.0, 1.0]
    gen = torch.Generator().manual_seed(2)
    point = torch.randn(1, 7, generator=gen)
    index, dist = check(point.repeat(9, 1), torch.randn(4, 7, generator=gen), backend=backend)
    assert index.unique().numel() == 1 and dist.unique().numel() == 1


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs(backend, dtype):
    gen = torch.Generator().manual_seed(4)
    points32, centroids32 = torch.randn(400, 48, generator=gen), torch.randn(3, 12, 48, generator=gen)
    groups = torch.randint(0, 3, (400,), generator=gen)
    points, centroids = points32.to(dtype), centroids32.to(dtype)
    # Exact on the values actually given (fp32 accumulation, float64 re-check) ...
    _, dist = check(points, centroids, groups, backend=backend)
    # ... and, against the fp32 originals, at most twice the error of plain torch arithmetic in that dtype.
    _, ref = oracle(points32, centroids32, groups)
    plain = ((points[:, None, :] - centroids[groups]) ** 2).sum(-1).min(1).values.float()
    assert (dist - ref).abs().max() <= 2 * (plain - ref).abs().max()


@pytest.mark.parametrize("precision", ["high", "medium"])
def test_reduced_float32_matmul_precision_stays_exact(precision):
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(precision)  # TF32 / bfloat16 matmul inputs: the torch backend widens its check
    try:
        gen = torch.Generator().manual_seed(13)
        check(torch.randn(300, 64, generator=gen), torch.randn(3, 20, 64, generator=gen),
              torch.randint(0, 3, (300,), generator=gen), backend="torch")
    finally:
        torch.set_float32_matmul_precision(before)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_inputs(backend):
    gen = torch.Generator().manual_seed(5)
    points = torch.randn(20, 60, generator=gen).t()  # [60, 20], column-major
    centroids = torch.randn(20, 8, generator=gen).t()
    check(points, centroids, backend=backend)


def _bad_inputs():
    x, c = torch.randn(10, 4), torch.randn(3, 4)
    g, cg = torch.zeros(10, dtype=torch.int64), torch.randn(2, 3, 4)
    nan_x, inf_x, nan_c = x.clone(), x.clone(), c.clone()
    nan_x[3, 1], inf_x[7, 0], nan_c[1, 2] = float("nan"), float("inf"), float("nan")
    return {
        "nan-point": ((nan_x, c, None), "NaN or Inf"),
        "inf-point": ((inf_x, c, None), "NaN or Inf"),
        "nan-centroid": ((x, nan_c, None), "NaN or Inf"),
        "dim-mismatch": ((x, torch.randn(3, 5), None), "D=4"),
        "points-1d": ((torch.randn(10), c, None), r"\[N, D\]"),
        "centroids-rank-with-groups": ((x, c, g), r"\[G, K, D\]"),
        "centroids-rank-without-groups": ((x, cg, None), r"\[K, D\]"),
        "device-mismatch": ((x, torch.empty(3, 4, device="meta"), None), "device|meta"),
        "group-too-large": ((x, cg, torch.full((10,), 2, dtype=torch.int64)), "group id 2"),
        "group-negative": ((x, cg, torch.full((10,), -1, dtype=torch.int64)), "group id -1"),
        "groups-int32": ((x, cg, g.int()), "int64"),
        "groups-shape": ((x, cg, g[:5]), "int64 tensor of shape"),
        "empty-points": ((torch.randn(0, 4), c, None), "empty"),
        "empty-dims": ((torch.randn(10, 0), torch.randn(3, 0), None), "empty"),
        "no-centroids": ((x, torch.randn(0, 4), None), "empty"),
        "float64": ((x.double(), c.double(), None), "float32, float16 or bfloat16"),
        "integer": ((x.long(), c.long(), None), "float32, float16 or bfloat16"),
        "dtype-mismatch": ((x, c.half(), None), "dtype|float16"),
        "not-a-tensor": ((x.tolist(), c, None), "torch tensors"),
    }


BAD = _bad_inputs()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input_raises_a_one_line_error(backend, case):
    args, message = BAD[case]
    with pytest.raises(FastDistillError, match=message) as err:
        assign_modes(*args, backend=backend)
    assert "\n" not in str(err.value)


@needs_cpp
def test_compiled_op_rejects_bad_groups_without_crashing():
    with pytest.raises(RuntimeError, match="group"):
        torch.ops.fastdistill.assign_modes(torch.randn(4, 3), torch.randn(2, 2, 3), torch.tensor([0, 1, 5, 0]),
                                           slack=score_slack(3))


@needs_cpp
@pytest.mark.parametrize("grouped", [False, True])
def test_opcheck(grouped):
    gen = torch.Generator().manual_seed(6)
    points = torch.randn(33, 10, generator=gen)
    if grouped:
        args = (points, torch.randn(3, 4, 10, generator=gen), torch.randint(0, 3, (33,), generator=gen))
    else:
        args = (points, torch.randn(4, 10, generator=gen), None)
    torch.library.opcheck(torch.ops.fastdistill.assign_modes.default, args, {"slack": score_slack(10)},
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor",
                                      "test_aot_dispatch_dynamic"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_traces_under_torch_compile(backend):
    gen = torch.Generator().manual_seed(7)
    points, centroids = torch.randn(50, 6, generator=gen), torch.randn(2, 5, 6, generator=gen)
    groups = torch.randint(0, 2, (50,), generator=gen)
    # The C++ op traces as one node (fake kernel); the torch fallback loops over groups, so it may graph-break.
    compiled = torch.compile(lambda x, c, g: assign_modes(x, c, g, backend=backend), backend="aot_eager",
                             fullgraph=backend == "cpp")
    index, dist = compiled(points, centroids, groups)
    want_index, want_dist = oracle(points, centroids, groups)
    assert torch.equal(index, want_index)
    torch.testing.assert_close(dist, want_dist, rtol=1e-6, atol=1e-6)


@needs_cpp
def test_info_reports_the_cpp_backend():
    assert describe("cpu")["assign_modes"] == "C++ (fastdistill._C)"


# ---------------------------------------------------------------------------------------------------------- CUDA


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("k", [1, 10, 16, 17, 33, 50, 64, 65, 130])
@pytest.mark.parametrize("layout", ["no-groups", "sorted-equal-groups", "random-groups"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_cuda_matches_oracle(backend, layout, k, dtype):
    # sorted equal-sized groups are multiplied in place; random groups go through a padded copy
    gen = torch.Generator().manual_seed(k)
    n, d, g = 700, 70, 5
    points = torch.randn(n, d, generator=gen).to(dtype).cuda()
    groups = {"no-groups": None, "sorted-equal-groups": torch.arange(g).repeat_interleave(n // g),
              "random-groups": torch.randint(0, g, (n,), generator=gen)}[layout]
    groups = groups.cuda() if groups is not None else None
    centroids = torch.randn(*((g,) if groups is not None else ()), k, d, generator=gen).to(dtype).cuda()
    index, _ = check(points, centroids, groups, backend=backend)
    assert index.is_cuda


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("backend", BACKENDS)
def test_cuda_ties_and_groups(backend):
    gen = torch.Generator().manual_seed(8)
    offset = torch.full((1, 64), 3000.0)
    base = offset + torch.randn(6, 64, generator=gen) * 0.05
    centroids = torch.stack([torch.cat([base, base[[4, 1]]])] * 100).cuda()
    points = (offset + torch.randn(5000, 64, generator=gen) * 0.05).cuda()
    groups = torch.randint(0, 100, (5000,), generator=gen).cuda()
    index, _ = check(points, centroids, groups, backend=backend)
    assert int(index.max()) < 6
