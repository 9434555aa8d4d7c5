"""Writes a rosbag2 bag with MCAP storage with the Python `rosbags` package, for framerec's
any-MCAP tests.

usage: write_rosbag.py OUT_DIR MESSAGES

Topics `/chatter` (std_msgs/msg/String) and `/cam` (sensor_msgs/msg/Image, 8x6 mono16), one
message on each per step: CDR messages, ros2msg schemas, profile ros2.
"""

import sys

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore


def main() -> None:
    out, n = sys.argv[1], int(sys.argv[2])
    ts = get_typestore(Stores.ROS2_HUMBLE)
    String = ts.types["std_msgs/msg/String"]
    Image = ts.types["sensor_msgs/msg/Image"]
    Header = ts.types["std_msgs/msg/Header"]
    Time = ts.types["builtin_interfaces/msg/Time"]
    with Writer(out, version=8, storage_plugin=StoragePlugin.MCAP) as w:
        chatter = w.add_connection("/chatter", String.__msgtype__, typestore=ts)
        cam = w.add_connection("/cam", Image.__msgtype__, typestore=ts)
        for i in range(n):
            t = 1_000_000_000 + i * 1_000_000
            w.write(chatter, t, ts.serialize_cdr(String(data=f"hello {i}"), String.__msgtype__))
            img = Image(
                header=Header(stamp=Time(sec=1, nanosec=i), frame_id="cam"),
                height=6, width=8, encoding="mono16", is_bigendian=0, step=16,
                data=np.full(96, i % 256, dtype=np.uint8),
            )
            w.write(cam, t, ts.serialize_cdr(img, Image.__msgtype__))


if __name__ == "__main__":
    main()
