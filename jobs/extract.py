"""Ray Job entrypoint for extraction alone: ``ray job submit --working-dir . -- python jobs/extract.py --config run.yaml``.

Fills the Parquet pixel stores of every model in the run config; a later ``jobs/score.py`` reuses them.
"""

import sys
from pathlib import Path

# Run the otce_ray shipped in the job's working directory, not whatever version the image has installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from otce_ray.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["extract", *sys.argv[1:]]))
