"""colearn 0.2.x data helpers: ``split_list_into_fractions`` and ``get_data`` (local paths only)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Sequence, Union


GAUTH_ENV_VAR_NAME = "GOOGLE_APPLICATION_CREDENTIALS"
"""0.2.x's name for the Google credentials variable; kept for imports (colearn downloads nothing)."""


class InsufficientDataError(ValueError):
    """A part of a split would hold fewer items than ``min_part_size``."""


class DownloadNotSupportedError(ValueError):
    """``get_data`` was given a remote location; colearn never downloads data at run time."""


def split_list_into_fractions(input_list: Union[Sequence[Any], Any], fractions_list: Sequence[float],
                              min_part_size: int = 1) -> List[Any]:
    """Cut ``input_list`` into consecutive parts of ``int(len * fraction)`` items each (colearn 0.2.x).

    A part never runs past the end of the list. Raises :class:`InsufficientDataError` (a ``ValueError``)
    when a part would hold fewer than ``min_part_size`` items, as 0.2.x raised.
    """
    parts = []
    start = 0
    n_items = len(input_list)
    for index, fraction in enumerate(fractions_list):
        end = min(start + int(n_items * fraction), n_items)
        if end - start < min_part_size:
            raise InsufficientDataError(
                f"fractions_list[{index}]={fraction}: part would hold {end - start} of {n_items} items, "
                f"fewer than min_part_size={min_part_size}")
        parts.append(input_list[start:end])
        start = end
    return parts


def get_data(data_dir: Union[str, Path], download_to: Union[str, Path] = "/tmp/data_download") -> Union[str, Path]:
    """Return the local path behind ``data_dir``: a ``file://`` prefix is stripped, a plain path is returned as is.

    colearn 0.2.x downloaded ``gs://`` locations; colearn never downloads data at run time, so a remote
    location raises :class:`DownloadNotSupportedError` (``download_to`` is accepted for compatibility only).
    """
    text = str(data_dir)
    if "://" in text and not text.startswith("file://"):
        raise DownloadNotSupportedError(
            f"data_dir={text!r}: downloading data is not supported; copy it to a local directory and pass its path")
    if text.startswith("file://"):
        return text[len("file://"):]
    return data_dir


__all__ = ["GAUTH_ENV_VAR_NAME", "DownloadNotSupportedError", "InsufficientDataError", "get_data", "split_list_into_fractions"]
