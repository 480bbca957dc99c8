// The daskless dashboard page: a list of runs, and a live (or replayed) view of one run.
// The server pushes a run as server-sent events: "plan" (tasks with layout positions),
// "records" (metric records as workers upload them) and "complete". Everything is drawn as SVG
// here, with no library. A task is "waiting" until its inputs are done, "running" while an
// invocation of its partition is active (live view; the replay uses the recorded start times),
// then "done" or "erred".
"use strict";

const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#edc948", "#76b7b2",
                 "#ff9da7", "#9c755f", "#bab0ac", "#86bcb6", "#d37295", "#a0cbe8"];
const STATES = { waiting: "#d5d9de", running: "#f2a900", done: "#3a9a4b", erred: "#d62728" };
const SVGNS = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

function el(name, attrs, parent) {
  const node = document.createElementNS(SVGNS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

function fmtS(s) {
  if (s === null || s === undefined) return "-";
  if (s < 1e-3) return `${(s * 1e6).toFixed(0)} µs`;
  if (s < 1) return `${(s * 1e3).toFixed(1)} ms`;
  return `${s.toFixed(2)} s`;
}

function fmtBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return i ? `${n.toFixed(1)} ${units[i]}` : `${n} B`;
}

// The drawing width available inside <main> (its padding excluded).
function plotWidth() {
  const main = $("run-view");
  const style = getComputedStyle(main);
  const inner = main.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  return Math.max(600, inner - 2);
}

function row(cells, tag = "td") {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement(tag);
    if (c instanceof Node) td.appendChild(c); else td.textContent = c;
    tr.appendChild(td);
  }
  return tr;
}

// -- the list of runs ---------------------------------------------------------------------------

async function showRuns() {
  $("runs-view").hidden = false;
  const body = $("runs").querySelector("tbody");
  const runs = await (await fetch("/api/runs")).json();
  body.replaceChildren(...runs.map((r) => {
    const link = document.createElement("a");
    link.href = `#run=${r.run_id}`;
    link.textContent = r.run_id;
    const started = new Date(r.started * 1000).toLocaleString();
    return row([link, started, r.status, `${r.recorded} / ${r.tasks}`, r.workers, fmtS(r.total_s)]);
  }));
  if (!runs.length) body.replaceChildren(row(["no stored runs yet", "", "", "", "", ""]));
}

// -- one run ------------------------------------------------------------------------------------

class RunView {
  constructor(runId) {
    this.runId = runId;
    this.colourBy = "state";
    this.time = Infinity; // Infinity: live, else the replayed moment
    this.pendingDraw = false;
    $("run-view").hidden = false;
    $("run-title").textContent = `Run ${runId}`;
    $("crumb").textContent = `/ ${runId.slice(0, 12)}`;
    $("status-line").textContent = "Connecting…";
    for (const b of document.querySelectorAll("[data-colour]")) {
      b.addEventListener("click", () => this.setColour(b.dataset.colour));
    }
    $("slider").addEventListener("input", () => this.seek($("slider").value / 1000));
    $("play").addEventListener("click", () => this.play());
    this.source = new EventSource(`/api/runs/${runId}/events`);
    this.source.addEventListener("plan", (e) => this.onPlan(JSON.parse(e.data)));
    this.source.addEventListener("records", (e) => this.onRecords(JSON.parse(e.data)));
    this.source.addEventListener("complete", (e) => this.onComplete(JSON.parse(e.data)));
  }

  onPlan(plan) {
    // A reconnecting stream starts over with the plan: start from a clean state.
    this.tasks = plan.tasks;
    this.strategy = plan.strategy;
    const n = this.tasks.length;
    this.start = new Array(n).fill(null);
    this.end = new Array(n).fill(null);
    this.inv = new Array(n).fill(null);
    this.erred = new Array(n).fill(false);
    this.failure = new Array(n).fill(null); // "Type: message (attempt n)" of an error
    this.invs = {};
    this.workers = [];
    this.downloads = new Array(n).fill(null); // per task: [inputs read, bytes, seconds]
    this.uploads = []; // [time, bytes] per output written to the store
    this.status = null;
    this.complete = false;
    this.buildDag();
    this.scheduleDraw();
  }

