"""The .mplan file: a fixed header, a JSON manifest, then 64-byte-aligned weight blobs.

Header (64 bytes, little endian)::

    0   8s  magic b"MPLAN\\r\\n\\x1a"
    8   H   format major      (a newer major is refused)
    10  H   format minor
    12  I   reserved (0)
    16  Q   manifest offset   (64)
    24  Q   manifest length
    32  Q   blobs offset      (64-byte aligned)
    40  Q   blobs length
    48  16s blake2b-128 of the 48 header bytes before it and of every byte after the header

The manifest is UTF-8 JSON (non-finite floats, e.g. a Clip bound of -inf, are written as the
``Infinity``/``NaN`` tokens Python's json reads); blobs are raw little-endian arrays described in
the manifest. Reading maps the file and views the blobs without copying; nothing is unpickled or
evaluated.
"""
from __future__ import annotations

import hashlib
import json
import mmap
import struct
import warnings
from pathlib import Path

from mobile_engine.errors import PlanFormatError, PlanVersionWarning

MAGIC = b"MPLAN\r\n\x1a"
FORMAT_MAJOR, FORMAT_MINOR = 1, 0
HEADER = struct.Struct("<8sHHIQQQQ16s")
ALIGN = 64
DIGEST_AT = 48
# NOTE: a manifest is a few hundred KB even for big nets; refuse absurd lengths before parsing.
MAX_MANIFEST_BYTES = 64 << 20


def _digest(*parts) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        h.update(p)
    return h.digest()


def write(path: str | Path, manifest: dict, blobs: list[bytes | memoryview]) -> int:
    """Write a plan file; ``manifest['blobs']`` must already hold each blob's offset/nbytes."""
    body = json.dumps(manifest, separators=(",", ":"), allow_nan=True).encode()
    blobs_offset = (HEADER.size + len(body) + ALIGN - 1) // ALIGN * ALIGN
    pad = b"\0" * (blobs_offset - HEADER.size - len(body))
    payload = bytearray()
    for blob in blobs:
        payload += b"\0" * (-len(payload) % ALIGN)
        payload += blob
    fields = (MAGIC, FORMAT_MAJOR, FORMAT_MINOR, 0, HEADER.size, len(body), blobs_offset,
              len(payload))
    head = HEADER.pack(*fields, b"\0" * 16)[:DIGEST_AT]
    header = HEADER.pack(*fields, _digest(head, body, pad, payload))
    with open(path, "wb") as f:
        f.write(header + body + pad)
        f.write(payload)
    return blobs_offset + len(payload)


def blob_layout(sizes: list[int]) -> list[int]:
    """Offsets of blobs of ``sizes`` inside the blobs section, each 64-byte aligned."""
    offsets, pos = [], 0
    for n in sizes:
        pos += -pos % ALIGN
        offsets.append(pos)
        pos += n
    return offsets


def read(path: str | Path) -> tuple[dict, memoryview, mmap.mmap]:
    """Validate the header and checksum; return (manifest, blobs section view, the mapping)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            if size < HEADER.size:
                raise PlanFormatError(f"{path}: {size} bytes is too short for a plan file "
                                      f"(truncated?)")
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise PlanFormatError(f"{path}: cannot read plan file: {exc}") from None
    (magic, major, minor, _reserved, m_off, m_len, b_off, b_len, digest) = HEADER.unpack_from(mm)
    if magic != MAGIC:
        raise PlanFormatError(f"{path}: not a mobile-engine plan (bad magic {magic!r})")
    if major != FORMAT_MAJOR:
        need = "a newer mobile-engine" if major > FORMAT_MAJOR else "an older mobile-engine"
        raise PlanFormatError(f"{path}: plan format {major}.{minor} needs {need}; this engine reads "
                              f"format {FORMAT_MAJOR}.x")
    if minor > FORMAT_MINOR:
        warnings.warn(f"{path}: plan format {major}.{minor} is newer than this engine's "
                      f"{FORMAT_MAJOR}.{FORMAT_MINOR}: it loads, but what the newer format adds is "
                      f"ignored (upgrade mobile-engine)", PlanVersionWarning, stacklevel=3)
    if m_off != HEADER.size or m_len > MAX_MANIFEST_BYTES or m_off + m_len > b_off \
            or b_off % ALIGN or b_off + b_len != size:
        raise PlanFormatError(f"{path}: section table is inconsistent with the file size {size} "
                              f"(manifest {m_off}+{m_len}, blobs {b_off}+{b_len}; truncated?)")
    if _digest(mm[:DIGEST_AT], mm[HEADER.size:]) != digest:
        raise PlanFormatError(f"{path}: checksum mismatch (file corrupted or truncated)")
    try:
        manifest = json.loads(bytes(mm[m_off:m_off + m_len]).decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise PlanFormatError(f"{path}: manifest is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise PlanFormatError(f"{path}: manifest is not a JSON object")
    return manifest, memoryview(mm)[b_off:b_off + b_len], mm
