"""Reads a framerec recording with the official Python `mcap` reader and protobuf decoder,
re-derives every synthetic frame from (seed, seq) independently of framerec, and checks them.

usage: read_recording.py DIR SEED WIDTH HEIGHT
Prints a JSON object: depth frames read, their sequence numbers, drops seen, and messages per
channel topic. Colour (rgb8) and accelerometer frames are re-derived and checked too. Exits 1
on any mismatch.
"""
import collections
import json
import struct
import pathlib
import sys

import numpy as np
from mcap.reader import make_reader
from mcap_protobuf.decoder import DecoderFactory

TABLE_LEN = 65521
SHIFT = 7919
MASK = (1 << 64) - 1


def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def expected_accel(seed, seq):
    r = splitmix64(seed ^ 0xACCE1 ^ seq)
    words = [((r >> shift) & 0xFFFF) % 1639 - 819 for shift in (0, 16, 32)]
    tilt = seq % 61 - 30
    return struct.pack("<hhhbBI", *words, tilt, 0, 0)


def main():
    root, seed, width, height = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    table = np.array([splitmix64(seed ^ j) % 2048 for j in range(TABLE_LEN)], dtype="<u2")
    idx = np.arange(width * height, dtype=np.int64)
    colour_table = np.array([splitmix64((seed + 1) ^ j) % 2048 for j in range(TABLE_LEN)], dtype="<u2")
    colour_len = width * height * 3
    colour_idx = np.arange((colour_len + 1) // 2, dtype=np.int64)
    seqs, drops, problems = [], [], []
    channels = collections.Counter()
    factory = DecoderFactory()
    for path in sorted(root.glob("*.mcap")):
        with open(path, "rb") as f:
            reader = make_reader(f)
            summary = reader.get_summary()
            if summary is None:
                problems.append(f"{path.name}: no summary")
            decoders = {}
            for schema, channel, message in reader.iter_messages(log_time_order=False):
                channels[channel.topic] += 1
                if channel.topic == "/framerec/drops":
                    drops.append(json.loads(message.data))
                    continue
                if channel.id not in decoders:
                    decoders[channel.id] = factory.decoder_for(channel.message_encoding, schema)
                decoded = decoders[channel.id](message.data)
                seq = message.sequence
                stream = channel.metadata.get("stream", "depth")
                if schema.name == "framerec.Accelerometer":
                    if decoded.raw != expected_accel(seed, seq):
                        problems.append(f"{stream} {seq}: raw reading differs")
                    continue
                if stream != "depth":
                    want = colour_table[(colour_idx + seq * SHIFT) % TABLE_LEN].tobytes()[:colour_len]
                    if decoded.encoding != "rgb8" or decoded.data != want:
                        problems.append(f"{stream} {seq}: {decoded.encoding} bytes differ")
                    continue
                expected = table[(idx + seq * SHIFT) % TABLE_LEN].tobytes()
                if (decoded.width, decoded.height, decoded.encoding) != (width, height, "16UC1"):
                    problems.append(f"frame {seq}: {decoded.width}x{decoded.height} {decoded.encoding}")
                elif decoded.data != expected:
                    problems.append(f"frame {seq}: bytes differ")
                seqs.append(seq)
    print(json.dumps({"frames": len(seqs), "seqs": seqs, "drops": drops, "channels": channels, "problems": problems}))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
