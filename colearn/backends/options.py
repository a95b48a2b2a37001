"""Check a run's ``backend_options`` against the backend's own keyword arguments, before anything starts.

The processes and ray backends take their options as keyword arguments; a pydantic model built from the
signature (strict types: ``timeout: "10"`` is refused, not coerced) checks them, so an unknown key or a wrong
type is a one-line error naming the key instead of a traceback from inside the backend. The local backend
takes no options; the ledger and grpc backends check their own.
"""
from __future__ import annotations

import inspect
import typing
from typing import Any, Callable, Dict, Optional

from pydantic import ConfigDict, ValidationError, create_model


def _target(backend: str) -> Optional[Callable[..., Any]]:
    if backend == "processes":
        from colearn.backends.processes import ProcessBackend

        return ProcessBackend.__init__
    if backend == "ray":
        from colearn.backends.ray_backend import RayBackend  # imports no Ray until a backend is built

        return RayBackend.__init__
    return None


def check_backend_options(backend: str, options: Dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the key when ``options`` do not fit ``backend``'s keyword arguments."""
    if backend == "local":
        if options:
            raise ValueError(f"backend_options: the local backend takes no options, got {sorted(options)} "
                             "(choose --backend processes or ray for a timeout)")
        return
    target = _target(backend)
    if target is None:  # ledger and grpc check their own options
        return
    hints = typing.get_type_hints(target)
    fields = {name: (hints.get(name, Any), param.default)
              for name, param in inspect.signature(target).parameters.items()
              if param.kind is inspect.Parameter.KEYWORD_ONLY}
    model = create_model(f"{backend}_options", __config__=ConfigDict(extra="forbid", strict=True,
                                                                       arbitrary_types_allowed=True), **fields)
    try:
        model(**options)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"])
            message = f"not an option of the {backend} backend; known: {sorted(fields)}" \
                if error["type"] == "extra_forbidden" else error["msg"]
            problems.append(f"backend_options.{key}: {message}")
        raise ValueError("; ".join(problems)) from None
