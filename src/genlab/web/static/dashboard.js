"use strict";
// Training dashboard: start/stop runs with one labelled field per setting, stream the open run's logs over
// /ws/runs/{name} (each loss term on its own chart), list past runs, including those trained from the CLI.
const $ = id => document.getElementById(id);
const ACTIVE = ["starting", "running", "stopping"];
const COLOURS = { loss: "#1d2330", reconstruction: "#1f77b4", kl: "#ff7f0e", d_loss: "#1d2330", g_loss: "#7b3fbf" };
const NOT_TERMS = ["step", "epoch", "images_per_s"];  // numbers in a record that are not loss terms
let socket = null, current = null, records = [], settings = {};

async function init() {
  const options = await lab.json("/api/options");
  settings = options.settings;
  $("family").replaceChildren(...options.families.map(f => lab.el("option", {}, f)));
  $("data").replaceChildren(...options.data.map(d => lab.el("option", {}, d)));
  $("family").onchange = showSettings;
  showSettings();
  await refresh();
}

const shortNumber = v => Math.abs(v) >= 1e6 ? v.toExponential(1) : String(v);
const range = f => f.kind === "list" ? `${f.entries ? f.entries.join("–") + " " : ""}${f.item}s, each ${shortNumber(f.min)}–${shortNumber(f.max)}`
  : `${f.kind === "int" ? "integer" : "number"} ${shortNumber(f.min)}–${shortNumber(f.max)}`;
// One labelled field per setting the family takes (from /api/options): a choice or flag is a select showing its
// default, a number or list a text box left empty for the default. What the server bounds, the field says.
function settingField(f) {
  let input;
  if (f.kind === "choice" || f.kind === "bool") {
    const values = f.kind === "bool" ? [false, true] : f.choices;
    input = lab.el("select", {}, ...values.map(v => lab.el("option", { value: String(v), selected: v === f.default },
      v === f.default ? `${v} (default)` : String(v))));
  } else {
    input = lab.el("input", { type: f.kind === "list" ? "text" : "number", placeholder: f.default === null ? "none"
      : String(f.default), title: range(f) });
    if (f.kind !== "list") Object.assign(input, { min: f.min, max: f.max, step: f.kind === "int" ? 1 : "any" });
  }
  input.id = `set-${f.name}`; input.dataset.name = f.name; input.dataset.default = String(f.default);
  const row = lab.el("div", { className: "setting" }, lab.el("label", { htmlFor: input.id }, f.name), input);
  if (f.kind !== "choice" && f.kind !== "bool") {  // a select shows its values itself
    input.setAttribute("aria-describedby", `hint-${f.name}`);
    row.append(lab.el("small", { id: `hint-${f.name}` }, range(f)));
  }
  return row;
}
function showSettings() {
  const fields = settings[$("family").value] || [];
  for (const group of ["model", "train"]) {
    $(`${group}-settings`).replaceChildren(...fields.filter(f => f.group === group).map(settingField));
  }
}
// the settings the user changed, as --set's text: the server parses and bounds each by its field's type
function chosenSettings() {
  const chosen = {};
  for (const input of document.querySelectorAll("fieldset.settings select, fieldset.settings input")) {
    const value = input.value.trim();
    if (input.tagName === "SELECT" ? value !== input.dataset.default : value !== "") chosen[input.dataset.name] = value;
  }
  return chosen;
}

// one row of the runs table; every value is a text node (a run folder's config.json may hold anything)
function runRow(r) {
  const button = lab.el("button", { className: "open", onclick: () => open(r.name) }, "open");
  const row = lab.el("tr", { className: r.name === current ? "selected" : "" },
    ...[r.name, r.family, r.data, `${r.step} / ${r.steps}`, statusText(r)].map(v => lab.el("td", {}, String(v))),
    lab.el("td", {}, button));
  row.dataset.name = r.name;
  return row;
}

