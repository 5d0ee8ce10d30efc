"use strict";
// Training dashboard: start/stop runs, stream the open run's logs over /ws/runs/{name}, list past runs.
const $ = id => document.getElementById(id);
const ACTIVE = ["starting", "running", "stopping"];
const CURVES = { loss: "#1d2330", reconstruction: "#1f77b4", kl: "#ff7f0e", d_loss: "#1d2330", g_loss: "#7b3fbf" };
let socket = null, current = null, records = [];

async function init() {
  const options = await lab.json("/api/options");
  $("family").replaceChildren(...options.families.map(f => lab.el("option", {}, f)));
  $("data").replaceChildren(...options.data.map(d => lab.el("option", {}, d)));
  await refresh();
}

// one row of the runs table; every value is a text node (a run folder's config.json may hold anything)
function runRow(r) {
  const button = lab.el("button", { className: "open", onclick: () => open(r.name) }, "open");
  const row = lab.el("tr", { className: r.name === current ? "selected" : "" },
    ...[r.name, r.family, r.data, `${r.step} / ${r.steps}`, r.status].map(v => lab.el("td", {}, String(v))),
    lab.el("td", {}, button));
  row.dataset.name = r.name;
  return row;
}

async function refresh() {
  const { runs } = await lab.json("/api/runs");
  $("runs").tBodies[0].replaceChildren(...runs.map(runRow));
  if (!current && runs.length) open(runs[0].name);
}

function open(name) {
  lab.leave(socket);
  current = name; records = [];
  $("run-name").textContent = name; $("run-status").textContent = "–"; $("run-step").textContent = "–";
  $("images-per-s").textContent = "–"; $("run-warning").textContent = ""; $("run-warning").classList.remove("on");
  lab.chart($("run-chart"), []);
  // nothing of the run shown before stays on screen
  $("run-sample").style.display = "none"; $("run-sample").removeAttribute("src"); delete $("run-sample").dataset.file;
  $("sample-download").hidden = true; $("sample-files").replaceChildren();
  $("generated").style.display = "none"; $("download").hidden = true;
  for (const row of $("runs").tBodies[0].rows) row.classList.toggle("selected", row.dataset.name === name);
  socket = lab.connect(`/ws/runs/${encodeURIComponent(name)}`, m => {
    if (m.type === "error") return lab.error(m.message);
    if (m.name !== current) return;
    records.push(...m.records);
    show(m);
  });
}

function show(m) {
  const last = records[records.length - 1];
  $("run-status").textContent = m.status + (m.error ? `: ${m.error}` : "");
  $("run-step").textContent = `${m.step} / ${m.steps}`;
  $("images-per-s").textContent = last ? Math.round(last.images_per_s) : "–";
  const warning = [...records].reverse().find(r => r.warning);
  $("run-warning").textContent = warning ? `step ${warning.step}: ${warning.warning}` : "";
  $("run-warning").classList.toggle("on", Boolean(warning));
  lab.chart($("run-chart"), Object.keys(CURVES).filter(k => last && k in last)
    .map(k => ({ name: k, color: CURVES[k], values: records.map(r => [r.step, r[k]]) })));
  const base = `/api/runs/${encodeURIComponent(m.name)}/samples/`;
  const samples = m.samples.filter(f => f.endsWith("-samples.png"));
  const newest = samples[samples.length - 1] || m.samples[m.samples.length - 1];
  if (newest && $("run-sample").dataset.file !== newest) {
    $("run-sample").src = base + newest; $("run-sample").dataset.file = newest; $("run-sample").style.display = "block";
    $("sample-download").href = base + newest + "?download=true"; $("sample-download").hidden = false;
  }
  $("sample-files").replaceChildren(...(m.samples.length ? ["pictures: ", ...m.samples.flatMap((f, i) =>
    [i ? ", " : "", lab.el("a", { href: `${base + f}?download=true` }, f)])] : []));
  const active = ACTIVE.includes(m.status);
  $("stop").disabled = !active; $("start").disabled = active;
  $("generate").disabled = m.checkpoints.length === 0;
  // the table follows the open run while it trains, and is read afresh once it ends
  const row = [...$("runs").tBodies[0].rows].find(r => r.dataset.name === m.name);
  if (row) row.replaceWith(runRow(m));
  if (!active) refresh();
}

$("start").onclick = async () => {
  const settings = {};
  for (const line of $("settings").value.split("\n").map(l => l.trim()).filter(Boolean)) {
    const [key, ...rest] = line.split("=");
    if (!rest.length) return lab.error(`"${line}" is not key=value`);
    settings[key.trim()] = rest.join("=").trim();
  }
  const job = await lab.json("/api/runs", { family: $("family").value, data: $("data").value,
                                            steps: Number($("steps").value), settings });
  await refresh();
  open(job.name);
};
$("stop").onclick = () => current && lab.json(`/api/runs/${encodeURIComponent(current)}/stop`, {});
$("generate").onclick = () => {
  const url = `/api/runs/${encodeURIComponent(current)}/generate.png?n=${Number($("generate-n").value)}&seed=${Number($("generate-seed").value)}`;
  const img = $("generated");
  img.onerror = () => fetch(url).then(r => r.json()).then(d => lab.error(d.detail || "could not generate"));
  img.src = url; img.style.display = "block";
  $("download").href = url + "&download=true"; $("download").hidden = false;
};
init();
