"""Checkpoint loading and downloading with errors that say what is wrong.

Accepts DeepGuard ``.bin`` / ``.pth`` / ``.pt`` state dicts (``torch.load(weights_only=True)``)
and safetensors, told apart by their first bytes, not their names; unwraps
``{"state_dict": ...}`` / ``{"model": ...}`` containers and DataParallel ``module.``
prefixes, which users routinely hand us.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Mapping

import torch
import torch.nn as nn

from ..errors import (
    CheckpointError,
    CorruptCheckpointError,
    KeyMismatchError,
    NotAStateDictError,
    VariantMismatchError,
    WeightsDownloadError,
)
from .variants import VARIANTS

# Known sha256 of published releases; None = not pinned (integrity then rests on the
# size check, a successful state-dict load, and the sidecar hash written on download).
KNOWN_SHA256: dict[str, str | None] = {}


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def cache_dir() -> Path:
    """``$MSVIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/msvit``, else ``~/.cache/msvit``."""
    env = os.environ.get("MSVIT_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "msvit"


# What a checkpoint file holds, told by its first bytes (never by its name).
FORMAT_ZIP = "zip"  # torch.save, PyTorch >= 1.6: a zip archive
FORMAT_PICKLE = "pickle"  # torch.save(_use_new_zipfile_serialization=False): pickle PROTO opcode first
FORMAT_SAFETENSORS = "safetensors"  # u64 little-endian header length, then the JSON header "{..."
FORMAT_EMPTY = "empty"
FORMAT_UNKNOWN = "unknown"

_SAFETENSORS_MAX_HEADER = 100_000_000  # the safetensors format's own limit


def sniff_checkpoint(path: str | os.PathLike) -> str:
    """The format of a checkpoint file by content: one of the ``FORMAT_*`` names."""
    with open(path, "rb") as f:
        head = f.read(9)
    if not head:
        return FORMAT_EMPTY
    if head.startswith(b"PK\x03\x04"):
        return FORMAT_ZIP
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return FORMAT_PICKLE
    if len(head) == 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= _SAFETENSORS_MAX_HEADER:
        return FORMAT_SAFETENSORS
    return FORMAT_UNKNOWN


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat ``{name: tensor}`` dict, or raise a CheckpointError.

    The format is sniffed from the content (:func:`sniff_checkpoint`), so a safetensors file
    named ``.bin`` loads as safetensors and a ``.pt`` zip named ``.safetensors`` as a zip.
    """
    p = Path(path)
    if p.is_dir():
        raise CheckpointError(f"weights {p} is a folder; expected a checkpoint file "
                              "(.bin / .pth / .pt / .safetensors)")
    if not p.exists():
        raise CorruptCheckpointError(f"weights file not found: {p}")
    if not p.is_file():
        raise CheckpointError(f"weights {p} is not a regular file; expected a checkpoint file")
    try:
        kind = sniff_checkpoint(p)
    except OSError as e:
        raise CorruptCheckpointError(f"{p.name}: cannot read weights file: {e.strerror or e}") from None
    if kind == FORMAT_EMPTY:
        raise CorruptCheckpointError(f"{p.name}: the file is empty (0 bytes); not a checkpoint")
    if kind == FORMAT_UNKNOWN:
        raise CorruptCheckpointError(
            f"{p.name}: not a checkpoint (unrecognised content): neither a PyTorch zip/pickle nor a "
            "safetensors file")
    if kind == FORMAT_SAFETENSORS:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            obj: object = load_file(str(p))
        except (SafetensorError, OSError, ValueError) as e:
            raise CorruptCheckpointError(
                f"{p.name}: a safetensors file that cannot be read (truncated or corrupt?): {e}") from None
    else:
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:  # UnpicklingError, RuntimeError, EOFError, zip errors...
            if "Weights only load failed" in str(e):  # a well-formed pickle of something else
                raise NotAStateDictError(
                    f"{p.name}: holds pickled Python objects, not a tensor state dict; save it with "
                    "torch.save(model.state_dict(), path)"
                ) from None
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise CorruptCheckpointError(
                f"{p.name}: not a readable PyTorch checkpoint (truncated or corrupt?): {first}"
            ) from None
    return _unwrap(obj, p.name)


