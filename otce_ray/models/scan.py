"""``otce-ray zoo scan``: recognise the models in a folder of checkpoints (local or S3) by their files, and write a
``models_file`` the user can edit.

A folder with a ``config.json`` is one model: a Hugging Face ``save_pretrained`` folder (a semantic-segmentation
``model_type``) or an smp ``save_pretrained`` folder (``_model_class``). Any other file with a checkpoint extension
is a TorchScript archive (its zip holds code), or a state dict whose keys and shapes are exactly those of a
torchvision or smp architecture (read on the meta device: no tensor is loaded). Everything else is listed with the
reason it was not recognised; nothing is guessed.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import yaml

from otce_ray import fs
from otce_ray.models.families import huggingface, smp_seg, torchvision_seg

CHECKPOINT_EXTENSIONS = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")
CONFIG = "config.json"
PREPROCESSOR = "preprocessor_config.json"
WEIGHTS = (".safetensors", ".bin")


@dataclass(frozen=True)
class Recognised:
    """A model entry (a model spec less its ``source``) and what it was recognised by."""

    entry: dict[str, Any]
    evidence: str


@dataclass(frozen=True)
class Unrecognised:
    uri: str
    reason: str


@dataclass
class Scan:
    root: str
    models: list[Recognised] = field(default_factory=list)
    unrecognised: list[Unrecognised] = field(default_factory=list)


def scan_zoo(root: str) -> Scan:
    """Every model under ``root`` (a local folder or an s3:// prefix), in path order; what it could not read or
    would not follow is listed with the reason (``_local_files``)."""
    root = root.rstrip("/") if fs.is_s3(root) else os.path.abspath(root)
    result = Scan(root)
    names = fs.list_files(root) if fs.is_s3(root) else _local_files(root, result.unrecognised)
    folders = sorted({os.path.dirname(name) for name in names if os.path.basename(name) == CONFIG},
                     key=lambda folder: (folder.count("/"), folder))
    claimed: set[str] = set()  # files of the model folders
    model_folders: list[str] = []
    taken: set[str] = set()
    for folder in folders:
        if any(_under(folder, outer) for outer in model_folders):  # a config.json inside a model folder is its file
            continue
        model_folders.append(folder)
        inside = [name for name in names if _under(name, folder)]
        claimed.update(inside)
        found = _folder_model(root, folder, inside)
        _add(result, found, fs.join(root, folder) if folder else root, _name(folder or os.path.basename(root), taken))
    for name in names:
        if name in claimed:
            continue
        uri = fs.join(root, name)
        if not name.lower().endswith(CHECKPOINT_EXTENSIONS):
            result.unrecognised.append(Unrecognised(uri, f"not a model file (extensions scanned: "
                                                         f"{', '.join(CHECKPOINT_EXTENSIONS)})"))
            continue
        _add(result, _file_model(uri), uri, _name(os.path.splitext(name)[0], taken))
    return result


def _local_files(root: str, skipped: list[Unrecognised]) -> list[str]:
    """The files below a local ``root``, relative to it, sorted. Links are not followed: a link loop would list the
    same models forever, and a link that leads outside the root would scan what the user did not point at; each is
    listed as skipped with the reason, and so is a folder that cannot be read."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"no such directory: {root}")
    names: list[str] = []

    def unreadable(error: OSError) -> None:
        skipped.append(Unrecognised(error.filename, f"folder not read: {type(error).__name__}: {error.strerror}"))

    for folder, subfolders, files in os.walk(root, onerror=unreadable):
        for name in sorted(subfolders + files):
            path = os.path.join(folder, name)
            if os.path.islink(path):
                target = os.path.realpath(path)
                inside = target == root or target.startswith(root + os.sep)
                why = "inside the root: it would list its files twice" if inside else f"outside the root ({target})"
                skipped.append(Unrecognised(path, f"a link, not followed: it leads {why}"))
            elif name in files:
                names.append(os.path.relpath(path, root).replace(os.sep, "/"))
    return sorted(names)


def _under(name: str, folder: str) -> bool:
    return not folder or name.startswith(folder + "/")


def _add(result: Scan, found: Recognised | str, uri: str, name: str) -> None:
    if isinstance(found, str):
        result.unrecognised.append(Unrecognised(uri, found))
    else:
        result.models.append(Recognised({"name": name, **found.entry}, found.evidence))


def _name(path: str, taken: set[str]) -> str:
    """A unique folder-safe model name from a relative path (``city/segformer-b0`` -> ``city-segformer-b0``)."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", path.replace("/", "-")).lstrip("._-") or "model"
    name, suffix = base, 2
    while name in taken:
        name, suffix = f"{base}-{suffix}", suffix + 1
    taken.add(name)
    return name


def _read_json(uri: str) -> Mapping[str, Any] | str:
    try:
        value = json.loads(fs.read_bytes(uri))
    except (OSError, ValueError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return f"{os.path.basename(uri)} cannot be read as JSON: {error}"
    return value if isinstance(value, dict) else f"{os.path.basename(uri)} is not a JSON object"


def _folder_model(root: str, folder: str, inside: Sequence[str]) -> Recognised | str:
    uri = fs.join(root, folder) if folder else root
    config = _read_json(fs.join(uri, CONFIG))
    if isinstance(config, str):
        return config
    relative = [name[len(folder) + 1:] if folder else name for name in inside]
    if smp_seg.HUB_CONFIG_CLASS in config:
        if "model.safetensors" not in relative:
            return "an smp save_pretrained config.json without its model.safetensors"
        fields = smp_seg.from_config(config)
        if isinstance(fields, str):
            return f"{fields}: not an smp architecture this format builds"
        return Recognised({"format": "smp", **fields, "checkpoint": fs.join(uri, "model.safetensors")},
                          f"smp save_pretrained config ({fields['architecture']}, {fields['encoder']})")
    if "model_type" not in config:
        return "config.json names no model_type (Hugging Face) nor _model_class (smp)"
    if not any(name.endswith(WEIGHTS) and "/" not in name for name in relative):
        return f"a Hugging Face config.json without weights ({', '.join('*' + w for w in WEIGHTS)})"
    preprocessor = _read_json(fs.join(uri, PREPROCESSOR)) if PREPROCESSOR in relative else None
    fields = huggingface.from_config(config, None if isinstance(preprocessor, str) else preprocessor)
    if isinstance(fields, str):
        return fields
    return Recognised({"format": "huggingface", "path": uri, **fields},
                      f"Hugging Face config.json, model_type {config['model_type']}")


def _file_model(uri: str) -> Recognised | str:
    try:
        path = fs.local_copy(uri)
    except OSError as error:
        return f"cannot be read: {error}"
    if zipfile.is_zipfile(path) and _is_torchscript(path):
        return Recognised({"format": "torchscript", "path": uri}, "TorchScript archive")
    shapes = _state_shapes(path)
    if isinstance(shapes, str):
        return shapes
    found = torchvision_seg.recognise(shapes)
    if found:
        return Recognised({"format": "torchvision", **found, "checkpoint": uri},
                          f"torchvision {found['architecture']} state dict")
    if smp_seg.looks_like_smp(shapes):
        found = smp_seg.recognise(shapes)
        if isinstance(found, str):
            return found
        return Recognised({"format": "smp", **found, "checkpoint": uri},
                          f"smp {found['architecture']} ({found['encoder']}) state dict")
    first = ", ".join(list(shapes)[:3])
    return f"a state dict whose keys match no torchvision or smp architecture (first keys: {first})"


def _is_torchscript(path: str) -> bool:
    """TorchScript archives carry their code (``*/code/``) and ``constants.pkl``; a torch.save zip has neither."""
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name or name.endswith("/constants.pkl") for name in archive.namelist())


def _state_shapes(path: str) -> dict[str, tuple[int, ...]] | str:
    """Key -> shape of the state dict in a checkpoint, loaded on the meta device (weights-only); or why not."""
    import torch

    from otce_ray.models.loading import SAFETENSORS, state_dict_of, unpickling_problem

    if path.endswith(SAFETENSORS):
        from safetensors import safe_open

        try:
            with safe_open(path, "pt") as handle:
                return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
        except Exception as error:  # safetensors raises its own SafetensorError, not an OSError
            return f"not a readable safetensors file: {error}"
    try:
        state = torch.load(path, map_location="meta", weights_only=True)
    except Exception as error:  # torch.load fails with many types: any failure means "not a weights-only state dict"
        return f"not a weights-only PyTorch checkpoint: {unpickling_problem(error)}"
    state = state_dict_of(state)
    if state is None:
        return "a PyTorch file that holds no state dict of tensors"
    return {key: tuple(value.shape) for key, value in state.items()}


def manifest_yaml(scan: Scan, source: Mapping[str, Any] | None = None) -> str:
    """The models_file text: one entry per recognised model, sharing one ``source`` (a YAML anchor, so it is edited
    once), and the unrecognised files as comments at the end."""
    header = [f"# Models found under {scan.root} by `otce-ray zoo scan`: edit freely (names, mean/std, size, ...)."]
    if source is None:
        header.append("# Each entry needs `source:` (the dataset spec the model was trained on) before a run.")
    entries = [{**model.entry, **({"source": source} if source is not None else {})} for model in scan.models]
    body = yaml.safe_dump(entries, sort_keys=False, width=120) if entries else "[]\n"
    body = body.replace("&id001", "&source").replace("*id001", "*source")
    lines = header + [body.rstrip("\n")]
    if scan.unrecognised:
        lines.append("# Not recognised (add them by hand if they are models):")
        lines += [f"#   {item.uri}: {item.reason}" for item in scan.unrecognised]
    return "\n".join(lines) + "\n"
