"""The driver's progress line: models extracted and scored out of the total, with an ETA (tqdm on stderr)."""

from __future__ import annotations

from tqdm import tqdm


class Progress:
    def __init__(self, total: int, done: int = 0, enabled: bool = True) -> None:
        self._extracted = done
        self._failed = 0
        self._bar = tqdm(total=total, initial=done, unit="model", desc="scored", disable=not enabled,
                         dynamic_ncols=True)
        self._show()

    def extracted(self) -> None:
        self._extracted += 1
        self._show()

    def scored(self, failed: bool = False) -> None:
        self._failed += failed
        self._bar.update(1)
        self._show()

    def _show(self) -> None:
        self._bar.set_postfix_str(f"extracted {self._extracted}/{self._bar.total}, failed {self._failed}")

    def close(self) -> None:
        self._bar.close()
