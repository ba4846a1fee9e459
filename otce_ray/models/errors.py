"""The one error a model that cannot be loaded or run raises: it names the model, so a run records it against that
model and goes on with the others."""

from __future__ import annotations


class ModelError(ValueError):
    """A model that cannot be loaded or run; the message names the model and the cause."""

    def __init__(self, model: str, cause: str) -> None:
        super().__init__(f"model {model!r}: {cause}")
        self.model = model
