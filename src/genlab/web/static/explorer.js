"use strict";
// Latent explorer: a 2-D latent map of the digits test set with each VAE posterior's spread; decode under the
// pointer, sliders, the sampling step z = mu + sigma * eps for image A, lerp vs slerp, and the same grid decoded
// by an AE and a VAE, with where training codes lie.
const $ = id => document.getElementById(id);
const map = $("map"), mctx = map.getContext("2d");
let points = null, extent = null, model = "vae", picks = [0, 1];
let eps = null;  // the sampling step's noise for image A, one N(0, 1) number per latent dimension
const sliders = () => [...document.querySelectorAll("#sliders input")];
const sliderZ = () => sliders().map(s => Number(s.value));

async function loadMap() {
  $("explorer-status").textContent = "(training on first use...)";
  const chosen = $("map-model").value;
  const loaded = await lab.json(`/api/explorer/map?model=${encodeURIComponent(chosen)}`);
  points = loaded; model = chosen; queued = null;  // switch only once the new map is here
  $("explorer-status").textContent = "";
  // one range per latent dimension, each spanning that dimension's test codes with a margin
  const ranges = [...Array(points.latent_dim).keys()].map(d => {
    const values = points.codes.map(c => c[d]), lo = Math.min(...values), hi = Math.max(...values), pad = 0.15 * (hi - lo + 1e-6);
    return [lo - pad, hi + pad];
  });
  const half = Math.max(ranges[0][1] - ranges[0][0], (ranges[1] || ranges[0])[1] - (ranges[1] || ranges[0])[0]) / 2;
  const cx = (ranges[0][0] + ranges[0][1]) / 2, cy = ranges[1] ? (ranges[1][0] + ranges[1][1]) / 2 : 0;
  extent = [cx - half, cx + half, cy - half, cy + half];
  $("sliders").replaceChildren(...ranges.map(([lo, hi], d) => lab.el("label", {}, `z[${d}] `, lab.el("input", {
    type: "range", id: `zs-${d}`, min: lo.toFixed(2), max: hi.toFixed(2), step: "0.01", value: ((lo + hi) / 2).toFixed(2),
  }))));
  for (const s of sliders()) s.oninput = () => decodeAt(sliderZ());
  eps = null;
  drawMap();
  drawPick(0); drawPick(1);
  decodeAt(sliderZ());
  showSample();
}
const toPixel = ([x, y]) => [(x - extent[0]) / (extent[1] - extent[0]) * map.width, map.height - ((y ?? 0) - extent[2]) / (extent[3] - extent[2]) * map.height];
const toLatent = (px, py) => [extent[0] + px / map.width * (extent[1] - extent[0]), extent[2] + (map.height - py) / map.height * (extent[3] - extent[2])];

// a posterior's 1-sigma ellipse in the map's first two dimensions (the covariance is diagonal: axis-aligned)
function ellipse(i) {
  const [x, y] = toPixel(points.codes[i]), s = points.sigmas[i];
  const rx = s[0] / (extent[1] - extent[0]) * map.width, ry = (s[1] ?? 0) / (extent[3] - extent[2]) * map.height;
  mctx.beginPath(); mctx.ellipse(x, y, Math.max(rx, 0.5), Math.max(ry, 0.5), 0, 0, 2 * Math.PI);
}
const sampledZ = () => points.codes[picks[0]].map((mu, d) => clamp(mu + points.sigmas[picks[0]][d] * eps[d]));

