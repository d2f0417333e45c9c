"""pointkd: distil DGCNN point-cloud classifiers with LSP and deploy them.

``pointkd.load(path)`` opens a compiled artifact folder or a checkpoint as a :class:`~pointkd.inference.Model`
(``model.predict("chair.ply").label``); it is imported on first use, so ``import pointkd`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .inference import Model, Prediction, load

__version__ = "0.1.0"
__all__ = ["Model", "Prediction", "__version__", "load"]


def __getattr__(name: str) -> Any:
    if name in ("Model", "Prediction", "load"):
        from . import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'pointkd' has no attribute {name!r}")
