"""Reads a framerec recording with the official Python `mcap` reader and protobuf decoder,
checks each image's shape and encoding and each accelerometer reading (re-derived from (seed,
seq) independently of framerec), and reports a CRC-32 of every image's bytes: the synthetic
scene is a render too large to re-derive here, so the caller compares each CRC with framerec's
definition (`tests/common::check_image_crcs`).

usage: read_recording.py DIR SEED WIDTH HEIGHT
Prints a JSON object: depth frames read, their sequence numbers, drops seen, messages per
channel topic, and `images`: [stream, seq, crc32] for every depth and colour frame. Exits 1 on
any mismatch.
"""
import collections
import json
import struct
import pathlib
import sys
import zlib

from mcap.reader import make_reader
from mcap_protobuf.decoder import DecoderFactory

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
    seqs, drops, problems, images = [], [], [], []
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
                images.append([stream, seq, zlib.crc32(decoded.data)])
                shape = (decoded.width, decoded.height, decoded.encoding)
                if stream != "depth":
                    if shape != (width, height, "rgb8") or len(decoded.data) != width * height * 3:
                        problems.append(f"{stream} {seq}: {decoded.width}x{decoded.height} {decoded.encoding}")
                    continue
                if shape != (width, height, "16UC1") or len(decoded.data) != width * height * 2:
                    problems.append(f"frame {seq}: {decoded.width}x{decoded.height} {decoded.encoding}")
                seqs.append(seq)
    print(json.dumps({"frames": len(seqs), "seqs": seqs, "drops": drops, "channels": channels,
                      "images": images, "problems": problems}))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
