"""Architecture-agnostic heads over backbone hidden states, with their losses (``lm`` for MLM/CLM)."""

from lmforge.heads.lm import (
    IGNORE_INDEX,
    CausalLMHead,
    LanguageModel,
    LMOutput,
    MaskedLMHead,
    clm_loss,
    masked_accuracy,
    mlm_loss,
)

__all__ = [
    "IGNORE_INDEX",
    "CausalLMHead",
    "LMOutput",
    "LanguageModel",
    "MaskedLMHead",
    "clm_loss",
    "masked_accuracy",
    "mlm_loss",
]
