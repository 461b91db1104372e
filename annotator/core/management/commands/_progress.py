"""A tqdm progress bar as the ``progress(done, total)`` callback of exports and imports."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

from tqdm import tqdm


@contextmanager
def progress_bar(desc: str, unit: str, disable: bool = False) -> Iterator[Callable[[int, int], None]]:
    bar = tqdm(desc=desc, unit=unit, disable=disable, dynamic_ncols=True)

    def update(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        bar.close()