  buildDag() {
    const svg = $("dag");
    const width = plotWidth();
    const height = Math.min(640, Math.max(260, 22 * Math.sqrt(this.tasks.length)));
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    svg.replaceChildren();
    const at = (t) => [16 + t.x * (width - 32), 12 + t.y * (height - 24)];
    const r = this.tasks.length < 100 ? 7 : this.tasks.length < 1000 ? 4 : 2;
    let d = "";
    for (const t of this.tasks) {
      const [x2, y2] = at(t);
      for (const dep of t.deps) {
        const [x1, y1] = at(this.tasks[dep]);
        d += `M${x1.toFixed(1)} ${y1.toFixed(1)}L${x2.toFixed(1)} ${y2.toFixed(1)}`;
      }
    }
    // Large graphs: hairline edges and no outline, or the lines hide the tasks.
    const big = this.tasks.length > 1000;
    el("path", { d, stroke: big ? "#dde1e6" : "#c3c9d0", "stroke-width": big ? 0.25 : 0.7,
                 fill: "none" }, svg);
    svg.classList.toggle("big", big);
    this.nodes = this.tasks.map((t) => {
      const [cx, cy] = at(t);
      const c = el("circle", { cx, cy, r, class: "task", "data-task": t.id }, svg);
      c.appendChild(document.createElementNS(SVGNS, "title"));
      return c;
    });
  }

  onRecords(records) {
    for (const r of records) {
      const kind = r[0];
      if (kind === "inv") {
        this.invs[r[1]] = { worker: r[2], partition: r[3], start: r[5], end: null };
        if (!this.workers.includes(r[2])) this.workers.push(r[2]);
      } else if (kind === "task" || kind === "err") {
        const t = r[2];
        this.inv[t] = r[1];
        this.start[t] = r[3];
        this.end[t] = r[4];
        this.erred[t] = kind === "err";
        if (kind === "err" && r.length > 7) this.failure[t] = `${r[6]}: ${r[7]} (attempt ${r[5]})`;
        // A task record's sixth field lists its inputs; an error's is its attempt number.
        const inputs = kind === "task" ? (r[5] || []) : [];
        this.downloads[t] = [inputs.length, inputs.reduce((a, i) => a + i[1], 0),
                             inputs.reduce((a, i) => a + i[2], 0)];
      } else if (kind === "flush") {
        for (const [, nbytes] of r[4]) this.uploads.push([r[3], nbytes]);
      } else if (kind === "end") {
        if (this.invs[r[1]]) this.invs[r[1]].end = r[2];
      } else if (kind === "run-end") {
        this.status = r[1].status;
        this.timings = r[1].timings;
      }
    }
    this.scheduleDraw();
  }

  onComplete(info) {
    this.complete = true;
    this.source.close();
    this.summary = info.summary;
    const starts = this.start.filter((s) => s !== null);
    const ends = this.end.filter((s) => s !== null);
    if (starts.length) {
      this.t0 = Math.min(...starts);
      this.t1 = Math.max(...ends);
      $("replay").hidden = false;
    }
    this.scheduleDraw();
  }

  workerOf(t) {
    const inv = this.invs[this.inv[t]];
    return inv ? inv.worker : null;
  }

  colourOf(worker) {
    const i = this.workers.indexOf(worker);
    return i < 0 ? STATES.waiting : PALETTE[i % PALETTE.length];
  }

  stateAt(t, time, doneSet, activeParts) {
    const s = this.start[t], e = this.end[t];
    if (e !== null && e <= time) return this.erred[t] ? "erred" : "done";
    if (s !== null && s <= time) return "running";
    if (time === Infinity && activeParts.has(this.tasks[t].partition)
        && this.tasks[t].deps.every((d) => doneSet[d])) return "running";
    return "waiting";
  }

