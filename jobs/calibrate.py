"""Ray Job entrypoint for the calibration:
``ray job submit --working-dir . -- python jobs/calibrate.py --config run.yaml``.

Fine-tunes a few models spread over the run's leaderboard on its target (one Ray task each, resumable) and writes
``calibration.csv`` and ``calibration.html`` next to the leaderboard. Connects to the cluster in RAY_ADDRESS (set by
the job supervisor) or starts a local Ray.
"""

import sys
from pathlib import Path

# Run the otce_ray shipped in the job's working directory, not whatever version the image has installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from otce_ray.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["calibrate", *sys.argv[1:]]))
