"""Tests for osteo_helpers.config: where the data is looked for, the error, and profiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from osteo_helpers import config


def _dataset(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / config.SPREADSHEET_NAME).write_bytes(b"placeholder")
    return folder


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A fake checkout at tmp/checkout with a sibling tmp/shared; no $OSTEO_DATA_DIR."""
    root = tmp_path / "checkout"
    root.mkdir()
    monkeypatch.setattr(config, "PROJECT_ROOT", root)
    monkeypatch.delenv(config.DATA_ENV_VAR, raising=False)
    return root


def test_resolution_order(project, tmp_path, monkeypatch):
    shared = _dataset(tmp_path / "shared" / "data" / "knee-osteoporosis")
    assert config.resolve_data_dir() == shared.resolve()

    raw = _dataset(project / "data" / "raw")
    assert config.resolve_data_dir() == raw.resolve()

    env = _dataset(tmp_path / "env-copy")
    monkeypatch.setenv(config.DATA_ENV_VAR, str(env))
    assert config.resolve_data_dir() == env.resolve()

    explicit = _dataset(tmp_path / "explicit")
    assert config.resolve_data_dir(explicit) == explicit.resolve()
    assert config.resolve_data_dir(str(explicit)) == explicit.resolve()


def test_candidates_listed_in_priority_order(project, tmp_path, monkeypatch):
    monkeypatch.setenv(config.DATA_ENV_VAR, str(tmp_path / "env"))
    cands = config.data_dir_candidates(tmp_path / "arg")
    assert [p for _, p in cands] == [tmp_path / "arg", tmp_path / "env", project / "data" / "raw",
                                     tmp_path / "shared" / "data" / "knee-osteoporosis"]


def test_env_var_without_data_falls_back(project, tmp_path, monkeypatch):
    raw = _dataset(project / "data" / "raw")
    monkeypatch.setenv(config.DATA_ENV_VAR, str(tmp_path / "empty"))
    assert config.resolve_data_dir() == raw.resolve()


def test_folder_without_spreadsheet_does_not_count(project, tmp_path):
    (project / "data" / "raw" / "normal").mkdir(parents=True)  # images only, no spreadsheet
    shared = _dataset(tmp_path / "shared" / "data" / "knee-osteoporosis")
    assert config.resolve_data_dir() == shared.resolve()


def test_explicit_argument_without_data_is_an_error_not_a_fallback(project, tmp_path):
    _dataset(project / "data" / "raw")
    with pytest.raises(config.DataNotFoundError) as err:
        config.resolve_data_dir(tmp_path / "typo")
    assert str(tmp_path / "typo") in str(err.value)


def test_not_found_message(project, tmp_path, monkeypatch):
    monkeypatch.setenv(config.DATA_ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(config.DataNotFoundError) as err:
        config.resolve_data_dir()
    msg = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    for place in (tmp_path / "nowhere", project / "data" / "raw", tmp_path / "shared" / "data" / "knee-osteoporosis"):
        assert str(place) in msg
    assert "$OSTEO_DATA_DIR" in msg
    assert "10.17632/fxjm8fb6mw.2" in msg
    assert "python -m osteo_helpers data import" in msg
    assert config.SPREADSHEET_NAME in msg


def test_cli_reports_missing_data(project, tmp_path, capsys):
    from osteo_helpers.__main__ import main

    assert main(["data", "check", "--data-dir", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "10.17632/fxjm8fb6mw.2" in err and str(tmp_path / "nowhere") in err


def test_profiles_exist_and_differ():
    assert {"smoke", "fast", "full"} <= set(config.PROFILES)
    smoke, full = config.get_profile("smoke"), config.get_profile("full")
    assert smoke.name == "smoke" and smoke.epochs < full.epochs
    assert full.weights == "imagenet" and smoke.weights is None


def test_profile_overrides():
    p = config.get_profile("smoke", lr=0.5, epochs=1, modes=["image"])
    assert p.lr == 0.5 and p.epochs == 1 and p.modes == ("image",)
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
