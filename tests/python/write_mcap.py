"""Writes an MCAP file with the official Python `mcap` writer, for framerec's any-MCAP tests.

usage: write_mcap.py OUT COMPRESSION(zstd|lz4|none) IMAGES [seq0]

With `seq0` every message's sequence number is 0, as many writers leave it.

A `foxglove.RawImage` channel `/cam` (8x6 16UC1 images whose pixels are their number), a JSON
channel `/log` without a schema, one message on each per image, an attachment and a metadata
record; small chunks so that there are many.
"""

import struct
import sys

from mcap.writer import CompressionType, Writer

W, H = 8, 6


def raw_image(seq: int) -> bytes:
    data = struct.pack("<H", seq & 0xFFFF) * (W * H)
    out = bytearray()
    out += bytes([(2 << 3) | 5]) + struct.pack("<I", W)
    out += bytes([(3 << 3) | 5]) + struct.pack("<I", H)
    out += bytes([(4 << 3) | 2, 5]) + b"16UC1"
    out += bytes([(5 << 3) | 5]) + struct.pack("<I", W * 2)
    out += bytes([(6 << 3) | 2, len(data)]) + data
    return bytes(out)


def main() -> None:
    out, compression, images = sys.argv[1], sys.argv[2], int(sys.argv[3])
    numbered = sys.argv[4:] != ["seq0"]
    kind = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}
    with open(out, "wb") as f:
        w = Writer(f, compression=kind[compression], chunk_size=1024)
        w.start(profile="", library="python mcap test writer")
        schema = w.register_schema("foxglove.RawImage", "protobuf", b"not a real descriptor")
        cam = w.register_channel("/cam", "protobuf", schema)
        log = w.register_channel("/log", "json", 0)
        for i in range(images):
            t = 1_000_000_000 + i * 1_000_000
            w.add_message(cam, log_time=t, publish_time=t, data=raw_image(i), sequence=i if numbered else 0)
            w.add_message(log, log_time=t, publish_time=t, data=b'{"i": %d}' % i, sequence=i if numbered else 0)
        w.add_attachment(5, 5, "calibration.txt", "text/plain", b"fx=1")
        w.add_metadata("site", {"where": "lab"})
        w.finish()


if __name__ == "__main__":
    main()