function drawMap(cursor) {
  mctx.fillStyle = "#fff"; mctx.fillRect(0, 0, map.width, map.height);
  mctx.strokeStyle = "#eef0f4";
  const [ox, oy] = toPixel([0, 0]); mctx.beginPath(); mctx.moveTo(ox, 0); mctx.lineTo(ox, map.height); mctx.moveTo(0, oy); mctx.lineTo(map.width, oy); mctx.stroke();
  if (points.sigmas && $("show-spread").checked) {
    mctx.globalAlpha = 0.07;
    points.codes.forEach((c, i) => { mctx.fillStyle = lab.TAB10[points.labels[i]]; ellipse(i); mctx.fill(); });
    mctx.globalAlpha = 1;
  }
  points.codes.forEach((c, i) => {
    const [x, y] = toPixel(c); mctx.fillStyle = lab.TAB10[points.labels[i]];
    mctx.beginPath(); mctx.arc(x, y, 3, 0, 2 * Math.PI); mctx.fill();
  });
  picks.forEach((index, k) => { const [x, y] = toPixel(points.codes[index]);
    mctx.strokeStyle = "#000"; mctx.lineWidth = 2; mctx.strokeRect(x - 6, y - 6, 12, 12); mctx.fillStyle = "#000"; mctx.fillText(k ? "B" : "A", x + 8, y - 6); });
  if (points.sigmas && eps) {  // image A's posterior and the z drawn from it
    const [mx, my] = toPixel(points.codes[picks[0]]), [zx, zy] = toPixel(sampledZ());
    mctx.strokeStyle = "#000"; mctx.lineWidth = 1.5; mctx.setLineDash([4, 3]); ellipse(picks[0]); mctx.stroke(); mctx.setLineDash([]);
    mctx.beginPath(); mctx.moveTo(mx, my); mctx.lineTo(zx, zy); mctx.stroke();
    mctx.lineWidth = 2.5; mctx.beginPath(); mctx.moveTo(zx - 5, zy - 5); mctx.lineTo(zx + 5, zy + 5); mctx.moveTo(zx + 5, zy - 5); mctx.lineTo(zx - 5, zy + 5); mctx.stroke();
  }
  if (cursor) { mctx.strokeStyle = "#000"; mctx.lineWidth = 1; mctx.beginPath(); mctx.arc(cursor[0], cursor[1], 7, 0, 2 * Math.PI); mctx.stroke(); }
  $("legend").replaceChildren(...lab.TAB10.map((c, d) => {
    const dot = lab.el("i", { className: "dot" });
    dot.style.background = c;
    return lab.el("span", {}, dot, String(d));
  }));
}

let busy = false, queued = null;  // one decode in flight; the newest pending z wins
async function decodeAt(z) {
  if (z.length !== points.latent_dim) return;  // a stale request from the model shown before
  $("z-text").textContent = `z = (${z.map(v => v.toFixed(2)).join(", ")})`;
  if (busy) { queued = z; return; }
  busy = true;
  try { lab.drawPixels($("decoded"), (await lab.json("/api/explorer/decode", { model, z })).image, 8); }
  catch { /* lab.json has shown the message */ }
  finally { busy = false; if (queued) { const next = queued; queued = null; decodeAt(next); } }
}

const clamp = v => Math.max(-10, Math.min(10, v));
// the pointer sets the first two dimensions; the others stay where their sliders are
const pointerZ = (px, py) => { const z = sliderZ(), [a, b] = toLatent(px, py); z[0] = clamp(a); if (z.length > 1) z[1] = clamp(b); return z; };
map.addEventListener("mousemove", e => {
  if (!points) return;
  const r = map.getBoundingClientRect(), px = e.clientX - r.left, py = e.clientY - r.top;
  drawMap([px, py]);
  decodeAt(pointerZ(px, py));
});
map.addEventListener("click", e => {
  const r = map.getBoundingClientRect(), px = e.clientX - r.left, py = e.clientY - r.top;
  let best = 0, bestD = Infinity;
  points.codes.forEach((c, i) => { const [x, y] = toPixel(c), d = (x - px) ** 2 + (y - py) ** 2; if (d < bestD) { best = i; bestD = d; } });
  picks[e.shiftKey ? 1 : 0] = best; drawPick(e.shiftKey ? 1 : 0);
  if (!e.shiftKey) { eps = null; showSample(); }
  drawMap([px, py]);
  pointerZ(px, py).forEach((v, d) => { sliders()[d].value = v; });
});
function drawPick(k) { lab.drawPixels($(k ? "pick-b" : "pick-a"), points.images[picks[k]], 8); }
$("map-model").onchange = loadMap;
$("show-spread").onchange = () => drawMap();

