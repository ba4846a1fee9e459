"""The one error bad dataset input raises, in a module of its own: the layouts raise it and the spec declares them,
so it cannot live with either."""

from __future__ import annotations


class DatasetError(ValueError):
    """Bad dataset input: the message names the spec key or the file; ``uri`` is the file, when there is one."""

    def __init__(self, message: str, uri: str | None = None):
        super().__init__(message)
        self.uri = uri
