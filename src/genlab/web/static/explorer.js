"use strict";
// Latent explorer: a 2-D latent map of the digits test set; decode under the pointer, sliders,
// lerp vs slerp, and the same grid decoded by an AE and a VAE.
const $ = id => document.getElementById(id);
const map = $("map"), mctx = map.getContext("2d");
let points = null, extent = null, model = "vae", picks = [0, 1];

async function loadMap() {
  $("explorer-status").textContent = "(training on first use...)";
  model = $("map-model").value;
  points = await lab.json(`/api/explorer/map?model=${model}`);
  $("explorer-status").textContent = "";
  const xs = points.codes.map(c => c[0]), ys = points.codes.map(c => c[1]);
  const pad = 0.15 * Math.max(Math.max(...xs) - Math.min(...xs), Math.max(...ys) - Math.min(...ys));
  const cx = (Math.max(...xs) + Math.min(...xs)) / 2, cy = (Math.max(...ys) + Math.min(...ys)) / 2;
  const half = Math.max(Math.max(...xs) - Math.min(...xs), Math.max(...ys) - Math.min(...ys)) / 2 + pad;
  extent = [cx - half, cx + half, cy - half, cy + half];
  for (const i of [0, 1]) {  // the sliders span the map
    $("zs-" + i).min = extent[2 * i].toFixed(2); $("zs-" + i).max = extent[2 * i + 1].toFixed(2);
  }
  drawMap();
  drawPick(0); drawPick(1);
}
const toPixel = ([x, y]) => [(x - extent[0]) / (extent[1] - extent[0]) * map.width, map.height - (y - extent[2]) / (extent[3] - extent[2]) * map.height];
const toLatent = (px, py) => [extent[0] + px / map.width * (extent[1] - extent[0]), extent[2] + (map.height - py) / map.height * (extent[3] - extent[2])];

function drawMap(cursor) {
  mctx.fillStyle = "#fff"; mctx.fillRect(0, 0, map.width, map.height);
  mctx.strokeStyle = "#eef0f4";
  const [ox, oy] = toPixel([0, 0]); mctx.beginPath(); mctx.moveTo(ox, 0); mctx.lineTo(ox, map.height); mctx.moveTo(0, oy); mctx.lineTo(map.width, oy); mctx.stroke();
  points.codes.forEach((c, i) => {
    const [x, y] = toPixel(c); mctx.fillStyle = lab.TAB10[points.labels[i]];
    mctx.beginPath(); mctx.arc(x, y, 3, 0, 2 * Math.PI); mctx.fill();
  });
  picks.forEach((index, k) => { const [x, y] = toPixel(points.codes[index]);
    mctx.strokeStyle = "#000"; mctx.lineWidth = 2; mctx.strokeRect(x - 6, y - 6, 12, 12); mctx.fillStyle = "#000"; mctx.fillText(k ? "B" : "A", x + 8, y - 6); });
  if (cursor) { mctx.strokeStyle = "#000"; mctx.lineWidth = 1; mctx.beginPath(); mctx.arc(cursor[0], cursor[1], 7, 0, 2 * Math.PI); mctx.stroke(); }
  $("legend").innerHTML = lab.TAB10.map((c, d) => `<span><i class="dot" style="background:${c}"></i>${d}</span>`).join("");
}

let busy = false, queued = null;  // one decode in flight; the newest pending z wins
async function decodeAt(z) {
  $("z-text").textContent = `z = (${z[0].toFixed(2)}, ${z[1].toFixed(2)})`;
  if (busy) { queued = z; return; }
  busy = true;
  try { lab.drawPixels($("decoded"), (await lab.json("/api/explorer/decode", { model, z })).image, 8); }
  finally { busy = false; if (queued) { const next = queued; queued = null; decodeAt(next); } }
}

const clamp = v => Math.max(-10, Math.min(10, v));
map.addEventListener("mousemove", e => {
  if (!points) return;
  const r = map.getBoundingClientRect(), px = e.clientX - r.left, py = e.clientY - r.top;
  drawMap([px, py]);
  decodeAt(toLatent(px, py).map(clamp));
});
map.addEventListener("click", e => {
  const r = map.getBoundingClientRect(), px = e.clientX - r.left, py = e.clientY - r.top;
  let best = 0, bestD = Infinity;
  points.codes.forEach((c, i) => { const [x, y] = toPixel(c), d = (x - px) ** 2 + (y - py) ** 2; if (d < bestD) { best = i; bestD = d; } });
  picks[e.shiftKey ? 1 : 0] = best; drawPick(e.shiftKey ? 1 : 0); drawMap([px, py]);
  const z = toLatent(px, py); $("zs-0").value = z[0]; $("zs-1").value = z[1];
});
function drawPick(k) { lab.drawPixels($(k ? "pick-b" : "pick-a"), points.images[picks[k]], 8); }
for (const i of [0, 1]) $("zs-" + i).oninput = () => decodeAt([Number($("zs-0").value), Number($("zs-1").value)]);
$("map-model").onchange = loadMap;

$("interpolate").onclick = async () => {
  const r = await lab.json("/api/explorer/interpolate", { model, a: picks[0], b: picks[1], steps: 8 });
  for (const method of ["lerp", "slerp"]) {
    $(method).innerHTML = "";
    for (const image of r[method]) { const c = lab.canvas(40, 40); lab.drawPixels(c, image, 8); $(method).append(c); }
  }
};

function mosaic(canvas, images, size) {  // size x size 8x8 images on one canvas, a gap between them
  const ctx = canvas.getContext("2d"), cell = Math.floor(canvas.width / size), tile = document.createElement("canvas");
  tile.width = tile.height = cell - 4;
  ctx.fillStyle = "#d9dde5"; ctx.fillRect(0, 0, canvas.width, canvas.height);
  images.forEach((image, i) => { lab.drawPixels(tile, image, 8); ctx.drawImage(tile, (i % size) * cell + 2, Math.floor(i / size) * cell + 2); });
}
const box = b => `z[0] in [${b[0]}, ${b[1]}], z[1] in [${b[2]}, ${b[3]}]`;
$("holes").onclick = async () => {
  const r = await lab.json("/api/explorer/holes?size=9");
  mosaic($("holes-ae"), r.ae, r.size); mosaic($("holes-vae"), r.vae, r.size);
  $("box-ae").textContent = box(r.ae_box); $("box-vae").textContent = box(r.vae_box);
};
loadMap().then(() => decodeAt([0, 0]));
