"use strict";
// Training dashboard: start/stop runs, stream the open run's logs over /ws/runs/{name}, list past runs.
const $ = id => document.getElementById(id);
const ACTIVE = ["starting", "running", "stopping"];
const CURVES = { loss: "#1d2330", reconstruction: "#1f77b4", kl: "#ff7f0e", d_loss: "#1d2330", g_loss: "#7b3fbf" };
let socket = null, current = null, records = [];

async function init() {
  const options = await lab.json("/api/options");
  $("family").innerHTML = options.families.map(f => `<option>${f}</option>`).join("");
  $("data").innerHTML = options.data.map(d => `<option>${d}</option>`).join("");
  await refresh();
}

async function refresh() {
  const { runs } = await lab.json("/api/runs");
  $("runs").tBodies[0].innerHTML = runs.map(r => `<tr data-name="${r.name}" class="${r.name === current ? "selected" : ""}">
    <td>${r.name}</td><td>${r.family}</td><td>${r.data}</td><td>${r.step} / ${r.steps}</td><td>${r.status}</td>
    <td><button class="open">open</button></td></tr>`).join("");
  for (const button of document.querySelectorAll("#runs button.open"))
    button.onclick = () => open(button.closest("tr").dataset.name);
  if (!current && runs.length) open(runs[0].name);
}

function open(name) {
  if (socket) socket.close();
  current = name; records = [];
  $("run-name").textContent = name; $("generated").style.display = "none"; $("download").hidden = true;
  for (const row of $("runs").tBodies[0].rows) row.classList.toggle("selected", row.dataset.name === name);
  socket = new WebSocket(lab.socketURL(`/ws/runs/${encodeURIComponent(name)}`));
  socket.onmessage = event => {
    const m = JSON.parse(event.data);
    if (m.type === "error") return lab.error(m.message);
    if (m.name !== current) return;
    records.push(...m.records);
    show(m);
  };
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
  $("sample-files").innerHTML = m.samples.length ? "pictures: " + m.samples.map(f =>
    `<a href="${base + f}?download=true">${f}</a>`).join(", ") : "";
  const active = ACTIVE.includes(m.status);
  $("stop").disabled = !active; $("start").disabled = active;
  $("generate").disabled = m.checkpoints.length === 0;
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
