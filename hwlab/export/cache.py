"""Where exported models live, what names them, and how they are written safely.

A model file is named by a digest of everything that decides its bytes: what was
exported (a spec key, or a fingerprint of a module's weights and code), the
format, the exporter's version and the input shapes. A file under its final name
is therefore always complete and current: writers write to a temporary file in
the same folder and `os.replace` it into place, so a killed export leaves at most
a stray temporary file, never a half model.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import re
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from hwlab.cache import cache_dir

# Bump when the way modules are built from specs changes, so old files are not reused.
SPEC_BUILD_VERSION = 1
_CHUNK = 1 << 20


def models_dir(cache: Path | None = None) -> Path:
    """The folder holding exported models: <cache>/models."""
    return (Path(cache) if cache is not None else cache_dir()) / "models"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _class_source(cls: type) -> str:
    try:
        return inspect.getsource(cls)
    except (OSError, TypeError):  # built in C, or defined where no source is kept
        return f"{cls.__module__}.{cls.__qualname__}"


def module_fingerprint(module: nn.Module) -> str:
    """Hex digest of a module's structure, settings, weights and buffers, and its classes' code.

    The class source stands in for forward(): two modules with equal weights and
    repr but different forward code get different fingerprints.
    """
    digest = hashlib.sha256(repr(module).encode())
    # Plain settings (e.g. which op a generic module applies) shape forward() but show in no repr.
    for name, sub in module.named_modules():
        settings = {k: v for k, v in vars(sub).items() if not k.startswith("_") and k != "training"}
        digest.update(f"{name}:{sorted(settings.items(), key=lambda kv: kv[0])!r}".encode())
    for cls in sorted({type(m) for m in module.modules()}, key=lambda c: (c.__module__, c.__qualname__)):
        digest.update(_class_source(cls).encode())
    for name, tensor in sorted(module.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cache_digest(source: str, fmt: str, exporter: str, input_shapes: Sequence[Sequence[int]]) -> str:
    """Hex digest naming one exported file."""
    payload = {
        "source": source,
        "fmt": fmt,
        "exporter": exporter,
        "input_shapes": [list(s) for s in input_shapes],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def model_path(cache_dir: Path | None, fmt: str, suffix: str, name: str, digest: str) -> Path:
    """<cache>/models/<fmt>/<readable name>-<digest prefix><suffix>."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:120] or "model"
    return models_dir(cache_dir) / fmt / f"{readable}-{digest[:16]}{suffix}"


@contextlib.contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it to `path` if the block succeeds.

    The temporary name keeps the suffix (some exporters check it) and starts with a
    dot so that listings of finished models skip it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:12]}-{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
