"""The pointkd inference server: ``create_app(artifact_dir)`` (FastAPI), run by ``pointkd serve``."""

from .app import ServeSettings, create_app

__all__ = ["ServeSettings", "create_app"]
