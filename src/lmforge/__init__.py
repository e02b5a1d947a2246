"""lmforge: pretrain, fine-tune, evaluate and benchmark efficient Transformer language models.

Public API only: ``build_model``, ``get_config``, ``list_models``, ``Predictor`` (a fine-tuned model on new text,
``lmforge.predict``) and ``__version__``. Everything else is imported from its submodule (``lmforge.nn``,
``lmforge.data``, ``lmforge.train``, ...).
"""

from lmforge.models.registry import build_model, get_config, list_models
from lmforge.predict import Predictor  # torch-free at import: its methods import what they need

__version__ = "0.1.0"
__all__ = ["Predictor", "__version__", "build_model", "get_config", "list_models"]
