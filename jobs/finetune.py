"""Ray Job entrypoint for the ground truth: ``ray job submit --working-dir . -- python jobs/finetune.py --config run.yaml``.

Fine-tunes every model of the run config on its target (one Ray task each) and writes ``ground_truth.csv``.
Connects to the cluster in RAY_ADDRESS (set by the job supervisor) or starts a local Ray.
"""

import sys
from pathlib import Path

# Run the otce_ray shipped in the job's working directory, not whatever version the image has installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from otce_ray.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["finetune", *sys.argv[1:]]))
