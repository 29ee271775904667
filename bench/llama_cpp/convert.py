"""Runs llama.cpp's convert_hf_to_gguf.py on a dsv3 checkpoint with Debian's python3-torch and
the `transformers` shim beside this file.

usage: python3 convert.py LLAMA_CPP_DIR MODEL_DIR OUTFILE OUTTYPE

Two adaptations, both facts of this setup rather than changes to the conversion:
- torch 1.13 (Debian 12) predates the float8 dtypes the converter names at import; they get
  placeholders (the checkpoint converted here is BF16, so no tensor has them).
- The converter recognises a tokenizer's pre-tokenizer by hashing what `transformers` encodes
  from a probe text; without `transformers` we name it: these checkpoints carry DeepSeek-V3's
  own tokenizer.json, which the converter knows as "deepseek-v3".
"""

import os
import sys

llama_dir, model_dir, outfile, outtype = sys.argv[1:5]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, llama_dir)
sys.path.insert(0, os.path.join(llama_dir, "gguf-py"))

import torch  # noqa: E402

for name in ("float8_e4m3fn", "float8_e5m2"):
    if not hasattr(torch, name):
        setattr(torch, name, object())

import conversion.base as base  # noqa: E402

base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "deepseek-v3"

sys.argv = ["convert_hf_to_gguf.py", model_dir, "--outfile", outfile, "--outtype", outtype]
import convert_hf_to_gguf  # noqa: E402

convert_hf_to_gguf.main()
