"""Static sentence embeddings from wordllama's 256-dimension token embeddings.

wordllama ships its weights and tokenizer inside its wheel, but its loader looks for the
tokenizer under ``tokenizer/`` while the wheel has ``tokenizers/``, falls back to a download,
and its inference module configures the root logger at import. So the two files are read here
directly: nothing is downloaded and nothing of wordllama is imported.

A sentence is the average of its tokens' vectors, L2-normalized. The vectors are not
normalized per token: in these embeddings frequent words ("the", "my") have small norms and
content words ("balance", "roaming") large ones, so the average is already weighted towards
what the sentence is about.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

WEIGHTS = "weights/l2_supercat_256.safetensors"
TOKENIZER = "tokenizers/l2_supercat_tokenizer_config.json"


class EmbeddingError(RuntimeError):
    """The embedding files are missing or unreadable."""


class Embeddings:
    def __init__(self, root: Path) -> None:
        from safetensors import safe_open
        from tokenizers import Tokenizer

        try:
            with safe_open(str(root / WEIGHTS), framework="np") as f:
                table = f.get_tensor("embedding.weight")
            self._tokenizer = Tokenizer.from_file(str(root / TOKENIZER))
        except Exception as exc:  # safetensors and tokenizers raise their own types
            raise EmbeddingError(f"cannot load word embeddings from {root}: {exc}") from exc
        self._table: NDArray[np.float32] = np.ascontiguousarray(table, dtype=np.float32)
        self._lock = threading.Lock()  # the Rust tokenizer object is shared across threads
        self.dim = int(self._table.shape[1])

    def tokens(self, text: str) -> list[int]:
        with self._lock:
            return list(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def unit_tokens(
        self, ids: NDArray[np.int64]
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Each token's unit vector and its norm (how much the token says)."""
        vectors = self._table[np.clip(ids, 0, len(self._table) - 1)]
        norms = np.linalg.norm(vectors, axis=1)
        return vectors / np.maximum(norms, 1e-6)[:, None], norms

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        """One unit vector per text (zeros for a text with no tokens)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            ids = [t for t in self.tokens(text) if 0 <= t < len(self._table)]
            if ids:
                v = self._table[ids].mean(axis=0)
                n = float(np.linalg.norm(v))
                if n > 0:
                    out[i] = v / n
        return out


def _wheel_root() -> Path:
    spec = find_spec("wordllama")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingError("the wordllama package is not installed (pip install wordllama)")
    return Path(next(iter(spec.submodule_search_locations)))


@lru_cache(maxsize=1)
def default_embeddings() -> Embeddings:
    """The process's shared embeddings (loaded once, ~0.15 s, 32 MB)."""
    return Embeddings(_wheel_root())
