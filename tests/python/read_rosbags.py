"""Reads a framerec ros2-profile recording with the Python `rosbags` package (`AnyReader`, the
ROS 2 users' reader), checks each image's shape and each Imu's acceleration (re-derived
independently of framerec), and reports a CRC-32 of every image's bytes for the caller to
compare with framerec's synthetic definition (the scene is a render too large to re-derive
here).

usage: read_rosbags.py PATH SEED WIDTH HEIGHT
PATH is a recording directory (read through its metadata.yaml) or one segment file. The
synthetic content depends on a frame's sequence number, which a ROS 2 message does not carry:
the MCAP `sequence` of each (topic, log time) is taken from the official `mcap` reader.
Prints a JSON object: messages per topic, image frames read, `crcs`: [encoding, [candidate
seqs], crc32] per image, the drop notices (as rosbags deserialized them) and the notices the
mcap reader counted. Exits 1 on any mismatch.
"""
import collections
import json
import math
import pathlib
import struct
import sys
import zlib

from mcap.reader import make_reader
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from read_recording import expected_accel  # noqa: E402


def sequences(files):
    """(topic, log_time) -> MCAP sequences, and the number of drop notices, per the mcap reader."""
    seqs, notices = collections.defaultdict(list), 0
    for path in files:
        with open(path, "rb") as f:
            for _, channel, message in make_reader(f).iter_messages(log_time_order=False):
                seqs[(channel.topic, message.log_time)].append(message.sequence)
                notices += channel.topic == "/framerec/drops"
    return seqs, notices


def main():
    root, seed = pathlib.Path(sys.argv[1]), int(sys.argv[2])
    width, height = int(sys.argv[3]), int(sys.argv[4])
    files = sorted(root.glob("*.mcap")) if root.is_dir() else [root]
    seqs, mcap_notices = sequences(files)
    topics, drops, problems, images, crcs = collections.Counter(), [], [], 0, []
    with AnyReader([root], default_typestore=get_typestore(Stores.LATEST)) as reader:
        for conn, t, raw in reader.messages():
            topics[conn.topic] += 1
            msg = reader.deserialize(raw, conn.msgtype)
            if conn.msgtype == "framerec_msgs/msg/Drop":
                drops.append({"stream": msg.stream, "reason": msg.reason, "first_seq": msg.first_seq,
                              "last_seq": msg.last_seq, "count": msg.count})
                continue
            candidates = seqs.get((conn.topic, t), [])
            if conn.msgtype == "sensor_msgs/msg/Imu":
                a = msg.linear_acceleration
                got = (a.x, a.y, a.z)
                ok = any(
                    all(math.isclose(g, c / 819.0 * 9.80665) for g, c in
                        zip(got, struct.unpack("<hhh", expected_accel(seed, s)[:6])))
                    for s in candidates)
                if not ok:
                    problems.append(f"{conn.topic} at {t}: acceleration {got} is no reading")
                continue
            data = msg.data.tobytes()
            size = width * height * (3 if msg.encoding == "rgb8" else 2)
            if (msg.width, msg.height) != (width, height) or len(data) != size or not candidates:
                problems.append(f"{conn.topic} at {t}: {msg.width}x{msg.height} {msg.encoding}")
            crcs.append([msg.encoding, candidates, zlib.crc32(data)])
            images += 1
    print(json.dumps({"topics": topics, "images": images, "crcs": crcs, "drops": drops,
                      "mcap_notices": mcap_notices, "problems": problems}))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
