"""The pointkd inference server: ``create_app(artifact_dir)`` (FastAPI), run by ``pointkd serve``.

The app is imported on first use, so that a parse worker (``serving.worker_main``) imports only what reads and
resamples clouds, not FastAPI and the model runtimes.
"""

from __future__ import annotations

__all__ = ["ServeSettings", "create_app"]


def __getattr__(name: str):
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "ServeSettings":
        from .settings import ServeSettings

        return ServeSettings
    raise AttributeError(f"module 'serving' has no attribute {name!r}")
