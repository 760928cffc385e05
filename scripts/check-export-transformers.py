#!/usr/bin/env python3
"""Check a cria-train export against Hugging Face transformers (developer tool; CI runs no Python).

    cria-train logits --model MODEL_DIR --text "..." --out logits.json
    .venv/bin/python scripts/check-export-transformers.py MODEL_DIR logits.json

Loads MODEL_DIR with AutoTokenizer / AutoModelForCausalLM (float32, eager attention), checks
that the tokenizer yields the same ids as cria-train (with <s> first) and that the logits
match within 1e-4 of the largest |logit|; prints the greedy continuation. Exit 1 on mismatch.
"""
import json
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

TOL = 1e-4


def main(model_dir, logits_path):
    ref = json.load(open(logits_path))
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    ids = tok(ref["text"])["input_ids"]
    print(f"transformers {transformers.__version__}, torch {torch.__version__}: {type(model).__name__}, "
          f"{sum(p.numel() for p in model.parameters())} parameters")
    ok = True
    if ids != ref["tokens"]:
        print(f"TOKENIZER MISMATCH:\n  transformers {ids}\n  cria-train   {ref['tokens']}")
        ok = False
    with torch.no_grad():
        logits = model(torch.tensor([ref["tokens"]])).logits[0]
    want = torch.tensor(ref["logits"], dtype=torch.float32)
    err = (logits - want).abs().max().item()
    scale = want.abs().max().item()
    print(f"logits: {tuple(logits.shape)}, max abs err {err:.3e}, max |logit| {scale:.3f}, rel {err / scale:.3e} (bound {TOL})")
    if err > TOL * max(scale, 1.0):
        ok = False
    out = model.generate(torch.tensor([ref["tokens"]]), max_new_tokens=40, do_sample=False)
    print("greedy:", repr(tok.decode(out[0], skip_special_tokens=True)))
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
