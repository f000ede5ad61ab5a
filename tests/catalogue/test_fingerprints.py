"""dHash survives re-encoding/resizing; Hamming pair search equals a brute-force loop."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from dinomed.catalogue.fingerprints import dhash, hamming_pairs


def _smooth(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 6), dtype=np.uint8)
    return Image.fromarray(small).resize((96, 96), Image.Resampling.BICUBIC)


def test_dhash_is_stable_under_jpeg_and_resize_but_separates_images() -> None:
    image = _smooth(0)
    buf = io.BytesIO()
    image.resize((80, 80)).save(buf, "JPEG", quality=70)
    copy = Image.open(io.BytesIO(buf.getvalue()))
    assert bin(dhash(image) ^ dhash(copy)).count("1") <= 4
    assert bin(dhash(image) ^ dhash(_smooth(1))).count("1") > 10


def test_hamming_pairs_match_brute_force() -> None:
    rng = np.random.default_rng(3)
    hashes = rng.integers(0, 2**63, 300, dtype=np.uint64)
    hashes[10] = hashes[200] ^ np.uint64(0b101)  # distance 2
    keys = rng.integers(0, 3, 300)
    expected = sorted((i, j, bin(int(hashes[i]) ^ int(hashes[j])).count("1")) for i in range(300)
                      for j in range(i + 1, 300) if bin(int(hashes[i]) ^ int(hashes[j])).count("1") <= 20
                      and keys[i] != keys[j])
    assert sorted(hamming_pairs(hashes, 20, keys, budget=1000)) == expected
    assert (10, 200, 2) in hamming_pairs(hashes, 2)
