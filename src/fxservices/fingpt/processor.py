"""FinGPT-style sentiment: a base causal LM plus a LoRA adapter (peft), both from local paths.

The label is read from the next-token logits after an instruction prompt, as FinGPT's
sentiment benchmarks do: the first token of each label word (" positive", " negative",
" neutral") is scored, a softmax over those three gives the score.

Loading never downloads (local_files_only=True). On CUDA with bitsandbytes importable the base
model is loaded in 8-bit; otherwise in full precision (float32) on the CPU, or float16 on CUDA.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from fxservices.common.config import ConfigError, env_bool, env_int, env_str

log = logging.getLogger(__name__)

# Never reach for the Hugging Face Hub, whatever a caller passes.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

LABELS = ("positive", "negative", "neutral")
PROMPT = ("Instruction: What is the sentiment of this news? Please choose an answer from "
          "{negative/neutral/positive}.\nInput: {text}\nAnswer:")


def build_prompt(text: str) -> str:
    # str.format would trip over the braces of the instruction
    return PROMPT.replace("{text}", text.strip())


def _check_dir(var: str, path: Path, needs: Sequence[str], what: str) -> None:
    if not path.exists():
        raise ConfigError(f"{var}={path}: {what} directory does not exist (mount it there; "
                          "the service never downloads models)")
    if not path.is_dir():
        raise ConfigError(f"{var}={path}: {what} must be a directory")
    for name in needs:
        if not (path / name).exists():
            raise ConfigError(f"{var}={path}: {what} has no {name} (is this a "
                              f"{'LoRA adapter saved by peft' if 'adapter' in name else 'Hugging Face model directory'}?)")


@dataclass
class Sentiment:
    label: str
    score: float

    def as_dict(self) -> dict:
        return {"label": self.label, "score": self.score}


class SentimentProcessor:
    def __init__(self, base_model: str | Path, adapter: str | Path, *,
                 device: Optional[str] = None, load_in_8bit: Optional[bool] = None,
                 max_length: int = 512, batch_size: int = 8):
        import torch

        self.base_path = Path(base_model)
        self.adapter_path = Path(adapter)
        _check_dir("FINGPT_BASE_MODEL", self.base_path, ["config.json"], "the base model")
        _check_dir("FINGPT_ADAPTER", self.adapter_path, ["adapter_config.json"],
                   "the LoRA adapter")
        self.max_length = max_length
        self.batch_size = batch_size
        cuda = torch.cuda.is_available()
        self.device = device or ("cuda" if cuda else "cpu")
        self.load_in_8bit = False
        if self.device.startswith("cuda"):
            bnb_ok = _bitsandbytes_available()
            self.load_in_8bit = bnb_ok if load_in_8bit is None else (load_in_8bit and bnb_ok)
            if load_in_8bit and not bnb_ok:
                log.warning("8-bit requested but bitsandbytes does not import: using float16")
        self._lock = threading.Lock()
        self._load()

    # -- loading -----------------------------------------------------------------------------
    def _load(self) -> None:
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok_src = self.adapter_path if (self.adapter_path / "tokenizer_config.json").exists() \
            else self.base_path
        self.tokenizer = AutoTokenizer.from_pretrained(str(tok_src), local_files_only=True)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.tokenizer.padding_side = "left"  # the last position is the next-token position

        kwargs: dict = {"local_files_only": True}
        if self.load_in_8bit:
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
            kwargs["device_map"] = {"": self.device}
            self.dtype = "int8"
        elif self.device.startswith("cuda"):
            kwargs["torch_dtype"] = torch.float16
            self.dtype = "float16"
        else:
            kwargs["torch_dtype"] = torch.float32
            self.dtype = "float32"
        base = AutoModelForCausalLM.from_pretrained(str(self.base_path), **kwargs)
        model = PeftModel.from_pretrained(base, str(self.adapter_path), is_trainable=False)
        if not self.load_in_8bit:
            model = model.to(self.device)
        model.eval()
        self.model = model
        self.label_token_ids = self._label_token_ids()
        log.info("FinGPT processor: base %s + adapter %s on %s (%s), label tokens %s",
                 self.base_path, self.adapter_path, self.device, self.dtype,
                 dict(zip(LABELS, self.label_token_ids)))

    def _label_token_ids(self) -> list[int]:
        """First token of each label as it continues the prompt."""
        probe = build_prompt("x")
        base_ids = self.tokenizer(probe, add_special_tokens=True)["input_ids"]
        ids = []
        for label in LABELS:
            full = self.tokenizer(probe + " " + label, add_special_tokens=True)["input_ids"]
            # strip a trailing eos the tokenizer may add
            eos = self.tokenizer.eos_token_id
            if eos is not None and full and full[-1] == eos and base_ids and base_ids[-1] == eos:
                full, prefix = full[:-1], base_ids[:-1]
            else:
                prefix = base_ids
            if full[:len(prefix)] == prefix and len(full) > len(prefix):
                ids.append(full[len(prefix)])
            else:
                alone = self.tokenizer(" " + label, add_special_tokens=False)["input_ids"]
                if not alone:
                    raise RuntimeError(f"the tokenizer has no token for label {label!r}")
                ids.append(alone[0])
        if len(set(ids)) != len(ids):
            raise RuntimeError(f"the labels {LABELS} share first tokens {ids} with this "
                               "tokenizer; cannot score them by next-token logits")
        unk = self.tokenizer.unk_token_id
        if unk is not None and unk in ids:
            raise RuntimeError(f"a label maps to the unknown token with this tokenizer: {ids}")
        return ids

    # -- inference ---------------------------------------------------------------------------
    def classify(self, texts: Sequence[str]) -> list[Sentiment]:
        import torch

        out: list[Sentiment] = []
        label_ids = torch.tensor(self.label_token_ids)
        with self._lock, torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                chunk = [build_prompt(t) for t in texts[start:start + self.batch_size]]
                enc = self.tokenizer(chunk, return_tensors="pt", padding=True, truncation=True,
                                     max_length=self.max_length)
                enc = {k: v.to(self.model.device if hasattr(self.model, "device")
                               else self.device) for k, v in enc.items()
                       if k in ("input_ids", "attention_mask")}
                # left padding: positions count from each text's first real token, as
                # generate() does, so a text scores the same alone or in a batch
                pos = (enc["attention_mask"].long().cumsum(-1) - 1).clamp(min=0)
                logits = self.model(**enc, position_ids=pos).logits[:, -1, :].float().cpu()
                probs = torch.softmax(logits[:, label_ids], dim=-1)
                best = probs.argmax(dim=-1)
                for row, idx in zip(probs, best):
                    out.append(Sentiment(LABELS[int(idx)], round(float(row[idx]), 6)))
        return out

    def info(self) -> dict:
        return {"base_model": str(self.base_path), "adapter": str(self.adapter_path),
                "device": self.device, "dtype": self.dtype, "labels": list(LABELS)}


def _bitsandbytes_available() -> bool:
    try:
        import bitsandbytes  # noqa: F401
    except Exception as exc:  # ImportError, or a CUDA setup error at import
        log.info("bitsandbytes not usable (%s): no 8-bit loading", exc)
        return False
    return True


def from_env() -> SentimentProcessor:
    """FINGPT_BASE_MODEL and FINGPT_ADAPTER (local directories), FINGPT_DEVICE (optional),
    FINGPT_LOAD_IN_8BIT (optional, default: when CUDA and bitsandbytes)."""
    base = env_str("FINGPT_BASE_MODEL", required=True,
                   hint="set it to the local directory of the base causal LM")
    adapter = env_str("FINGPT_ADAPTER", required=True,
                      hint="set it to the local directory of the LoRA adapter")
    device = os.environ.get("FINGPT_DEVICE") or None
    eight = env_bool("FINGPT_LOAD_IN_8BIT", True) if os.environ.get("FINGPT_LOAD_IN_8BIT") \
        else None
    return SentimentProcessor(base, adapter, device=device, load_in_8bit=eight,
                              max_length=env_int("FINGPT_MAX_LENGTH", 512, minimum=16))
