"""Crash-safe, append-only recording of messages (the recorder's log, replay's input).

File layout (all integers little-endian)::

    b"RTKREC1\\n"                                   magic line, 8 bytes
    record 0 (kind HEADER): payload = u8 0 | i64 recv_ns | msgpack map (see below)
    record 1..: kind INPUT or OUTPUT:  payload = u8 kind | i64 recv_ns | codec.pack(message)
                kind CAMERA_END:       payload = u8 4 | i64 recv_ns | camera name (utf-8)
                kind END (last):       payload = u8 3 | i64 recv_ns

    record = u32 len(payload) | u32 crc32(payload) | payload

The header map is ``{"format": 1, "created_ns": wall-clock ns since the epoch,
"created_monotonic_ns": int, "rtkin_version": str, "meta": {user metadata}}`` (user metadata:
rig calibration TOML text, run config, ...; msgpack-able, str keys, tuples come back as lists).

``recv_ns`` is the monotonic time (int ns) at which the recording process received the message:
the clock replay follows. Kinds: :data:`INPUT` (e.g. a KeypointFrame as the sync stage received it),
:data:`OUTPUT` (e.g. a Skeleton3D), :data:`CAMERA_END` (the sync stage took a camera's end-of-stream
message: its slots stopped waiting for that camera, so replay must do the same to reproduce the run).

Crash safety: records are only appended, each in one ``write`` call, and flushed to the OS at
least every ``flush_interval_s`` (checked on each write). A process killed mid-write leaves at
most a partial last record, which :class:`RecordingReader` detects (length past the end of the
file, CRC mismatch) and ignores, returning every whole record before it. Damage in the middle of a
file (a bad disk block, bytes overwritten) costs only the damaged records: the reader resumes at
the next whole record (a valid length, kind, plausible time and CRC) and reports what it skipped. Data still in the
process's buffer at a crash (less than ``flush_interval_s`` of records, or records written since
the last write if writes stop: call :meth:`RecordingWriter.flush` on idle) is lost; with
``fsync=True`` each flush also survives an OS crash or power loss.
"""

from __future__ import annotations

import enum
import os
import struct
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import msgpack

from rtkin import __version__
from rtkin.core.codec import DEFAULT_LIMITS, DecodeError, DecodeLimits, Message, pack, unpack

__all__ = ["RecordingSettings", 
    "FORMAT_VERSION",
    "HEADER",
    "INPUT",
    "MAGIC",
    "OUTPUT",
    "Record",
    "RecordKind",
    "RecordingError",
    "RecordingReader",
    "RecordingWriter",
    "read_all",
    "recorded_outputs",
]

MAGIC = b"RTKREC1\n"
FORMAT_VERSION = 1

_FRAME = struct.Struct("<II")  # payload length, crc32(payload)
_PREFIX = struct.Struct("<Bq")  # kind, recv_ns: the start of every payload
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

#: Largest header record payload the reader accepts by default, bytes (calibration + config text).
DEFAULT_MAX_HEADER_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class RecordingSettings:
    """Attributes:
        enabled: record every KeypointFrame the sync node receives (crash-safe log).
        path: recording file ("" = ``<output_dir>/<name>.rtkrec``).
        outputs: also record the Skeleton3D outputs.
    """

    enabled: bool = True
    path: str = ""
    outputs: bool = True


class RecordKind(enum.IntEnum):
    """Kind of a record: the header, a message a stage received, one it produced, or the end
    marker that a writer closing cleanly appends (a killed writer leaves none), or a camera's end
    of stream as the stage took it (its message is the camera name)."""

    HEADER = 0
    INPUT = 1
    OUTPUT = 2
    END = 3
    CAMERA_END = 4


HEADER, INPUT, OUTPUT, END = RecordKind.HEADER, RecordKind.INPUT, RecordKind.OUTPUT, RecordKind.END
CAMERA_END = RecordKind.CAMERA_END
MAX_CAMERA_NAME_BYTES = 256


class RecordingError(ValueError):
    """The file is not a readable recording (bad magic or header), or a bad writer argument."""


class Record(NamedTuple):
    """One recorded message.

    Attributes:
        kind: :data:`INPUT`, :data:`OUTPUT` or :data:`CAMERA_END`.
        recv_ns: monotonic receive time in the recording process, int ns (the replay clock).
        message: the decoded message (KeypointFrame, FrameSet, Skeleton3D or JointAngles), or the
            camera name (str) of a CAMERA_END.
    """

    kind: RecordKind
    recv_ns: int
    message: Message | str