  states(time) {
    const n = this.tasks.length;
    const done = new Array(n).fill(false);
    for (let t = 0; t < n; t++) done[t] = this.end[t] !== null && this.end[t] <= time;
    const activeParts = new Set();
    if (time === Infinity && !this.complete) {
      for (const inv of Object.values(this.invs)) if (inv.end === null) activeParts.add(inv.partition);
    }
    return this.tasks.map((_, t) => this.stateAt(t, time, done, activeParts));
  }

  scheduleDraw() {
    if (this.pendingDraw || !this.tasks) return;
    this.pendingDraw = true;
    requestAnimationFrame(() => { this.pendingDraw = false; this.draw(); });
  }

  draw() {
    const states = this.states(this.time);
    const counts = { waiting: 0, running: 0, done: 0, erred: 0 };
    states.forEach((state, t) => {
      counts[state] += 1;
      const node = this.nodes[t];
      const worker = this.workerOf(t);
      const fill = this.colourBy === "state" || state === "waiting"
        ? STATES[state] : this.colourOf(worker);
      node.setAttribute("fill", fill);
      node.setAttribute("data-state", state);
      const task = this.tasks[t];
      const ran = this.end[t] !== null ? `, ${fmtS(this.end[t] - this.start[t])}` : "";
      const failure = state === "erred" && this.failure[t] ? `\n${this.failure[t]}` : "";
      node.firstChild.textContent = `${task.key} (${task.prefix})\n${state}${
        worker ? ` on ${worker}` : ""}${ran}${failure}`;
    });
    this.drawProgress(counts);
    this.drawLegend(counts);
    this.drawWorkers();
    this.drawTransfers();
    this.drawStream();
  }

  drawProgress(counts) {
    const n = this.tasks.length;
    const finished = counts.done + counts.erred;
    $("progress-bar").style.width = `${(100 * finished) / Math.max(1, n)}%`;
    $("progress-bar").style.background = counts.erred ? STATES.erred : STATES.done;
    $("progress-text").textContent = `${counts.done} / ${n} tasks done`
      + (counts.running ? `, ${counts.running} running` : "")
      + (counts.erred ? `, ${counts.erred} erred` : "");
    const phase = this.complete ? (this.time === Infinity ? "finished" : "replay") : "live";
    const status = this.status ? `status ${this.status}` : "running";
    $("status-line").textContent = `${phase}: ${status}; ${n} tasks, `
      + `${Object.keys(this.invs).length} invocations on ${this.workers.length} workers; `
      + `metrics upload strategy "${this.strategy}"`
      + (this.summary && this.summary.includes("missing") ? ` (${this.summary})` : "");
  }

  drawLegend(counts) {
    const items = this.colourBy === "state"
      ? Object.entries(STATES).map(([s, c]) => [`${s} (${counts[s]})`, c])
      : this.workers.map((w) => [w, this.colourOf(w)]);
    $("legend").replaceChildren(...items.map(([label, colour]) => {
      const span = document.createElement("span");
      const sw = document.createElement("i");
      sw.className = "swatch";
      sw.style.background = colour;
      span.append(sw, label);
      return span;
    }));
  }

  drawWorkers() {
    const per = new Map(this.workers.map((w) => [w, { tasks: 0, busy: 0, invs: 0 }]));
    for (const inv of Object.values(this.invs)) per.get(inv.worker).invs += 1;
    this.end.forEach((e, t) => {
      if (e === null || e > this.time) return;
      const w = per.get(this.workerOf(t));
      if (w) { w.tasks += 1; w.busy += e - this.start[t]; }
    });
    const swatch = (w) => {
      const s = document.createElement("span");
      const i = document.createElement("i");
      i.className = "swatch";
      i.style.background = this.colourOf(w);
      s.append(i, w);
      return s;
    };
    $("workers").replaceChildren(row(["worker", "invocations", "tasks", "busy"], "th"),
      ...[...per].map(([w, v]) => row([swatch(w), v.invs, v.tasks, fmtS(v.busy)])));
  }

