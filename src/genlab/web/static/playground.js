"use strict";
// The GAN playground: sends commands over one WebSocket, draws each frame the server's worker computes.
const $ = id => document.getElementById(id);
const view = $("view"), ctx = view.getContext("2d");
const state = { data: null, frame: null, playing: false, losses: [], coverage: [], drawing: false, drawn: [], framesDrawn: 0 };
const socket = lab.connect("/ws/playground", m => {
  if (m.type === "data") { state.data = m; state.losses = []; state.coverage = []; showSettings(m.settings); }
  else if (m.type === "frame") { state.frame = m; record(m); draw(); }
  else if (m.type === "changed") { $("changed").textContent = m.how === "live" ? "" : `(${m.how})`; showSettings(m.settings); }
  else if (m.type === "error") lab.error(m.message);
});
const send = message => socket.readyState === WebSocket.OPEN && socket.send(JSON.stringify(message));
const REAL = "#2a9d5c", FAKE = "#7b3fbf";

function showSettings(s) {
  for (const key of ["loss", "pack", "lr_g", "lr_d", "n_critic", "depth", "width", "data"]) $(key).value = String(s[key]);
  $("spectral_norm").checked = s.spectral_norm; $("minibatch_stddev").checked = s.minibatch_stddev;
}

function record(f) {
  if (f.losses.d_loss !== undefined || f.losses.g_loss !== undefined) {
    const last = state.losses[state.losses.length - 1];
    if (!last || last.step !== f.step) state.losses.push({ step: f.step, d: f.losses.d_loss, g: f.losses.g_loss });
    if (state.losses.length > 3000) state.losses = state.losses.filter((_, i) => i % 2 === 0);
  }
  if (f.coverage) {
    const last = state.coverage[state.coverage.length - 1];
    if (!last || last.step !== f.coverage.step) state.coverage.push(f.coverage);
  }
  state.playing = f.playing;
  $("play").textContent = f.playing ? "Pause" : "Play";
  $("step").textContent = f.step; $("d-steps").textContent = f.d_steps; $("g-steps").textContent = f.g_steps;
  $("rate").textContent = f.playing ? f.steps_per_s : 0;
  $("d-loss").textContent = f.losses.d_loss !== undefined ? f.losses.d_loss.toFixed(4) : "–";
  $("g-loss").textContent = f.losses.g_loss !== undefined ? f.losses.g_loss.toFixed(4) : "–";
  const c = f.coverage;
  $("coverage").textContent = c ? `${c.modes} of ${c.of} modes, ${(100 * c.high_quality).toFixed(1)}% high quality, reverse KL ${c.reverse_kl ?? "∞"}`
    : (f.fake_stats ? `fake mean ${f.fake_stats.mean}, std ${f.fake_stats.std} (data: 4, 1.25)` : "–");
  $("warning").textContent = f.warning ? "Collapse detector: " + f.warning : "";
  $("warning").classList.toggle("on", Boolean(f.warning));
}

// --- drawing ---------------------------------------------------------------------------------------
function transform() {
  const [x0, x1, y0, y1] = state.drawing ? [-1.5, 1.5, -1.5, 1.5] : state.data.bounds;
  return { X: x => (x - x0) / (x1 - x0) * view.width, Y: y => view.height - (y - y0) / (y1 - y0) * view.height,
           inverse: (px, py) => [x0 + px / view.width * (x1 - x0), y0 + (view.height - py) / view.height * (y1 - y0)] };
}

function heatmap(b64) {
  const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0)), n = Math.round(Math.sqrt(bytes.length));
  const small = document.createElement("canvas"); small.width = small.height = n;
  const sctx = small.getContext("2d"), image = sctx.createImageData(n, n);
  for (let i = 0; i < bytes.length; i++) {  // 0 = fake (purple) ... 255 = real (green), white between
    const t = bytes[i] / 255, a = Math.abs(t - 0.5) * 2, c = t > 0.5 ? [42, 157, 92] : [123, 63, 191];
    image.data.set([255 + (c[0] - 255) * a * 0.55, 255 + (c[1] - 255) * a * 0.55, 255 + (c[2] - 255) * a * 0.55, 255], 4 * i);
  }
  sctx.putImageData(image, 0, 0);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(small, 0, 0, view.width, view.height);
}

