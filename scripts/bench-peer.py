#!/usr/bin/env python3
"""Peer run for `cria bench`: Hugging Face transformers on PyTorch (CPU) with the same model,
the same prompt length and the same number of greedy decode steps, timed the same way
(prefill of random ids, then one token at a time with the KV cache).

    .venv/bin/python scripts/bench-peer.py MODEL_DIR [--prompt-len 64] [--gen-len 32] [--threads N]
        [--device cpu|cuda] [--dtype float32|float16|bfloat16]
Prints one JSON object. Needs the venv from scripts/py-env.sh (or any Python with torch and
transformers, as on the GPU machine of scripts/gpu-bench.sh).
"""
import argparse, json, time

import torch
import transformers
from transformers import AutoModelForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--prompt-len", type=int, default=64)
ap.add_argument("--gen-len", type=int, default=32)
ap.add_argument("--threads", type=int, default=torch.get_num_threads())
ap.add_argument("--device", default="cpu")
ap.add_argument("--dtype", default="float32")
a = ap.parse_args()
torch.set_num_threads(a.threads)
model = AutoModelForCausalLM.from_pretrained(a.model, dtype=getattr(torch, a.dtype)).to(a.device).eval()
g = torch.Generator().manual_seed(1)
ids = torch.randint(0, model.config.vocab_size, (1, a.prompt_len), generator=g).to(a.device)


def sync():
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()


def run():
    with torch.inference_mode():
        sync()
        t0 = time.perf_counter()
        out = model(ids, use_cache=True)
        tok = out.logits[:, -1].argmax(-1, keepdim=True)
        sync()
        t1 = time.perf_counter()
        past = out.past_key_values
        for _ in range(a.gen_len):
            out = model(tok, past_key_values=past, use_cache=True)
            past = out.past_key_values
            tok = out.logits[:, -1].argmax(-1, keepdim=True)
            tok.item()  # the token reaches the host each step, as in any generation loop
        sync()
        t2 = time.perf_counter()
    return t1 - t0, t2 - t1


run()  # warm-up
prefill, decode = min(run() for _ in range(3))
print(json.dumps({
    "peer": f"transformers {transformers.__version__} / torch {torch.__version__} " + (
        torch.cuda.get_device_name() if a.device.startswith("cuda") else f"CPU, {a.threads} threads") + f", {a.dtype}",
    "model": a.model, "prompt_len": a.prompt_len, "gen_len": a.gen_len,
    "prefill_tokens_per_s": round(a.prompt_len / prefill, 3),
    "decode_tokens_per_s": round(a.gen_len / decode, 3),
}))
