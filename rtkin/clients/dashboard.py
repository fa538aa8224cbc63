"""Live browser dashboard: joint-angle curves and readouts, a 3D stick figure, cameras, latency.

One process-local object, :class:`Dashboard`, runs two background threads:

* a ZeroMQ thread subscribing to the sync node's outputs (``sk3d/`` Skeleton3D, ``status/``
  status dicts, ``tap/`` tapped KeypointFrames for per-camera rates) and to the IK workers the
  sync node announces (``ja/`` JointAngles, ``status/``; see :mod:`rtkin.runtime.announce`: a
  process that binds an IK port on its own is never heard). It keeps only the LATEST state per
  stream (a dict behind a lock): nothing is queued, so a slow consumer can never slow a publisher
  (ZeroMQ PUB drops beyond its high-water mark, and this thread drains its socket continuously).
* an asyncio thread running a ``websockets`` (>= 14, asyncio API) server that serves the page
  (``rtkin/clients/web/*``) over plain HTTP through ``process_request`` and pushes a compact JSON
  snapshot to each WebSocket client (``/ws``) ``rate_hz`` times per second. Each client has a
  one-slot mailbox: a client that reads slowly (or never) gets the newest snapshot when it is
  ready again, the older ones are dropped; it never holds up the others.

Snapshot (JSON, one object per push)::

    {"type": "snapshot", "seq": n, "now_ns": monotonic ns,
     "people": [{"id": 3, "time_ns", "capture_ns", "latency_ms", "age_ms", "marker_rms_mm",
                 "names": [...], "values": [...deg or m...], "units": ["deg"|"m", ...],
                 "quality": [...0..1...], "flags": [...uint8...]}],
     "skeleton": {"name": "HALPE_26", "bones": [[parent, child], ...], "capture_ns", "latency_ms",
                  "age_ms", "people": [{"id", "points": [[x, y, z] | null, ...]}]} | null,
     "latency_ms": {"skeleton": {"last", "p50", "p95"}, "angles": {...}},
     "cameras": {"cam01": {"frames", "fps", "last_seen_ms", "residual_px", "baseline_px", "alarm"}},
     "health": {"alarms": [...], "cameras": {...}} | null,
     "sync": {counters} | null, "status": {node: {"age_ms", ...summary}}}

On connect a client first gets ``{"type": "hello", "window_s", "targets", "rate_hz"}``.

Who it answers (every HTTP and WebSocket request): the ``Host`` header must name this server
(loopback names when bound to loopback; an IP address, this machine's name or ``allowed_hosts``
otherwise: a DNS-rebinding page's name is refused), and an ``Origin`` header, when present, must be
this same origin or one of ``allowed_origins`` (a foreign web page cannot read the stream).
Bound to a non-loopback address it also requires a token generated per run, printed once in the
URL (``?token=...``) and then kept in an HttpOnly cookie; the page, ``/ws`` and ``/snapshot.json``
refuse requests without it (the static files hold no data). Refusals are counted in
:attr:`Dashboard.refused`.

Latencies are ``time.monotonic_ns() - capture_ns`` when the dashboard received the message: capture
times are in the sync host's monotonic clock (cameras on other hosts convert theirs, see
:mod:`rtkin.runtime.clock`), so they are right on the sync host.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import math
import mimetypes
import secrets
import socket
import threading
import time
from collections import deque
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Iterable
from urllib.parse import parse_qs

import numpy as np
import zmq

from rtkin.core.messages import JointAngles, KeypointFrame, Skeleton3D
from rtkin.runtime.announce import SYNC_STATUS, IKFollower
from rtkin.runtime.security import is_wildcard_host
from rtkin.runtime.transport import Receiver

__all__ = ["Dashboard", "WEB_DIR", "DEFAULT_COORDINATES", "is_translational", "parse_target", "serve_dashboard"]

WEB_DIR = Path(__file__).with_name("web")
DEFAULT_COORDINATES = ("knee_angle_r", "hip_flexion_r", "elbow_flex_r")
SEND_BUFFER_BYTES = 128 * 1024  # kernel send buffer per WebSocket client
_TRANSLATIONS = ("_tx", "_ty", "_tz")
_CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                  ".css": "text/css; charset=utf-8", ".json": "application/json", ".png": "image/png",
                  ".svg": "image/svg+xml", ".ico": "image/x-icon"}


def is_translational(name: str) -> bool:
    """True for an OpenSim translational coordinate (``pelvis_tx`` ...): metres, not degrees."""
    return name.endswith(_TRANSLATIONS)


class _Latency:
    """Last value and p50/p95 over the last ``n`` samples, ms."""

    def __init__(self, n: int = 120):
        self.samples: deque[float] = deque(maxlen=n)

    def add(self, ms: float) -> None:
        self.samples.append(ms)

    def summary(self) -> dict | None:
        if not self.samples:
            return None
        a = np.fromiter(self.samples, float)
        return {"last": round(self.samples[-1], 1), "p50": round(float(np.percentile(a, 50)), 1),
                "p95": round(float(np.percentile(a, 95)), 1)}


class _CameraRate:
    __slots__ = ("frames", "last_ns", "times")

    def __init__(self):
        self.frames = 0
        self.last_ns = 0
        self.times: deque[int] = deque(maxlen=64)


def _r(x: float, nd: int) -> float | None:
    x = float(x)
    return round(x, nd) if math.isfinite(x) else None


class _State:
    """Latest state of every stream; written by the ZMQ thread, read by the server (under ``lock``)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.angles: dict[int, tuple[JointAngles, int]] = {}  # person -> (message, received ns)
        self.skeleton: tuple[Skeleton3D, int] | None = None
        self.status: dict[str, tuple[dict, int]] = {}  # node -> (status dict, received ns)
        self.cameras: dict[str, _CameraRate] = {}
        self.lat_sk = _Latency()
        self.lat_ja = _Latency()
        self.received = 0
        self.version = 0  # bumps on every update


