"""Every dataset format, declared once as a ``Layout``: where it keeps its images and masks, its own spec keys (each
saying whether it decides the dataset's content), how its masks read and what its classes are called. The dataset
spec (``spec.DATASET``), its fingerprint and the readers are derived from ``LAYOUTS``: a new format is one entry.

An image id is the image's path below the image directory minus the format's suffix, e.g. Cityscapes
``aachen/aachen_000000_000019``; its mask is the mask directory's file with the same id and a mask suffix.
Listing goes through :mod:`otce_ray.fs`, so a root can be a local directory or an ``s3://`` prefix alike.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from numbers import Integral
from typing import Any, Callable, Iterable, Mapping, NamedTuple

from otce_ray import fs
from otce_ray.datasets.errors import DatasetError
from otce_ray.datasets.labels import (
    LabelLookup,
    LabelMap,
    cityscapes_class_names,
    cityscapes_lookup,
    label_map_lookup,
    train_id_lookup,
)
from otce_ray.datasets.selection import seeded_subset
from otce_ray.schema import Fields, Interval, ListOf, Rule, Setting, Text

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")  # lossless only: JPEG artefacts would invent label values


class Sample(NamedTuple):
    image_id: str
    image_uri: str
    mask_uri: str | None  # None only under on_error: skip, for an image whose mask is missing


def _unnamed() -> Mapping[int, str]:
    return {}


@dataclass(frozen=True)
class Layout:
    """One dataset format. ``fields`` are its own spec keys (besides the common ones), each declaring ``content``;
    ``class_names`` names the class ids its lookup yields (none: ids without names)."""

    format: str
    images: str  # directory below the root; "{split}" is filled from the spec
    image_suffixes: tuple[str, ...]
    masks: str
    mask_suffixes: tuple[str, ...]
    lookup: Callable[[dict[str, Any]], LabelLookup]
    fields: Fields = Fields({})
    class_names: Callable[[], Mapping[int, str]] = _unnamed


_SPLIT = Setting(Text(), doc="the split folder, e.g. train", content=True)


def _ignore_index_not_mapped(ignore_index: int | None, label_map: Mapping) -> str | None:
    if ignore_index is not None and ignore_index in label_map:
        return f"raw value {ignore_index} is also a key of 'label_map'"
    return None


LAYOUTS: dict[str, Layout] = {layout.format: layout for layout in (
    Layout(
        "cityscapes", "leftImg8bit/{split}", ("_leftImg8bit.png",), "gtFine/{split}", ("_gtFine_labelIds.png",),
        lambda spec: cityscapes_lookup(),
        Fields({
            "split": _SPLIT,
            "cities": Setting(ListOf(Text(), "city names", min_length=1), None, "cities to read; null: every city",
                              content=True),  # image ids are "city/stem": the cities select among them
        }),
        cityscapes_class_names,
    ),
    Layout(
        "bdd100k", "images/10k/{split}", (".jpg",), "labels/sem_seg/masks/{split}", (".png",),
        lambda spec: train_id_lookup(), Fields({"split": _SPLIT}), cityscapes_class_names,
    ),
    Layout("gta5", "images", (".png",), "labels", (".png",), lambda spec: cityscapes_lookup(),
           class_names=cityscapes_class_names),
    Layout(
        "folder", "images", IMAGE_SUFFIXES, "masks", MASK_SUFFIXES,
        lambda spec: label_map_lookup(spec["label_map"], spec["ignore_index"]),
        Fields({
            "label_map": Setting(LabelMap(), doc="raw mask value -> class id 0-254", content=True),
            "ignore_index": Setting(Interval(Integral, 0), None, "a raw mask value that labels no class (ignored)",
                                    content=True),
        }, rules=(Rule(("ignore_index", "label_map"), _ignore_index_not_mapped),)),
    ),
)}


def class_names(dataset_format: str) -> dict[int, str]:
    """Names of the class ids a dataset format yields (empty when its ids have no names, as a folder's)."""
    return dict(LAYOUTS[dataset_format].class_names())


def list_samples(spec: dict[str, Any]) -> tuple[list[Sample], LabelLookup, str]:
    """The selected samples of a normalized spec, sorted by image id, the lookup for their masks, and a digest of
    the selected files' names, sizes and modification times (from the same listing).

    Selection order: every image of the layout, then spec key 'cities', then the seeded 'max_images' subset;
    only then are masks paired, so a broken file outside the selection does not matter.
    """
    layout = LAYOUTS[spec["format"]]
    image_dir = fs.join(spec["root"], layout.images.format(**spec))
    image_stamps = _list(image_dir, spec)
    images = _by_id(image_stamps, layout.image_suffixes, image_dir)
    if not images:
        raise DatasetError(
            f"dataset {spec['name']!r}: no image named *{'|*'.join(layout.image_suffixes)} under {image_dir} "
            f"(spec keys 'root'{', ' + repr('split') if 'split' in spec else ''})"
        )
    if "cities" in spec:
        images = _of_cities(images, spec, image_dir)
    chosen = seeded_subset(list(images), spec["max_images"], spec["seed"])
    mask_dir = fs.join(spec["root"], layout.masks.format(**spec))
    mask_stamps = _list(mask_dir, spec)
    masks = _by_id(mask_stamps, layout.mask_suffixes, mask_dir)
    samples = []
    digest = hashlib.sha256()
    for image_id in chosen:
        image_uri = fs.join(image_dir, images[image_id])
        mask = masks.get(image_id)
        stamps = (images[image_id], *image_stamps[images[image_id]], mask, *mask_stamps.get(mask, ()))
        digest.update(repr(stamps).encode())
        if mask is not None:
            samples.append(Sample(image_id, image_uri, fs.join(mask_dir, mask)))
            continue
        expected = fs.join(mask_dir, image_id + layout.mask_suffixes[0])
        if spec["on_error"] != "skip":
            alternatives = f" (or {', '.join(layout.mask_suffixes[1:])})" if len(layout.mask_suffixes) > 1 else ""
            raise DatasetError(f"{image_uri}: missing mask, expected {expected}{alternatives}", uri=image_uri)
        samples.append(Sample(image_id, image_uri, None))
    return samples, layout.lookup(spec), digest.hexdigest()


def _list(directory: str, spec: dict[str, Any]) -> dict[str, tuple[int, int]]:
    try:
        return fs.list_stamped(directory)
    except FileNotFoundError as error:
        keys = "'root' and 'split'" if "split" in spec else "'root'"
        raise DatasetError(f"dataset {spec['name']!r}: directory {directory} does not exist (check spec keys "
                           f"{keys})", uri=directory) from error


def _by_id(files: Iterable[str], suffixes: tuple[str, ...], directory: str) -> dict[str, str]:
    """Image id -> relative path for the files with one of the suffixes (case-insensitive); others are ignored."""
    found: dict[str, str] = {}
    for path in sorted(files):
        suffix = next((s for s in suffixes if path.lower().endswith(s.lower())), None)
        if suffix is None:
            continue
        image_id = path[: -len(suffix)]
        if image_id in found:
            raise DatasetError(f"{fs.join(directory, path)} and {fs.join(directory, found[image_id])} share the id "
                               f"{image_id!r}: cannot tell which one to pair", uri=fs.join(directory, path))
        found[image_id] = path
    return found


def _of_cities(images: dict[str, str], spec: dict[str, Any], image_dir: str) -> dict[str, str]:
    available = sorted({image_id.split("/")[0] for image_id in images})
    missing = [city for city in spec["cities"] if city not in available]
    if missing:
        raise DatasetError(f"dataset {spec['name']!r}: spec key 'cities': no images for {', '.join(missing)} under "
                           f"{image_dir}; cities found: {', '.join(available)}")
    wanted = set(spec["cities"])
    return {image_id: path for image_id, path in images.items() if image_id.split("/")[0] in wanted}
