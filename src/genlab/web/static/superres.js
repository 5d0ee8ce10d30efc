"use strict";
// The super-resolution page: <img> panels whose sources are the server's PNGs (the server upscales; the page only
// chooses), and a lens that magnifies the same spot of each. Run names go into URLs through URLSearchParams and into
// the page as text: never as HTML.
const LENS = 160, LENS_SPAN = 32;  // the lens shows LENS_SPAN x LENS_SPAN picture pixels at LENS px
const panels = ["bicubic", "psnr", "gan", "original"];
const $ = id => document.getElementById(id);
let runs = [];

function pictureURL(view, extra = {}) {
  const params = new URLSearchParams({ crop: $("crop").value, view, ...extra });
  return "/api/superres/picture.png?" + params;
}

function runNamed(name) { return runs.find(run => run.name === name); }

// One picture at a time: the lab draws at most two at once for everyone and answers 503 beyond; a busy lab is
// asked again after its Retry-After. A panel shows the newest picture asked of it, whatever order they arrive in.
let queue = Promise.resolve();
function show(id, url) {
  const img = $("view-" + id);
  if (img.dataset.url === url) return;
  img.dataset.url = url;
  queue = queue.then(() => fetchPicture(url)).then(blob => {
    if (!blob || img.dataset.url !== url) return;
    if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(blob);
  });
}

async function fetchPicture(url) {
  for (let attempt = 0; attempt < 30; attempt++) {
    let response;
    try { response = await fetch(url); }
    catch (error) { lab.lost(); return null; }
    if (response.status === 503) { await new Promise(done => setTimeout(done, 1000)); continue; }
    if (response.ok) return response.blob();
    const data = await response.json().catch(() => ({}));
    lab.error(typeof data.detail === "string" ? data.detail : response.statusText);
    return null;
  }
  lab.error("the lab stayed busy drawing other pictures: try again in a moment");
  return null;
}

function refresh() {
  const gan = runNamed($("gan-run").value), psnr = runNamed($("psnr-run").value);
  const scale = (gan || psnr || { scale: 4 }).scale;
  show("original", pictureURL("original"));
  show("bicubic", pictureURL("bicubic", { scale }));
  $("alpha").disabled = !(gan && psnr);
  $("alpha-value").textContent = $("alpha").value;
  $("superres-status").textContent = runs.length ? "" :
    "No super-resolution run with a checkpoint in the runs folder yet: train one (above), then reload.";
  if (psnr) show("psnr", pictureURL("model", { run: psnr.name }));
  $("psnr-caption").textContent = psnr ? `PSNR model: ${psnr.name}` : "PSNR model: none chosen";
  if (gan) {
    const blend = psnr ? { psnr: psnr.name, alpha: $("alpha").value } : {};
    show("gan", pictureURL("model", { run: gan.name, ...blend }));
    $("gan-caption").textContent = psnr ? `GAN model: ${gan.name}, alpha ${$("alpha").value}` : `GAN model: ${gan.name}`;
  } else {
    $("gan-caption").textContent = "GAN model: none chosen";
  }
}

function fillRuns(select, chosen) {
  select.replaceChildren(lab.el("option", { value: "" }, "none"),
    ...runs.map(run => lab.el("option", { value: run.name }, `${run.name} (${run.stage}, x${run.scale})`)));
  select.value = chosen ?? "";
}

// the lens: LENS_SPAN picture pixels around the pointer, from each panel, drawn without smoothing
const lenses = panels.map(id => {
  const canvas = lab.canvas(LENS, LENS, id);
  $("lenses").append(lab.el("figure", { className: "sr-panel" }, canvas, lab.el("figcaption", {}, id)));
  return canvas;
});

function magnify(event) {
  const img = event.target, box = img.getBoundingClientRect();
  const x = (event.clientX - box.left) / box.width * img.naturalWidth;
  const y = (event.clientY - box.top) / box.height * img.naturalHeight;
  panels.forEach((id, i) => {
    const source = $("view-" + id), ctx = lenses[i].getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.clearRect(0, 0, LENS, LENS);
    if (!source.complete || !source.naturalWidth) return;
    const left = Math.max(0, Math.min(source.naturalWidth - LENS_SPAN, Math.round(x - LENS_SPAN / 2)));
    const top = Math.max(0, Math.min(source.naturalHeight - LENS_SPAN, Math.round(y - LENS_SPAN / 2)));
    ctx.drawImage(source, left, top, LENS_SPAN, LENS_SPAN, 0, 0, LENS, LENS);
  });
}

async function start() {
  const options = await lab.json("/api/superres/options");
  runs = options.runs;
  $("crop").replaceChildren(...options.crops.map((name, i) => lab.el("option", { value: String(i) }, name)));
  const gan = runs.find(run => run.stage === "gan");
  const psnr = (gan && runNamed(gan.started_from)) || runs.find(run => run.stage === "psnr");
  fillRuns($("gan-run"), gan?.name);
  fillRuns($("psnr-run"), psnr?.name);
  for (const id of ["crop", "gan-run", "psnr-run"]) $(id).addEventListener("change", refresh);
  $("alpha").addEventListener("input", () => { $("alpha-value").textContent = $("alpha").value; });
  $("alpha").addEventListener("change", refresh);  // on release: one upscale per choice, not per pixel dragged
  for (const id of panels) $("view-" + id).addEventListener("mousemove", magnify);
  refresh();
}

start();
