"use strict";
// Helpers every lab page uses: JSON requests with readable errors, WebSockets that say when they are lost,
// elements built from text nodes (never HTML strings: a run's config.json is data, not markup), small images.
const LOST = "Lost connection to the lab: is `genlab lab` still running? Reload the page to retry.";
const lab = {
  async json(url, body) {
    const options = body === undefined ? {} :
      { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
    let response;
    try { response = await fetch(url, options); }
    catch (error) { lab.lost(); throw error; }  // no answer at all: the server is gone
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const detail = typeof data.detail === "string" ? data.detail : response.statusText;
      lab.error(detail);
      throw new Error(detail);
    }
    return data;
  },
  socketURL(path) { return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path; },
  // A WebSocket whose unexpected end is said on the page, in a banner that stays: the server's own reason when it
  // closed the socket on purpose after an error message (1008: refused, 1013: full), else LOST. A page that
  // closes its own socket calls lab.leave(socket) first.
  connect(path, onmessage) {
    const socket = new WebSocket(lab.socketURL(path));
    let reason = null;
    socket.onmessage = event => {
      const message = JSON.parse(event.data);
      if (message.type === "error") reason = message.message;
      onmessage(message);
    };
    socket.onclose = event => {
      if (socket.left || event.code === 1000) return;  // 1000: the server finished (a run's stream ends)
      lab.lost([1008, 1013].includes(event.code) && reason ? reason : LOST);
    };
    return socket;
  },
  leave(socket) { if (socket) { socket.left = true; socket.close(); } },
  lost(message = LOST) {
    let banner = document.getElementById("lost");
    if (!banner) {
      banner = lab.el("div", { id: "lost", role: "alert" });
      document.body.prepend(banner);
    }
    banner.textContent = message;
  },
  error(message) {
    const box = document.getElementById("error");
    if (!box) return;
    box.textContent = message;
    box.classList.add("on");
    clearTimeout(lab._errorTimer);
    lab._errorTimer = setTimeout(() => box.classList.remove("on"), 6000);
  },
  // <tag> with these properties (className, href, value, ...) and children; strings become text nodes
  el(tag, properties = {}, ...children) {
    const node = Object.assign(document.createElement(tag), properties);
    node.append(...children);
    return node;
  },
  // values: size*size grey levels in [0, 1] (1 = ink); drawn dark on light, scaled to the canvas without blur
  drawPixels(canvas, values, size) {
    const small = document.createElement("canvas");
    small.width = small.height = size;
    const sctx = small.getContext("2d");
    const image = sctx.createImageData(size, size);
    for (let i = 0; i < size * size; i++) {
      const v = Math.round(255 * (1 - Math.min(1, Math.max(0, values[i]))));
      image.data.set([v, v, v, 255], 4 * i);
    }
    sctx.putImageData(image, 0, 0);
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(small, 0, 0, canvas.width, canvas.height);
  },
  canvas(width, height, title) {
    const c = document.createElement("canvas");
    c.width = width; c.height = height; c.className = "pixels";
    if (title) c.title = title;
    return c;
  },
  // a line chart of named series [{name, color, values: [[x, y], ...]}] with its own y range
  chart(canvas, series, { ymin, ymax, label } = {}) {
    const ctx = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height, pad = 28;
    ctx.clearRect(0, 0, w, h);
    const all = series.flatMap(s => s.values);
    ctx.fillStyle = "#667085"; ctx.font = "11px system-ui";
    if (label) ctx.fillText(label, pad, 11);
    if (all.length < 2) return;
    const xs = all.map(p => p[0]), ys = all.map(p => p[1]).filter(Number.isFinite);
    const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
    let y0 = ymin ?? Math.min(...ys), y1 = ymax ?? Math.max(...ys);
    if (y1 - y0 < 1e-9) { y1 += 0.5; y0 -= 0.5; }
    const X = x => pad + (x - x0) / (x1 - x0) * (w - pad - 6), Y = y => h - 16 - (y - y0) / (y1 - y0) * (h - 34);
    ctx.strokeStyle = "#d9dde5"; ctx.beginPath(); ctx.moveTo(pad, h - 16); ctx.lineTo(w - 6, h - 16); ctx.stroke();
    ctx.fillText(y1.toPrecision(3), 0, 24); ctx.fillText(y0.toPrecision(3), 0, h - 18);
    ctx.fillText(String(x1), w - 40, h - 3); ctx.fillText(String(x0), pad, h - 3);
    let lx = pad + 90;
    for (const s of series) {
      ctx.strokeStyle = s.color; ctx.lineWidth = 1.5; ctx.beginPath();
      s.values.forEach(([x, y], i) => { if (Number.isFinite(y)) (i ? ctx.lineTo(X(x), Y(y)) : ctx.moveTo(X(x), Y(y))); });
      ctx.stroke();
      ctx.fillStyle = s.color; ctx.fillText(s.name, lx, 11); lx += ctx.measureText(s.name).width + 14;
    }
  },
  TAB10: ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"],
};
