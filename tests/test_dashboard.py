"""The browser dashboard: HTTP page, WebSocket snapshots, slow clients, and a real headless browser.

The browser test needs Debian's ``chromium`` (/usr/bin/chromium) and the ``playwright`` Python
package (never ``playwright install``); without them it FAILS saying what to install, unless
``RTKIN_SKIP_BROWSER=1`` is set.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import os
import shutil
import socket
import threading
import time
import urllib.request

import numpy as np
import pytest
import zmq

from rtkin.clients.dashboard import Dashboard, is_translational, parse_target
from rtkin.core.messages import JointAngles, Skeleton3D
from rtkin.runtime.transport import Publisher

NAMES = ("pelvis_tx", "hip_flexion_r", "knee_angle_r", "ankle_angle_r", "elbow_flex_r")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _angles(i: int, pid: int = 1) -> JointAngles:
    now = time.monotonic_ns()
    values = np.array([0.1 + 0.001 * i] + [math.radians(10 + (i % 90)) + 0.01 * q for q in range(len(NAMES) - 1)])
    quality = np.full(len(NAMES), 0.9, np.float32)
    quality[-1] = 0.2
    return JointAngles(time_ns=now, capture_ns=now - 30_000_000, person_id=pid, names=NAMES, values=values,
                       marker_rms_m=0.012, quality=quality, flags=np.zeros(len(NAMES), np.uint8))


def _skeleton(i: int, people: int = 1) -> Skeleton3D:
    now = time.monotonic_ns()
    rng = np.random.default_rng(i)
    pts = rng.normal(0, 0.3, (people, 26, 3)) + [0, 0, 1]
    pts[:, 3] = np.nan
    views = np.full((people, 26), 4, np.uint8)
    views[:, 3] = 0
    return Skeleton3D(time_ns=now, capture_ns=now - 20_000_000, skeleton="HALPE_26",
                      person_ids=np.arange(1, people + 1), points=pts, scores=np.ones((people, 26), np.float32),
                      reproj_error_px=np.ones((people, 26), np.float32), n_views=views)


@pytest.fixture
def fake_run(tmp_path):
    """Two PUBs (sync outputs, IK worker) bound on ipc endpoints, and a Dashboard on a free port."""
    ctx = zmq.Context()
    sk_ep, ja_ep = f"ipc://{tmp_path}/out.sock", f"ipc://{tmp_path}/ja.sock"
    sk_pub = Publisher(ctx, sk_ep, bind=True)
    ja_pub = Publisher(ctx, ja_ep, bind=True)
    dash = Dashboard(sk_ep, [ja_ep], port=0, rate_hz=50.0, targets={"knee_angle_r": (0, 45)}).start()
    sk_pub.settle(0.3)
    ja_pub.settle(0.3)
    yield dash, sk_pub, ja_pub
    dash.stop()
    sk_pub.close()
    ja_pub.close()
    ctx.destroy(linger=0)


def _ws_url(dash) -> str:
    return f"ws://127.0.0.1:{dash.port}/ws"


def _recv_snapshot(ws, pred=lambda m: True, timeout_s=5.0) -> dict:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        m = json.loads(ws.recv(timeout=max(0.05, end - time.monotonic())))
        if m.get("type") == "snapshot" and pred(m):
            return m
    raise AssertionError("no matching snapshot within the timeout")


def _knee(m) -> float | None:
    for p in m["people"]:
        if "knee_angle_r" in p["names"]:
            return p["values"][p["names"].index("knee_angle_r")]
    return None


def test_page_and_static_files_are_served(fake_run):
    dash, _, _ = fake_run
    with urllib.request.urlopen(dash.url, timeout=5) as r:
        page = r.read().decode()
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/html")
    assert 'data-testid="plot-canvas"' in page and "app.js" in page
    with urllib.request.urlopen(dash.url + "app.js", timeout=5) as r:
        assert "rtkinFramesDrawn" in r.read().decode()
        assert "javascript" in r.headers["Content-Type"]
    for bad in ("nothere.js", "..%2Fdashboard.py", "%2E%2E/__init__.py"):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(dash.url + bad, timeout=5)
        assert e.value.code == 404
    with urllib.request.urlopen(dash.url + "snapshot.json", timeout=5) as r:
        assert json.loads(r.read())["type"] == "snapshot"


def test_websocket_snapshots_follow_the_published_angles(fake_run):
    from websockets.sync.client import connect

    dash, sk_pub, ja_pub = fake_run
    with connect(_ws_url(dash), open_timeout=5) as ws:
        hello = json.loads(ws.recv(timeout=5))
        assert hello["type"] == "hello" and hello["targets"] == {"knee_angle_r": [0.0, 45.0]}
        assert hello["window_s"] == 10.0
        seen = []
        for i in (5, 25, 60):
            ja_pub.send(_angles(i))
            sk_pub.send(_skeleton(i))
            sk_pub.send_status("sync", {"sync": {"frames_in": 10 * i}, "odd": [float("nan")], "health": {
                "cameras": {"cam01": {"residual_px": 1.1, "baseline_px": 1.0, "alarm": False},
                            "cam02": {"residual_px": 5.0, "baseline_px": float("nan"), "alarm": True}}, "alarms": ["cam02"]}})
            m = _recv_snapshot(ws, lambda m: _knee(m) is not None and abs(_knee(m) - math.degrees(math.radians(10 + i) + 0.01)) < 0.02)
            seen.append(_knee(m))
        assert seen[0] < seen[1] < seen[2]
        p = m["people"][0]
        assert p["id"] == 1 and p["units"][NAMES.index("pelvis_tx")] == "m" and p["units"][1] == "deg"
        assert p["values"][0] == pytest.approx(0.16, abs=1e-4)  # metres stay metres
        assert p["quality"][-1] == pytest.approx(0.2) and 20 < p["latency_ms"] < 2000
        sk = m["skeleton"]
        assert sk["name"] == "HALPE_26" and len(sk["bones"]) > 20 and len(sk["people"][0]["points"]) == 26
        assert sk["people"][0]["points"][3] is None and len(sk["people"][0]["points"][0]) == 3
        assert m["health"]["alarms"] == ["cam02"] and m["cameras"]["cam02"]["alarm"] is True
        assert m["cameras"]["cam02"]["baseline_px"] is None  # NaN in a status dict -> null, not broken JSON
        assert m["sync"] == {"frames_in": 600} and m["overloaded"] is False
        assert m["latency_ms"]["angles"]["p50"] > 20
        # an overloaded sync, shedding, and refusing bad frames: the page says so
        sk_pub.send_status("sync", {"sync": {"frames_in": 700, "by_camera": {"cam01": {"used": 7}}},
                                    "overloaded": True, "shed": {"slots": 12, "frames": {"cam01": 40}},
                                    "validation": {"refused": {"wrong_keypoint_count": 3}}})
        m = _recv_snapshot(ws, lambda m: m["overloaded"])
        assert m["sync"] == {"frames_in": 700, "shed": 12, "refused wrong_keypoint_count": 3}
    assert is_translational("pelvis_ty") and not is_translational("knee_angle_r")


def _stuck_client(port: int) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads a byte."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    return s


def test_a_client_that_never_reads_blocks_nothing(fake_run):
    """A WebSocket client that never reads: the publishers' sends all complete while it is
    connected (counted), the dashboard keeps taking the stream in, and another client stays live.
    (How long the sends take, with and without such clients: benchmarks/bench_stuck_client.py.)"""
    from websockets.sync.client import connect

    dash, sk_pub, ja_pub = fake_run
    stuck = _stuck_client(dash.port)
    try:
        # big snapshots (20 people) until the stuck client's buffers are full and it loses snapshots
        end = time.monotonic() + 60.0
        i = 0
        while time.monotonic() < end and not any(c["dropped"] > 0 for c in dash.client_stats()):
            sk_pub.send(_skeleton(i, people=20))
            ja_pub.send(_angles(i))
            i += 1
            time.sleep(0.002)
        assert any(c["dropped"] > 0 for c in dash.client_stats()), dash.client_stats()
        # the publishers never wait for it: every send of a burst completes, counted
        sent0 = (ja_pub.sent, sk_pub.sent)
        received0 = dash.state.received
        burst = threading.Thread(target=lambda: [(ja_pub.send(_angles(j % 80)), sk_pub.send(_skeleton(j, people=20)))
                                                 for j in range(5000)])
        burst.start()
        burst.join(120)
        assert not burst.is_alive()
        assert (ja_pub.sent - sent0[0], sk_pub.sent - sent0[1]) == (5000, 5000)
        assert dash.clients == 1 and len(dash.client_stats()) == 1  # the stuck client is still connected
        # the dashboard kept draining the stream (only the latest state is kept)
        deadline = time.monotonic() + 30
        while dash.state.received - received0 < 1000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert dash.state.received - received0 >= 1000
        # another client still gets fresh snapshots, following new values
        with connect(_ws_url(dash), open_timeout=5) as ws:
            for i in (3, 33):
                ja_pub.send(_angles(i))
                target = math.degrees(math.radians(10 + i) + 0.01)
                m = _recv_snapshot(ws, lambda m: _knee(m) is not None and abs(_knee(m) - target) < 0.02, timeout_s=30)
                assert m["people"][0]["age_ms"] < 1000
        assert dash.clients >= 1
    finally:
        stuck.close()


def test_parse_target_and_from_config():
    from rtkin.runtime.config import RunConfig

    assert parse_target("knee_angle_r=45:0") == ("knee_angle_r", (0.0, 45.0))
    assert parse_target("pelvis_ty=0.8:1.1") == ("pelvis_ty", (0.8, 1.1))
    for bad in ("knee", "knee=1", "=1:2", "knee=a:b"):
        with pytest.raises(ValueError, match="NAME=MIN:MAX"):
            parse_target(bad)
    d = Dashboard.from_config(RunConfig(), port=0)
    assert d.skeleton_endpoint == "tcp://127.0.0.1:5551"
    assert d.angles_endpoints == [] and d.follow_ik  # IK workers: those the sync node announces


def test_a_busy_port_is_reported(fake_run):
    dash, _, _ = fake_run
    with pytest.raises(RuntimeError, match="did not start"):
        Dashboard("", [], port=dash.port).start()


# ----------------------------------------------------------------------------- browser


def _browser_or_fail():
    if os.environ.get("RTKIN_SKIP_BROWSER") == "1":
        pytest.skip("RTKIN_SKIP_BROWSER=1")
    missing = []
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        missing.append("Debian's chromium (apt-get install -y chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright Python package (pip install playwright; do NOT run `playwright install`)")
    if missing:
        pytest.fail("browser test needs " + " and ".join(missing) + "; set RTKIN_SKIP_BROWSER=1 to skip it")
    return os.path.exists(CHROMIUM) and CHROMIUM or shutil.which("chromium")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dashboard_in_headless_chromium_on_a_synthetic_run(tmp_path):
    exe = _browser_or_fail()
    from playwright.sync_api import sync_playwright

    from rtkin.runtime.config import TransportSettings, angles_endpoints
    from rtkin.demo import synthetic_config
    from rtkin.runtime.runner import Runner

    # long enough to outlast a slow browser start on a busy machine (stopped below when done)
    cfg = synthetic_config(tmp_path / "out", duration_s=30.0, realtime=True)
    ipc = TransportSettings(keypoints=f"ipc://{tmp_path}/kp.sock", outputs=f"ipc://{tmp_path}/out.sock",
                            angles=f"ipc://{tmp_path}/ja{{worker}}.sock")
    cfg = dataclasses.replace(cfg, transport=ipc)
    dash = Dashboard(cfg.transport.outputs, angles_endpoints(cfg), port=_free_port(),
                     targets={"knee_angle_r": (0.0, 30.0)}).start()
    runner = Runner(cfg, log=lambda *a: None)
    runner.start()  # processes run on their own; stopped below (run() would install signal handlers)
    shot = tmp_path / "dashboard.png"
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                errors = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(dash.url, timeout=15000)
                knee = page.get_by_test_id("value-knee_angle_r")
                number = r"^-?\d+(\.\d+)?$"
                # IK starts once the first people are tracked: allow time for the processes to start
                page.wait_for_function(
                    "() => /^-?\\d+(\\.\\d+)?$/.test(document.querySelector('[data-testid=\"value-knee_angle_r\"]').textContent)",
                    timeout=60000)
                first = {n: page.get_by_test_id(f"value-{n}").text_content()
                         for n in ("knee_angle_r", "hip_flexion_r", "elbow_flex_r")}
                import re
                assert all(re.match(number, v) for v in first.values()), first
                # another number (read with the readout's class in one go: between two polls the
                # readout may show "-" while no person is selected)
                now = None
                end = time.monotonic() + 15.0
                while time.monotonic() < end:
                    time.sleep(0.2)
                    now = page.evaluate("""() => [
                        document.querySelector('[data-testid="value-knee_angle_r"]').textContent,
                        document.querySelector('[data-testid="readout-knee_angle_r"]').className]""")
                    if re.match(number, now[0]) and now[0] != first["knee_angle_r"]:
                        break
                assert now and re.match(number, now[0]) and now[0] != first["knee_angle_r"], \
                    f"the knee angle readout did not change to another number: {now}"
                assert "inside" in now[1] or "outside" in now[1]  # a target band colours it
                drawn = page.evaluate("window.rtkinFramesDrawn")
                assert drawn > 0
                # the plot has pixels other than its background
                colours = page.evaluate("""() => {
                    const c = document.querySelector('[data-testid="plot-canvas"]');
                    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                    const seen = new Set();
                    for (let i = 0; i < d.length; i += 4 * 7) seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
                    return seen.size; }""")
                assert colours > 5
                assert page.locator("[data-testid^=camera-]").count() >= 4
                assert re.match(r"^\d+ ms", page.get_by_test_id("latency").text_content())
                # a band set in the page colours the readout and survives a reload (localStorage)
                page.get_by_test_id("min-hip_flexion_r").fill("-1000")
                page.get_by_test_id("max-hip_flexion_r").fill("1000")
                page.get_by_test_id("max-hip_flexion_r").dispatch_event("change")
                page.wait_for_function("() => document.querySelector('[data-testid=\"readout-hip_flexion_r\"]')"
                                       ".className.includes('inside')", timeout=5000)
                page.reload()
                page.wait_for_function("() => document.querySelector('[data-testid=\"readout-hip_flexion_r\"]')"
                                       ".className.includes('inside')", timeout=10000)
                assert page.get_by_test_id("max-hip_flexion_r").input_value() == "1000"
                page.wait_for_function("() => window.rtkinFramesDrawn > 10", timeout=10000)
                time.sleep(1.0)
                page.screenshot(path=str(shot), full_page=True)
                assert not errors, errors
            finally:
                browser.close()
    finally:
        runner.stop()
        dash.stop()
    assert shot.stat().st_size > 10_000
    try:
        shutil.copy(shot, "/tmp/rtkin_dashboard.png")
    except OSError:
        pass


def test_targets_come_from_the_run_config():
    from rtkin.runtime.config import config_from_dict

    cfg = config_from_dict({"view": {"port": 0, "targets": [["knee_angle_r", 0.0, 45.0]]}})
    dash = Dashboard.from_config(cfg)
    assert dash.hello()["targets"]["knee_angle_r"] == [0.0, 45.0]


# ----------------------------------------------------------------------------- who it answers


def _raw_http(port: int, path: str = "/", headers: dict | None = None, ws: bool = False) -> tuple[int, str]:
    """Status code and raw head of a GET sent by hand (any Host / Origin / Cookie)."""
    h = {"Host": f"127.0.0.1:{port}", **(headers or {})}
    if ws:
        h.update({"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                  "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()})
    req = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items() if v is not None) + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(req.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace")
    return int(head.split()[1]), head


def test_a_foreign_origin_or_host_is_refused(fake_run):
    """A web page of another site (foreign Origin), or a DNS-rebinding page (foreign Host), gets
    nothing: neither the page, nor the snapshot, nor the WebSocket."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    dash, _, _ = fake_run
    port = dash.port
    for path in ("/", "/snapshot.json", "/app.js"):
        assert _raw_http(port, path)[0] == 200
        assert _raw_http(port, path, {"Origin": f"http://127.0.0.1:{port}"})[0] == 200  # same origin
        assert _raw_http(port, path, {"Origin": "http://evil.example"})[0] == 403
        assert _raw_http(port, path, {"Host": f"evil.example:{port}"})[0] == 403  # DNS rebinding
        assert _raw_http(port, path, {"Host": "127.0.0.1:1"})[0] == 403
        assert _raw_http(port, path, {"Host": None})[0] in (400, 403)
    assert _raw_http(port, "/ws", {"Origin": f"http://127.0.0.1:{port}"}, ws=True)[0] == 101
    assert _raw_http(port, "/ws", {"Origin": f"http://localhost:{port}", "Host": f"localhost:{port}"}, ws=True)[0] == 101
    assert _raw_http(port, "/ws", {"Origin": "http://evil.example"}, ws=True)[0] == 403
    assert _raw_http(port, "/ws", {"Origin": "null"}, ws=True)[0] == 403
    assert _raw_http(port, "/ws", {"Host": f"rebind.evil.example:{port}"}, ws=True)[0] == 403
    with pytest.raises(InvalidStatus):
        connect(_ws_url(dash), origin="http://evil.example", open_timeout=5)
    assert dash.refused["origin"] >= 5 and dash.refused["host"] >= 7


