"""Loads exported PNGs with Pillow and checks each is a 16-bit image equal to the synthetic
frame its name says (re-derived from (seed, seq) independently of framerec).

usage: check_png.py DIR SEED WIDTH HEIGHT   -> prints the number of images checked
"""
import pathlib
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from read_recording import SHIFT, TABLE_LEN, splitmix64  # noqa: E402


def main():
    root, seed, width, height = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    table = np.array([splitmix64(seed ^ j) % 2048 for j in range(TABLE_LEN)], dtype=np.uint16)
    idx = np.arange(width * height, dtype=np.int64)
    n = 0
    for path in sorted(root.glob("*.png")):
        seq = int(path.stem)
        img = Image.open(path)
        if img.mode not in ("I;16", "I;16B", "I"):
            sys.exit(f"{path.name}: mode {img.mode}, not 16-bit")
        got = np.array(img, dtype=np.int64).reshape(-1)
        expected = table[(idx + seq * SHIFT) % TABLE_LEN].astype(np.int64)
        if img.size != (width, height) or not np.array_equal(got, expected):
            sys.exit(f"{path.name}: pixels differ from frame {seq}")
        n += 1
    print(n)


if __name__ == "__main__":
    main()
