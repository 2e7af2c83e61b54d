"""Tests for osteo_helpers.config: where the data is looked for, the error, and profiles."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from osteo_helpers import config, errors
from osteo_helpers.data import location


def _dataset(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / config.SPREADSHEET_NAME).write_bytes(b"placeholder")
    return folder


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A fake checkout at tmp/checkout with a sibling tmp/shared; no $OSTEO_DATA_DIR."""
    root = tmp_path / "checkout"
    root.mkdir()
    monkeypatch.setattr(location, "PROJECT_ROOT", root)
    monkeypatch.delenv(location.DATA_ENV_VAR, raising=False)
    return root


def test_resolution_order(project, tmp_path, monkeypatch):
    shared = _dataset(tmp_path / "shared" / "data" / "knee-osteoporosis")
    assert location.resolve_data_dir() == shared.resolve()

    raw = _dataset(project / "data" / "raw")
    assert location.resolve_data_dir() == raw.resolve()

    env = _dataset(tmp_path / "env-copy")
    monkeypatch.setenv(location.DATA_ENV_VAR, str(env))
    assert location.resolve_data_dir() == env.resolve()

    explicit = _dataset(tmp_path / "explicit")
    assert location.resolve_data_dir(explicit) == explicit.resolve()
    assert location.resolve_data_dir(str(explicit)) == explicit.resolve()


def test_candidates_listed_in_priority_order(project, tmp_path, monkeypatch):
    monkeypatch.setenv(location.DATA_ENV_VAR, str(tmp_path / "env"))
    cands = location.data_dir_candidates(tmp_path / "arg")
    assert [p for _, p in cands] == [tmp_path / "arg", tmp_path / "env", project / "data" / "raw",
                                     tmp_path / "shared" / "data" / "knee-osteoporosis"]


def test_env_var_without_data_falls_back(project, tmp_path, monkeypatch):
    raw = _dataset(project / "data" / "raw")
    monkeypatch.setenv(location.DATA_ENV_VAR, str(tmp_path / "empty"))
    assert location.resolve_data_dir() == raw.resolve()


def test_folder_without_spreadsheet_does_not_count(project, tmp_path):
    (project / "data" / "raw" / "normal").mkdir(parents=True)  # images only, no spreadsheet
    shared = _dataset(tmp_path / "shared" / "data" / "knee-osteoporosis")
    assert location.resolve_data_dir() == shared.resolve()


def test_explicit_argument_without_data_is_an_error_not_a_fallback(project, tmp_path):
    _dataset(project / "data" / "raw")
    with pytest.raises(errors.DataNotFoundError) as err:
        location.resolve_data_dir(tmp_path / "typo")
    assert str(tmp_path / "typo") in str(err.value)


