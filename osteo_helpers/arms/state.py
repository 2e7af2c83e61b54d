"""A fitted arm as files, without pickle: the one serialisation of arms (fold cache and model bundle).

An arm is its configuration (the registry name and ``get_params()``, the profile as a dict) plus
its learned state (the trailing-underscore attributes). Each learned value is written by kind:

* numbers, text and lists of them, and small tables (the training history): ``<stem>.json``;
* numpy arrays and network weights: ``<stem>.safetensors`` (tensors only, no code). A network
  is rebuilt from the architecture it records (`models.from_architecture`) and given its tensors;
* scikit-learn parts (fitted pipelines, column transformers): ``<stem>.skops``, opened only when
  every type it names is one skops trusts or one of `TRUSTED_TYPES` (skops's trusted-types check);
* a nested arm (the ROI arms' knee network): the same, under the attribute's name.

Loading constructs the arm from the registry by name and sets that state: no code is ever run
from a file. `save_arm` returns the SHA-256 of every file it wrote; the caller records them
(``done.json``, ``bundle.json``) and `load_arm` reads each file only when its bytes match.
A value of another kind is a TypeError at save time: the protocol is explicit, so a new kind of
learned state needs a line here, never a pickle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator

from ..config import Profile
from ..errors import UsageError
from ..fileio import ChecksumError, atomic_write_bytes, read_verified, sha256_bytes
from ..models import from_architecture
from .base import ARM_REGISTRY, Arm

#: the layout of the files below; a file of another format is refused
STATE_FORMAT = 1
#: the files of one saved arm (the tensors and scikit-learn files exist only when the arm has such parts)
SUFFIXES = (".json", ".safetensors", ".skops")
#: types a saved scikit-learn part may name beyond those skops trusts by default: the project's own
#: estimator and scorer, and scikit-learn internals of the fitted models the arms hold
TRUSTED_TYPES = frozenset({
    "numpy.dtype",
    "osteo_helpers.arms.features.signed_log1p",
    "osteo_helpers.arms.classical.LinearGaussian",
    "osteo_helpers.arms.classical._neg_log_loss",
    "osteo_helpers.splines.RestrictedCubicSpline",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.metrics._regression.mean_squared_error",
    "sklearn.metrics._scorer._Scorer",
    "sklearn.model_selection._split._CVIterableWrapper",
})


class ArmStateError(ValueError):
    """Saved arm files that cannot be turned back into the arm; the message names the file and why."""


def arm_files(stem: str = "arm") -> list[str]:
    return [f"{stem}{suffix}" for suffix in SUFFIXES]


# ----------------------------------------------------------------------------- save


def _plain(value: Any, key: str) -> Any:
    """A JSON value (numpy scalars as Python ones); TypeError for anything else."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{key}: a {type(value).__name__} is not a JSON value")


def _value(value: Any, key: str, tensors: dict[str, torch.Tensor], sklearn: dict[str, Any]) -> dict[str, Any]:
    """One learned value as its JSON description; tensors and scikit-learn parts go to their own files."""
    if isinstance(value, Arm):
        return {"arm": _describe(value, key + ".", tensors, sklearn)}
    if isinstance(value, torch.nn.Module):
        spec = getattr(value, "architecture", None)
        if spec is None:
            raise TypeError(f"{key}: a {type(value).__name__} records no architecture (models.from_architecture)")
        for name, tensor in value.state_dict().items():
            tensors[f"{key}.{name}"] = tensor.detach().cpu().contiguous().clone()
        return {"network": spec}
    if isinstance(value, BaseEstimator):
        sklearn[key] = value
        return {"sklearn": key}
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError(f"{key}: an object array has no safe file form")
        tensors[key] = torch.from_numpy(np.ascontiguousarray(value).copy())
        return {"array": key}
    if isinstance(value, pd.DataFrame):
        return {"table": {"columns": [str(c) for c in value.columns],
                          "dtypes": {str(c): str(t) for c, t in value.dtypes.items()},
                          "data": {str(c): [_plain(v, key) for v in value[c].tolist()] for c in value.columns}}}
    if isinstance(value, (tuple, list)):
        return {type(value).__name__: [_plain(v, key) for v in value]}
    return {"value": _plain(value, key)}


def _describe(arm: Arm, prefix: str, tensors: dict[str, torch.Tensor], sklearn: dict[str, Any]) -> dict[str, Any]:
    name = getattr(type(arm), "arm_name", None)
    if name is None or ARM_REGISTRY.get(name) is not type(arm):
        raise TypeError(f"{type(arm).__name__} is not a registered arm: it could not be rebuilt by name")
    params = {k: v.to_dict() if isinstance(v, Profile) else _plain(v, prefix + k)
              for k, v in arm.get_params(deep=False).items()}
    state = {k: _value(v, prefix + k, tensors, sklearn) for k, v in vars(arm).items()
             if k.endswith("_") and not k.startswith("_")}
    return {"arm": name, "class": type(arm).__name__, "params": params, "state": state}


def arm_blobs(arm: Arm, stem: str = "arm") -> dict[str, bytes]:
    """The file name -> bytes of a fitted arm (see the module docstring)."""
    import skops.io  # deferred: imports skops
    from safetensors.torch import save as save_tensors  # deferred: imports safetensors

    tensors: dict[str, torch.Tensor] = {}
    sklearn: dict[str, Any] = {}
    config = {"format": STATE_FORMAT, **_describe(arm, "", tensors, sklearn)}
    blobs = {f"{stem}.json": json.dumps(config, indent=1).encode()}
    if tensors:
        blobs[f"{stem}.safetensors"] = save_tensors(tensors)
    if sklearn:
        blobs[f"{stem}.skops"] = skops.io.dumps(sklearn)
    return blobs