  drawTransfers() {
    let edges = 0;
    const read = [0, 0, 0];
    this.tasks.forEach((t, i) => {
      if (this.end[i] === null || this.end[i] > this.time) return;
      edges += t.deps.length;
      if (this.downloads[i]) this.downloads[i].forEach((v, k) => { read[k] += v; });
    });
    const written = this.uploads.filter(([t]) => t <= this.time);
    $("transfers").replaceChildren(
      row(["edge type", "count", "bytes", "time"], "th"),
      row(["local (in worker memory)", edges - read[0], "0 B", "-"]),
      row(["via store (read)", read[0], fmtBytes(read[1]), fmtS(read[2])]),
      row(["outputs written to the store", written.length,
           fmtBytes(written.reduce((a, w) => a + w[1], 0)), "-"]));
  }

  drawStream() {
    const svg = $("stream");
    const lanes = this.workers;
    const width = plotWidth();
    const laneH = 20, labelW = 190;
    svg.setAttribute("width", width);
    svg.setAttribute("height", laneH * Math.max(1, lanes.length) + 22);
    svg.replaceChildren();
    const starts = this.start.filter((s) => s !== null);
    if (!starts.length) return;
    const t0 = this.t0 ?? Math.min(...starts);
    const t1 = this.t1 ?? Math.max(...this.end.filter((s) => s !== null));
    const span = Math.max(t1 - t0, 1e-6);
    const plotW = width - labelW - 10;
    lanes.forEach((w, i) => {
      const text = el("text", { x: 4, y: i * laneH + 14, "font-size": 11 }, svg);
      text.textContent = w.length > 30 ? `…${w.slice(-29)}` : w;
    });
    this.start.forEach((s, t) => {
      if (s === null || s > this.time) return;
      const lane = lanes.indexOf(this.workerOf(t));
      const e = Math.min(this.end[t], this.time);
      el("rect", {
        x: labelW + ((s - t0) / span) * plotW, y: lane * laneH + 3,
        width: Math.max(0.6, ((e - s) / span) * plotW), height: laneH - 6,
        fill: this.erred[t] ? STATES.erred : this.colourOf(this.workerOf(t)),
      }, svg);
    });
    const axisY = laneH * lanes.length + 16;
    el("text", { x: labelW, y: axisY, "font-size": 11 }, svg).textContent = "0";
    el("text", { x: width - 70, y: axisY, "font-size": 11 }, svg).textContent = fmtS(span);
    if (this.time !== Infinity) {
      const x = labelW + ((this.time - t0) / span) * plotW;
      el("line", { x1: x, x2: x, y1: 0, y2: laneH * lanes.length, stroke: "#1f2d3d",
                   "stroke-dasharray": "3 2" }, svg);
    }
  }

  setColour(mode) {
    this.colourBy = mode;
    for (const b of document.querySelectorAll("[data-colour]")) {
      b.classList.toggle("on", b.dataset.colour === mode);
    }
    this.scheduleDraw();
  }

  seek(fraction) {
    this.time = fraction >= 1 ? Infinity : this.t0 + fraction * (this.t1 - this.t0);
    $("slider-time").textContent = fraction >= 1 ? "end" : `+${fmtS(this.time - this.t0)}`;
    this.scheduleDraw();
  }

  play() {
    const startedAt = performance.now();
    const duration = 4000;
    const step = (now) => {
      const f = Math.min(1, (now - startedAt) / duration);
      $("slider").value = Math.round(f * 1000);
      this.seek(f);
      if (f < 1) requestAnimationFrame(step);
    };
    requestAnimationFrame(step);
  }
}

function route() {
  const match = location.hash.match(/^#run=([0-9a-zA-Z_-]+)/);
  if (match) new RunView(match[1]); else showRuns();
}

$("refresh").addEventListener("click", showRuns);
window.addEventListener("hashchange", () => location.reload());
route();
