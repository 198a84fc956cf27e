"""The study's media files carry nothing but pixels: one byte size for every file, one mtime, a random write order.

Sizes: a JPEG's size follows its content (a smooth fill compresses better than the ground truth's detail), so a
participant or a bot could rank the candidates of an item by `Content-Length`. `pad_jpeg` brings every file of a
study to one size with JPEG comment segments (marker FF FE) of zero bytes inserted after the start-of-image marker
(after the JFIF APP0 segment when there is one, which must come first): decoders skip comments, the decoded
pixels are unchanged (tested), and the padding carries nothing.

Times and order: `write_media` writes the files in a random order and sets every file's mtime to `MEDIA_MTIME`, so
neither the modification times nor anything derived from them (an ETag, Last-Modified) tells which method's file
was written first. The server sends no validators either (`misato.jobs.study.server`).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from misato.io import atomic_write_bytes

SOI = b"\xff\xd8"
COMMENT = b"\xff\xfe"
APP0 = b"\xff\xe0"
SEGMENT_OVERHEAD = 4  # marker (2) + length field (2)
MAX_SEGMENT = 0xFFFF + 2  # the length field counts itself and at most 65533 data bytes
MEDIA_MTIME = 946684800  # 2000-01-01T00:00:00Z: one mtime for every media file of every study


def padding_segments(count: int) -> bytes:
    """`count` bytes of JPEG comment segments holding zeros (count 0 or >= 4; ValueError for 1..3)."""
    if count < 0 or 0 < count < SEGMENT_OVERHEAD:
        raise ValueError(f"JPEG padding of {count} bytes: a comment segment takes 0 or at least 4 bytes")
    out = bytearray()
    while count:
        take = min(count, MAX_SEGMENT)
        if 0 < count - take < SEGMENT_OVERHEAD:  # leave room for one more whole segment
            take -= SEGMENT_OVERHEAD
        out += COMMENT + (take - 2).to_bytes(2, "big") + bytes(take - SEGMENT_OVERHEAD)
        count -= take
    return bytes(out)


def pad_jpeg(data: bytes, size: int) -> bytes:
    """`data` (a JPEG) padded to exactly `size` bytes (`size` == len(data) or >= len(data) + 4)."""
    if not data.startswith(SOI):
        raise ValueError("not a JPEG (no start-of-image marker)")
    if size < len(data):
        raise ValueError(f"cannot pad {len(data)} bytes down to {size}")
    at = len(SOI)
    if data[at:at + 2] == APP0:  # JFIF: APP0 stays right after SOI
        at += 2 + int.from_bytes(data[at + 2:at + 4], "big")
    return data[:at] + padding_segments(size - len(data)) + data[at:]


def pad_all(media: dict[str, bytes]) -> dict[str, bytes]:
    """Every JPEG of `media` (name -> bytes) padded to one size: the largest plus one smallest segment."""
    size = max(len(data) for data in media.values()) + SEGMENT_OVERHEAD
    return {name: pad_jpeg(data, size) for name, data in media.items()}


def write_media(folder: str | os.PathLike, media: dict[str, bytes], rng: random.Random) -> None:
    """Write `media` (name -> bytes) into `folder` atomically, in an order drawn from `rng`, every file with the
    mtime `MEDIA_MTIME`."""
    names = list(media)
    rng.shuffle(names)
    for name in names:
        path = Path(folder) / name
        atomic_write_bytes(path, media[name])
        os.utime(path, (MEDIA_MTIME, MEDIA_MTIME))
