"""Bad input gets a one-line error that says what to do (exit status 2), through the real CLI."""

import pytest
import torch
from PIL import Image

from fastdistill.cli import main
from fastdistill.data import DatasetInfo, load_dataset
from fastdistill.models import build_model
from fastdistill.models.teacher import save_teacher
from fastdistill.pipelines.squeeze import SqueezeConfig, train_teacher


def _error_line(capsys) -> str:
    """The one error line on stderr (progress bars may precede it)."""
    err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(err) == 1, err
    return err[0]


@pytest.fixture(scope="module")
def digits_teacher(tmp_path_factory):
    ds = load_dataset("digits")
    model, result = train_teacher(ds, SqueezeConfig(epochs=3), torch.device("cpu"), progress=False)
    assert result["test_accuracy"] > 50
    return str(save_teacher(tmp_path_factory.mktemp("teacher"), model, "convnet3-bn", ds.info))


def test_unknown_option(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["delt", "--bogus"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --bogus" in _error_line(capsys)


def test_unknown_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["distil-everything"])
    assert exc.value.code == 2 and "invalid choice" in _error_line(capsys)


def test_missing_data_root(capsys, tmp_path):
    assert main(["delt", "--dataset", "fashion-mnist", "--data-root", str(tmp_path / "nope")]) == 2
    assert "--data-root" in _error_line(capsys)


def test_ipc_larger_than_a_class(capsys, tmp_path):
    assert main(["delt", "--ipc", "1000", "--output", str(tmp_path / "run")]) == 2
    assert "--ipc 1000 is larger than the smallest class" in _error_line(capsys)
    assert not (tmp_path / "run").exists()  # nothing written before the check


def test_teacher_classes_do_not_match(capsys, tmp_path):
    info = DatasetInfo("other", ("a", "b", "c"), 1, 8, (0.5,), (0.5,))
    save_teacher(tmp_path / "t", build_model("convnet3-bn", 3, 1, 8), "convnet3-bn", info)
    assert main(["delt", "--teacher", str(tmp_path / "t"), "--output", str(tmp_path / "run"), "--no-eval"]) == 2
    assert "predicts 3 classes but digits has 10" in _error_line(capsys)


def test_missing_teacher(capsys, tmp_path):
    assert main(["delt", "--teacher", str(tmp_path / "none"), "--output", str(tmp_path / "run")]) == 2
    assert "teacher weights not found" in _error_line(capsys)


def test_corrupt_image(capsys, tmp_path):
    for split in ("train", "val"):
        for cls in ("a", "b"):
            folder = tmp_path / "data" / split / cls
            folder.mkdir(parents=True)
            Image.new("RGB", (12, 10), (10, 20, 30)).save(folder / "ok.png")
    (tmp_path / "data" / "train" / "b" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    # nothing is decoded up front: the file is found when the teacher trained into the run first reads it
    assert main(["delt", "--dataset", "imagefolder", "--data-root", str(tmp_path / "data"), "--image-size", "8",
                 "--ipc", "1", "--output", str(tmp_path / "run")]) == 2
    line = _error_line(capsys)
    assert "corrupt or unreadable image" in line and "broken.jpg" in line


def test_resume_and_output_rules(capsys, tmp_path):
    assert main(["delt", "--resume"]) == 2
    assert "--resume needs --output" in _error_line(capsys)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "something.txt").write_text("x")
    assert main(["delt", "--output", str(tmp_path / "run")]) == 2
    assert "already holds a run" in _error_line(capsys)
    assert main(["delt", "--output", str(tmp_path / "empty"), "--resume"]) == 2
    assert "holds no interrupted run" in _error_line(capsys)


def test_bad_settings(capsys):
    assert main(["delt", "--iterations", "100", "--round-iterations", "30"]) == 2
    assert "multiple of --round-iterations" in _error_line(capsys)


def test_nan_loss_names_the_iteration(capsys, tmp_path, digits_teacher):
    code = main(["delt", "--teacher", digits_teacher, "--r-bn", "1e39", "--iterations", "4", "--round-iterations",
                 "2", "--output", str(tmp_path / "run"), "--no-eval"])
    assert code == 2
    assert "non-finite loss at iteration 0" in _error_line(capsys)
