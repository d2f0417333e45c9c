"""The pointkd inference server: ``create_app(artifact_dir)`` (FastAPI), run by ``pointkd serve``.

The app is imported on first use, so that a parse worker (``serving.worker_main``) imports only what reads and
resamples clouds, not FastAPI and the model runtimes.
"""

from __future__ import annotations

__all__ = ["ServeSettings", "create_app"]


def __getattr__(name: str):
    if name in __all__:
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module 'serving' has no attribute {name!r}")
