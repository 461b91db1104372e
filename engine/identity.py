"""Model identity without loading the model: ``<name>-<first 12 hex of the weights' SHA-256>``.

Embeddings and decoders are keyed by this id, so a browser never pairs an embedding with
the decoder of another model. Torch-free, for processes that only need the id.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "default.safetensors"


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@functools.lru_cache(maxsize=32)
def _cached_sha(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(Path(path))


def _weights_path(name: str, checkpoint: str | Path | None) -> Path | None:
    path = Path(checkpoint) if checkpoint else (DEFAULT_WEIGHTS if name == "default" else None)
    return path if path is not None and path.is_file() else None


def weights_sha256(name: str, checkpoint: str | Path | None = None) -> str:
    """Full hex SHA-256 of the weights file :func:`model_id_for` reads ("" when there is none).

    Cached by (path, size, mtime), like :func:`model_id_for`.
    """
    path = _weights_path(name, checkpoint)
    if path is None:
        return ""
    st = os.stat(path)
    return _cached_sha(str(path.resolve()), st.st_size, st.st_mtime_ns)


def model_id_for(name: str, checkpoint: str | Path | None = None) -> str:
    """The id :func:`engine.build_model` gives the same model, without building it.

    Args:
        name: registry name (``default``, ``vit_b``, ...).
        checkpoint: weights file; for ``default`` the shipped file when None.

    Returns:
        ``<name>-<12 hex>``, or ``<name>-untrained`` when the weights file does not exist.
    """
    sha = weights_sha256(name, checkpoint)
    return f"{name}-{sha[:12]}" if sha else f"{name}-untrained"
