"""The few pieces of Hugging Face `transformers` that llama.cpp's convert_hf_to_gguf.py calls
for a DeepSeek-V3 checkpoint, read straight from config.json and tokenizer.json (this machine
has no PyPI, so no `transformers`). Used only by bench/llama_cpp/convert.py."""

import json
import os


class _Config:
    def __init__(self, d):
        self._d = d

    def to_dict(self):
        return dict(self._d)


class AutoConfig:
    @staticmethod
    def from_pretrained(path, **_):
        with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
            return _Config(json.load(f))


class _AddedToken:
    def __init__(self, t):
        self.content = t["content"]
        self.special = t.get("special", False)
        self.normalized = t.get("normalized", True)


class _Tokenizer:
    """Vocabulary and added tokens of a byte-level BPE tokenizer.json. encode/decode cover
    only what the converter asks of them: an added token alone (its id and back)."""

    def __init__(self, path):
        with open(os.path.join(path, "tokenizer.json"), encoding="utf-8") as f:
            t = json.load(f)
        self.vocab = dict(t["model"]["vocab"])
        self.added_tokens_decoder = {}
        for a in t.get("added_tokens", []):
            self.vocab[a["content"]] = a["id"]
            self.added_tokens_decoder[a["id"]] = _AddedToken(a)
        self._added = {a.content: i for i, a in self.added_tokens_decoder.items()}

    def get_vocab(self):
        return dict(self.vocab)

    def get_added_vocab(self):
        return dict(self._added)

    def encode(self, text, add_special_tokens=False):
        if text in self._added:
            return [self._added[text]]
        raise NotImplementedError("bench shim: encode() of arbitrary text")

    def decode(self, ids):
        return "".join(self.added_tokens_decoder[i].content for i in ids)


class AutoTokenizer:
    @staticmethod
    def from_pretrained(path, **_):
        return _Tokenizer(path)
