"""BERT and RoFormer baselines, registered as ``"bert"``.

RoFormer is the same registered name with a ``roformer-*`` preset (``position_embedding_type="rotary"``):
``lmforge.build_model("bert", task="mlm", preset="roformer-tiny")``. Tasks: ``backbone``, ``mlm``, ``clm``.
See ``docs/architectures/bert.md``.
"""

from lmforge.models.bert.config import PRESETS, BertConfig
from lmforge.models.bert.model import BertModel, build_clm, build_mlm, init_weights
from lmforge.models.registry import register

_BERT_DESCRIPTION = "BERT (absolute positions) / RoFormer (interleaved RoPE) post-LN baseline; MLM and causal LM."
_BERT_TASKS = {"backbone": BertModel, "mlm": build_mlm, "clm": build_clm}
register("bert", BertConfig, _BERT_TASKS, presets=PRESETS, description=_BERT_DESCRIPTION)

__all__ = ["PRESETS", "BertConfig", "BertModel", "build_clm", "build_mlm", "init_weights"]
