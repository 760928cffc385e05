#!/usr/bin/env python3
"""PyTorch peer for cria-train's CUDA throughput: the same Llama shapes (HF LlamaForCausalLM
from a LlamaConfig, random init), random tokens, AdamW, bf16 autocast, SDPA attention and
torch.compile; prints one JSON line with tokens/s over the steps after warm-up.
Used by scripts/gpu-train-check.sh; runs on the GPU machine's own Python (torch, transformers)."""
import argparse, json, time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

p = argparse.ArgumentParser()
p.add_argument("--name", required=True)
p.add_argument("--vocab", type=int, required=True)
p.add_argument("--hidden", type=int, required=True)
p.add_argument("--intermediate", type=int, required=True)
p.add_argument("--layers", type=int, required=True)
p.add_argument("--heads", type=int, required=True)
p.add_argument("--kv-heads", type=int, required=True)
p.add_argument("--tie", action="store_true")
p.add_argument("--batch", type=int, required=True)
p.add_argument("--seq", type=int, required=True)
p.add_argument("--steps", type=int, default=50)
p.add_argument("--warmup", type=int, default=5)
p.add_argument("--no-compile", action="store_true")
p.add_argument("--device", default="cuda", help="cuda (the check), or cpu to smoke-test this script")
a = p.parse_args()

torch.manual_seed(0)
cfg = LlamaConfig(vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=a.intermediate,
                  num_hidden_layers=a.layers, num_attention_heads=a.heads, num_key_value_heads=a.kv_heads,
                  max_position_embeddings=a.seq, tie_word_embeddings=a.tie, attn_implementation="sdpa")
dev = torch.device(a.device)
model = LlamaForCausalLM(cfg).to(dev)  # f32 master weights, bf16 autocast: the same split as cria-train
opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1, betas=(0.9, 0.95), fused=dev.type == "cuda")
step_model = model if a.no_compile else torch.compile(model)
tokens = torch.randint(0, a.vocab, (a.batch, a.seq + 1), device=dev)
sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

def step():
    with torch.autocast(dev.type, dtype=torch.bfloat16):
        loss = step_model(input_ids=tokens[:, :-1], labels=tokens[:, 1:].contiguous()).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss

for _ in range(a.warmup):
    step()
sync()
t = time.time()
for _ in range(a.steps):
    loss = step()
sync()
dt = time.time() - t
print(json.dumps({"peer": "pytorch " + torch.__version__ + (" eager" if a.no_compile else " compile"), "model": a.name,
                  "tokens_per_s": a.steps * a.batch * a.seq / dt, "final_loss": loss.item(),
                  "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu"}), flush=True)
