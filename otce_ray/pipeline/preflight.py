"""What a run checks before any work: that it can write its output and its store, and that the output is its own.

A bucket that does not exist or a folder without write permission is found in a second, not after hours of
extraction and scoring. An output folder records the settings that write it (``settings.json``: the target and
everything that decides a score); a second run with other settings refuses to mix its results in, unless told to
overwrite, since the leaderboard would otherwise be whichever run wrote last. Models may be added or removed between
runs: that is how a zoo grows, and each model's record says what it was scored under.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from otce_ray import fs
from otce_ray.config import RunConfig

SETTINGS_FILE = "settings.json"


class OutputError(ValueError):
    """An output or store this run cannot write, or must not (it holds another run's results); said before any
    work starts."""


def check_writable(location: str, what: str) -> None:
    """Write and delete a probe object under ``location``; an ``OutputError`` naming ``what`` when that fails."""
    probe = fs.join(location, f".otce-write-check-{uuid.uuid4().hex}")
    try:
        fs.write_bytes_atomic(probe, b"")
        fs.delete(probe)
    except OSError as error:
        raise OutputError(f"{what} {location} cannot be written ({type(error).__name__}: {error})") from None


def output_settings(config: RunConfig) -> dict[str, Any]:
    """What decides the scores an output holds, as a user set it (the engine's version aside: a new release
    rescores on its own)."""
    return {"target": config.target, "otce": config.otce.to_dict(), "baselines": config.baselines.key(),
            "pixels_per_image": config.extraction.pixels_per_image}


def claim_output(config: RunConfig, overwrite: bool = False) -> None:
    """Check that the output and the store can be written and that the output is this run's (or ``overwrite``);
    then record this run's settings in the output."""
    check_writable(config.output, "output")
    check_writable(config.store, "store")
    uri = fs.join(config.output, SETTINGS_FILE)
    mine = json.loads(json.dumps(output_settings(config), default=str))
    try:
        recorded = json.loads(fs.read_bytes(uri))
    except FileNotFoundError:
        recorded = None
    except (ValueError, UnicodeDecodeError):
        recorded = {}  # unreadable: it says nothing about whose output this is
    if recorded not in (None, mine) and not overwrite:
        differing = sorted(key for key in mine if not isinstance(recorded, dict) or recorded.get(key) != mine[key])
        raise OutputError(f"output {config.output} holds the results of a run with other settings "
                          f"({', '.join(differing)} differ; see {uri}): choose another output, or overwrite it "
                          "(--overwrite)")
    if recorded != mine:
        fs.write_bytes_atomic(uri, json.dumps(mine, indent=1).encode())
