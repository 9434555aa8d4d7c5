"""Loads exported PNGs with Pillow, checks each is a 16-bit image of the given size, and reports
a CRC-32 of its pixels as little-endian 16-bit samples, for the caller to compare with the
synthetic frame its name says (the scene is a render too large to re-derive here).

usage: check_png.py DIR WIDTH HEIGHT   -> prints a JSON list of [seq, crc32], one per image
"""
import json
import pathlib
import sys
import zlib

import numpy as np
from PIL import Image


def main():
    root, width, height = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    images = []
    for path in sorted(root.glob("*.png")):
        img = Image.open(path)
        if img.mode not in ("I;16", "I;16B", "I"):
            sys.exit(f"{path.name}: mode {img.mode}, not 16-bit")
        if img.size != (width, height):
            sys.exit(f"{path.name}: {img.size}, not {width}x{height}")
        got = np.array(img, dtype=np.int64).reshape(-1).astype("<u2")
        images.append([int(path.stem), zlib.crc32(got.tobytes())])
    print(json.dumps(images))


if __name__ == "__main__":
    main()
