"""Selection of the initial real images: ranking per mode (DELT data_selection.py semantics) and the streamed,
resumable scoring pass."""

import numpy as np
import pytest
import torch
from PIL import Image

from fastdistill.data import load_dataset
from fastdistill.data.base import SKIPPED, Split
from fastdistill.errors import FastDistillError
from fastdistill.methods.delt.selection import medium_order, rank_class, score_split, select_initial


def test_medium_alternates_around_the_median():
    assert medium_order(100, 7) == [50, 51, 49, 52, 48, 53, 47]
    assert medium_order(11, 5) == [6, 7, 5, 8, 4]
    assert sorted(medium_order(10, 10)) == list(range(10))  # out-of-range positions skipped, all taken


def test_rank_modes_on_random_scores():
    scores = torch.rand(37, generator=torch.Generator().manual_seed(3))
    order = torch.argsort(scores)
    assert torch.equal(rank_class(scores, 5, "top"), order.flip(0)[:5])
    assert torch.equal(rank_class(scores, 5, "min"), order[:5])
    assert torch.equal(rank_class(scores, 3, "medium"), order[[19, 20, 18]])
    r = rank_class(scores, 6, "random", torch.Generator().manual_seed(0))
    assert r.unique().numel() == 6 and torch.equal(r, rank_class(scores, 6, "random", torch.Generator().manual_seed(0)))


def test_ties_keep_lower_index_first():
    scores = torch.tensor([0.5, 0.9, 0.5, 0.9, 0.1])
    assert rank_class(scores, 2, "top").tolist() == [1, 3]
    assert rank_class(scores, 3, "min").tolist() == [4, 0, 2]


def test_select_initial_per_class_and_ipc_error():
    labels = torch.tensor([0, 1, 0, 1, 0, 1, 1])
    scores = torch.tensor([0.1, 0.2, 0.9, 0.8, 0.5, 0.3, 0.4])
    chosen = select_initial(scores, labels, 2, 2, "top")
    assert chosen[0].tolist() == [2, 4] and chosen[1].tolist() == [3, 6]
    with pytest.raises(FastDistillError, match="larger than class 0"):
        select_initial(scores, labels, 2, 4, "top")


def _teacher():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 3)).eval()


def _prepare(u8):
    return u8.float() / 255


def test_streamed_scores_equal_one_forward_and_resume_by_chunk(tmp_path, capsys):
    gen = torch.Generator().manual_seed(0)
    split = Split(torch.randint(0, 256, (23, 3, 4, 4), dtype=torch.uint8, generator=gen), torch.arange(23) % 3)
    teacher = _teacher()
    with torch.no_grad():
        expected = teacher(_prepare(split.images)).softmax(1).gather(1, split.labels[:, None]).squeeze(1)
    scores, labels = score_split(teacher, split, _prepare, tmp_path, batch_size=4, chunk_batches=2, progress=False)
    torch.testing.assert_close(scores, expected)
    assert torch.equal(labels, split.labels)
    chunks = sorted(tmp_path.glob("scores_*.pt"))
    assert len(chunks) == 3  # 8 + 8 + 7 images
    chunks[1].write_bytes(b"")  # unreadable: redone; the others are read back, not scored again
    chunks[2].unlink()
    kept = chunks[0].stat().st_mtime_ns
    calls = []
    teacher.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    again, _ = score_split(teacher, split, _prepare, tmp_path, batch_size=4, chunk_batches=2, progress=False)
    assert torch.equal(again, scores) and sum(calls) == 15 and chunks[0].stat().st_mtime_ns == kept
    assert "cannot be read" in capsys.readouterr().err


def test_a_skipped_file_scores_nan_and_is_never_selected(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("val", 1)):
        for c in ("a", "b", "c"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).save(tmp_path / split / c / f"{i}.png")
    (tmp_path / "train" / "b" / "1.png").write_bytes(b"garbage")  # position 4
    ds = load_dataset("imagefolder", str(tmp_path), image_size=4, workers=0, skip_corrupt=True,
                      cache_dir=str(tmp_path / "cache"))
    scores, labels = score_split(_teacher(), ds.train, _prepare, batch_size=2, progress=False)
    assert scores.isnan().tolist() == [i == 4 for i in range(9)] and labels[4] == SKIPPED
    chosen = select_initial(scores, labels, 3, 2, "top")
    assert all(4 not in c.tolist() for c in chosen) and chosen[1].tolist() in ([3, 5], [5, 3])
    with pytest.raises(FastDistillError, match="larger than class 1"):
        select_initial(scores, labels, 3, 3, "top")
