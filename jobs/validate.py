"""The whole validation of docs/validation.md in one resumable command, on a local Ray.

    python jobs/validate.py [--work /tmp/otce-validation] [--workers 2] [--selection-only]

The steps and what they write are in ``otce_ray/validation/study.py``; everything is kept under ``--work``, so a
killed run resumes where it stopped. Same as ``python -m otce_ray.validation``, but runs this checkout's otce_ray.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run the otce_ray of this checkout, not whatever version is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from otce_ray.validation.study import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