def _sync_line(sync_d: dict) -> dict:
    """The sync node's counters for the page: its scalar counts, what it shed (overload) and what
    it refused at the node boundary, by reason."""
    out = {k: v for k, v in (sync_d.get("sync") or {}).items() if isinstance(v, (int, float))}
    shed = sync_d.get("shed") or {}
    if isinstance(shed, dict) and shed.get("slots"):
        out["shed"] = shed["slots"]
    refused = (sync_d.get("validation") or {}).get("refused") or {}
    if isinstance(refused, dict):
        out.update({f"refused {k}": v for k, v in refused.items() if isinstance(v, (int, float))})
    return out


class Dashboard:
    """Browser dashboard of a live run (see the module docstring).

    Args:
        skeleton_endpoint: the sync node's output PUB (``cfg.transport.outputs``); "" = none.
        angles_endpoints: endpoints to take JointAngles from as given (you vouch for them); the IK
            workers the sync node announces are followed anyway (``follow_ik``).
        host, port: where the HTTP/WebSocket server listens (loopback by default; port 0 = any
            free port, read :attr:`port` after :meth:`start`).
        window_s: seconds of curves the page shows.
        targets: initial target bands ``{coordinate: (min, max)}`` in the page's units (degrees
            for rotations, m for translations); the page may override them (kept in localStorage).
        rate_hz: snapshots pushed per second to each client.
        person_timeout_s: forget a person's angles after this long without a message.
        follow_ik: connect to the IK workers announced on ``status/sync/``.
        keys, client: CURVE key folder (``rtkin keys``) and this host's client name, for a run
            bound on a network address.
        allowed_hosts: more ``Host`` names to answer (``"lab-pc.example.org"`` or with ``:port``).
        allowed_origins: more origins allowed to open the WebSocket (``"http://host:port"``).
        token: the access token (None: generated when ``require_token``).
        require_token: require the token (None: when bound to a non-loopback address).
        open_timeout_s: a connection must finish its HTTP / WebSocket handshake within this
            (slow or stalled ones are closed).
    """

    def __init__(self, skeleton_endpoint: str, angles_endpoints: Iterable[str] = (), host: str = "127.0.0.1",
                 port: int = 8765, window_s: float = 10.0, targets: dict | None = None, rate_hz: float = 25.0,
                 person_timeout_s: float = 3.0, web_dir: str | Path | None = None, follow_ik: bool = True,
                 keys: str | None = None, client: str = "", allowed_hosts: Iterable[str] = (),
                 allowed_origins: Iterable[str] = (), token: str | None = None, require_token: bool | None = None,
                 open_timeout_s: float = 10.0):
        self.skeleton_endpoint = skeleton_endpoint
        self.angles_endpoints = list(angles_endpoints)
        self.host = host
        self.port = int(port)
        self.window_s = float(window_s)
        self.targets = {str(k): [float(v[0]), float(v[1])] for k, v in (targets or {}).items()}
        self.rate_hz = float(rate_hz)
        self.person_timeout_ns = int(person_timeout_s * 1e9)
        self.web_dir = Path(web_dir) if web_dir else WEB_DIR
        self.follow_ik = follow_ik
        self.keys, self.client = keys, client
        self.loopback = _is_loopback_host(host)
        self.allowed_hosts = {h.lower().rstrip(".") for h in allowed_hosts}
        self.allowed_origins = {o.lower().rstrip("/") for o in allowed_origins}
        need = (not self.loopback) if require_token is None else bool(require_token)
        self.token = (token or secrets.token_urlsafe(18)) if need else None
        self.open_timeout_s = float(open_timeout_s)
        self.refused = {"host": 0, "origin": 0, "token": 0}
        self.ik_endpoints: list[str] = []  # announced IK workers currently connected
        self.state = _State()
        self.clients = 0
        self.sent = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server_ready = threading.Event()
        self._server_error: BaseException | None = None
        self._bones_cache: dict[str, list[list[int]]] = {}
        self._seq = 0
        self._clients: set[_Client] = set()

    @classmethod
    def from_config(cls, cfg, **kwargs) -> "Dashboard":
        """A dashboard on a run's outputs (``cfg.transport.outputs``; the IK workers it announces
        are followed), with the run's keys and ``[view]`` settings."""
        v, t = cfg.view, cfg.transport
        opts = {"host": v.host, "port": v.port, "window_s": v.window_s,
                "targets": {name: (lo, hi) for name, lo, hi in v.targets},
                "allowed_hosts": v.allowed_hosts, "allowed_origins": v.allowed_origins,
                "keys": str(cfg.path(t.keys)) if t.keys else None, "client": t.client, **kwargs}
        return cls(t.outputs, **opts)

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """The page's address (with the token when one is required)."""
        host = socket.gethostname() if is_wildcard_host(self.host) or not self.host else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    def start(self, timeout_s: float = 5.0) -> "Dashboard":
        """Start the ZMQ and server threads; returns once the server listens (raises if it cannot)."""
        if self._threads:
            return self
        self._stop.clear()
        zt = threading.Thread(target=self._zmq_loop, name="rtkin-dashboard-zmq", daemon=True)
        st = threading.Thread(target=self._server_thread, name="rtkin-dashboard-http", daemon=True)
        self._threads = [zt, st]
        zt.start()
        st.start()
        if not self._server_ready.wait(timeout_s) or self._server_error is not None:
            self.stop()
            raise RuntimeError(f"dashboard server did not start on {self.host}:{self.port}: {self._server_error}")
        return self

    def stop(self) -> None:
        """Stop both threads and close the sockets (idempotent)."""
        self._stop.set()
        loop = self._loop
        if loop is not None and loop.is_running():
            try:
                loop.call_soon_threadsafe(lambda: None)  # wake it: the pusher checks _stop
            except RuntimeError:
                pass
        for t in self._threads:
            t.join(5)
        self._threads = []
        self._server_ready.clear()

    def __enter__(self) -> "Dashboard":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ ZMQ side

    def _zmq_loop(self) -> None:
        from rtkin.clients.subscriber import client_context

        ctx = client_context(self.keys, self.client) or zmq.Context()
        rx = None
        try:
            first = self.skeleton_endpoint or (self.angles_endpoints[0] if self.angles_endpoints else "")
            if not first:
                self._stop.wait()
                return
            rx = Receiver(ctx, first, [b"sk3d/", b"status/", b"tap/", b"ja/"], bind=False, rcvhwm=1000)
            follow = IKFollower(rx, first, fixed=self.angles_endpoints) if self.follow_ik and self.skeleton_endpoint else None
            for ep in self.angles_endpoints:
                if ep != first:
                    rx.connect(ep)
            sock = rx.socket
            while not self._stop.is_set():
                if not sock.poll(50):
                    continue
                for _ in range(1000):  # drain what is there (bounded so stop stays responsive)
                    try:
                        frames = sock.recv_multipart(flags=zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    got = rx.parse(frames)
                    if got is None:
                        continue
                    if follow is not None and got.base == SYNC_STATUS and follow.update(got.message):
                        self.ik_endpoints = list(follow.connected)
                    self._update(got.base, got.message)
        finally:
            if rx is not None:
                rx.close()
            ctx.destroy(linger=0)

    def _update(self, base: bytes, msg) -> None:
        now = time.monotonic_ns()
        s = self.state
        with s.lock:
            s.received += 1
            s.version += 1
            if isinstance(msg, JointAngles):
                s.angles[msg.person_id] = (msg, now)
                s.lat_ja.add((now - msg.capture_ns) / 1e6)
            elif isinstance(msg, Skeleton3D):
                s.skeleton = (msg, now)
                s.lat_sk.add((now - msg.capture_ns) / 1e6)
            elif isinstance(msg, KeypointFrame):
                cam = s.cameras.get(msg.camera)
                if cam is None:
                    cam = s.cameras[msg.camera] = _CameraRate()
                cam.frames += 1
                cam.last_ns = now
                cam.times.append(msg.capture_ns)
            elif isinstance(msg, dict):
                node = base.decode(errors="replace").strip("/").split("/", 1)[-1] or "?"
                s.status[node] = (msg, now)

    # ------------------------------------------------------------------ snapshot

    def _bones(self, name: str) -> list[list[int]]:
        if name not in self._bones_cache:
            try:
                from rtkin.core.skeletons import get_skeleton
                self._bones_cache[name] = [[int(a), int(b)] for a, b in get_skeleton(name).bones()]
            except KeyError:
                self._bones_cache[name] = []
        return self._bones_cache[name]

    def snapshot(self) -> dict:
        """The JSON-able snapshot pushed to browsers (see the module docstring)."""
        now = time.monotonic_ns()
        s = self.state
        with s.lock:
            for pid in [p for p, (_, t) in s.angles.items() if now - t > self.person_timeout_ns]:
                del s.angles[pid]
            angles = sorted(s.angles.items())
            skeleton = s.skeleton
            status = dict(s.status)
            cams = {name: (c.frames, c.last_ns, list(c.times)) for name, c in s.cameras.items()}
            lat = {"skeleton": s.lat_sk.summary(), "angles": s.lat_ja.summary()}
            received = s.received
        self._seq += 1
        people = []
        for pid, (ja, t) in angles:
            trans = [is_translational(n) for n in ja.names]
            vals = [_r(v, 4) if tr else _r(math.degrees(v), 2) for v, tr in zip(ja.values.tolist(), trans)]
            people.append({
                "id": int(pid), "time_ns": int(ja.time_ns), "capture_ns": int(ja.capture_ns),
                "latency_ms": round((t - ja.capture_ns) / 1e6, 1), "age_ms": round((now - t) / 1e6, 1),
                "marker_rms_mm": _r(ja.marker_rms_m * 1000.0, 1),
                "names": list(ja.names), "values": vals, "units": ["m" if tr else "deg" for tr in trans],
                "quality": [round(float(q), 2) for q in ja.quality.tolist()],
                "flags": [int(f) for f in ja.flags.tolist()],
            })
        sk_out = None
        if skeleton is not None:
            sk, t = skeleton
            pts = np.round(sk.points, 3)
            sk_out = {"name": sk.skeleton, "bones": self._bones(sk.skeleton), "time_ns": int(sk.time_ns),
                      "capture_ns": int(sk.capture_ns), "latency_ms": round((t - sk.capture_ns) / 1e6, 1),
                      "age_ms": round((now - t) / 1e6, 1),
                      "people": [{"id": int(pid), "points": [p if math.isfinite(p[0]) else None
                                                             for p in pts[i].tolist()]}
                                 for i, pid in enumerate(sk.person_ids.tolist())]}
        sync_status = status.get("sync")
        sync_d = sync_status[0] if sync_status else {}
        health = sync_d.get("health") if isinstance(sync_d, dict) else None
        cameras: dict[str, dict] = {}
        for name, (frames, last_ns, times) in sorted(cams.items()):
            fps = None
            if len(times) >= 2 and times[-1] > times[0]:
                fps = round((len(times) - 1) / ((times[-1] - times[0]) / 1e9), 1)
            cameras[name] = {"frames": frames, "fps": fps, "last_seen_ms": round((now - last_ns) / 1e6, 1)}
        if isinstance(health, dict):
            for name, h in (health.get("cameras") or {}).items():
                d = cameras.setdefault(name, {"frames": None, "fps": None, "last_seen_ms": None})
                if isinstance(h, dict):
                    d.update({k: h.get(k) for k in ("residual_px", "baseline_px", "alarm")})
        nodes = {}
        for node, (d, t) in status.items():
            nodes[node] = {"age_ms": round((now - t) / 1e6, 1),
                           **{k: d[k] for k in ("outputs", "latency_ms", "receiver", "counters") if k in d}}
        return {"type": "snapshot", "seq": self._seq, "now_ns": now, "received": received, "people": people,
                "skeleton": sk_out, "latency_ms": lat, "cameras": cameras, "health": health,
                "sync": _sync_line(sync_d) if isinstance(sync_d, dict) else None,
                "overloaded": bool(sync_d.get("overloaded")) if isinstance(sync_d, dict) else False,
                "status": nodes}

    def client_stats(self) -> list[dict]:
        """Per connected client: snapshots sent and dropped (replaced before it could take them)."""
        return [{"sent": c.sent, "dropped": c.dropped} for c in list(self._clients)]

    def hello(self) -> dict:
        return {"type": "hello", "window_s": self.window_s, "targets": self.targets, "rate_hz": self.rate_hz,
                "default_coordinates": list(DEFAULT_COORDINATES)}

    # ------------------------------------------------------------------ server side

    def _server_thread(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as e:  # noqa: BLE001 - reported through start()
            self._server_error = e
            self._server_ready.set()
        finally:
            loop.close()
            self._loop = None

    def _refuse(self, connection, what: str, why: str):
        self.refused[what] += 1
        return connection.respond(403, f"forbidden: {why}\n")

    def _host_ok(self, header: str) -> bool:
        name, port = _split_host(header)
        if name is None or port != self.port:
            return False
        if name in self.allowed_hosts or f"{name}:{port}" in self.allowed_hosts:
            return True
        if self.loopback:
            return name == "localhost" or _is_loopback_host(name)
        try:
            ipaddress.ip_address(name)
            return True  # an address cannot be re-bound to another site, a name can
        except ValueError:
            return name in ("localhost", socket.gethostname().lower(), socket.getfqdn().lower())

    def _token_ok(self, query: str, headers) -> bool:
        given = (parse_qs(query).get("token") or [""])[0]
        if not given:
            try:
                morsel = SimpleCookie(headers.get("Cookie", "")).get(self._cookie)
            except CookieError:
                morsel = None
            given = morsel.value if morsel is not None else ""
        return bool(given) and hmac.compare_digest(given.encode(), self.token.encode())

    @property
    def _cookie(self) -> str:
        return f"rtkin_token_{self.port}"

    def _gate(self, connection, request, path: str, query: str):
        """None when the request may go on, else the refusal (see the module docstring)."""
        headers = request.headers
        hosts = headers.get_all("Host")
        if len(hosts) != 1 or not self._host_ok(hosts[0]):
            return self._refuse(connection, "host", "unknown Host")
        origins = headers.get_all("Origin")
        if origins and (len(origins) != 1 or not self._origin_ok(origins[0], hosts[0])):
            return self._refuse(connection, "origin", "foreign Origin")
        if self.token and path in ("/", "/index.html", "/snapshot.json", "/ws") and not self._token_ok(query, headers):
            return self._refuse(connection, "token", "this dashboard needs the token of the URL it printed")
        return None

    def _origin_ok(self, origin: str, host: str) -> bool:
        origin = origin.lower().rstrip("/")
        return origin == f"http://{host.lower()}" or origin in self.allowed_origins

    def _process_request(self, connection, request):
        from websockets.datastructures import Headers
        from websockets.http11 import Response

        path, _, query = request.path.partition("?")
        refused = self._gate(connection, request, path, query)
        if refused is not None:
            return refused
        if path == "/ws":
            return None  # WebSocket handshake
        if path == "/snapshot.json":
            body = _dumps(self.snapshot()).encode()
            ctype = _CONTENT_TYPES[".json"]
        else:
            name = "index.html" if path in ("/", "") else path.lstrip("/")
            f = (self.web_dir / name) if "/" not in name and "\\" not in name and not name.startswith(".") else None
            if f is None or not f.is_file():
                return connection.respond(404, "not found\n")
            body = f.read_bytes()
            ctype = _CONTENT_TYPES.get(f.suffix) or mimetypes.guess_type(f.name)[0] or "application/octet-stream"
        headers = Headers([("Content-Type", ctype), ("Content-Length", str(len(body))),
                           ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"),
                           ("X-Frame-Options", "DENY"), ("Connection", "close")])
        if self.token and path in ("/", "/index.html"):
            headers["Set-Cookie"] = f"{self._cookie}={self.token}; HttpOnly; SameSite=Strict; Path=/"
        return Response(200, "OK", headers, body)

    async def _serve(self) -> None:
        from websockets.asyncio.server import serve

        clients: set[_Client] = self._clients

        async def handler(ws):
            client = _Client(ws)
            sock = ws.transport.get_extra_info("socket") if ws.transport is not None else None
            if sock is not None:  # bound what the kernel queues per client (~1 s of snapshots), no autotuning
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
                except OSError:
                    pass
            clients.add(client)
            self.clients = len(clients)
            try:
                await ws.send(json.dumps(self.hello()))
                sender = asyncio.ensure_future(client.run())
                try:
                    async for _ in ws:  # the page sends nothing we need; read to notice the close
                        pass
                finally:
                    sender.cancel()
            finally:
                clients.discard(client)
                self.clients = len(clients)

        async with serve(handler, self.host, self.port, process_request=self._process_request,
                         max_size=2**16, write_limit=2**16, ping_interval=5, ping_timeout=10,
                         close_timeout=1, open_timeout=self.open_timeout_s,
                         logger=logging.getLogger("rtkin.clients.dashboard")) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._server_ready.set()
            period = 1.0 / self.rate_hz
            next_t = time.monotonic()
            while not self._stop.is_set():
                if clients:
                    try:
                        msg = _dumps(self.snapshot())
                    except Exception:  # noqa: BLE001 - a bad status dict must not stop the pushes
                        logging.getLogger("rtkin.clients.dashboard").exception("snapshot failed")
                        msg = None
                    for c in list(clients) if msg is not None else ():
                        c.offer(msg)
                    self.sent += 1
                next_t += period
                delay = next_t - time.monotonic()
                if delay < 0:
                    next_t = time.monotonic()
                    delay = 0
                await asyncio.sleep(min(delay, 0.1))
            server.close()
            for c in list(clients):
                if c.ws.transport is not None:
                    c.ws.transport.abort()


def _is_loopback_host(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _split_host(header: str) -> tuple[str | None, int]:
    """``Host`` header -> (lower-case name without brackets, port; 80 when absent); (None, 0) if bad."""
    header = header.strip().lower()
    if header.startswith("["):
        name, sep, rest = header[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ("" if not rest else None)
        if not sep or port is None:
            return None, 0
    else:
        name, _, port = header.partition(":")
    name = name.rstrip(".")
    if not name or (port and not port.isdigit()):
        return None, 0
    return name, int(port) if port else 80


def _clean(obj):
    """JSON-safe copy: non-finite floats -> None, numpy scalars -> Python, tuples -> lists."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (bytes, bytearray)):
        return obj.decode(errors="replace")
    return obj


def _dumps(snapshot: dict) -> str:
    """Compact JSON; status dicts from other processes may hold NaN/inf or odd types: cleaned then."""
    try:
        return json.dumps(snapshot, separators=(",", ":"), allow_nan=False)
    except (ValueError, TypeError):
        return json.dumps(_clean(snapshot), separators=(",", ":"), allow_nan=False, default=str)


class _Client:
    """One WebSocket client with a one-slot mailbox: the newest snapshot replaces an unsent one."""

    def __init__(self, ws):
        self.ws = ws
        self.pending: str | None = None
        self.event = asyncio.Event()
        self.dropped = 0
        self.sent = 0

    def offer(self, msg: str) -> None:
        if self.pending is not None:
            self.dropped += 1
        self.pending = msg
        self.event.set()

    async def run(self) -> None:
        from websockets.exceptions import ConnectionClosed
        try:
            while True:
                await self.event.wait()
                self.event.clear()
                msg, self.pending = self.pending, None
                if msg is not None:
                    await self.ws.send(msg)  # waits while this client's socket buffer is full
                    self.sent += 1
        except ConnectionClosed:
            pass


def parse_target(text: str) -> tuple[str, tuple[float, float]]:
    """``"knee_angle_r=0:45"`` -> ``("knee_angle_r", (0.0, 45.0))`` (degrees, or m for translations)."""
    name, sep, band = text.partition("=")
    lo, sep2, hi = band.partition(":")
    try:
        if not (sep and sep2 and name.strip()):
            raise ValueError
        a, b = float(lo), float(hi)
    except ValueError:
        raise ValueError(f"target must look like NAME=MIN:MAX (e.g. knee_angle_r=0:45), got {text!r}") from None
    return name.strip(), (min(a, b), max(a, b))


def serve_dashboard(skeleton_endpoint: str, angles_endpoints: Iterable[str] = (), host: str = "127.0.0.1",
                    port: int = 8765, window_s: float = 10.0, targets: dict | None = None, log=print,
                    **kwargs) -> int:
    """Run a dashboard until Ctrl-C (for ``rtkin view``); returns 0. ``kwargs`` go to :class:`Dashboard`."""
    dash = Dashboard(skeleton_endpoint, angles_endpoints, host=host, port=port, window_s=window_s,
                     targets=targets, **kwargs).start()
    log(f"rtkin dashboard: {dash.url} (Skeleton3D/status from {skeleton_endpoint or '-'}, JointAngles from the "
        f"IK workers it announces{', ' + ', '.join(dash.angles_endpoints) if dash.angles_endpoints else ''}); "
        "Ctrl-C to stop")
    try:
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        dash.stop()
    return 0