def test_not_found_message(project, tmp_path, monkeypatch):
    monkeypatch.setenv(location.DATA_ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(errors.DataNotFoundError) as err:
        location.resolve_data_dir()
    msg = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    for place in (tmp_path / "nowhere", project / "data" / "raw", tmp_path / "shared" / "data" / "knee-osteoporosis"):
        assert str(place) in msg
    assert "$OSTEO_DATA_DIR" in msg
    assert "10.17632/fxjm8fb6mw.2" in msg
    assert "python -m osteo_helpers data import" in msg
    assert config.SPREADSHEET_NAME in msg


def test_cli_reports_missing_data(project, tmp_path, capsys):
    from osteo_helpers.cli import main

    assert main(["data", "check", "--data-dir", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "10.17632/fxjm8fb6mw.2" in err and str(tmp_path / "nowhere") in err


def test_profiles_exist_and_differ():
    assert {"smoke", "fast", "full"} <= set(config.PROFILES)
    smoke, full = config.get_profile("smoke"), config.get_profile("full")
    assert smoke.name == "smoke" and smoke.epochs < full.epochs
    assert full.finetune_blocks > 0 and full.feature_encoder in config.LITE_ENCODERS and smoke.finetune_blocks == 0
    assert smoke.weights is None and full.weights is None  # the from-scratch baseline starts from nothing


def test_profile_overrides():
    p = config.get_profile("smoke", lr=0.5, epochs=1, tasks=["binary"])
    assert p.lr == 0.5 and p.epochs == 1 and p.tasks == ("binary",)
    assert config.PROFILES["smoke"].lr != 0.5  # the registered profile is untouched
    # None means "not given" (notebook parameters)
    assert config.get_profile("smoke", lr=None).lr == config.PROFILES["smoke"].lr


def test_profile_overrides_reject_unknown_fields():
    with pytest.raises(ValueError, match="learning_rate"):
        config.get_profile("smoke", learning_rate=0.1)
    with pytest.raises(ValueError, match="epoch"):
        config.PROFILES["fast"].with_overrides(epoch=3)
    with pytest.raises(ValueError, match="nope"):
        config.get_profile("nope")


def test_profile_is_frozen_and_serialisable():
    import dataclasses
    import json

    p = config.get_profile("fast")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.lr = 1.0  # type: ignore[misc]
    assert json.loads(json.dumps(p.to_dict()))["name"] == "fast"


# ----------------------------------------------------------------------------- values checked before work


def test_every_rule_names_a_field_and_every_builtin_profile_passes():
    import dataclasses

    fields = {f.name for f in dataclasses.fields(config.Profile)}
    assert set(config.FIELD_RULES) <= fields
    for name in config.PROFILES:
        assert config.get_profile(name) == config.PROFILES[name]


@pytest.mark.parametrize("field,text,value", [
    ("epochs", "3", 3), ("lr", "1e-4", 1e-4), ("lr", "2", 2.0), ("augment", "false", False),
    ("augment", "Yes", True), ("weights", "none", None), ("weights", "None", None),
    ("weights", "imagenet", "imagenet"),
    ("weights", "DenseNet121_Weights.IMAGENET1K_V1", "DenseNet121_Weights.IMAGENET1K_V1"),
    ("biomarker_limit", "null", None), ("biomarker_limit", "5", 5), ("tasks", "binary,3class", ("binary", "3class")),
    ("tasks", "('3class',)", ("3class",)), ("encoder", "resnet18", "resnet18"), ("inner_val_fraction", "0.25", 0.25),
])
def test_set_text_is_parsed_to_the_declared_type(field, text, value):
    p = config.get_profile("full", **{field: text})
    assert getattr(p, field) == value and type(getattr(p, field)) is type(value)


def test_weights_may_be_an_existing_checkpoint(tmp_path):
    ckpt = tmp_path / "encoder.pth"
    with pytest.raises(errors.UsageError, match="weights"):
        config.get_profile("fast", weights=str(ckpt))
    ckpt.write_bytes(b"checkpoint")
    assert config.get_profile("fast", weights=str(ckpt)).weights == str(ckpt)


BAD_VALUES = [
    ("epochs", "abc"), ("epochs", "0"), ("epochs", "2.5"), ("patience", "0"), ("n_folds", "1"), ("n_repeats", "0"),
    ("image_size", "16"), ("batch_size", "0"), ("inner_val_fraction", "0"), ("inner_val_fraction", "1"),
    ("target_sensitivity", "1.0"), ("lr", "0"), ("lr", "nan"), ("weight_decay", "-0.1"), ("n_boot", "0"),
    ("encoder", "vgg16"), ("weights", "imagenet21k"), ("weights", "densenet121_weights.v1"),
    ("weights", "/no/such/checkpoint.pth"), ("augment", "maybe"), ("tasks", "[binary"),
    ("tasks", "binary,4class"), ("n_permutations", "0"), ("correction_penalty", "-1"),
]


@pytest.mark.parametrize("field,text", BAD_VALUES)
def test_bad_notebook_overrides_are_refused(field, text):
    with pytest.raises(errors.UsageError) as err:
        config.get_profile("fast", **{field: text})
    assert field in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("python_value", [True, 2.5, "abc", [3]])
def test_python_values_of_the_wrong_type_are_refused(python_value):
    with pytest.raises(errors.UsageError, match="epochs"):
        config.get_profile("fast", epochs=python_value)


@pytest.fixture
def cli(tmp_path, capsys, synthetic_dataset):
    """Run the command line in-process: (exit status, stderr) for `run`/`ablation` into tmp/out."""
    from osteo_helpers.cli import main

    out = tmp_path / "out"

    def call(command: str, *args: str) -> tuple[int, str]:
        extra = ["--profile", "smoke", "--data-dir", str(synthetic_dataset.root)]
        rc = main([command, *extra, *args] if "--out" in args else [command, *extra, "--out", str(out), *args])
        return rc, capsys.readouterr().err

    call.out = out
    return call


@pytest.mark.parametrize("command", ["run", "ablation"])
@pytest.mark.parametrize("setting,expected", [(f"{f}={t}", f) for f, t in BAD_VALUES[:6]] + [
    ("unknown_field=1", "known fields: augment"), ("epochs", "KEY=VALUE"), ("=3", "KEY=VALUE"),
])
def test_bad_set_exits_2_with_one_line_before_any_work(cli, command, setting, expected):
    rc, err = cli(command, "--set", setting)
    assert rc == 2
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and expected in err
    assert not cli.out.exists()  # nothing written, not even the run folder


@pytest.mark.parametrize("command", ["run", "ablation"])
def test_unusable_out_folder_exits_2_before_any_work(cli, tmp_path, monkeypatch, command):
    from osteo_helpers import runfolder

    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    locked = tmp_path / "read-only"
    locked.mkdir(mode=0o555)
    if os.geteuid() == 0:  # root may write anywhere: ask the permission bits what any other user would be told
        monkeypatch.setattr(runfolder.os, "access", lambda p, mode: bool(os.stat(p).st_mode & 0o200))
    for out, words in ((a_file / "run", "is a file"), (a_file, "is a file"), (locked / "run", "no write permission")):
        rc, err = cli(command, "--out", str(out))
        assert rc == 2, err
        assert len(err.strip().splitlines()) == 1 and words in err and str(out) in err
    assert list(locked.iterdir()) == [] and a_file.read_text() == "not a folder"
