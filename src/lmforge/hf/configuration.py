"""``LmforgeConfig``: a ``transformers`` config that carries an lmforge architecture name, task, config dict and
(for a fine-tuned model) its task head.

One subclass per registered architecture (``model_type = "lmforge-<arch>"``), made by ``config_class_for``. The
lmforge dataclass stays the source of truth (R1): the HF config only stores its fields (``lmforge_config``), the
head entry of a fine-tuned checkpoint (``lmforge_head``: kind, labels, pooling, dropout, use_pooler) and the few
HF-level fields that tools read (``vocab_size``, ``hidden_size``, ``id2label``, ...), copied from them.

This file imports nothing from lmforge: ``lmforge.hf.remote`` copies it as is into an exported directory
(``configuration_lmforge.py``), so the same ``config.json`` loads with ``import lmforge.hf`` (registered classes)
or with ``trust_remote_code=True`` (the copied code) where lmforge is not installed.
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

__all__ = ["LmforgeConfig", "config_class_for"]

_MIRRORED = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "max_position_embeddings")


class LmforgeConfig(PretrainedConfig):
    model_type = "lmforge"

    def __init__(
        self,
        lmforge_model: str | None = None,
        lmforge_task: str = "mlm",
        lmforge_config: dict[str, Any] | None = None,
        lmforge_head: dict[str, Any] | None = None,
        **kwargs: Any,
    ):
        self.lmforge_model = lmforge_model
        self.lmforge_task = lmforge_task
        self.lmforge_config = dict(lmforge_config or {})
        self.lmforge_head = dict(lmforge_head) if lmforge_head else None
        for key in _MIRRORED:
            if key in self.lmforge_config:
                kwargs.setdefault(key, self.lmforge_config[key])
        labels = (self.lmforge_head or {}).get("labels")
        if labels:  # label names for pipelines; a span head has none (start/end)
            kwargs.setdefault("id2label", {i: str(label) for i, label in enumerate(labels)})
            kwargs.setdefault("label2id", {str(label): i for i, label in enumerate(labels)})
        kwargs.setdefault("tie_word_embeddings", False)  # our heads tie internally; HF must not re-tie
        super().__init__(**kwargs)


_CLASSES: dict[str, type[LmforgeConfig]] = {}


def config_class_for(arch: str) -> type[LmforgeConfig]:
    """The ``LmforgeConfig`` subclass with ``model_type = "lmforge-<arch>"`` (one per architecture, cached)."""
    if arch not in _CLASSES:
        name = "Lmforge" + "".join(part.capitalize() for part in arch.replace("-", "_").split("_")) + "Config"
        # an own __init__: transformers 5 replaces the __init__ of a config subclass without one by its dataclass
        # init, which would skip ours (the mirrored fields, id2label from the head's labels)
        attrs = {"model_type": f"lmforge-{arch}", "__module__": __name__, "__init__": LmforgeConfig.__init__}
        _CLASSES[arch] = type(name, (LmforgeConfig,), attrs)
    return _CLASSES[arch]
