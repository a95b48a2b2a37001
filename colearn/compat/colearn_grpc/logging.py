"""0.2.x's logging helpers: ``get_logger(name)`` and ``set_log_levels({"default": "INFO", name: level})``."""
from __future__ import annotations

import logging
import sys
from typing import Dict

_log_levels: Dict[str, str] = {}
_loggers: Dict[str, logging.Logger] = {}


def _apply_level(name: str, logger: logging.Logger) -> None:
    level = _log_levels.get(name, _log_levels.get("default"))
    if level is not None:
        logger.setLevel(logging.getLevelName(level.upper()))


def get_logger(name: str, name_length: int = 1) -> logging.Logger:
    """A logger named by the last ``name_length`` dotted parts of ``name``, printing ``level: message`` to
    stdout (as 0.2.x did); its level follows :func:`set_log_levels`."""
    short = ".".join(name.split(".")[-name_length:])
    logger = logging.getLogger(short)
    handler = logging.StreamHandler(stream=sys.stdout)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logger.handlers = [handler]
    _apply_level(short, logger)
    _loggers[short] = logger
    return logger


def set_log_levels(config: Dict[str, str]) -> None:
    """Set levels by logger name (``"default"`` for every logger not named)."""
    global _log_levels
    _log_levels = {**config}
    for name, logger in _loggers.items():
        _apply_level(name, logger)
