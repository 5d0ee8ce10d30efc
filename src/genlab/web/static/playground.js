"use strict";
// The GAN playground: sends commands over one WebSocket, draws each frame the server's worker computes.
// Drawing is kept cheap so that watching does not slow training on a small CPU: frames are painted at most once
// per animation frame (the newest wins), the real data is drawn once per data set onto its own layer, each kind of
// mark is one path, and the numbers and charts are updated a few times a second while playing.
const $ = id => document.getElementById(id);
const view = $("view"), ctx = view.getContext("2d");
const state = { data: null, frame: null, playing: false, losses: [], coverage: [], drawing: false, drawn: [],
                framesDrawn: 0, paintPending: false, panelAt: 0, fpsAt: 0, fpsFrames: 0, realLayer: null };  // fpsFrames: framesDrawn at fpsAt
const socket = lab.connect("/ws/playground", m => {
  if (m.type === "data") {
    Object.assign(state, { data: m, losses: [], coverage: [], realLayer: null });
    showSettings(m.settings); describe(m);
  } else if (m.type === "frame") { state.frame = m; record(m); paintSoon(); }
  else if (m.type === "changed") { $("changed").textContent = m.how === "live" ? "" : `(${m.how})`; showSettings(m.settings); describe(m); }
  else if (m.type === "error") lab.error(m.message);
});
const send = message => socket.readyState === WebSocket.OPEN && socket.send(JSON.stringify(message));
const REAL = "#2a9d5c", FAKE = "#7b3fbf", OFF = "#c2410c", GUIDED = "#1565c0";
// ms between updates of the numbers and charts while playing: text that changes 30 times a second cannot be read,
// and re-laying out the page that often costs the browser (and so the trainer, on a small CPU) a tenth of a core
const PANEL_INTERVAL = 250;

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
}

function showNumbers(f) {
  $("play").textContent = f.playing ? "Pause" : "Play";
  $("step").textContent = f.step; $("d-steps").textContent = f.d_steps; $("g-steps").textContent = f.g_steps;
  $("rate").textContent = f.playing ? f.steps_per_s : 0;
  $("d-loss").textContent = f.losses.d_loss !== undefined ? f.losses.d_loss.toFixed(4) : "–";
  $("g-loss").textContent = f.losses.g_loss !== undefined ? f.losses.g_loss.toFixed(4) : "–";
  const c = f.coverage;
  $("coverage").textContent = c ? `${c.modes} of ${c.of} modes, ${(100 * c.high_quality).toFixed(1)}% high quality, reverse KL ${c.reverse_kl ?? "∞"}`
    : (f.fake_stats ? `fake mean ${f.fake_stats.mean}, std ${f.fake_stats.std} (data: 4, 1.25)` : "–");
  const g = f.guided;
  $("guided").textContent = !g ? "–" : g.refused ? `none drawn: ${g.refused}`
    : (g.modes !== undefined ? `${g.modes} of ${g.of} modes, ${(100 * g.high_quality).toFixed(1)}% high quality, ` : "")
      + `${(100 * g.acceptance).toFixed(1)}% of proposals kept (step ${g.step})`;
  $("warning").textContent = f.warning ? "Collapse detector: " + f.warning : "";
  $("warning").classList.toggle("on", Boolean(f.warning));
  const shown = f.fake ? f.fake.length / 2 : null;
  $("off-view").textContent = !f.off_view ? "" : shown
    ? `${f.off_view} of ${shown} samples are off the view: drawn as triangles at its edge`
    : `${f.off_view} samples are off the view (${f.off_sides[0]} left, ${f.off_sides[1]} right)`;
}

// --- what the view shows and what is training: both written by the server from the model itself ----------
const MARKS = ["real", "fake", "background", "curve", "off", "grid", "arrow", "guided"];
function describe(m) {
  $("legend").replaceChildren(...m.legend.filter(e => MARKS.includes(e.mark)).map(e =>
    lab.el("span", { className: "entry-" + e.mark }, lab.el("i", { className: "swatch " + e.mark }), e.text)));
  overviewDiagram(m.model);
}