def test_allow_lists_admit_named_hosts_and_origins(tmp_path):
    dash = Dashboard("", port=0, allowed_hosts=["lab-pc.example.org"],
                     allowed_origins=["http://lab-portal.example.org"]).start()
    try:
        port = dash.port
        assert _raw_http(port, "/", {"Host": f"lab-pc.example.org:{port}"})[0] == 200
        assert _raw_http(port, "/ws", {"Origin": "http://lab-portal.example.org"}, ws=True)[0] == 101
        assert _raw_http(port, "/ws", {"Origin": "http://other.example.org"}, ws=True)[0] == 403
    finally:
        dash.stop()


def test_off_loopback_a_per_run_token_is_required():
    a, b = Dashboard("", host="0.0.0.0", port=0), Dashboard("", host="0.0.0.0", port=0)
    assert a.token and b.token and a.token != b.token and len(a.token) >= 20  # per run
    assert f"?token={a.token}" in a.url
    assert Dashboard("", port=0).token is None  # loopback: no token


def test_a_dashboard_with_a_token_refuses_requests_without_it():
    from websockets.sync.client import connect

    dash = Dashboard("", port=0, require_token=True).start()
    try:
        port, tok = dash.port, dash.token
        assert dash.url.endswith(f"/?token={tok}")
        for path in ("/", "/snapshot.json"):
            assert _raw_http(port, path)[0] == 403
            assert _raw_http(port, path + "?token=wrong")[0] == 403
        assert _raw_http(port, "/ws", ws=True)[0] == 403
        assert _raw_http(port, "/app.js")[0] == 200  # the static files hold no data
        code, head = _raw_http(port, f"/?token={tok}")
        assert code == 200 and f"rtkin_token_{port}={tok}" in head and "HttpOnly" in head and "SameSite=Strict" in head
        assert _raw_http(port, "/snapshot.json", {"Cookie": f"rtkin_token_{port}={tok}"})[0] == 200
        assert _raw_http(port, "/ws", {"Cookie": f"rtkin_token_{port}={tok}"}, ws=True)[0] == 101
        with connect(f"ws://127.0.0.1:{port}/ws?token={tok}", open_timeout=5) as ws:
            assert json.loads(ws.recv(timeout=5))["type"] == "hello"
        assert dash.refused["token"] >= 5
    finally:
        dash.stop()


def test_slowloris_connections_are_closed():
    dash = Dashboard("", port=0, open_timeout_s=1.0).start()
    try:
        s = socket.create_connection(("127.0.0.1", dash.port), timeout=30)
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never finishes the request
        t0 = time.monotonic()
        closed = False
        while not closed and time.monotonic() - t0 < 30:
            try:
                s.sendall(b"X-a: b\r\n")
                closed = s.recv(4096) == b""
            except (ConnectionError, socket.timeout):
                closed = True
            time.sleep(0.2)
        s.close()
        assert closed
    finally:
        dash.stop()


def test_websocket_frames_over_64_kib_are_refused(fake_run):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    dash, _, _ = fake_run
    with connect(_ws_url(dash), open_timeout=5, max_size=None) as ws:
        ws.recv(timeout=5)  # hello
        ws.send("x" * 1000)  # small: fine
        ws.send("x" * 70_000)
        with pytest.raises(ConnectionClosed) as e:
            for _ in range(1000):
                ws.recv(timeout=10)
        assert e.value.rcvd is not None and e.value.rcvd.code == 1009  # message too big
