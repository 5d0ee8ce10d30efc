"use strict";
// Helpers every lab page uses: JSON requests with readable errors, WebSocket URLs, drawing small images.
const lab = {
  async json(url, body) {
    const options = body === undefined ? {} :
      { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
    const response = await fetch(url, options);
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const detail = Array.isArray(data.detail) ? data.detail.map(d => `${d.loc.slice(1).join(".")}: ${d.msg}`).join("; ")
        : (data.detail || response.statusText);
      lab.error(detail);
      throw new Error(detail);
    }
    return data;
  },
  socketURL(path) { return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path; },
  error(message) {
    const box = document.getElementById("error");
    if (!box) return;
    box.textContent = message;
    box.classList.add("on");
    clearTimeout(lab._errorTimer);
    lab._errorTimer = setTimeout(() => box.classList.remove("on"), 6000);
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
