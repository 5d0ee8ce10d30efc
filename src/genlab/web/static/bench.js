"use strict";
// Autoencoder bench: the lesson's 3x3 pattern autoencoder, and a denoising autoencoder on digits.
const $ = id => document.getElementById(id);
let cells = [1, 1, 1, 0, 0, 0, 0, 0, 0], digit = 0;

async function encode() {
  lab.drawPixels($("pattern"), cells, 3);
  const { code, reconstruction } = await lab.json("/api/bench/encode", { cells });
  $("code").textContent = code.map(v => (v >= 0 ? "+" : "") + v.toFixed(3)).join("  ");
  lab.drawPixels($("reconstruction"), reconstruction, 3);
  code.forEach((v, i) => { $("z" + i).value = v; });
  await decode();
}

let decoding = false, again = false;  // at most one request in flight while a slider is dragged
async function decode() {
  if (decoding) { again = true; return; }
  decoding = true;
  const code = [0, 1, 2].map(i => Number($("z" + i).value));
  $("z-values").textContent = code.map(v => v.toFixed(2)).join("  ");
  try { lab.drawPixels($("decoded"), (await lab.json("/api/bench/decode", { code })).pattern, 3); }
  catch { /* lab.json has shown the message */ }
  finally { decoding = false; if (again) { again = false; decode(); } }
}

async function denoise() {
  const noise = Number($("noise").value);
  $("noise-value").textContent = noise.toFixed(2);
  const r = await lab.json("/api/bench/denoise", { index: digit, noise, seed: digit });
  $("digit-label").textContent = r.label;
  lab.drawPixels($("clean"), r.clean, 8); lab.drawPixels($("noisy"), r.noisy, 8); lab.drawPixels($("denoised"), r.denoised, 8);
}

$("pattern").onclick = event => {
  const rect = $("pattern").getBoundingClientRect();
  const col = Math.min(2, Math.floor((event.clientX - rect.left) / rect.width * 3));
  const row = Math.min(2, Math.floor((event.clientY - rect.top) / rect.height * 3));
  cells[3 * row + col] = 1 - cells[3 * row + col];
  encode();
};
for (const i of [0, 1, 2]) $("z" + i).oninput = decode;
$("noise").oninput = denoise;
$("another").onclick = () => { digit = (digit + 37) % 297; denoise(); };

const bordered = canvas => lab.el("span", { className: "cells" }, canvas);  // cell borders: see bench.html

async function init() {
  $("bench-status").textContent = "(training the lesson's autoencoder on first use: a few seconds)";
  const { patterns } = await lab.json("/api/bench/patterns");
  $("bench-status").textContent = "";
  for (const p of patterns) {
    const card = document.createElement("div"); card.className = "panel"; card.style.cursor = "pointer";
    const a = lab.canvas(45, 45, `${p.name}: input`), b = lab.canvas(45, 45, `${p.name}: reconstruction`);
    lab.drawPixels(a, p.cells, 3); lab.drawPixels(b, p.reconstruction, 3);
    const name = lab.el("div", { className: "muted" }, p.name), code = lab.el("div", { className: "stats" },
      p.code.map(v => v.toFixed(2)).join(" "));
    name.style.fontSize = code.style.fontSize = "12px";
    card.append(name, lab.el("div", { className: "strip" }, bordered(a), "→", bordered(b)), code);
    card.onclick = () => { cells = p.cells.map(v => Math.round(v)); encode(); };
    $("gallery").append(card);
  }
  await encode();
  await denoise();
}
init();
