"""fastText models (language id, quality classifiers) behind one small, numpy-2-safe wrapper.

The installed binding is ``fasttext-wheel`` 0.9.2, the one whose ``train_supervised`` works on our
CPUs. Its Python ``predict()`` calls ``np.array(..., copy=False)``, which numpy 2 rejects, and its
``multilinePredict`` returns wrong probabilities past the first label; so ``predict`` here calls the
C++ binding's single-text ``predict`` directly, once per text.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import fasttext
from fasttext.FastText import _FastText

LABEL_PREFIX = "__label__"

_cache: dict[str, FastTextModel] = {}
_cache_lock = threading.Lock()


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class FastTextModel:
    """A loaded fastText model. Build it with ``FastTextModel.load(path)`` (cached by content)."""

    def __init__(self, model: _FastText, sha256: str | None):
        self._model = model
        self.sha256 = sha256  # of the file it was loaded from; None when trained in memory

    @classmethod
    def load(cls, path: str | Path) -> FastTextModel:
        """The model stored at ``path``. Loaded models are cached by the file's sha256, not its path,
        so a file replaced at the same path is loaded afresh. Raises ``ValueError`` if it is missing."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"fastText model {path} does not exist")
        sha256 = file_sha256(path)
        with _cache_lock:
            if sha256 not in _cache:
                # _FastText(model_path=...) is what fasttext.load_model does, minus its stderr warning.
                _cache[sha256] = cls(_FastText(model_path=str(path)), sha256)
            return _cache[sha256]

    @property
    def labels(self) -> list[str]:
        """The model's labels, without the ``__label__`` prefix."""
        return [strip_label(label) for label in self._model.get_labels()]

    def predict(self, texts: list[str], k: int = 1, threshold: float = 0.0) -> list[list[tuple[str, float]]]:
        """For each text, its ``k`` most probable labels (prefix stripped) with probabilities, best
        first, leaving out those below ``threshold``. fastText reads one line, so newlines become spaces."""
        predict = self._model.f.predict
        results = []
        for text in texts:
            pairs = predict(text.replace("\n", " ").replace("\r", " "), k, threshold, "strict")
            results.append([(strip_label(label), min(float(p), 1.0)) for p, label in pairs])
        return results

    def save(self, path: str | Path) -> None:
        """Write the model to ``path`` (fastText's binary format)."""
        self._model.save_model(str(path))


def strip_label(label: str) -> str:
    return label[len(LABEL_PREFIX) :] if label.startswith(LABEL_PREFIX) else label


def train_supervised(input_path: str | Path, **kwargs) -> FastTextModel:
    """Train a supervised fastText classifier on ``input_path`` (one ``__label__x text`` per line);
    ``kwargs`` are fastText's (``epoch``, ``lr``, ``wordNgrams``, ``dim``, ``seed``, ``thread``...).
    Pass ``thread=1`` for a reproducible model."""
    model = fasttext.train_supervised(input=str(input_path), **kwargs)
    return FastTextModel(model, sha256=None)  # in memory: no file, no content hash yet
