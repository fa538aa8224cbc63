#!/usr/bin/env python3
"""Subscribe to rtkin's outputs with nothing but pyzmq, msgpack and numpy (no rtkin import).

    python tools/subscribe_example.py                                  # JointAngles of everyone, degrees
    python tools/subscribe_example.py tcp://127.0.0.1:5551 sk3d/      # Skeleton3D

It connects to the sync node's outputs and follows the IK workers it announces: the sync status
(``status/sync/``) lists them in ``"ik_endpoints"``; connect to those, disconnect from the others.

The wire format is described in tools/WIRE_FORMAT.md; :func:`decode` is the whole decoder.
"""

from __future__ import annotations

import struct
import sys

import msgpack
import numpy as np
import zmq


def decode(frames):
    """Decode one multipart message ``[topic, header, buf0, buf1, ...]``.

    Returns a dict: ``topic`` (the base, e.g. ``"ja/3/"``), ``seq`` (per-topic sequence number),
    ``stamp_ns`` (or None), ``schema`` (e.g. ``"JointAngles"``), ``fields`` (scalars), ``arrays``
    ({name: numpy array}). Status messages (topic ``status/...``) have schema ``"status"`` and
    their msgpack dict in ``fields``.
    """
    frames = [bytes(f) for f in frames]
    # topic frame: base, a zero byte, u64 big-endian sequence number [, i64 big-endian stamp]
    base, _, rest = frames[0].partition(b"\0")
    seq = struct.unpack(">Q", rest[:8])[0]
    stamp_ns = struct.unpack(">q", rest[8:16])[0] if len(rest) == 16 else None
    out = {"topic": base.decode(), "seq": seq, "stamp_ns": stamp_ns}
    if base.startswith(b"status/"):
        return {**out, "schema": "status", "fields": msgpack.unpackb(frames[1], raw=False), "arrays": {}}
    header = msgpack.unpackb(frames[1], raw=False)
    if header["v"] != 1:
        raise ValueError(f"unsupported schema version {header['v']}")
    arrays = {}
    # one frame per header["arrays"] entry, in order: raw little-endian C-order bytes
    for (name, dtype, shape), buf in zip(header["arrays"], frames[2:]):
        arrays[name] = np.frombuffer(buf, dtype=np.dtype(dtype)).reshape(shape)
    return {**out, "schema": header["schema"], "fields": header["fields"], "arrays": arrays}


def main(argv: list[str]) -> int:
    sync = argv[1] if len(argv) > 1 else "tcp://127.0.0.1:5551"  # the sync node's outputs
    topics = argv[2:] or ["ja/"]
    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, 100)  # small queue: a slow reader loses messages, never slows rtkin
    for t in topics + ["status/sync/"]:
        sock.setsockopt(zmq.SUBSCRIBE, t.encode())
    sock.connect(sync)
    workers: set[str] = set()  # one IK worker process per person: the ones the run started
    print(f"listening on {sync} (and the IK workers it announces) for {topics} (Ctrl-C to stop)", file=sys.stderr)
    try:
        while True:
            if not sock.poll(200):  # poll in slices so Ctrl-C is handled promptly
                continue
            msg = decode(sock.recv_multipart())
            f, a = msg["fields"], msg["arrays"]
            if msg["topic"] == "status/sync/" and isinstance(f.get("ik_endpoints"), list):
                announced = {e for e in f["ik_endpoints"] if isinstance(e, str)}
                host = sync.rsplit(":", 1)[0]  # a wildcard bind (tcp://*:5552) is reached at the sync host
                announced = {e.replace("tcp://*", host).replace("tcp://0.0.0.0", host) for e in announced}
                for e in workers - announced:
                    sock.disconnect(e)
                for e in announced - workers:
                    sock.connect(e)
                workers = announced
                if "status/sync/".startswith(tuple(topics)):
                    print(msg["topic"], f)
                continue
            if msg["schema"] == "JointAngles":
                print(f"person {f['person_id']}  t={f['time_ns'] / 1e9:.3f} s  rms={f['marker_rms_m'] * 1000:.1f} mm")
                for name, v, q, fl in zip(f["names"], a["values"], a["quality"], a["flags"]):
                    # translations (pelvis_tx/ty/tz) are in metres, every other coordinate in radians
                    shown = f"{v:9.3f} m  " if name.endswith(("_tx", "_ty", "_tz")) else f"{np.degrees(v):9.2f} deg"
                    print(f"  {name:24s} {shown}  q={q:.2f}  flags={int(fl)}")
            elif msg["schema"] == "Skeleton3D":
                ids = a["person_ids"].tolist()
                print(f"Skeleton3D t={f['time_ns'] / 1e9:.3f} s  {f['skeleton']}  people {ids}  points {a['points'].shape}")
            else:
                print(msg["topic"], msg["fields"])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close(linger=0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
