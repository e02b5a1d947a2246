"""Architecture-agnostic heads over backbone hidden states, with their losses (``lm`` for MLM/CLM)."""

from lmforge.heads.lm import *  # noqa: F403  (the public names of ``lm``)
from lmforge.heads.lm import __all__ as __all__
