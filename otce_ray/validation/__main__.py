"""``python -m otce_ray.validation [--work DIR]``: the whole validation (:mod:`otce_ray.validation.study`)."""

import sys

from otce_ray.validation.study import main

sys.exit(main())
