"""File and image fingerprints: sha256 of the bytes (exact copies, published checksums) and a 64-bit dHash.

dHash (Krawetz, "Kind of like that", 2013): shrink to 9x8 grayscale and keep one bit per horizontal gradient sign.
It survives re-encoding, resizing and small brightness changes, so consecutive video frames or a re-saved copy
land within a few bits; a Hamming threshold then flags near-duplicates that sha256 cannot see.

    dhash(Image.open("a.png"))       # 64-bit int
    hamming_pairs(hashes, threshold=4)
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

HASH_BITS = 64


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks (archives can hold multi-GB files)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def dhash(image: Image.Image, size: int = 8) -> int:
    """Difference hash: ``size * size`` bits, bit set where a pixel is brighter than its right neighbour."""
    small = np.asarray(image.convert("L").resize((size + 1, size), Image.Resampling.LANCZOS), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def hamming_pairs(hashes: np.ndarray, threshold: int, keys: np.ndarray | None = None,
                  budget: int = 1 << 22) -> list[tuple[int, int, int]]:
    """Pairs ``(i, j, distance)``, ``i < j``, of uint64 hashes within ``threshold`` bits of each other.

    With ``keys`` (one int per hash, e.g. a split code) pairs sharing a key are skipped, so thousands of
    near-identical frames inside one video cost nothing. Compared in row blocks of about ``budget`` cells.
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    n = len(hashes)
    block = max(1, budget // max(n, 1))
    out: list[tuple[int, int, int]] = []
    for start in range(0, n, block):
        rows = hashes[start:start + block]
        dist = np.bitwise_count(rows[:, None] ^ hashes[None, :])
        hit = dist <= threshold
        hit &= np.arange(n)[None, :] > np.arange(start, start + len(rows))[:, None]
        if keys is not None:
            hit &= keys[start:start + len(rows), None] != keys[None, :]
        for i, j in zip(*np.nonzero(hit)):
            out.append((start + int(i), int(j), int(dist[i, j])))
    return out