// a run another process trains (`genlab train`) is running too, but only that process can stop it
const elsewhere = r => ACTIVE.includes(r.status) && !r.trained_here;
const statusText = r => elsewhere(r) ? `${r.status}, from another process` : r.status;

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
  $("run-charts").replaceChildren();
  // nothing of the run shown before stays on screen
  $("run-sample").style.display = "none"; $("run-sample").removeAttribute("src"); delete $("run-sample").dataset.file;
  $("sample-download").hidden = true; $("sample-files").replaceChildren();
  $("generated").style.display = "none"; $("download").hidden = true; $("nearest-picture").style.display = "none";
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
  $("run-status").textContent = statusText(m) + (m.error ? `: ${m.error}` : "");
  $("run-step").textContent = `${m.step} / ${m.steps}`;
  $("images-per-s").textContent = last ? Math.round(last.images_per_s) : "–";
  const warning = [...records].reverse().find(r => r.warning);
  $("run-warning").textContent = warning ? `step ${warning.step}: ${warning.warning}` : "";
  $("run-warning").classList.toggle("on", Boolean(warning));
  drawCharts(last ? Object.keys(last).filter(k => typeof last[k] === "number" && !NOT_TERMS.includes(k)) : []);
  const base = `/api/runs/${encodeURIComponent(m.name)}/samples/`;
  const samples = m.samples.filter(f => f.endsWith("-samples.png"));
  const newest = samples[samples.length - 1] || m.samples[m.samples.length - 1];
  if (newest && $("run-sample").dataset.file !== newest) {
    $("run-sample").src = base + newest; $("run-sample").dataset.file = newest; $("run-sample").style.display = "block";
    $("sample-download").href = base + newest + "?download=true"; $("sample-download").hidden = false;
  }
  $("sample-files").replaceChildren(...(m.samples.length ? ["pictures: ", ...m.samples.flatMap((f, i) =>
    [i ? ", " : "", lab.el("a", { href: `${base + f}?download=true` }, f)])] : []));
  const active = ACTIVE.includes(m.status), here = active && m.trained_here;
  $("stop").disabled = !here; $("start").disabled = here;
  $("stop").title = elsewhere(m) ? "trained by another process: stop it there (Ctrl-C)" : "";
  $("generate").disabled = $("nearest").disabled = m.checkpoints.length === 0;
  // the table follows the open run while it trains, and is read afresh once it ends
  const row = [...$("runs").tBodies[0].rows].find(r => r.dataset.name === m.name);
  if (row) row.replaceWith(runRow(m));
  if (!active) refresh();
}

// one small chart per loss term, each with its own y range: a KL of 3 beside a reconstruction of 300 is no flat line
function drawCharts(terms) {
  const box = $("run-charts"), shown = [...box.children].map(c => c.dataset.term);
  if (shown.join() !== terms.join()) {
    box.replaceChildren(...terms.map(term => {
      const c = lab.el("canvas", { width: 262, height: 110 });
      c.dataset.term = term; c.setAttribute("role", "img"); c.setAttribute("aria-label", `${term} by step`);
      return c;
    }));
  }
  for (const c of box.children) {
    lab.chart(c, [{ name: c.dataset.term, color: COLOURS[c.dataset.term] || "#1d2330",
                    values: records.map(r => [r.step, r[c.dataset.term]]) }]);
  }
}

$("start").onclick = async () => {
  let job;
  try {
    job = await lab.json("/api/runs", { family: $("family").value, data: $("data").value,
                                        steps: Number($("steps").value), settings: chosenSettings() });
  } catch { return; }  // refused: lab.json has shown the server's one line
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
$("nearest").onclick = () => {
  const url = `/api/runs/${encodeURIComponent(current)}/nearest.png?n=16&seed=${Number($("generate-seed").value)}`;
  const img = $("nearest-picture");
  img.onerror = () => fetch(url).then(r => r.json()).then(d => lab.error(d.detail || "could not draw them"));
  img.src = url; img.style.display = "block";
};
init();