def _unwrap(obj: object, name: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model", "module"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise NotAStateDictError(f"{name}: expected a state dict of tensors, got {type(obj).__name__}")
    sd = {str(k): v for k, v in obj.items()}
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _guess_variant(sd: Mapping[str, torch.Tensor]) -> str | None:
    w = sd.get("l_vit.patch_embed.cls_token")
    hw = sd.get("h_vit.patch_embed.cls_token")
    if w is None or hw is None:
        return None
    for name, a in VARIANTS.items():
        if w.shape[-1] == a.l_dim and hw.shape[-1] == a.h_dim:
            return name
    return None


def check_state_dict(model: nn.Module, sd: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Raise a precise CheckpointError unless ``sd`` fits ``model`` exactly (strict keys and shapes)."""
    variant = getattr(model, "variant", None)
    guessed = _guess_variant(sd)
    if variant and guessed and guessed != variant:
        raise VariantMismatchError(f"{source} holds {guessed} weights but the model is {variant}; "
                                   f"use --model {guessed}")
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    extra = sorted(set(sd) - set(own))
    if missing or extra:
        if not guessed and len(missing) > len(own) // 2:
            raise KeyMismatchError(f"{source} is not an MS-Eff-ViT state dict "
                                   f"({len(missing)} of {len(own)} parameters missing, e.g. {missing[:3]})")
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if extra:
            parts.append(f"{len(extra)} unexpected (e.g. {', '.join(extra[:3])})")
        raise KeyMismatchError(f"{source} does not match {variant or 'the model'}: " + "; ".join(parts))
    bad = [(k, tuple(sd[k].shape), tuple(v.shape)) for k, v in own.items() if sd[k].shape != v.shape]
    if bad:
        k, got, want = bad[0]
        raise KeyMismatchError(f"{source}: {len(bad)} tensors have the wrong shape, e.g. {k} is {got}, "
                               f"model expects {want}")


def load_checkpoint(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load weights bit-for-bit (strict) into ``model``; records ``model.weights_path/_sha256``."""
    sd = read_state_dict(path)
    check_state_dict(model, sd, Path(path).name)
    model.load_state_dict(sd, strict=True)
    model.weights_path = str(path)
    model.weights_sha256 = sha256_file(path)
    return model


def download_weights(url: str, dest_dir: str | os.PathLike | None = None, expected_sha256: str | None = None,
                     progress: bool = True, timeout: float = 30.0) -> Path:
    """Download ``url`` once into the cache and return the local path.

    Integrity: the byte count must equal Content-Length, the sha256 must equal the
    pinned value when one is known, and the file must load as a state dict; only then
    is it renamed into place (a ``.sha256`` sidecar lets later runs detect a corrupted
    cache). Offline, the error says how to use a local file instead.
    """
    dest = Path(dest_dir) if dest_dir else cache_dir()
    fname = url.rsplit("/", 1)[-1]
    target = dest / fname
    sidecar = target.with_name(target.name + ".sha256")
    expected_sha256 = expected_sha256 or KNOWN_SHA256.get(fname)
    if target.is_file():
        recorded = sidecar.read_text().strip() if sidecar.is_file() else None
        want = expected_sha256 or recorded
        if want is None or sha256_file(target) == want:
            return target
        target.unlink()  # corrupted cache entry: fetch again
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WeightsDownloadError(f"cannot create cache directory {dest}: {e.strerror}") from None
    fd, tmp = tempfile.mkstemp(dir=dest, prefix=fname, suffix=".part")
    try:
        try:
            resp = urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 - https release URL or user mirror
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise WeightsDownloadError(
                f"could not download {url} ({reason}). Offline? Pass a local checkpoint with "
                f"weights=PATH (CLI: --weights PATH), or put the file at {target}"
            ) from None
        total = int(resp.headers.get("Content-Length") or 0)
        from tqdm.auto import tqdm

        h = hashlib.sha256()
        n = 0
        with os.fdopen(fd, "wb") as f, resp, tqdm(total=total or None, unit="B", unit_scale=True,
                                                     desc=fname, disable=not progress) as bar:
            for block in iter(lambda: resp.read(1 << 16), b""):
                f.write(block)
                h.update(block)
                n += len(block)
                bar.update(len(block))
        digest = h.hexdigest()
        if total and n != total:
            raise WeightsDownloadError(f"download of {url} truncated: {n} of {total} bytes")
        if expected_sha256 and digest != expected_sha256:
            raise WeightsDownloadError(f"{fname}: sha256 {digest} does not match the published {expected_sha256}")
        try:
            read_state_dict(tmp)  # format sniffed by content, so safetensors releases are checked too
        except Exception as e:
            raise WeightsDownloadError(f"downloaded {fname} is not a usable checkpoint: {e}") from None
        os.replace(tmp, target)
        sidecar.write_text(digest + "\n")
        return target
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        try:
            os.close(fd)
        except OSError:
            pass