const gaussian = () => Math.sqrt(-2 * Math.log(1 - Math.random())) * Math.cos(2 * Math.PI * Math.random());  // Box-Muller
const numbers = v => `(${v.map(x => x.toFixed(2)).join(", ")})`;
// The reparameterisation for image A: draw eps (unless kept), show mu, sigma, eps and z, decode mu and z.
async function showSample() {
  const shown = points, index = picks[0], vae = Boolean(points.sigmas);
  $("resample").disabled = !vae;
  $("sampling").classList.toggle("off", !vae);
  if (!vae) {
    $("sample-text").textContent = "An autoencoder encodes A to one point, with no \u03c3: there is nothing to sample.";
    for (const id of ["mu-decoded", "z-decoded"]) $(id).getContext("2d").clearRect(0, 0, 80, 80);
    return;
  }
  eps = eps || points.codes[index].map(gaussian);
  const z = sampledZ();
  $("sample-text").replaceChildren(...[["\u03bc", points.codes[index]], ["\u03c3", points.sigmas[index]], ["\u03b5", eps],
    ["z", z]].map(([name, v]) => lab.el("div", {}, `${name} = ${numbers(v.slice(0, 4))}${v.length > 4 ? " ..." : ""}`)));
  drawMap();
  try {
    const [mu, sampled] = await Promise.all([points.codes[index], z].map(v => lab.json("/api/explorer/decode", { model, z: v })));
    if (shown !== points || index !== picks[0]) return;  // another model or image was chosen meanwhile
    lab.drawPixels($("mu-decoded"), mu.image, 8); lab.drawPixels($("z-decoded"), sampled.image, 8);
  } catch { /* lab.json has shown the message */ }
}
$("resample").onclick = () => { eps = null; showSample(); };

$("interpolate").onclick = async () => {
  const r = await lab.json("/api/explorer/interpolate", { model, a: picks[0], b: picks[1], frames: 8 });
  for (const method of ["lerp", "slerp"]) {
    $(method).replaceChildren(...r[method].map(image => { const c = lab.canvas(40, 40); lab.drawPixels(c, image, 8); return c; }));
  }
};

// size x size 8x8 images on one canvas, a gap between them; a green frame round each tile that training codes
// are nearest (codes[i] > 0), so the unframed tiles are the space the model never trained on
function mosaic(canvas, images, codes, size) {
  const ctx = canvas.getContext("2d"), cell = Math.floor(canvas.width / size), tile = document.createElement("canvas");
  tile.width = tile.height = cell - 6;
  ctx.fillStyle = "#d9dde5"; ctx.fillRect(0, 0, canvas.width, canvas.height);
  images.forEach((image, i) => {
    const x = (i % size) * cell, y = Math.floor(i / size) * cell;
    if (codes[i] > 0) { ctx.fillStyle = "#2a9d5c"; ctx.fillRect(x, y, cell, cell); }
    lab.drawPixels(tile, image, 8); ctx.drawImage(tile, x + 3, y + 3);
  });
}
const HOLES_SIZE = 15;  // tiles a side: fine enough that the gaps between the AE's clusters show
const box = b => `z[0] in [${b[0]}, ${b[1]}], z[1] in [${b[2]}, ${b[3]}]`;
$("holes").onclick = async () => {
  const span = $("holes-grid").value;  // "": each model's own box; a number: the same z for both
  const r = await lab.json(`/api/explorer/holes?size=${HOLES_SIZE}${span ? "&span=" + span : ""}`);
  mosaic($("holes-ae"), r.ae, r.ae_codes, r.size); mosaic($("holes-vae"), r.vae, r.vae_codes, r.size);
  $("box-ae").textContent = box(r.ae_box); $("box-vae").textContent = box(r.vae_box);
};
lab.json("/api/explorer/models").then(({ models }) => {
  $("map-model").replaceChildren(...models.map(m =>
    lab.el("option", { value: m }, m === "vae" ? "VAE" : m === "ae" ? "autoencoder" : m.slice(4))));
  loadMap();
});