def save_arm(arm: Arm, folder: Path, stem: str = "arm") -> dict[str, str]:
    """Write the arm's files into ``folder`` (atomically, each); returns {file name: SHA-256} to record."""
    blobs = arm_blobs(arm, stem)
    for name in arm_files(stem):
        if name in blobs:
            atomic_write_bytes(Path(folder) / name, blobs[name])
        else:
            (Path(folder) / name).unlink(missing_ok=True)
    return {name: sha256_bytes(data) for name, data in blobs.items()}


# ----------------------------------------------------------------------------- load


def _profile(record: dict[str, Any]) -> Profile:
    """The profile an arm was fitted with. Its ``weights`` only said where training started: the saved
    tensors hold the trained network, so a checkpoint that is not on this machine is kept as a name."""
    try:
        return Profile(**record)
    except UsageError:
        if record.get("weights") is None:
            raise
        profile = Profile(**{**record, "weights": None})
        object.__setattr__(profile, "weights", record["weights"])
        return profile


def _restore(spec: dict[str, Any], key: str, tensors: dict[str, torch.Tensor], sklearn: dict[str, Any]) -> Any:
    (kind, value), = spec.items()
    if kind == "arm":
        return _build(value, key + ".", tensors, sklearn)
    if kind == "network":
        net = from_architecture(value)
        own = {name[len(key) + 1:]: t for name, t in tensors.items() if name.startswith(key + ".")}
        net.load_state_dict(own, strict=True)
        return net.eval()
    if kind == "sklearn":
        return sklearn[value]
    if kind == "array":
        return tensors[value].numpy()
    if kind == "table":
        return pd.DataFrame(value["data"], columns=value["columns"]).astype(value["dtypes"])
    if kind == "tuple":
        return tuple(value)
    if kind in ("list", "value"):
        return value
    raise ValueError(f"{key}: unknown kind {kind!r}")


def _build(config: dict[str, Any], prefix: str, tensors: dict[str, torch.Tensor], sklearn: dict[str, Any]) -> Arm:
    cls = ARM_REGISTRY.get(config["arm"])
    if cls is None or cls.__name__ != config["class"]:
        raise ValueError(f"arm {config['arm']!r} ({config['class']}) is not an arm of this code")
    params = dict(config["params"])
    if params.get("profile") is not None:
        params["profile"] = _profile(params["profile"])
    arm = cls(**params)
    for name, spec in config["state"].items():
        setattr(arm, name, _restore(spec, prefix + name, tensors, sklearn))
    return arm


def _trusted_sklearn(data: bytes, path: Path) -> dict[str, Any]:
    """The scikit-learn parts, opened only when skops finds no type outside its defaults and TRUSTED_TYPES
    (skops audits the whole file before it constructs anything)."""
    import skops.io  # deferred: imports skops
    from skops.io.exceptions import UntrustedTypesFoundException  # deferred: imports skops

    try:
        return skops.io.loads(data, trusted=sorted(TRUSTED_TYPES))
    except UntrustedTypesFoundException as exc:
        foreign = ", ".join(str(exc).split("[", 1)[-1].rstrip("]").split(", ")[:3])
        raise ArmStateError(f"{path}: names type(s) outside the trusted list ({foreign}); refused unread") from exc
    except Exception as exc:  # not a skops file: a zip error, a schema error; all mean "refuse"
        raise ArmStateError(f"{path}: not a scikit-learn (skops) file ({type(exc).__name__}); refused") from exc


def load_arm(folder: Path, checksums: dict[str, str], stem: str = "arm") -> Arm:
    """The arm saved by `save_arm`, each file read only when its SHA-256 is the recorded one.

    ChecksumError names a file whose bytes changed (or that is missing); ArmStateError one that
    matches but cannot be turned back into an arm of this code (another format or version).
    """
    from safetensors.torch import load as load_tensors  # deferred: imports safetensors

    folder = Path(folder)
    config_name = f"{stem}.json"
    if config_name not in checksums:
        raise ChecksumError(folder / config_name, "not recorded among the saved files")
    data = {name: read_verified(folder / name, checksums[name]) for name in arm_files(stem) if name in checksums}
    path = folder / config_name
    try:
        config = json.loads(data[config_name])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArmStateError(f"{path}: not JSON ({type(exc).__name__})") from exc
    if not isinstance(config, dict) or config.get("format") != STATE_FORMAT:
        found = config.get("format") if isinstance(config, dict) else "?"
        raise ArmStateError(f"{path}: arm format {found}, this code reads format {STATE_FORMAT}")
    try:
        tensors = load_tensors(data[f"{stem}.safetensors"]) if f"{stem}.safetensors" in data else {}
    except Exception as exc:  # safetensors raises its own error types for a damaged header
        raise ArmStateError(f"{folder / (stem + '.safetensors')}: not a tensor file ({type(exc).__name__})") from exc
    sklearn = _trusted_sklearn(data[f"{stem}.skops"], folder / f"{stem}.skops") if f"{stem}.skops" in data else {}
    try:
        return _build(config, "", tensors, sklearn)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ArmStateError(f"{path}: cannot be rebuilt by this code ({type(exc).__name__}: {reason})") from exc
