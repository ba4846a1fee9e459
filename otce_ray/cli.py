"""The ``otce-ray`` command line. Parsers live here; each command's work is imported lazily so ``--help`` is fast."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Callable, Sequence


def _bench_ot(args: argparse.Namespace) -> int:
    from otce_ray.bench.ot import main as bench_ot

    return bench_ot(sizes=args.sizes, dim=args.dim, epsilon=args.epsilon, seed=args.seed, device=args.device,
                    tolerance=args.tolerance, corpus=args.corpus)


def _bench_extract(args: argparse.Namespace) -> int:
    from otce_ray.bench.extract import main as bench_extract

    return bench_extract(arch=args.arch, images=args.images, size=args.size, batch_size=args.batch_size,
                         pixels_per_image=args.pixels_per_image, num_gpus=args.num_gpus, seed=args.seed)


def _bench_cluster(args: argparse.Namespace) -> int:
    from otce_ray.bench.cluster import main as bench_cluster

    return bench_cluster(models=args.models, nodes=args.nodes, images=args.images)


def _bench_racing(args: argparse.Namespace) -> int:
    from otce_ray.bench.racing import main as bench_racing

    given = {"noise": args.noise, "stages": args.stages}
    return bench_racing(seeds=args.seeds, images=args.images, size=args.size, top_k=args.top_k,
                        n_pixels=args.n_pixels, work=args.work, **{k: v for k, v in given.items() if v is not None})


def _synth(args: argparse.Namespace) -> int:
    import time

    from otce_ray.datasets.synth import DOMAINS, write_benchmark

    start = time.perf_counter()
    cities = write_benchmark(args.out, args.cities, args.images_per_city, args.size, args.seed)
    print(f"wrote {len(cities) * args.images_per_city} images of {args.size[0]}x{args.size[1]} to {args.out} "
          f"in {time.perf_counter() - start:.1f} s (Cityscapes layout, split train); cities:")
    for city in cities:
        print(f"  {city}: {DOMAINS[city].family}, {DOMAINS[city].condition}")
    return 0


def _score(args: argparse.Namespace) -> int:
    from otce_ray.config import load_config
    from otce_ray.leaderboard.decisions import summarise
    from otce_ray.leaderboard.render import leaderboard_markdown
    from otce_ray.pipeline import run

    config = load_config(args.config, preset=args.preset)
    board = run(config, progress=not args.quiet, overwrite=args.overwrite)
    boards = {target: board[board["target"] == target].drop(columns="target").reset_index(drop=True)
              for target in board["target"].unique()} if config.targets else {None: board}
    for target, one in boards.items():
        print(leaderboard_markdown(one, title="OTCE leaderboard" + (f": {target}" if target else ""),
                                   decisions=summarise(one, config.decisions)))
    print(f"leaderboard{'s' if config.targets else ''} written to {config.output}"
          + (" (one folder per target; matrix.csv, matrix.html)" if config.targets else ""))
    return 0 if (board["status"] == "ok").any() else 1


def _demo(args: argparse.Namespace) -> int:
    from otce_ray.demo import run_demo

    return run_demo(args.out)


def _extract(args: argparse.Namespace) -> int:
    from otce_ray.config import load_config
    from otce_ray.pipeline import extract

    summaries = extract(load_config(args.config))
    for summary in summaries:
        line = f"{summary.model:<24} {summary.dataset:<16} {summary.status:<7} {summary.rows:>9} rows"
        print(line + (f"  {summary.error}" if summary.error else ""))
    return 0 if all(summary.status != "failed" for summary in summaries) else 1


def _evaluate(args: argparse.Namespace) -> int:
    from otce_ray.evaluation import evaluate_to, evaluation_markdown, read_table

    evaluation = evaluate_to(args.out, read_table(args.leaderboard), read_table(args.ground_truth),
                             target_measure=args.measure, metrics=args.metrics, seed=args.seed)
    print(evaluation_markdown(evaluation))
    print(f"evaluation written to {args.out}")
    return 0


def _finetune(args: argparse.Namespace) -> int:
    import time

    from otce_ray import fs
    from otce_ray.config import load_config
    from otce_ray.finetune import GROUND_TRUTH_FILE, FineTuneSettings, ground_truth

    config = load_config(args.config)
    overrides = {"train_images": args.train_images, "eval_images": args.eval_images, "steps": args.steps,
                 "seed": args.seed}
    settings = FineTuneSettings(**{key: value for key, value in overrides.items() if value is not None})
    start = time.perf_counter()
    table = ground_truth(config, settings, args.out)
    print(table.to_string(index=False))
    print(f"{len(table)} model{'s' * (len(table) != 1)} fine-tuned in {time.perf_counter() - start:.0f} s ({settings}); ground truth written "
          f"to {args.out or fs.join(config.output, GROUND_TRUTH_FILE)}")
    return 0 if (table["status"] == "ok").any() else 1


def _calibrate(args: argparse.Namespace) -> int:
    from otce_ray import fs
    from otce_ray.config import load_config
    from otce_ray.evaluation.calibration import CALIBRATION_CSV, calibrate
    from otce_ray.finetune import FineTuneSettings

    config = load_config(args.config)
    overrides = {"eval_images": args.eval_images, "steps": args.steps}
    settings = FineTuneSettings(**{key: value for key, value in overrides.items() if value is not None})
    table = calibrate(config, models=args.models, seed=args.seed, settings=settings, measure=args.measure)
    print(table.attrs["models"].to_string(index=False), end="\n\n")
    print(table.drop(columns=["note"]).to_string(index=False), end="\n\n")
    print("\n".join(table.attrs["summary"]))
    print(f"calibration written to {fs.join(config.output, CALIBRATION_CSV)} (and calibration.html)")
    return 0 if (table.attrs["models"]["status"] == "ok").sum() >= 3 else 1


def _zoo_scan(args: argparse.Namespace) -> int:
    import collections

    import yaml

    from otce_ray import fs
    from otce_ray.models.scan import manifest_yaml, scan_zoo

    source = yaml.safe_load(args.source) if args.source else None
    if source is not None and not isinstance(source, dict):
        raise ValueError(f"--source must be a YAML mapping (a dataset spec), got {args.source!r}")
    scan = scan_zoo(args.root)
    text = manifest_yaml(scan, source)
    if args.out:
        fs.write_bytes_atomic(args.out, text.encode())
    else:
        print(text, end="")
    formats = collections.Counter(model.entry["format"] for model in scan.models)
    counts = ", ".join(f"{count} {name}" for name, count in sorted(formats.items()))
    print(f"{len(scan.models)} models recognised under {scan.root}" + (f" ({counts})" if counts else "")
          + (f"; models_file written to {args.out}" if args.out else ""), file=sys.stderr)
    for item in scan.unrecognised:
        print(f"  not recognised: {item.uri}: {item.reason}", file=sys.stderr)
    return 0 if scan.models else 1


def _height_x_width(text: str) -> tuple[int, int]:
    height, sep, width = text.lower().partition("x")
    if not (sep and height.isdigit() and width.isdigit()):
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 128x256, got {text!r}")
    return int(height), int(width)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otce-ray", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    bench = commands.add_parser("bench", help="benchmarks that print ratios against a peer run side by side")
    benches = bench.add_subparsers(dest="bench", required=True)
    ot_bench = benches.add_parser("ot", help="our streamed OT solver vs POT on the same pixel sets")
    ot_bench.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 5000, 10000])
    ot_bench.add_argument("--dim", type=int, default=64)
    ot_bench.add_argument("--epsilon", type=float, default=None,
                          help="relative eps of the pixels corpus (default 0.05: the figures in docs/performance.md)")
    ot_bench.add_argument("--tolerance", type=float, default=None,
                          help="L1 marginal tolerance of both solvers (default: the engine default)")
    ot_bench.add_argument("--seed", type=int, default=0)
    ot_bench.add_argument("--device", default="auto")
    ot_bench.add_argument("--corpus", choices=("pixels", "stress"), default="pixels",
                          help="pixels: clustered pixel sets at --sizes; stress: the convergence stress corpus")
    ot_bench.set_defaults(handler=_bench_ot)
    extract_bench = benches.add_parser("extract", help="images/s of Ray extraction vs a bare torch loop")
    extract_bench.add_argument("--arch", default="unet", help="built-in architecture (unet, segnet, fcn8s, pspnet)")
    extract_bench.add_argument("--images", type=int, default=256)
    extract_bench.add_argument("--size", type=_height_x_width, default=(128, 256), help="HEIGHTxWIDTH")
    extract_bench.add_argument("--batch-size", type=int, default=8)
    extract_bench.add_argument("--pixels-per-image", type=int, default=1000)
    extract_bench.add_argument("--num-gpus", type=float, default=None, help="per task (default: 1 with CUDA, else 0)")
    extract_bench.add_argument("--seed", type=int, default=0)
    extract_bench.set_defaults(handler=_bench_extract)
    cluster_bench = benches.add_parser("cluster", help="runs of M models on a local multi-node cluster, data on S3")
    cluster_bench.add_argument("--models", type=int, nargs="+", default=[20, 200, 1000])
    cluster_bench.add_argument("--nodes", type=int, default=2, help="worker nodes (one CPU each)")
    cluster_bench.add_argument("--images", type=int, default=4, help="images per dataset")
    cluster_bench.set_defaults(handler=_bench_cluster)
    racing_bench = benches.add_parser("racing", help="a race against the full run on a zoo of 100+ models: top-k "
                                                     "recall, extraction images and repeat work")
    racing_bench.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="one race and full run each")
    racing_bench.add_argument("--images", type=int, default=32, help="images per city")
    racing_bench.add_argument("--size", type=_height_x_width, default=(64, 128), help="HEIGHTxWIDTH")
    racing_bench.add_argument("--top-k", type=int, default=5)
    racing_bench.add_argument("--noise", type=float, nargs="+", default=None,
                              help="weight-noise levels of each trained model's copies (0: the original; default "
                                   "7 levels, 112 models)")
    racing_bench.add_argument("--n-pixels", type=int, default=1000, help="the full run's N (K is 10)")
    racing_bench.add_argument("--stages", type=json.loads, default=None,
                              help="the race's stages as JSON, e.g. '[{\"images\": 0.125, \"repeats\": 4}]' "
                                   "(default: racing's defaults)")
    racing_bench.add_argument("--work", default=None, help="keep the data, stores and outputs here (default: a "
                                                           "temporary folder)")
    racing_bench.set_defaults(handler=_bench_racing)

    score = commands.add_parser("score", help="extract what is missing, score every model, write the leaderboard")
    score.add_argument("--config", required=True, help="run config (YAML, local or s3://)")
    score.add_argument("--quiet", action="store_true", help="no progress bar")
    score.add_argument("--overwrite", action="store_true",
                       help="write into an output that holds the results of a run with other settings")
    score.add_argument("--preset", default=None,
                       help="score with a named OTCE estimator instead of the config's: paper (the authors' exact OT "
                            "on raw features, N 10000, K 10) or paper-sinkhorn (their eps 0.1 on the raw cost)")
    score.set_defaults(handler=_score)
    demo = commands.add_parser("demo", help="score the shipped zoo on the procedural benchmark (local Ray, ~2 min)")
    demo.add_argument("--out", default="otce-demo", help="folder for the benchmark, stores and leaderboard")
    demo.set_defaults(handler=_demo)
    extract = commands.add_parser("extract", help="fill the pixel stores of every model in a run config")
    extract.add_argument("--config", required=True, help="run config (YAML, local or s3://)")
    extract.set_defaults(handler=_extract)

    evaluation = commands.add_parser("evaluate", help="correlate leaderboard metrics with fine-tuning ground truth")
    evaluation.add_argument("--leaderboard", required=True, help="leaderboard .csv or .parquet (local or s3://)")
    evaluation.add_argument("--ground-truth", required=True, help="ground_truth .csv or .parquet (local or s3://)")
    evaluation.add_argument("--out", required=True, help="output directory or s3:// prefix")
    evaluation.add_argument("--measure", default="log_likelihood", help="ground-truth column (default log_likelihood)")
    evaluation.add_argument("--metrics", nargs="+", default=None, help="metric columns (default: every known one)")
    evaluation.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    evaluation.set_defaults(handler=_evaluate)

    finetune = commands.add_parser("finetune", help="ground truth: few-shot fine-tune every model on the target")
    finetune.add_argument("--config", required=True, help="run config (YAML, local or s3://)")
    finetune.add_argument("--train-images", type=int, default=None, help="target images to train on (default 20)")
    finetune.add_argument("--eval-images", type=int, default=None, help="held-out images to score on (default 50)")
    finetune.add_argument("--steps", type=int, default=None, help="training steps (default: the fixed schedule's)")
    finetune.add_argument("--seed", type=int, default=None, help="picks the images, new heads, batches (default 0)")
    finetune.add_argument("--out", default=None, help="CSV path or s3:// URI (default: OUTPUT/ground_truth.csv)")
    finetune.set_defaults(handler=_finetune)

    calibration = commands.add_parser("calibrate", help="check the leaderboard on your own data: fine-tune a few "
                                                        "models spread over it and correlate every ordering")
    calibration.add_argument("--config", required=True, help="the run config of the leaderboard (YAML)")
    calibration.add_argument("--models", type=int, default=6, help="models to fine-tune, at least 3 (default 6)")
    calibration.add_argument("--seed", type=int, default=0, help="draws the models within their strata (default 0)")
    calibration.add_argument("--eval-images", type=int, default=None, help="held-out images (default 50)")
    calibration.add_argument("--steps", type=int, default=None, help="training steps (default: the fixed schedule's)")
    calibration.add_argument("--measure", default="log_likelihood",
                             choices=("log_likelihood", "miou", "pixel_accuracy"),
                             help="the fine-tuned result to correlate with (default log_likelihood)")
    calibration.set_defaults(handler=_calibrate)

    zoo = commands.add_parser("zoo", help="model zoos in their native formats")
    zoo_commands = zoo.add_subparsers(dest="zoo", required=True)
    zoo_scan = zoo_commands.add_parser("scan", help="recognise the models in a folder of checkpoints and write a "
                                                    "models_file (unrecognised files listed with the reason)")
    zoo_scan.add_argument("root", help="a local folder or s3:// prefix")
    zoo_scan.add_argument("--out", default=None, help="the models_file to write (local or s3://; default: stdout)")
    zoo_scan.add_argument("--source", default=None,
                          help="the dataset spec every model was trained on, as YAML, e.g. "
                               "'{name: city, format: cityscapes, root: data, split: train}' (default: left to add)")
    zoo_scan.set_defaults(handler=_zoo_scan)

    synth = commands.add_parser("synth", help="write the procedural multi-domain street-scene benchmark")
    synth.add_argument("--out", required=True, help="output directory or s3:// prefix (Cityscapes layout)")
    synth.add_argument("--cities", type=int, default=8, help="how many cities (domains), families alternating")
    synth.add_argument("--images-per-city", type=int, default=50)
    synth.add_argument("--size", type=_height_x_width, default=(128, 256), help="HEIGHTxWIDTH (default 128x256)")
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(handler=_synth)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return int(handler(args) or 0)
    except (ValueError, FileNotFoundError) as error:
        if os.environ.get("OTCE_RAY_DEBUG"):  # the full traceback, for telling a bug from a bad input
            raise
        print(f"otce-ray: error: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("otce-ray: interrupted; every model result finished so far is recorded: run the same command again to "
              "resume where it stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