// noise z -> G -> fakes -> D <- real; D -> D loss and G loss, as GAN Lab draws it; labels are text nodes
function overviewDiagram(model) {
  const NS = "http://www.w3.org/2000/svg", svg = document.createElementNS(NS, "svg");
  const node = (tag, attributes, text) => {
    const n = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attributes)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    svg.append(n); return n;
  };
  svg.setAttribute("viewBox", "0 0 276 92"); svg.setAttribute("width", "276"); svg.setAttribute("height", "92");
  svg.setAttribute("role", "img"); svg.setAttribute("aria-label", "model overview");
  node("marker", { id: "overview-arrow", viewBox: "0 0 6 6", refX: 6, refY: 3, markerWidth: 6, markerHeight: 6, orient: "auto" })
    .append(node("path", { d: "M0,0 L6,3 L0,6 z", style: "fill:#667085;stroke:none;marker-end:none" }));
  const boxes = {  // name: [x, y, width, title, tooltip]
    noise: [2, 8, 44, "noise z", model.noise], generator: [62, 8, 30, "G", model.generator],
    fake: [108, 8, 50, "fakes", model.fake], real: [108, 60, 50, "real", model.real],
    discriminator: [174, 34, 30, "D", model.discriminator],
    d_loss: [222, 8, 52, "D loss", model.loss], g_loss: [222, 60, 52, "G loss", model.loss] };
  for (const [name, [x, y, w, title, tip]] of Object.entries(boxes)) {
    const box = node("rect", { x, y, width: w, height: 24, rx: 4, "data-box": name });
    box.append(document.createElementNS(NS, "title")); box.firstChild.textContent = tip;
    node("text", { x: x + w / 2, y: y + 15, "text-anchor": "middle" }, title);
  }
  const arrow = (from, to) => {
    const [ax, ay, aw] = boxes[from], [bx, by, bw] = boxes[to];
    const start = [ax + aw, ay + 12], end = bx > ax + aw ? [bx, by + 12] : [bx + bw / 2, by + 24];
    node("path", { d: `M${start[0]},${start[1]} L${end[0]},${end[1]}` });
  };
  for (const [a, b] of [["noise", "generator"], ["generator", "fake"], ["fake", "discriminator"], ["real", "discriminator"],
                        ["discriminator", "d_loss"], ["discriminator", "g_loss"]]) arrow(a, b);
  const labels = lab.el("ul", {}, ...["generator", "discriminator", "loss"].map(k => lab.el("li", {}, model[k])));
  $("overview").replaceChildren(svg, labels);
}


// --- drawing ---------------------------------------------------------------------------------------
function transform() {
  const [x0, x1, y0, y1] = state.drawing ? [-1.5, 1.5, -1.5, 1.5] : state.data.bounds;
  return { X: x => (x - x0) / (x1 - x0) * view.width, Y: y => view.height - (y - y0) / (y1 - y0) * view.height,
           inverse: (px, py) => [x0 + px / view.width * (x1 - x0), y0 + (view.height - py) / view.height * (y1 - y0)] };
}

function paintSoon() {  // frames that arrive faster than the screen refreshes replace each other unpainted
  if (state.paintPending) return;
  state.paintPending = true;
  requestAnimationFrame(() => { state.paintPending = false; draw(); });
}

// D's decision: 0 = fake (purple) ... 255 = real (green), white between; one colour per byte, worked out once
const SHADES = Array.from({ length: 256 }, (_, v) => {
  const t = v / 255, a = Math.abs(t - 0.5) * 2 * 0.55, c = t > 0.5 ? [42, 157, 92] : [123, 63, 191];
  return c.map(channel => 255 + (channel - 255) * a);
});
const heat = { canvas: document.createElement("canvas"), image: null };
function heatmap(b64) {
  const bytes = atob(b64), n = Math.round(Math.sqrt(bytes.length));
  if (!heat.image || heat.image.width !== n) {
    heat.canvas.width = heat.canvas.height = n;
    heat.image = heat.canvas.getContext("2d").createImageData(n, n);
  }
  for (let i = 0; i < bytes.length; i++) {
    const [r, g, b] = SHADES[bytes.charCodeAt(i)];
    heat.image.data[4 * i] = r; heat.image.data[4 * i + 1] = g; heat.image.data[4 * i + 2] = b; heat.image.data[4 * i + 3] = 255;
  }
  heat.canvas.getContext("2d").putImageData(heat.image, 0, 0);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(heat.canvas, 0, 0, view.width, view.height);
}

function dots(target, flat, color, X, Y, r = 2) {  // one path for all the dots: one fill, not one per dot
  target.fillStyle = color; target.beginPath();
  for (let i = 0; i < flat.length; i += 2) {
    const x = X(flat[i]), y = Y(flat[i + 1]);
    target.moveTo(x + r, y); target.arc(x, y, r, 0, 2 * Math.PI);
  }
  target.fill();
}

// samples outside the view: a triangle at the edge, pointing the way the sample went
function offView(flat, X, Y) {
  const w = view.width, h = view.height, m = 6;
  ctx.fillStyle = OFF; ctx.beginPath();
  for (let i = 0; i < flat.length; i += 2) {
    const x = X(flat[i]), y = Y(flat[i + 1]);
    if (x >= 0 && x <= w && y >= 0 && y <= h) continue;
    const cx = Math.min(w - m, Math.max(m, x)), cy = Math.min(h - m, Math.max(m, y)), a = Math.atan2(y - cy, x - cx);
    ctx.moveTo(cx + 6 * Math.cos(a), cy + 6 * Math.sin(a));
    ctx.lineTo(cx + 5 * Math.cos(a + 2.3), cy + 5 * Math.sin(a + 2.3));
    ctx.lineTo(cx + 5 * Math.cos(a - 2.3), cy + 5 * Math.sin(a - 2.3));
    ctx.closePath();
  }
  ctx.fill();
}

