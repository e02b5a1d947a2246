"""Regenerate ``gau_alpha_golden.json``: logits of the formula-level reference (``gau_alpha_reference.py``) on the
fixed-init tiny GAU-alpha, for both normalisers, on a padded batch.

    .venv/bin/python tests/reference/make_gau_alpha_golden.py
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from gau_alpha_reference import gau_alpha_logits, junnyu_state_dict

SIZES = dict(vocab=50, hidden=32, layers=2, e=64, s=16)
INPUT_IDS = [[2, 17, 33, 5, 41, 9, 3, 0, 0], [2, 8, 8, 45, 12, 30, 22, 19, 3]]
ATTENTION_MASK = [[1] * 7 + [0] * 2, [1] * 9]
TOKEN_TYPE_IDS = [[0] * 4 + [1] * 5, [0] * 9]


def main() -> None:
    sd = junnyu_state_dict(**SIZES)
    ids, mask, types = (torch.tensor(t) for t in (INPUT_IDS, ATTENTION_MASK, TOKEN_TYPE_IDS))
    out = {"sizes": SIZES, "input_ids": INPUT_IDS, "attention_mask": ATTENTION_MASK, "token_type_ids": TOKEN_TYPE_IDS}
    for normalization in ("softmax_plus", "squared_relu"):
        with torch.no_grad():
            logits = gau_alpha_logits(
                sd, ids, mask, types, layers=SIZES["layers"], e=SIZES["e"], s=SIZES["s"], normalization=normalization
            )
        real = logits[mask.bool()]
        out[normalization] = {
            "mean": real.mean().item(),
            "std": real.std().item(),
            "first_row": logits[0, 0, :8].tolist(),
            "last_real_row": logits[0, 6, :8].tolist(),
        }
    path = Path(__file__).with_name("gau_alpha_golden.json")
    path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