def _frame_record(kind: int, recv_ns: int, body: bytes | bytearray | memoryview) -> bytes:
    """The full bytes of one record: length, crc32, kind, recv_ns, body."""
    prefix = _PREFIX.pack(kind, recv_ns)
    crc = zlib.crc32(body, zlib.crc32(prefix))
    return b"".join((_FRAME.pack(_PREFIX.size + len(body), crc), prefix, body))


def _unpack_header_map(data: bytes | memoryview, max_bytes: int) -> Any:
    return msgpack.unpackb(
        data, raw=False, strict_map_key=True, use_list=True,
        max_str_len=max_bytes, max_bin_len=max_bytes, max_array_len=max_bytes,
        max_map_len=max_bytes, max_ext_len=0,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# writer


class RecordingWriter:
    """Append messages to a new recording file (see the module docstring for the layout).

    Args:
        path: file to create. Its directory must exist.
        meta: user metadata stored in the header (msgpack-able map with str keys), e.g.
            ``{"calibration_toml": text, "config": {...}}``.
        flush_interval_s: flush buffered records to the OS when at least this many seconds (s)
            have passed since the last flush, checked on each write; 0 flushes every record.
        fsync: also ``os.fsync`` at each flush (survives power loss; costs milliseconds).
        overwrite: replace an existing file instead of refusing.

    Attributes:
        path: the file.
        n_records: message records written (the header not counted).
        n_bytes: bytes written to the file so far, magic and header included (buffered or not).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        RecordingError: ``meta`` cannot be stored (not msgpack-able, non-str keys) or bad arguments.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        meta: Mapping[str, Any] | None = None,
        flush_interval_s: float = 0.1,
        fsync: bool = False,
        overwrite: bool = False,
    ) -> None:
        if not flush_interval_s >= 0:  # also rejects NaN
            raise RecordingError(f"flush_interval_s must be >= 0, got {flush_interval_s!r}")
        self.path = Path(path)
        self.flush_interval_s = float(flush_interval_s)
        self.fsync = bool(fsync)
        self.n_records = 0
        self.n_bytes = 0
        header = self._header_bytes({} if meta is None else meta)
        try:
            self._file: BinaryIO | None = open(self.path, "wb" if overwrite else "xb")  # noqa: SIM115
        except FileExistsError as e:
            raise FileExistsError(
                f"recording {str(self.path)!r} already exists; refusing to overwrite it "
                "(choose another path or pass overwrite=True)"
            ) from e
        try:
            self._write_raw(MAGIC + header)
            self.flush()  # a crash from here on leaves a readable (empty) recording
        except BaseException:
            self._file.close()
            self._file = None
            raise

    @staticmethod
    def _header_bytes(meta: Mapping[str, Any]) -> bytes:
        if not isinstance(meta, Mapping):
            raise RecordingError(f"meta must be a mapping, got {type(meta).__name__}")
        header = {
            "format": FORMAT_VERSION,
            "created_ns": time.time_ns(),
            "created_monotonic_ns": time.monotonic_ns(),
            "rtkin_version": __version__,
            "meta": dict(meta),
        }
        try:
            body = msgpack.packb(header, use_bin_type=True)
            _unpack_header_map(body, max(len(body), 1))  # what the reader will do
        except (TypeError, ValueError, OverflowError, msgpack.UnpackException) as e:
            raise RecordingError(f"recording meta cannot be stored as msgpack with str keys: {e}") from e
        return _frame_record(HEADER, header["created_monotonic_ns"], body)

    # ------------------------------------------------------------------ writing
    def write(self, msg: Message, recv_ns: int, kind: int = INPUT) -> None:
        """Append ``msg`` (encoded with :func:`rtkin.core.codec.pack`), received at ``recv_ns`` (int ns)."""
        self.write_packed(pack(msg), recv_ns, kind)

    def write_packed(self, packed: bytes | bytearray | memoryview, recv_ns: int, kind: int = INPUT) -> None:
        """Append an already packed message (output of :func:`rtkin.core.codec.pack`), not re-checked.

        Args:
            packed: bytes from ``codec.pack``; the reader counts undecodable ones as malformed.
            recv_ns: monotonic receive time, int ns (int64).
            kind: :data:`INPUT` or :data:`OUTPUT`.
        """
        if kind != INPUT and kind != OUTPUT:
            raise RecordingError(f"record kind must be INPUT (1) or OUTPUT (2), got {kind!r}")
        if type(recv_ns) is not int:
            if isinstance(recv_ns, bool) or not hasattr(recv_ns, "__index__"):
                raise TypeError(f"recv_ns must be an int (ns), got {type(recv_ns).__name__}")
            recv_ns = recv_ns.__index__()
        if not _INT64_MIN <= recv_ns <= _INT64_MAX:
            raise RecordingError(f"recv_ns {recv_ns} does not fit in int64")
        self._write_raw(_frame_record(kind, recv_ns, packed))
        self.n_records += 1
        if time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def write_camera_end(self, camera: str, recv_ns: int) -> None:
        """Append a :data:`CAMERA_END` record: the stage took ``camera``'s end of stream at ``recv_ns``."""
        name = camera.encode()
        if not 0 < len(name) <= MAX_CAMERA_NAME_BYTES:
            raise RecordingError(f"camera name of {len(name)} bytes (1..{MAX_CAMERA_NAME_BYTES})")
        if type(recv_ns) is not int or not _INT64_MIN <= recv_ns <= _INT64_MAX:
            raise RecordingError(f"recv_ns must be an int64 (ns), got {recv_ns!r}")
        self._write_raw(_frame_record(CAMERA_END, recv_ns, name))
        self.n_records += 1

    def _write_raw(self, data: bytes) -> None:
        if self._file is None:
            raise ValueError(f"recording {str(self.path)!r} is closed")
        self._file.write(data)
        self.n_bytes += len(data)

    def flush(self) -> None:
        """Hand buffered records to the OS (and ``fsync`` if enabled). No-op once closed."""
        if self._file is None:
            return
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())
        self._last_flush = time.monotonic()

    # ------------------------------------------------------------------ lifetime
    @property
    def closed(self) -> bool:
        return self._file is None

    def close(self) -> None:
        """Append the end marker, flush and close the file; further writes raise ValueError. Idempotent."""
        if self._file is None:
            return
        try:
            self._write_raw(_frame_record(END, time.monotonic_ns(), b""))
            self.flush()
        finally:
            self._file.close()
            self._file = None

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"RecordingWriter({str(self.path)!r}, {state}, n_records={self.n_records}, n_bytes={self.n_bytes})"


