"""A tiny LLaMA-architecture causal LM (random weights) with a word-level tokenizer, and a LoRA
adapter for it, built locally: nothing is downloaded. For tests and for smoke-testing the
fx-fingpt image without real weights.

    python3 -m fxservices.fingpt.tiny OUTDIR    ->  OUTDIR/base, OUTDIR/adapter
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from fxservices.fingpt.processor import LABELS, PROMPT

SPECIAL = ["<unk>", "<s>", "</s>", "<pad>"]
EXTRA_WORDS = """
the a an of to in on for and or but with by from at as is are was were be been has have had
it its this that these those not no up down higher lower rise rises rose fall falls fell gain
gains loss losses profit profits revenue earnings growth beat beats miss misses record strong
weak rally slump surge plunge shares stock stocks market markets bank banks central rate rates
hike hikes cut cuts inflation dollar euro pound yen yuan oil gold bond bonds yield yields
company quarter year outlook guidance forecast investors analysts expect expected said says
ecb fed boe boj opec gdp jobs unemployment demand supply price prices trade deal tariffs
percent billion million new high low steady flat mixed
""".split()


def vocabulary() -> list[str]:
    from tokenizers import pre_tokenizers

    words: list[str] = []
    seen = set(SPECIAL)
    pre = pre_tokenizers.Whitespace()
    text = PROMPT.replace("{text}", " ") + " " + " ".join(LABELS) + " " + " ".join(EXTRA_WORDS)
    for piece, _ in pre.pre_tokenize_str(text.lower()):
        if piece not in seen:
            seen.add(piece)
            words.append(piece)
    for ch in "0123456789.,;:!?%$-'\"()/{}":
        if ch not in seen:
            seen.add(ch)
            words.append(ch)
    return SPECIAL + words


def make_tokenizer():
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(vocabulary())}
    tok = Tokenizer(WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", vocab["<s>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>",
                                   model_max_length=512)


def make_tiny_model(out_dir: str | Path, *, seed: int = 0, hidden_size: int = 64,
                    layers: int = 2, lora_r: int = 8) -> dict:
    """Write a tiny LLaMA base model (+ tokenizer) to OUT/base and a LoRA adapter to
    OUT/adapter. Returns {"base": path, "adapter": path}."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    base_dir, adapter_dir = out / "base", out / "adapter"
    base_dir.mkdir(parents=True, exist_ok=True)
    adapter_dir.mkdir(parents=True, exist_ok=True)

    tokenizer = make_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(str(base_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(base_dir))
    model.config._name_or_path = str(base_dir)  # the adapter records its base
    model.name_or_path = str(base_dir)

    torch.manual_seed(seed + 1)
    lora = LoraConfig(r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.0, bias="none",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                      task_type="CAUSAL_LM",
                      init_lora_weights=False)  # random B too: the adapter changes outputs
    peft_model = get_peft_model(model, lora)
    peft_model.save_pretrained(str(adapter_dir), safe_serialization=True)
    (out / "tiny-model.json").write_text(json.dumps(
        {"base": str(base_dir), "adapter": str(adapter_dir), "seed": seed,
         "vocab_size": len(tokenizer), "hidden_size": hidden_size, "layers": layers}, indent=2))
    return {"base": str(base_dir), "adapter": str(adapter_dir)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print(json.dumps(make_tiny_model(args.out_dir, seed=args.seed)))


if __name__ == "__main__":
    main()
