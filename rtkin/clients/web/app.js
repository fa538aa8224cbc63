// rtkin live dashboard: plain JS, no dependencies. Receives JSON snapshots over a WebSocket (/ws).
"use strict";
(function () {
  const COLORS = ["#4fc3f7", "#ffb74d", "#ba68c8", "#81c784", "#f06292", "#fff176", "#4db6ac", "#e57373", "#9575cd", "#a1887f"];
  const LS_SEL = "rtkin.dashboard.selected", LS_TGT = "rtkin.dashboard.targets", LS_WIN = "rtkin.dashboard.window_s";
  const $ = (id) => document.getElementById(id);
  window.rtkinFramesDrawn = 0;
  window.rtkinSnapshots = 0;

  const st = {
    windowS: 10, defaults: ["knee_angle_r", "hip_flexion_r", "elbow_flex_r"], serverTargets: {},
    selected: null, targets: {}, names: [], units: {}, person: null, last: null,
    hist: new Map(),          // person id -> {t: [], v: Map(name -> []), q: Map(name -> [])}, t in s
    lastTime: new Map(),      // person id -> last time_ns appended
    dirty: true, snapTimes: [], yaw: 0.6, pitch: 0.25, spin: true, drag: null,
  };

  function loadJSON(key, dflt) { try { const v = JSON.parse(localStorage.getItem(key)); return v == null ? dflt : v; } catch (e) { return dflt; } }
  function saveJSON(key, v) { try { localStorage.setItem(key, JSON.stringify(v)); } catch (e) { /* private mode */ } }
  function cssId(name) { return String(name).replace(/[^A-Za-z0-9_-]/g, "_"); }
  function color(i) { return COLORS[i % COLORS.length]; }
  function band(name) { const b = st.targets[name] || st.serverTargets[name]; return b && isFinite(b[0]) && isFinite(b[1]) ? b : null; }
  function fmt(v, unit) { return v == null ? "–" : unit === "m" ? v.toFixed(3) : v.toFixed(1); }

  // ------------------------------------------------------------------ connection
  // a dashboard on a network address needs the per-run token of its URL (also kept in a cookie)
  const TOKEN = new URLSearchParams(location.search).get("token");
  if (TOKEN && history.replaceState) history.replaceState(null, "", location.pathname);
  function connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(proto + "//" + location.host + "/ws" + (TOKEN ? "?token=" + encodeURIComponent(TOKEN) : ""));
    ws.onopen = () => { $("conn").textContent = "live"; $("conn").className = "conn on"; };
    ws.onclose = () => { $("conn").textContent = "disconnected – retrying"; $("conn").className = "conn off"; setTimeout(connect, 1000); };
    ws.onmessage = (ev) => {
      let m; try { m = JSON.parse(ev.data); } catch (e) { return; }
      if (m.type === "hello") onHello(m); else if (m.type === "snapshot") onSnapshot(m);
    };
  }

  function onHello(m) {
    st.windowS = loadJSON(LS_WIN, m.window_s || 10);
    $("window").value = st.windowS;
    st.serverTargets = m.targets || {};
    if (m.default_coordinates && m.default_coordinates.length) st.defaults = m.default_coordinates;
    if (!st.selected) st.selected = loadJSON(LS_SEL, null) || st.defaults.slice();
    buildReadouts();
  }

  function onSnapshot(m) {
    window.rtkinSnapshots++;
    st.last = m;
    const now = performance.now();
    st.snapTimes.push(now);
    while (st.snapTimes.length && now - st.snapTimes[0] > 2000) st.snapTimes.shift();
    const people = m.people || [];
    // person choice
    const ids = people.map((p) => p.id);
    const sel = $("person");
    const have = Array.from(sel.options).map((o) => Number(o.value));
    if (ids.join() !== have.join()) {
      sel.innerHTML = ids.map((id) => `<option value="${id}">${id}</option>`).join("");
      if (st.person != null && ids.includes(st.person)) sel.value = String(st.person);
    }
    if (st.person == null || !ids.includes(st.person)) st.person = ids.length ? ids[0] : null;
    // history
    for (const p of people) {
      if (st.lastTime.get(p.id) === p.time_ns) continue;
      st.lastTime.set(p.id, p.time_ns);
      let h = st.hist.get(p.id);
      if (!h) { h = { t: [], v: new Map(), q: new Map() }; st.hist.set(p.id, h); }
      const t = p.time_ns / 1e9;
      if (h.t.length && t < h.t[h.t.length - 1]) { h.t = []; h.v = new Map(); h.q = new Map(); }  // clock restarted
      h.t.push(t);
      p.names.forEach((n, i) => {
        let a = h.v.get(n), b = h.q.get(n);
        if (!a) { a = new Array(h.t.length - 1).fill(null); h.v.set(n, a); b = a.slice(); h.q.set(n, b); }
        a.push(p.values[i]); b.push(p.quality[i]);
        st.units[n] = p.units[i];
      });
      for (const m of [h.v, h.q]) for (const a of m.values()) while (a.length < h.t.length) a.push(null);
      const tmin = t - Math.max(st.windowS, 1) - 1;  // keep one window (the longest the page may ask is re-filled)
      let cut = 0; while (cut < h.t.length && h.t[cut] < tmin) cut++;
      if (cut) { h.t.splice(0, cut); for (const m of [h.v, h.q]) for (const a of m.values()) a.splice(0, cut); }
      if (p.id === st.person && p.names.join() !== st.names.join()) { st.names = p.names.slice(); buildCoordList(); }
    }
    updateReadouts(people.find((p) => p.id === st.person));
    updateStatus(m);
    st.dirty = true;
  }

  // ------------------------------------------------------------------ readouts
  function buildReadouts() {
    const box = $("readouts");
    box.innerHTML = "";
    (st.selected || []).forEach((name, i) => {
      const id = cssId(name);
      const b = band(name) || ["", ""];
      const d = document.createElement("div");
      d.className = "readout nodata";
      d.dataset.testid = "readout-" + name;
      d.setAttribute("data-testid", "readout-" + name);
      d.innerHTML = `<div class="name"><i style="background:${color(i)}"></i>${name}</div>
        <div><span class="value" data-testid="value-${name}" id="val-${id}">–</span><span class="unit" id="unit-${id}"></span></div>
        <div class="flags" id="flags-${id}"></div>
        <div class="band">target <input type="number" step="any" id="min-${id}" data-testid="min-${name}" value="${b[0]}"> to
          <input type="number" step="any" id="max-${id}" data-testid="max-${name}" value="${b[1]}"></div>`;
      box.appendChild(d);
      const onBand = () => {
        const lo = parseFloat($("min-" + id).value), hi = parseFloat($("max-" + id).value);
        if (isFinite(lo) && isFinite(hi)) st.targets[name] = [Math.min(lo, hi), Math.max(lo, hi)]; else delete st.targets[name];
        saveJSON(LS_TGT, st.targets); st.dirty = true;
      };
      d.querySelector("#min-" + id).addEventListener("change", onBand);
      d.querySelector("#max-" + id).addEventListener("change", onBand);
    });
    $("legend").innerHTML = (st.selected || []).map((n, i) => `<span><i style="background:${color(i)}"></i>${n}</span>`).join("");
    st.dirty = true;
  }

  const FLAG_NAMES = [[1, "held"], [2, "filled"], [4, "few views"], [8, "high reproj"], [16, "unscaled"],
                      [32, "height only"], [64, "scaling"], [128, "unobservable"]];
  function updateReadouts(p) {
    (st.selected || []).forEach((name) => {
      const id = cssId(name);
      const el = $("val-" + id); if (!el) return;
      const box = el.closest(".readout");
      const i = p ? p.names.indexOf(name) : -1;
      if (i < 0 || p.values[i] == null || (p.flags[i] & 128)) {  // 128: UNOBSERVABLE, the value is a placeholder
        el.textContent = "–"; box.className = "readout nodata";
        if (i >= 0) $("flags-" + id).textContent = "unobservable";
        return;
      }
      const v = p.values[i], q = p.quality[i], unit = p.units[i];
      el.textContent = fmt(v, unit);
      el.dataset.quality = q;
      $("unit-" + id).textContent = unit === "m" ? " m" : "°";
      const b = band(name);
      let cls = "readout";
      if (b) cls += v >= b[0] && v <= b[1] ? " inside" : " outside";
      if (q < 0.5) cls += " lowq";
      box.className = cls;
      const f = p.flags[i];
      $("flags-" + id).textContent = (q < 0.5 ? `quality ${q.toFixed(2)} ` : "") + FLAG_NAMES.filter(([b]) => f & b).map(([, n]) => n).join(", ");
    });
  }

  function buildCoordList() {
    const filt = ($("filter").value || "").toLowerCase();
    $("coordlist").innerHTML = st.names.filter((n) => n.toLowerCase().includes(filt)).map((n) =>
      `<label><input type="checkbox" data-name="${n}" data-testid="coord-${n}" ${st.selected.includes(n) ? "checked" : ""}> ${n}</label>`).join("");
  }
  document.addEventListener("change", (ev) => {
    const t = ev.target;
    if (t.matches && t.matches("#coordlist input[type=checkbox]")) {
      const n = t.dataset.name;
      st.selected = st.selected.filter((x) => x !== n);
      if (t.checked) st.selected.push(n);
      saveJSON(LS_SEL, st.selected); buildReadouts();
      if (st.last) updateReadouts((st.last.people || []).find((p) => p.id === st.person));
    }
  });
  $("filter").addEventListener("input", buildCoordList);
  $("window").addEventListener("change", () => { const w = parseFloat($("window").value); if (w > 0) { st.windowS = w; saveJSON(LS_WIN, w); st.dirty = true; } });
  $("person").addEventListener("change", () => { st.person = Number($("person").value); st.dirty = true; });

  // ------------------------------------------------------------------ status
  function updateStatus(m) {
    const lat = m.latency_ms || {};
    const p = (m.people || []).find((x) => x.id === st.person);
    const l = p ? p.latency_ms : (m.skeleton ? m.skeleton.latency_ms : null);
    const s = lat.angles || lat.skeleton;
    $("latency").textContent = l == null ? "–" : `${l.toFixed(0)} ms` + (s ? ` (p50 ${s.p50.toFixed(0)})` : "");
    $("rate").textContent = `${st.snapTimes.length / 2 | 0}/s`;
    const rows = Object.entries(m.cameras || {}).map(([name, c]) => {
      const stale = c.last_seen_ms != null && c.last_seen_ms > 1000;
      const chk = c.alarm == null ? "" : c.alarm ? `<td class="alarm">ALARM</td>` : `<td class="okc">ok</td>`;
      const rp = c.residual_px == null ? "–" : `${c.residual_px.toFixed(2)}${c.baseline_px != null ? " / " + c.baseline_px.toFixed(2) : ""} px`;
      return `<tr class="${stale ? "stale" : ""}" data-testid="camera-${name}"><td>${name}</td><td>${c.fps == null ? "–" : c.fps.toFixed(1)}</td>
        <td>${c.frames == null ? "–" : c.frames}</td><td>${c.last_seen_ms == null ? "–" : (c.last_seen_ms / 1000).toFixed(1) + " s"}</td><td>${rp}</td>${chk || "<td></td>"}</tr>`;
    });
    $("cameras").tBodies[0].innerHTML = rows.join("");
    const alarms = (m.health && m.health.alarms) || [];
    const notes = [];
    if (m.overloaded) notes.push("OVERLOADED: the machine cannot keep up; the oldest frames are shed");
    if (alarms.length) notes.push("Calibration check: " + alarms.join(", ") + " moved?");
    $("alarms").textContent = notes.join(" · ");
    const sy = m.sync;
    $("sync").textContent = sy ? Object.entries(sy).map(([k, v]) => `${k} ${v}`).join(" · ") : "";
  }

  // ------------------------------------------------------------------ drawing
  function fitCanvas(c) {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(50, Math.round(c.clientWidth * dpr)), h = Math.max(50, Math.round(c.clientHeight * dpr));
    if (c.width !== w || c.height !== h) { c.width = w; c.height = h; }
    return dpr;
  }

  function drawPlot() {
    const c = $("plot"), g = c.getContext("2d"), dpr = fitCanvas(c);
    const W = c.width, H = c.height;
    g.fillStyle = "#1b2027"; g.fillRect(0, 0, W, H);
    const sel = st.selected || [];
    const h = st.person != null ? st.hist.get(st.person) : null;
    const n = Math.max(sel.length, 1), lane = H / n, left = 60 * dpr, right = W - 8 * dpr;
    const tEnd = h && h.t.length ? h.t[h.t.length - 1] : 0, tStart = tEnd - st.windowS;
    const X = (t) => left + (t - tStart) / st.windowS * (right - left);
    g.font = `${11 * dpr}px system-ui, sans-serif`;
    // time grid
    g.strokeStyle = "#2c333c"; g.lineWidth = 1;
    for (let s = Math.ceil(tStart); s <= tEnd; s++) { const x = X(s); g.beginPath(); g.moveTo(x, 0); g.lineTo(x, H); g.stroke(); }
    sel.forEach((name, k) => {
      const y0 = k * lane, pad = 6 * dpr;
      const vals = h ? h.v.get(name) : null, qs = h ? h.q.get(name) : null;
      let lo = Infinity, hi = -Infinity;
      const b = band(name);
      if (vals) for (let i = 0; i < vals.length; i++) { if (h.t[i] < tStart) continue; const v = vals[i]; if (v == null) continue; lo = Math.min(lo, v); hi = Math.max(hi, v); }
      if (b && isFinite(lo)) {  // show the band, but never squash the curve below a third of the lane
        const m = Math.max(hi - lo, st.units[name] === "m" ? 0.02 : 5);
        lo = Math.max(Math.min(lo, b[0]), lo - m); hi = Math.min(Math.max(hi, b[1]), hi + m);
      } else if (b) { lo = b[0]; hi = b[1]; }
      if (!isFinite(lo)) { lo = -1; hi = 1; }
      const unit = st.units[name] === "m" ? 0.02 : 5;
      if (hi - lo < unit) { const m = (hi + lo) / 2; lo = m - unit / 2; hi = m + unit / 2; }
      const span = hi - lo; lo -= 0.08 * span; hi += 0.08 * span;
      const Y = (v) => y0 + pad + (1 - (v - lo) / (hi - lo)) * (lane - 2 * pad);
      g.save(); g.beginPath(); g.rect(0, y0, W, lane); g.clip();  // keep band and curve inside the lane
      if (b) { g.fillStyle = "rgba(31,157,85,0.18)"; const ya = Y(b[1]), yb = Y(b[0]); g.fillRect(left, ya, right - left, yb - ya); }
      g.strokeStyle = "#3a424d"; g.beginPath(); g.moveTo(0, y0 + lane - 0.5); g.lineTo(W, y0 + lane - 0.5); g.stroke();
      g.fillStyle = "#7d8590";
      g.fillText(fmt(hi, st.units[name]), 4 * dpr, y0 + pad + 10 * dpr);
      g.fillText(fmt(lo, st.units[name]), 4 * dpr, y0 + lane - pad);
      g.fillStyle = color(k); g.fillText(name, left + 4 * dpr, y0 + pad + 10 * dpr);
      if (!vals) { g.restore(); return; }
      g.lineWidth = 2 * dpr;
      let pen = false, grey = null;
      for (let i = 0; i < vals.length; i++) {
        const v = vals[i];
        if (v == null || h.t[i] < tStart) { if (pen) g.stroke(); pen = false; continue; }
        const low = qs[i] != null && qs[i] < 0.5;  // low quality: grey
        if (grey !== low) { if (pen) { g.lineTo(X(h.t[i]), Y(v)); g.stroke(); } pen = false; grey = low; }
        if (!pen) { g.strokeStyle = low ? "#5b626b" : color(k); g.beginPath(); g.moveTo(X(h.t[i]), Y(v)); pen = true; }
        else g.lineTo(X(h.t[i]), Y(v));
      }
      if (pen) g.stroke();
      g.restore();
    });
    window.rtkinFramesDrawn++;
  }

  function drawSkeleton() {
    const c = $("skel"), g = c.getContext("2d"); fitCanvas(c);
    const W = c.width, H = c.height;
    g.fillStyle = "#1b2027"; g.fillRect(0, 0, W, H);
    const sk = st.last && st.last.skeleton;
    const cy = Math.cos(st.yaw), sy = Math.sin(st.yaw), cp = Math.cos(st.pitch), sp = Math.sin(st.pitch);
    const scale = Math.min(W, H) / 2.6;  // ~2.6 m across
    let cx0 = 0, cy0 = 0, cz0 = 1.0;
    if (sk && sk.people.length) {
      const want = sk.people.find((p) => p.id === st.person) || sk.people[0];
      let n = 0, sx = 0, syy = 0; for (const q of want.points) if (q) { sx += q[0]; syy += q[1]; n++; }
      if (n) { cx0 = sx / n; cy0 = syy / n; }
    }
    // world z up; rotate about z (yaw), tilt (pitch); orthographic
    const P = (x, y, z) => {
      x -= cx0; y -= cy0; z -= cz0;
      const xr = cy * x - sy * y, yr = sy * x + cy * y;
      const u = xr, v = z * cp - yr * sp;
      return [W / 2 + u * scale, H / 2 - v * scale];
    };
    g.strokeStyle = "#2c333c"; g.lineWidth = 1;
    for (let i = -2; i <= 2; i++) {
      let a = P(cx0 + i * 0.5, cy0 - 1, 0), b = P(cx0 + i * 0.5, cy0 + 1, 0); g.beginPath(); g.moveTo(...a); g.lineTo(...b); g.stroke();
      a = P(cx0 - 1, cy0 + i * 0.5, 0); b = P(cx0 + 1, cy0 + i * 0.5, 0); g.beginPath(); g.moveTo(...a); g.lineTo(...b); g.stroke();
    }
    if (!sk) return;
    sk.people.forEach((p, k) => {
      const sel = p.id === st.person;
      g.strokeStyle = sel ? "#4fc3f7" : "#8d6e63"; g.lineWidth = (sel ? 3 : 2) * (window.devicePixelRatio || 1);
      for (const [a, b] of sk.bones) {
        const A = p.points[a], B = p.points[b]; if (!A || !B) continue;
        const pa = P(...A), pb = P(...B); g.beginPath(); g.moveTo(...pa); g.lineTo(...pb); g.stroke();
      }
      g.fillStyle = sel ? "#e1f5fe" : "#bcaaa4";
      for (const q of p.points) if (q) { const [u, v] = P(...q); g.fillRect(u - 2, v - 2, 4, 4); }
    });
  }

  const skel = $("skel");
  skel.addEventListener("pointerdown", (e) => { st.drag = { x: e.clientX, y: e.clientY, moved: false }; skel.setPointerCapture(e.pointerId); });
  skel.addEventListener("pointermove", (e) => {
    if (!st.drag) return;
    const dx = e.clientX - st.drag.x, dy = e.clientY - st.drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 2) st.drag.moved = true;
    st.yaw += dx * 0.01; st.pitch = Math.max(-1.4, Math.min(1.4, st.pitch + dy * 0.01));
    st.drag.x = e.clientX; st.drag.y = e.clientY;
  });
  skel.addEventListener("pointerup", () => { if (st.drag && !st.drag.moved) st.spin = !st.spin; st.drag = null; });

  let lastFrame = performance.now();
  function frame(now) {
    const dt = Math.min(0.1, (now - lastFrame) / 1000); lastFrame = now;
    if (st.spin && !st.drag) st.yaw += dt * 0.35;
    if (st.dirty) { st.dirty = false; drawPlot(); }
    drawSkeleton();
    requestAnimationFrame(frame);
  }

  st.targets = loadJSON(LS_TGT, {});
  st.selected = loadJSON(LS_SEL, null);
  if (!st.selected) st.selected = st.defaults.slice();
  buildReadouts();
  requestAnimationFrame(frame);
  connect();
})();