function dots(flat, color, X, Y, r = 2) {
  ctx.fillStyle = color;
  for (let i = 0; i < flat.length; i += 2) { ctx.beginPath(); ctx.arc(X(flat[i]), Y(flat[i + 1]), r, 0, 2 * Math.PI); ctx.fill(); }
}

function arrows(at, push, X, Y, dim) {
  let longest = 1e-12;
  for (let i = 0; i < push.length; i++) longest = Math.max(longest, Math.abs(push[i]));
  const scale = 28 / longest; ctx.strokeStyle = dim === 2 ? "rgba(30,30,30,0.55)" : "#c2410c"; ctx.lineWidth = 1;
  for (let i = 0; i < at.length / dim; i++) {  // 1-D: arrows on a line under the axis, at each fake's x
    const x = X(at[dim * i]), y = dim === 2 ? Y(at[2 * i + 1]) : view.height - 62 + (i % 4) * 5;
    const dx = push[dim * i] * scale, dy = dim === 2 ? -push[2 * i + 1] * scale : 0;
    ctx.beginPath(); ctx.moveTo(x, y); ctx.lineTo(x + dx, y + dy);
    const a = Math.atan2(dy, dx); ctx.lineTo(x + dx - 4 * Math.cos(a - 0.5), y + dy - 4 * Math.sin(a - 0.5));
    ctx.moveTo(x + dx, y + dy); ctx.lineTo(x + dx - 4 * Math.cos(a + 0.5), y + dy - 4 * Math.sin(a + 0.5)); ctx.stroke();
  }
}

function draw() {
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, view.width, view.height);
  if (state.drawing) return drawDrawing();
  const f = state.frame, d = state.data;
  if (!f || !d) return;
  state.framesDrawn++;
  const { X, Y } = transform(), show = id => $("show-" + id).checked;
  if (d.dim === 2) {
    if (f.heatmap && show("heatmap")) heatmap(f.heatmap);
    if (f.noise_grid && show("grid")) {
      const g = f.noise_grid, n = Math.round(Math.sqrt(g.length / 2)), P = (i, j) => [X(g[2 * (i * n + j)]), Y(g[2 * (i * n + j) + 1])];
      ctx.strokeStyle = "rgba(80,80,80,0.35)"; ctx.lineWidth = 1;
      for (let i = 0; i < n; i++) for (const along of [true, false]) {
        ctx.beginPath();
        for (let j = 0; j < n; j++) { const [x, y] = along ? P(i, j) : P(j, i); j ? ctx.lineTo(x, y) : ctx.moveTo(x, y); }
        ctx.stroke();
      }
    }
    if (show("real")) dots(d.real, REAL, X, Y, 1.6);
    if (show("fake")) dots(f.fake, FAKE, X, Y, 2);
  } else {
    const H = view.height, top = 30, base = H - 90, bins = d.real_hist.length, bw = view.width / bins;
    const peak = Math.max(...d.real_hist, ...f.fake_hist, 1e-9);
    if (f.d_curve && show("heatmap")) {
      ctx.strokeStyle = "#1d2330"; ctx.lineWidth = 2; ctx.beginPath();
      f.d_curve.forEach((v, i) => { const x = i / (f.d_curve.length - 1) * view.width, y = base - v * (base - top); i ? ctx.lineTo(x, y) : ctx.moveTo(x, y); });
      ctx.stroke(); ctx.fillStyle = "#1d2330"; ctx.fillText("D(x)", 6, top - 8);
    }
    for (const [hist, color, on] of [[d.real_hist, REAL, show("real")], [f.fake_hist, FAKE, show("fake")]]) {
      if (!on) continue;
      ctx.fillStyle = color + "66"; ctx.strokeStyle = color;
      hist.forEach((v, i) => { const h = v / peak * (base - top) * 0.9; ctx.fillRect(i * bw, base - h, bw - 1, h); });
    }
    if (f.g_map && show("grid")) {  // z in [-3, 3] on the bottom line, joined to G(z) on the x axis
      ctx.strokeStyle = "rgba(80,80,80,0.45)";
      f.g_map.forEach((x, i) => { const z = -3 + 6 * i / (f.g_map.length - 1);
        ctx.beginPath(); ctx.moveTo(view.width / 2 + z * view.width / 8, H - 8); ctx.lineTo(X(x), base); ctx.stroke(); });
      ctx.fillStyle = "#667085"; ctx.fillText("z ~ N(0, 1)", 6, H - 12);
    }
    ctx.strokeStyle = "#999"; ctx.beginPath(); ctx.moveTo(0, base); ctx.lineTo(view.width, base); ctx.stroke();
    ctx.fillStyle = "#667085"; for (let x = Math.ceil(d.bounds[0]); x <= d.bounds[1]; x += 2) ctx.fillText(String(x), X(x) - 3, base + 12);
  }
  if (f.arrows && show("arrows")) arrows(f.arrows.at, f.arrows.push, X, Y, d.dim);
  charts();
}

