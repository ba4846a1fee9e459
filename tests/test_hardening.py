"""Inputs that once changed scores in silence, stalled a run or crashed it late (issue 24's probes): each gets the
behaviour a user should see. Runs on a local Ray live in tests/test_hardening_runs.py."""

from __future__ import annotations

import json
import struct
import time
import zlib

import numpy as np
import pandas as pd
import pytest
import torch

from otce_ray import fs
from otce_ray.cli import main
from otce_ray.cluster import one_line
from otce_ray.config import ConfigError, load_config, parse_config
from otce_ray.datasets.images import read_image
from otce_ray.evaluation import read_table
from otce_ray.leaderboard import ModelResult, build_leaderboard
from otce_ray.leaderboard.render import leaderboard_html, leaderboard_markdown
from otce_ray.leaderboard.writers import write_leaderboard, write_per_class
from otce_ray.models import load_model
from otce_ray.pipeline.preflight import OutputError, claim_output
from otce_ray.scoring.estimator import otce_score
from otce_ray.scoring.repeat import RepeatRecord
from otce_ray.scoring.settings import OTCESettings
from otce_ray.extraction import extract_pixels
from otce_ray.store import part_uri, pixel_table, read_pixels, write_manifest, write_part


def _png16(values: np.ndarray) -> bytes:
    """A 16-bit PNG (greyscale for (H, W), RGB for (H, W, 3)), written by hand: Pillow cannot write 16-bit RGB."""
    height, width = values.shape[:2]
    colour = 0 if values.ndim == 2 else 2
    raw = b"".join(b"\x00" + values[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("shape", [(6, 7), (6, 7, 3)], ids=["grey", "rgb"])
def test_16_bit_images_read_as_their_8_bit_originals(tmp_path, shape):
    original = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)
    (tmp_path / "wide.png").write_bytes(_png16(original.astype(np.uint16) * 257))
    expected = np.repeat(original[..., None], 3, axis=2) if original.ndim == 2 else original
    np.testing.assert_array_equal(read_image(str(tmp_path / "wide.png")), expected)  # not solid white


class _Scaled(torch.nn.Module):
    """A small conv net whose features are multiplied by ``scale``: the same network in other units."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x)) * self.scale


def _stored_score(tmp_path, scale: float) -> float:
    """Extract a few images through the scaled network into a float16 store, read it back and score it."""
    rng = np.random.default_rng(1)
    items = [type("Item", (), {"image": rng.integers(0, 256, (24, 32, 3), dtype=np.uint8),
                               "label": rng.integers(0, 4, (24, 32)).astype(np.uint8), "image_id": f"im{i}"})()
             for i in range(6)]
    path = tmp_path / f"scaled{scale:g}.pt"
    torch.jit.script(_Scaled(scale)).save(str(path))
    columns = extract_pixels(load_model({"name": "s", "format": "torchscript", "path": str(path)}), items,
                             pixels_per_image=100, batch_size=3, seed=0)
    store = str(tmp_path / f"store{scale:g}")
    for dataset, rows in (("src", slice(0, 300)), ("tgt", slice(300, 600))):
        part = {name: getattr(columns, name)[rows] for name in ("image_ids", "rows", "cols", "labels", "features")}
        write_part(part_uri(store, dataset, "s", "k", 0), pixel_table(**part, logits=None, metadata={"key": "k"}))
        write_manifest(store, dataset, "s", {"key": "k", "feature_dim": 8, "logit_dim": None, "rows": 300,
                                             "images": 3, "parts": [{"file": "part-00000.parquet", "rows": 300}]})
    source, target = read_pixels(store, "src", "s"), read_pixels(store, "tgt", "s")
    return otce_score(source.features, source.labels, target.features, target.labels, n_pixels=250, repeats=2,
                      device="cpu").score


def test_the_score_does_not_depend_on_the_features_units_through_a_float16_store(tmp_path):
    """Features x 1e-8 underflowed to zero in float16 (-1.62 instead of -1.09) and x 1e6 overflowed it; each part
    is now stored scaled by a power of two."""
    plain = _stored_score(tmp_path, 1.0)
    for scale in (1e-8, 1e6):
        assert _stored_score(tmp_path, scale) == pytest.approx(plain, abs=2e-3), scale


def _record(repeat: int, score: float, n: int) -> RepeatRecord:
    return RepeatRecord(repeat=repeat, score=score, conditional_entropy=-score, transport_cost=1.0, iterations=10,
                        marginal_error=1e-4, converged=True, epsilon=0.01, cost_scale=1.0, n_source=n, n_target=n,
                        seconds=0.1, tolerance=1e-3, source_classes=(0, 1), target_classes=(0, 1),
                        joint=((0.4, 0.1), (0.1, 0.4)))


def test_repeats_of_the_same_pixels_give_no_interval_and_no_group():
    """300 stored rows and n_pixels 5000: every repeat draws every row, so they agree exactly; the row records the
    pixels used, says why, and shows no interval (its zero width would claim a certainty that does not exist)."""
    settings = OTCESettings(n_pixels=5000, repeats=3)
    same = ModelResult.from_repeats(model="small", source="s", settings=settings,
                                    records=[_record(k, -0.8, 300) for k in range(3)])
    other = ModelResult.from_repeats(model="big", source="s", settings=settings,
                                     records=[_record(k, -0.9 - 0.01 * k, 5000) for k in range(3)])
    assert same.identical_repeats and (same.n_source, same.n_target) == (300, 300)
    assert "the source store holds 300 valid pixels, fewer than n_pixels 5000" in same.warnings[0]
    assert "drew the same pixels" in same.warnings[-1]
    board = build_leaderboard([same, other]).set_index("model")
    assert board.loc["small", "otce"] == pytest.approx(-0.8) and pd.isna(board.loc["small", "otce_ci_low"])
    assert pd.isna(board.loc["small", "group"]) and board.loc["big", "group"] == 1  # it starts no group
    page = leaderboard_html(build_leaderboard([same, other]))
    assert "small: -0.8000, no interval, no group" in page and '<tr class="no-group">' in page
    assert "| small |" in leaderboard_markdown(build_leaderboard([same, other]))


def test_s3_paths_with_dot_segments_are_refused(tmp_path):
    base = {"store": "s3://rt-work/store", "target": {"name": "t", "format": "gta5", "root": "s3://rt-data/t"},
            "models": [{"name": "m", "format": "torchscript", "path": "s3://rt-work/m.pt",
                        "source": {"name": "s", "format": "gta5", "root": "s3://rt-data/s"}}]}
    for output in ("s3://rt-work/jail/out/../../escaped-out", "s3://rt-work/../rt-data/injected-out",
                   "s3://rt-work/./out"):
        with pytest.raises(ConfigError, match=r"output: S3 URI .* has a '\.' or '\.\.' segment"):
            parse_config({**base, "output": output}, base_dir=str(tmp_path))
    with pytest.raises(ValueError, match="has a '.' or '..' segment"):
        fs.resolve("s3://rt-work/a/../b")  # the library path too


def test_csv_cells_that_would_start_a_formula_are_neutralised(tmp_path):
    result = ModelResult(model="m", source="s", architecture="=HYPERLINK(\"http://x\")", scores=(-1.0, -1.1),
                         warnings=("@SUM(1)",))
    board = build_leaderboard([result])
    write_leaderboard(str(tmp_path), board)
    write_per_class(str(tmp_path), pd.DataFrame({"model": ["m"], "class_name": ["+cmd"], "contribution": [-0.5]}))
    csv = pd.read_csv(tmp_path / "leaderboard.csv")
    assert csv.loc[0, "architecture"] == "'=HYPERLINK(\"http://x\")" and csv.loc[0, "warnings"] == "'@SUM(1)"
    assert csv.loc[0, "otce"] == pytest.approx(-1.05)  # numbers stay numbers, negative ones too
    per_class = pd.read_csv(tmp_path / "per_class.csv")
    assert per_class.loc[0, "class_name"] == "'+cmd" and per_class.loc[0, "contribution"] == -0.5


@pytest.mark.parametrize("section, key, value, bound", [
    ("otce", "n_pixels", 10**20, "from 2 to 10000000"), ("otce", "repeats", 10**9, "from 1 to 1000"),
    ("baselines", "n_pixels", 10**20, "from 2 to 10000000"), ("extraction", "batch_size", 10**7, "from 1 to 4096"),
])
def test_integers_have_bounds_no_run_could_need_to_pass(tmp_path, section, key, value, bound):
    raw = {"store": "s", "output": "o", "target": {"name": "t", "format": "gta5", "root": str(tmp_path)},
           "models": [{"name": "m", "format": "builtin", "architecture": "unet",
                       "source": {"name": "s", "format": "gta5", "root": str(tmp_path)}}], section: {key: value}}
    with pytest.raises(ConfigError, match=rf"{section}\.{key}: expected an integer {bound}"):
        parse_config(raw, base_dir=str(tmp_path))


def test_names_too_long_for_a_file_name_are_refused_at_config_time(tmp_path):
    raw = {"store": "s", "output": "o", "target": {"name": "t", "format": "gta5", "root": str(tmp_path)},
           "models": [{"name": "m" * 250, "format": "builtin", "architecture": "unet",
                       "source": {"name": "s", "format": "gta5", "root": str(tmp_path)}}]}
    with pytest.raises(ConfigError, match=r"models\[0\]\.name: expected a name of at most 128 letters"):
        parse_config(raw, base_dir=str(tmp_path))


def test_errors_in_result_rows_are_one_line_without_colour_or_traceback():
    class Wrapped(Exception):
        cause = None

    coloured = Wrapped("\x1b[36mray::score_repeat()\x1b[39m (pid=1, ip=127.0.0.1)\nTraceback (most recent call last):\n"
                       '  File "x.py", line 3, in f\n    raise OSError("File name too long")\nOSError: File name too long')
    assert one_line(coloured) == "OSError: File name too long"
    wrapped = Wrapped("ray::task() failed")
    wrapped.cause = ValueError("\x1b[31mbad\x1b[0m value\nmore")
    assert one_line(wrapped) == "ValueError: bad value"


def test_model_names_that_look_like_missing_values_stay_names(tmp_path):
    path = tmp_path / "board.csv"
    path.write_text("model,otce,leep\nNA,-1.0,\nnull,-2,3\nnan,,4\nNone,-3,NA\n")
    table = read_table(str(path))
    assert list(table.model) == ["NA", "null", "nan", "None"]
    assert table.otce.isna().tolist() == [False, False, True, False] and table.leep.isna().sum() == 2


def _raw_run(tmp_path, output: str, **otce) -> dict:
    return {"store": str(tmp_path / "store"), "output": output,
            "target": {"name": "t", "format": "gta5", "root": str(tmp_path)}, "otce": otce,
            "models": [{"name": "m", "format": "builtin", "architecture": "unet",
                        "source": {"name": "s", "format": "gta5", "root": str(tmp_path)}}]}


def test_an_output_that_cannot_be_written_is_found_before_any_work(tmp_path, s3_endpoint):
    config = parse_config(_raw_run(tmp_path, "s3://missing-bucket/out"), base_dir=str(tmp_path))
    started = time.monotonic()
    with pytest.raises(OutputError, match=r"^output s3://missing-bucket/out cannot be written"):
        claim_output(config)
    assert time.monotonic() - started < 30
    (tmp_path / "run.yaml").write_text(json.dumps(_raw_run(tmp_path, "s3://missing-bucket/out")))
    assert main(["score", "--config", str(tmp_path / "run.yaml"), "--quiet"]) == 2  # one line, exit 2


def test_an_output_refuses_a_run_with_other_settings_unless_told_to_overwrite(tmp_path):
    output = str(tmp_path / "out")
    claim_output(parse_config(_raw_run(tmp_path, output, n_pixels=200), base_dir=str(tmp_path)))
    claim_output(parse_config(_raw_run(tmp_path, output, n_pixels=200), base_dir=str(tmp_path)))  # the same: fine
    other = parse_config(_raw_run(tmp_path, output, n_pixels=300), base_dir=str(tmp_path))
    with pytest.raises(OutputError, match=r"other settings \(otce differ; see .*settings\.json\).*--overwrite"):
        claim_output(other)
    claim_output(other, overwrite=True)
    assert json.loads((tmp_path / "out" / "settings.json").read_text())["otce"]["n_pixels"] == 300


def test_a_yaml_alias_bomb_is_refused_in_seconds(tmp_path):
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\n")
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"expands to more than 100,000 values through its YAML aliases"):
        load_config(str(tmp_path / "bomb.yaml"))
    assert time.monotonic() - started < 20
    (tmp_path / "shared.yaml").write_text("a: &spec {x: 1}\nb: *spec\n")  # a plain alias is still fine
    assert set(load_config.__globals__["_read_yaml"](str(tmp_path / "shared.yaml"))[0]) == {"a", "b"}


def test_an_interrupted_run_says_how_to_resume_in_one_line(tmp_path, monkeypatch, capsys):
    import otce_ray.pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(otce_ray.pipeline, "run", interrupted)
    (tmp_path / "run.yaml").write_text(json.dumps(_raw_run(tmp_path, str(tmp_path / "out"))))
    assert main(["score", "--config", str(tmp_path / "run.yaml")]) == 130
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "run the same command again to resume" in error
    assert "Traceback" not in error


def test_files_named_in_kwargs_enter_the_models_fingerprint(tmp_path):
    from otce_ray.models import ModelSpec
    from otce_ray.models.identity import model_identity

    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"first")
    spec = ModelSpec.from_dict({"name": "k", "format": "python", "entrypoint": "test_extraction_nets:tiny_backbone",
                                "kwargs": {"options": {"weights": str(weights)}, "note": "not a file"}})
    before = model_identity(spec)
    assert list(before["files"]) == [str(weights)]
    weights.write_bytes(b"retrained")
    assert model_identity(spec)["files"] != before["files"]  # a retrained file is noticed, the score redone


def test_zoo_scan_follows_no_link_and_lists_unreadable_folders(tmp_path, monkeypatch):
    import os

    from otce_ray.models.scan import scan_zoo

    zoo = tmp_path / "zoo"
    (zoo / "locked").mkdir(parents=True)
    torch.save(torch.nn.Conv2d(3, 4, 1).state_dict(), tmp_path / "outside.pt")
    os.symlink(zoo, zoo / "loop")  # a loop: once listed ~40 levels deep
    os.symlink(tmp_path / "outside.pt", zoo / "out.pt")
    real_scandir = os.scandir

    def scandir(path):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    scan = scan_zoo(str(zoo))
    reasons = {os.path.basename(item.uri): item.reason for item in scan.unrecognised}
    assert scan.models == [] and set(reasons) == {"loop", "out.pt", "locked"}
    assert reasons["loop"].startswith("a link, not followed: it leads inside the root")
    assert reasons["out.pt"] == f"a link, not followed: it leads outside the root ({tmp_path / 'outside.pt'})"
    assert reasons["locked"] == "folder not read: PermissionError: Permission denied"