function realLayer(X, Y) {  // the real points never move: drawn once per data set, then copied
  if (!state.realLayer) {
    state.realLayer = document.createElement("canvas");
    state.realLayer.width = view.width; state.realLayer.height = view.height;
    dots(state.realLayer.getContext("2d"), state.data.real, REAL, X, Y, 1.6);
  }
  return state.realLayer;
}

function arrows(at, push, X, Y, dim) {
  let longest = 1e-12;
  for (let i = 0; i < push.length; i++) longest = Math.max(longest, Math.abs(push[i]));
  const scale = 28 / longest; ctx.strokeStyle = dim === 2 ? "rgba(30,30,30,0.55)" : "#c2410c"; ctx.lineWidth = 1;
  ctx.beginPath();
  for (let i = 0; i < at.length / dim; i++) {  // 1-D: arrows on a line under the axis, at each fake's x
    const x = X(at[dim * i]), y = dim === 2 ? Y(at[2 * i + 1]) : view.height - 62 + (i % 4) * 5;
    const dx = push[dim * i] * scale, dy = dim === 2 ? -push[2 * i + 1] * scale : 0;
    ctx.moveTo(x, y); ctx.lineTo(x + dx, y + dy);
    const a = Math.atan2(dy, dx); ctx.lineTo(x + dx - 4 * Math.cos(a - 0.5), y + dy - 4 * Math.sin(a - 0.5));
    ctx.moveTo(x + dx, y + dy); ctx.lineTo(x + dx - 4 * Math.cos(a + 0.5), y + dy - 4 * Math.sin(a + 0.5));
  }
  ctx.stroke();
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
      ctx.strokeStyle = "rgba(80,80,80,0.35)"; ctx.lineWidth = 1; ctx.beginPath();
      for (let i = 0; i < n; i++) for (const along of [true, false]) {
        for (let j = 0; j < n; j++) { const [x, y] = along ? P(i, j) : P(j, i); j ? ctx.lineTo(x, y) : ctx.moveTo(x, y); }
      }
      ctx.stroke();
    }
    if (show("real")) ctx.drawImage(realLayer(X, Y), 0, 0);
    if (show("fake")) { dots(ctx, f.fake, FAKE, X, Y, 2); if (f.off_view) offView(f.fake, X, Y); }
    if (f.guided && f.guided.points && show("guided")) dots(ctx, f.guided.points, GUIDED, X, Y, 2);
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
      ctx.strokeStyle = "rgba(80,80,80,0.45)"; ctx.beginPath();
      f.g_map.forEach((x, i) => { const z = -3 + 6 * i / (f.g_map.length - 1);
        ctx.moveTo(view.width / 2 + z * view.width / 8, H - 8); ctx.lineTo(X(x), base); });
      ctx.stroke(); ctx.fillStyle = "#667085"; ctx.fillText("z ~ N(0, 1)", 6, H - 12);
    }
    ctx.strokeStyle = "#999"; ctx.beginPath(); ctx.moveTo(0, base); ctx.lineTo(view.width, base); ctx.stroke();
    ctx.fillStyle = "#667085"; for (let x = Math.ceil(d.bounds[0]); x <= d.bounds[1]; x += 2) ctx.fillText(String(x), X(x) - 3, base + 12);
    if (show("fake")) f.off_sides.forEach((count, side) => {  // samples beyond the axis' ends, counted at each end
      if (!count) return;
      const x = side ? view.width - 4 : 4, sign = side ? 1 : -1;
      ctx.fillStyle = OFF; ctx.beginPath(); ctx.moveTo(x, base - 8); ctx.lineTo(x - 8 * sign, base - 14); ctx.lineTo(x - 8 * sign, base - 2); ctx.fill();
      ctx.textAlign = side ? "right" : "left"; ctx.fillText(String(count), x - 11 * sign, base - 4); ctx.textAlign = "start";
    });
  }
  if (f.arrows && show("arrows")) arrows(f.arrows.at, f.arrows.push, X, Y, d.dim);
  const now = performance.now();
  if (!f.playing || now - state.panelAt >= PANEL_INTERVAL) { showNumbers(f); charts(); state.panelAt = now; }
  if (now - state.fpsAt >= 1000) {
    $("fps").textContent = f.playing ? Math.round(1000 * (state.framesDrawn - state.fpsFrames) / (now - state.fpsAt)) : 0;
    state.fpsAt = now; state.fpsFrames = state.framesDrawn;
  }
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
  dots(ctx, state.drawn.flat(), REAL, X, Y, 2.5);
}
let pressed = false;
function addPoint(event) {
  if (!state.drawing || state.drawn.length >= 2000) return;
  const rect = view.getBoundingClientRect(), { inverse } = transform();
  const [x, y] = inverse((event.clientX - rect.left) * view.width / rect.width, (event.clientY - rect.top) * view.height / rect.height);
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
for (const key of ["heatmap", "arrows", "grid", "coverage", "guided"])
  $("show-" + key).onchange = () => { send({ type: "views", views: { [key]: $("show-" + key).checked } }); draw(); };
for (const key of ["real", "fake"]) $("show-" + key).onchange = draw;