# ---------------------------------------------------------------------------------------------
# reader


class RecordingReader:
    """Read a recording's header on construction; iterate its records in file order.

    A record that cannot be trusted (length out of range or past the end of the file, CRC
    mismatch) is skipped up to the next whole record, found by scanning forward (its length,
    kind, time and CRC all check out): the bytes skipped are listed in :attr:`damaged`. When no
    whole record follows, iteration stops there, reported in :attr:`truncated`,
    :attr:`tail_bytes_ignored` and :attr:`stop_reason` (a killed writer's cut-off last record). A
    record whose CRC is right but whose message does not decode (or whose kind is unknown) is
    skipped and counted in :attr:`n_malformed`. Each iteration starts from the first record and
    resets the counters.

    Args:
        path: recording file.
        limits: size limits for decoding messages (:class:`rtkin.core.codec.DecodeLimits`); a record
            larger than ``limits.max_total_bytes`` (+ 9 bytes) is treated as corruption.
        max_header_bytes: largest accepted header payload, bytes.
        kinds: record kinds to decode and return (default INPUT and OUTPUT; add :data:`CAMERA_END`
            to see the cameras' ends); records of the others are skipped without decoding (e.g.
            ``(INPUT,)`` for a reader that recomputes the outputs).

    Attributes:
        header: the full header map (``format``, ``created_ns``, ``rtkin_version``, ``meta``, ...).
        meta: the user metadata (``header["meta"]``).
        n_records: records returned by the last (or current) iteration.
        n_malformed: records skipped because their message did not decode.
        truncated: True if the last iteration stopped before the end of the file.
        tail_bytes_ignored: bytes from the first untrusted record to the end of the file.
        stop_reason: why the iteration stopped early, or None.
        damaged: ``(start, end, why)`` byte ranges skipped in the middle of the file (records
            after them were recovered).
        complete: True if the last iteration met the end marker of a cleanly closed writer (a
            killed writer's file ends on whole records but without it).

    Raises:
        RecordingError: missing/bad magic, or a missing, truncated or corrupt header record.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        limits: DecodeLimits = DEFAULT_LIMITS,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        kinds: tuple[int, ...] = (INPUT, OUTPUT),
    ) -> None:
        self.path = Path(path)
        self.limits = limits
        self.kinds = tuple(int(k) for k in kinds)
        self._max_record = _PREFIX.size + limits.max_total_bytes
        self.n_records = 0
        self.n_malformed = 0
        self.truncated = False
        self.complete = False
        self.tail_bytes_ignored = 0
        self.stop_reason: str | None = None
        self.damaged: list[tuple[int, int, str]] = []
        with open(self.path, "rb") as f:
            self.header, self._data_start = self._read_header(f, max_header_bytes)
        meta = self.header.get("meta", {})
        if not isinstance(meta, dict):
            raise RecordingError(f"{self.path}: header 'meta' must be a map, got {type(meta).__name__}")
        self.meta: dict[str, Any] = meta

    def _read_header(self, f: BinaryIO, max_header_bytes: int) -> tuple[dict[str, Any], int]:
        where = str(self.path)
        magic = f.read(len(MAGIC))
        if magic != MAGIC:
            if MAGIC.startswith(magic):
                raise RecordingError(f"{where}: not a recording, too short ({len(magic)} bytes) for the magic line")
            raise RecordingError(f"{where}: not an rtkin recording (magic {magic!r}, expected {MAGIC!r})")
        head = f.read(_FRAME.size)
        if len(head) < _FRAME.size:
            raise RecordingError(f"{where}: header record missing or truncated ({len(head)} of 8 length/crc bytes)")
        length, crc = _FRAME.unpack(head)
        if not _PREFIX.size <= length <= _PREFIX.size + max_header_bytes:
            raise RecordingError(f"{where}: header record length {length} out of range (corrupt header)")
        payload = f.read(length)
        if len(payload) < length:
            raise RecordingError(f"{where}: header record truncated ({len(payload)} of {length} bytes)")
        if zlib.crc32(payload) != crc:
            raise RecordingError(f"{where}: header record CRC mismatch (corrupt header)")
        kind, _ = _PREFIX.unpack_from(payload)
        if kind != HEADER:
            raise RecordingError(f"{where}: first record has kind {kind}, expected the header (0)")
        try:
            header = _unpack_header_map(memoryview(payload)[_PREFIX.size :], max(length, 1))
        except (ValueError, TypeError, msgpack.UnpackException) as e:
            raise RecordingError(f"{where}: header is not valid msgpack: {e}") from e
        if not isinstance(header, dict):
            raise RecordingError(f"{where}: header must be a map, got {type(header).__name__}")
        if header.get("format") != FORMAT_VERSION:
            found = header.get("format")
            raise RecordingError(f"{where}: unsupported recording format {found!r}, expected {FORMAT_VERSION}")
        return header, len(MAGIC) + _FRAME.size + length

    @property
    def bytes_skipped(self) -> int:
        """Bytes skipped in the middle of the file (see :attr:`damaged`)."""
        return sum(e - s for s, e, _ in self.damaged)

    def __iter__(self) -> Iterator[Record]:
        for kind, recv_ns, body in self.raw():
            if kind not in self.kinds and kind in (INPUT, OUTPUT, CAMERA_END):
                continue
            record = self._decode(kind, recv_ns, body)
            if record is None:
                self.n_malformed += 1
                continue
            self.n_records += 1
            yield record

    def raw(self) -> Iterator[tuple[int, int, memoryview]]:
        """Every whole record as ``(kind, recv_ns, packed message)``, not decoded (CRC checked;
        damage skipped and reported as by iteration; the end marker sets :attr:`complete`). For a
        reader that decodes only what it needs (:func:`rtkin.core.codec.unpack_parts`)."""
        self.n_records = self.n_malformed = self.tail_bytes_ignored = 0
        self.truncated, self.stop_reason, self.complete = False, None, False
        self.damaged = []
        with open(self.path, "rb") as f:
            f.seek(self._data_start)
            pos = self._data_start
            while True:
                head = f.read(_FRAME.size)
                if not head:
                    return
                problem, payload = self._read_payload(f, head)
                if problem is not None:
                    nxt = self._resync(f, pos + 1)
                    if nxt is None:
                        self._stop(f, pos, problem)
                        return
                    self.damaged.append((pos, nxt, problem))
                    f.seek(nxt)
                    pos = nxt
                    continue
                pos += _FRAME.size + len(payload)
                kind, recv_ns = _PREFIX.unpack_from(payload)
                if kind == END:
                    self.complete = True  # the writer closed cleanly; nothing follows
                    continue
                yield kind, recv_ns, memoryview(payload)[_PREFIX.size:]

    def _read_payload(self, f: BinaryIO, head: bytes) -> tuple[str | None, bytes]:
        """Read one record's payload after its 8-byte ``head``; return (problem or None, payload)."""
        if len(head) < _FRAME.size:
            return f"record length/crc cut off ({len(head)} of {_FRAME.size} bytes)", b""
        length, crc = _FRAME.unpack(head)
        if not _PREFIX.size <= length <= self._max_record:
            return f"record length {length} out of range [{_PREFIX.size}, {self._max_record}]", b""
        payload = f.read(length)
        if len(payload) < length:
            return f"record runs past the end of the file ({len(payload)} of {length} bytes)", b""
        if zlib.crc32(payload) != crc:
            return "record CRC mismatch", b""
        return None, payload

    def _decode(self, kind: int, recv_ns: int, body) -> Record | None:
        if kind == CAMERA_END:
            try:
                name = bytes(body).decode()
            except UnicodeDecodeError:
                return None
            return Record(CAMERA_END, recv_ns, name) if 0 < len(body) <= MAX_CAMERA_NAME_BYTES else None
        if kind != INPUT and kind != OUTPUT:
            return None
        try:
            msg = unpack(body, self.limits)
        except DecodeError:
            return None
        return Record(RecordKind(kind), recv_ns, msg)

    def _resync(self, f: BinaryIO, start: int) -> int | None:
        """Offset of the first whole record at or after ``start`` (length in range and inside
        the file, a record kind, a receive time within a year of the header's, CRC right), or None."""
        import mmap

        import numpy as np

        size = os.fstat(f.fileno()).st_size
        if size - start < _FRAME.size + _PREFIX.size:
            return None
        t_ref = int(self.header.get("created_monotonic_ns", 0)) if isinstance(self.header, dict) else 0
        year = 365 * 86400 * 10**9
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            chunk = 1 << 20
            for lo in range(start, size - _FRAME.size - _PREFIX.size + 1, chunk):
                hi = min(lo + chunk, size - _FRAME.size - _PREFIX.size + 1)
                kind = np.frombuffer(mm[lo + _FRAME.size: hi + _FRAME.size], dtype=np.uint8)  # a copy
                cand = np.flatnonzero((kind >= INPUT) & (kind <= CAMERA_END)) + lo
                for q in cand.tolist():
                    length, crc = _FRAME.unpack_from(mm, q)
                    if not _PREFIX.size <= length <= self._max_record or q + _FRAME.size + length > size:
                        continue
                    recv_ns = _PREFIX.unpack_from(mm, q + _FRAME.size)[1]
                    if t_ref and abs(recv_ns - t_ref) > year:
                        continue
                    if zlib.crc32(mm[q + _FRAME.size: q + _FRAME.size + length]) == crc:
                        return q
        return None

    def _stop(self, f: BinaryIO, pos: int, problem: str) -> None:
        size = os.fstat(f.fileno()).st_size
        self.truncated = True
        self.tail_bytes_ignored = max(size - pos, 0)
        self.stop_reason = f"stopped at byte {pos}: {problem}; {self.tail_bytes_ignored} tail bytes ignored"

    def __repr__(self) -> str:
        return (
            f"RecordingReader({str(self.path)!r}, n_records={self.n_records}, n_malformed={self.n_malformed}, "
            f"truncated={self.truncated}, tail_bytes_ignored={self.tail_bytes_ignored})"
        )


def read_all(
    path: str | os.PathLike[str], limits: DecodeLimits = DEFAULT_LIMITS
) -> tuple[dict[str, Any], list[Record]]:
    """Read a whole recording: ``(user meta, records)``, stopping at a corrupt tail.

    Use :class:`RecordingReader` directly to learn whether the tail was truncated.
    """
    reader = RecordingReader(path, limits)
    return reader.meta, list(reader)


def recorded_outputs(path: str | os.PathLike, kind=None) -> list:
    """Outputs recorded live, in order (Skeleton3D by default; ``kind=JointAngles`` for angles, or
    a tuple of types). The inputs are skipped without being decoded."""
    from rtkin.core.messages import Skeleton3D

    kind = kind or Skeleton3D
    return [r.message for r in RecordingReader(path, kinds=(OUTPUT,)) if isinstance(r.message, kind)]
