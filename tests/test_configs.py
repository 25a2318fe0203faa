"""Declarative options: --config recipes (shipped, files, a run's config.json), overrides, validation and errors."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from fastdistill.cli import _command_modules, build_parser, main
from fastdistill.commands import delt
from fastdistill.commands._options import as_config, parse_options, recipe_names, result_keys

REQUIRED = {"mgd": ["--diffusion", "DIR"]}  # options a recipe leaves to the user


def _parse(argv: list[str]):
    args = build_parser().parse_args(argv)
    return parse_options(args._command.Options, args, args._command.NAME)


def _error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_every_option_has_help():
    for module in _command_modules():
        for f in dataclasses.fields(module.Options):
            assert f.metadata["help"], f"{module.NAME} --{f.name} has no help"


@pytest.mark.parametrize("name", recipe_names())
def test_shipped_recipe_parses(name):
    command = name.split("-")[0]
    options = _parse([command, "--config", f"recipe:{name}", *REQUIRED.get(command, [])])
    assert options.ipc in (10, 50)


def test_recipes_cover_the_seeds():
    assert len(recipe_names()) >= 6


def test_flags_override_the_file_and_yaml_exponents_are_floats(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("command: pdd\nbase: mtt\nipc: 4\nstages: 2\nlr_lr: 1e-7\nno_dsa: true\n")
    options = _parse(["pdd", "--config", str(recipe), "--ipc", "6", "--stages", "3"])
    assert (options.base, options.ipc, options.stages, options.lr_lr, options.no_dsa) == ("mtt", 6, 3, 1e-7, True)


def test_result_keys_come_from_field_metadata():
    keys = result_keys(delt.Options)
    assert {"dataset", "ipc", "lr", "seed", "mode", "teacher_arch"} <= set(keys)
    assert not {"eval_seeds", "no_eval", "output", "resume", "backend"} & set(keys)
    assert "resume" not in as_config(_parse(["delt"]))


@pytest.mark.parametrize("argv, flag", [
    (["delt", "--lr", "inf"], "--lr must be a finite number"),
    (["mgd", "--diffusion", "DIR", "--guidance-scale", "nan"], "--guidance-scale must be a finite number"),
    (["pdd", "--base", "dm", "--lr-img", "-5"], "--lr-img must be > 0"),
    (["delt", "--crop-floor", "1.5"], "--crop-floor must be <= 1"),
    (["distill"], "--method is required"),
])
def test_bad_values_fail_before_anything_is_written(capsys, tmp_path, argv, flag):
    assert main([*argv, "--output", str(tmp_path / "run")]) == 2
    assert flag in _error_line(capsys)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("text, expected", [
    ("ipc: 3\nbogus_key: 1\n", "unknown key 'bogus_key' for `delt`"),
    ("iteration: 3\n", "unknown key 'iteration' for `delt` (did you mean 'iterations'?)"),
    ("ipc: three\n", "key 'ipc' must be an integer or null, got 'three'"),
    ("lr: [1, 2]\n", "key 'lr' must be a number or null"),
    ("flip: 1\n", "key 'flip' must be true or false or null"),
    ("resume: true\n", "key 'resume' is a command-line flag only"),
    ("command: mgd\nipc: 3\n", "is for `mgd`, not `delt`"),
    ("- 1\n- 2\n", "expected a mapping"),
    ("ipc: [1\n", "not valid YAML"),
])
def test_bad_recipe_gives_one_line_naming_the_key(capsys, tmp_path, text, expected):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    assert main(["delt", "--config", str(recipe), "--output", str(tmp_path / "run")]) == 2
    assert expected in _error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_missing_and_unknown_recipes(capsys, tmp_path):
    assert main(["delt", "--config", str(tmp_path / "none.yaml")]) == 2
    assert "file not found" in _error_line(capsys)
    assert main(["delt", "--config", "recipe:nope"]) == 2
    assert "no such shipped recipe" in _error_line(capsys)


def _images(run_dir) -> bytes:
    return torch.load(run_dir / "distilled.pt", weights_only=True)["images"].numpy().tobytes()


def test_config_json_reproduces_the_run(tmp_path):
    teacher = tmp_path / "teacher"
    assert main(["squeeze", "--epochs", "1", "--output", str(teacher), "--device", "cpu"]) == 0
    first = tmp_path / "first"
    assert main(["delt", "--teacher", str(teacher), "--ipc", "2", "--iterations", "4", "--round-iterations", "2",
                 "--batch-size", "10", "--lr", "0.1", "--seed", "5", "--no-eval", "--device", "cpu",
                 "--output", str(first)]) == 0
    record = json.loads((first / "config.json").read_text())
    assert record["config"]["lr"] == 0.1 and record["resolved"]["iterations"] == 4
    again = tmp_path / "again"
    assert main(["delt", "--config", str(first / "config.json"), "--output", str(again)]) == 0
    assert _images(again) == _images(first)
    assert json.loads((again / "config.json").read_text())["config"] == {**record["config"], "output": str(again)}
    other = tmp_path / "other"
    assert main(["delt", "--config", str(first / "config.json"), "--output", str(other), "--seed", "6"]) == 0
    assert _images(other) != _images(first)
