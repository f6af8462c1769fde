"""What the two flatbuffer formats (LiteRT ``.tflite``, ORT ``.ort``) check alike before a C++
loader sees a file: that it can be read, its identifier, that its root table lies inside it,
and that no table or weight buffer runs past its end (what a truncated copy breaks)."""
from __future__ import annotations

import os
import struct
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import ArtifactError

MIN_SIZE = 16  # root offset + identifier + the smallest root table


def read_file(path: str | os.PathLike, suffix: str) -> bytes:
    p = Path(path)
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise ArtifactError(f"{p}: is a folder, not a {suffix} file") from None
    except OSError as e:
        raise ArtifactError(f"{p}: cannot read it ({e.strerror or e})") from None


def check_header(data: bytes, name: str, identifier: bytes, what: str, hint: str = "") -> None:
    """Size, the identifier at bytes 4..8 and the root table offset. ``what``: "LiteRT model"."""
    size = len(data)
    if size == 0:
        raise ArtifactError(f"{name}: empty file (0 bytes): an interrupted copy or export?")
    if size < MIN_SIZE:
        raise ArtifactError(f"{name}: {size} bytes is too small to be a {what} (truncated?)")
    ident = bytes(data[4:8])
    if ident != identifier:
        raise ArtifactError(f"{name}: not a {what} (identifier {ident!r} at bytes 4..8, "
                            f"expected {identifier!r}){hint}")
    (root,) = struct.unpack_from("<I", data, 0)
    if root < 8 or root + 4 > size:
        raise ArtifactError(f"{name}: truncated or corrupt {what} (root table at byte {root}, file is {size} bytes)")


def check_end(name: str, what: str, item: str, end: int, size: int, redo: str) -> None:
    """``item`` (e.g. "weight buffer 3") must end inside the file."""
    if end > size:
        raise ArtifactError(f"{name}: truncated {what} ({item} ends at byte {end}, the file has {size} bytes): "
                            f"{redo} or re-copy it")


@contextmanager
def tables_inside(name: str, what: str, size: int, redo: str) -> Iterator[None]:
    """Reading a table past the end of the bytes raises one of these inside the generated code."""
    try:
        yield
    except ArtifactError:
        raise
    except (IndexError, struct.error, ValueError, TypeError, UnicodeDecodeError):
        raise ArtifactError(f"{name}: truncated or corrupt {what} (its tables point past the end of the file, "
                            f"{size} bytes): {redo} or re-copy it") from None