function charts() {
  lab.chart($("loss-chart"), [
    { name: "D loss", color: "#1d2330", values: state.losses.filter(p => p.d !== undefined).map(p => [p.step, p.d]) },
    { name: "G loss", color: FAKE, values: state.losses.filter(p => p.g !== undefined).map(p => [p.step, p.g]) }]);
  const cov = $("show-coverage").checked ? state.coverage : [];
  lab.chart($("coverage-chart"), [
    { name: "modes covered / all", color: REAL, values: cov.map(c => [c.step, c.modes / c.of]) },
    { name: "reverse KL (nats)", color: "#d62728", values: cov.map(c => [c.step, c.reverse_kl ?? Math.log(c.of)]) }],
    { ymin: 0 });
}

// --- user-drawn data -------------------------------------------------------------------------------
function drawDrawing() {
  const { X, Y } = transform();
  ctx.fillStyle = "#667085"; ctx.fillText(`Click or drag to add points (${state.drawn.length} of at most 2000), then "Train on drawing".`, 10, 18);
  dots(state.drawn.flat(), REAL, X, Y, 2.5);
}
let pressed = false;
function addPoint(event) {
  if (!state.drawing || state.drawn.length >= 2000) return;
  const rect = view.getBoundingClientRect(), { inverse } = transform();
  const [x, y] = inverse(event.clientX - rect.left, event.clientY - rect.top);
  state.drawn.push([Math.max(-1.5, Math.min(1.5, +x.toFixed(3))), Math.max(-1.5, Math.min(1.5, +y.toFixed(3)))]);
  $("use-drawing").disabled = state.drawn.length < 8;
  draw();
}
view.addEventListener("mousedown", e => { pressed = true; addPoint(e); });
view.addEventListener("mousemove", e => { if (pressed) addPoint(e); });
window.addEventListener("mouseup", () => { pressed = false; });
$("draw").onclick = () => {
  state.drawing = !state.drawing;
  if (state.drawing) { state.drawn = []; send({ type: "pause" }); }
  $("draw").textContent = state.drawing ? "Cancel drawing" : "Draw points";
  $("use-drawing").disabled = true;
  draw();
};
$("use-drawing").onclick = () => {
  send({ type: "points", points: state.drawn });
  state.drawing = false; $("draw").textContent = "Draw points"; $("use-drawing").disabled = true;
};

// --- controls --------------------------------------------------------------------------------------
$("play").onclick = () => send({ type: state.playing ? "pause" : "play" });
$("reset").onclick = () => send({ type: "reset" });
$("step-d").onclick = () => send({ type: "step", which: "d" });
$("step-g").onclick = () => send({ type: "step", which: "g" });
$("step-both").onclick = () => send({ type: "step", which: "both" });
$("speed").onchange = () => send({ type: "settings", settings: { steps_per_s: Number($("speed").value) } });
for (const key of ["loss", "data"]) $(key).onchange = () => send({ type: "settings", settings: { [key]: $(key).value } });
for (const key of ["pack", "n_critic", "depth", "width"])
  $(key).onchange = () => send({ type: "settings", settings: { [key]: Number($(key).value) } });
for (const key of ["lr_g", "lr_d"]) $(key).onchange = () => send({ type: "settings", settings: { [key]: Number($(key).value) } });
for (const key of ["spectral_norm", "minibatch_stddev"])
  $(key).onchange = () => send({ type: "settings", settings: { [key]: $(key).checked } });
for (const key of ["heatmap", "arrows", "grid", "coverage"])
  $("show-" + key).onchange = () => { send({ type: "views", views: { [key]: $("show-" + key).checked } }); draw(); };
for (const key of ["real", "fake"]) $("show-" + key).onchange = draw;
