// The playground page: controls send one checked value at a time; the server trains and sends frames.
"use strict";
const $ = (id) => document.getElementById(id);
const CLASS1 = [245, 130, 32], CLASS0 = [31, 119, 180];  // orange circles, blue triangles
const view = { points: [], curves: [], grid: null, running: false, limits: null };
const ws = new WebSocket(`ws://${location.host}/ws`);
const send = (message) => ws.send(JSON.stringify(message));

const handlers = {
  hello(m) {
    view.limits = m.limits;
    for (const [control, options] of Object.entries(m.choices)) {
      $(control).replaceChildren(...options.map((name) => new Option(name, name)));
    }
    $("backend").replaceChildren(...m.backends.map((row) => {
      const option = new Option(row.usable ? row.name : `${row.name} (not usable)`, row.name);
      option.disabled = !row.usable;
      option.title = row.usable ? "" : `${row.reason} (to fix: ${row.install})`;
      return option;
    }));
    $("missing-backends").replaceChildren(...m.backends.filter((row) => !row.usable).map((row) => {
      const item = document.createElement("li");
      item.textContent = `${row.name}: ${row.reason} (to fix: ${row.install})`;
      return item;
    }));
    for (const [control, value] of Object.entries(m.settings)) show(control, value);
  },
  points(m) { view.points = m.points; $("point-count").textContent = m.points.length; draw(); },
  frame(m) {
    const last = view.curves.length ? view.curves[view.curves.length - 1][0] : 0;
    if (m.epoch === 0 || m.epoch < last) view.curves = [];
    view.curves.push(...m.curves);
    if (view.curves.length > 2000) view.curves = view.curves.filter((r, i) => i % 2 === 0 || i === view.curves.length - 1);
    view.grid = Uint8Array.from(atob(m.grid), (c) => c.charCodeAt(0));
    view.running = m.running;
    $("epoch").textContent = m.epoch;
    $("speed").textContent = Math.round(m.samples_per_sec).toLocaleString("en");
    $("backend-name").textContent = m.backend;
    const latest = view.curves[view.curves.length - 1] || [];
    $("accuracy").textContent = latest[2] == null ? "–" : latest[2].toFixed(3);
    $("val-accuracy").textContent = latest[4] == null ? "–" : latest[4].toFixed(3);
    $("status").textContent = m.running ? "training" : "paused";
    draw();
  },
  ok(m) { say(m.control, ""); show(m.control, m.value); },
  invalid(m) { say(m.control, m.message); },
  error(m) { $("status").textContent = m.message; },
  trace(m) { say("explain", ""); $("trace").textContent = m.text; },
  checkpoint(m) { download(`data:application/octet-stream;base64,${m.data}`, m.name); },
};
ws.onmessage = (event) => { const m = JSON.parse(event.data); handlers[m.type](m); };
ws.onclose = (event) => { $("status").textContent = `disconnected ${event.reason}`; };

function say(control, text) {
  const where = document.querySelector(`.msg[data-for="${control}"]`) || $("status");
  where.textContent = text;
}

function show(control, value) {
  const input = $(control);
  input.value = Array.isArray(value) ? value.join(",") : value;
  const output = document.querySelector(`output[for="${control}"]`);
  if (output) output.textContent = value;
}

function read(input) {  // what the server checks; anything that is not a number goes as null and is refused there
  const text = input.value;
  if (input.dataset.control === "hidden") return text.split(",").filter((s) => s.trim()).map(Number);
  if (input.type === "number" || input.type === "range") return text.trim() === "" ? null : Number(text);
  return text;
}

for (const input of document.querySelectorAll("[data-control]")) {
  input.addEventListener("change", () => send({ type: "set", control: input.dataset.control, value: read(input) }));
}
for (const command of ["train", "pause", "step", "reset", "clear", "save"]) {
  $(command).addEventListener("click", () => send({ type: command }));
}
$("png").addEventListener("click", () => {
  const plane = $("plane"), curves = $("curves"), both = document.createElement("canvas");
  both.width = plane.width + curves.width; both.height = Math.max(plane.height, curves.height);
  const g = both.getContext("2d");
  g.fillStyle = "white"; g.fillRect(0, 0, both.width, both.height);
  g.drawImage(plane, 0, 0); g.drawImage(curves, plane.width, 0);
  download(both.toDataURL("image/png"), "playground.png");
});

function download(url, name) {
  const link = document.createElement("a");
  link.href = url; link.download = name; link.click();
}

// ---- the plane: P(class 1) as colour, the points as shapes ----------------------------------

const toPixel = (x, y, size) => {
  const e = view.limits.extent;
  return [(x + e) / (2 * e) * size, (e - y) / (2 * e) * size];
};

$("plane").addEventListener("click", (event) => {
  if (!view.limits) return;
  const canvas = $("plane"), box = canvas.getBoundingClientRect();
  const px = (event.clientX - box.left) * canvas.width / box.width, py = (event.clientY - box.top) * canvas.height / box.height;
  if (!view.running) {  // paused: a click on a point explains it
    const near = view.points.map((p, i) => [Math.hypot(...toPixel(p[0], p[1], canvas.width).map((v, k) => v - [px, py][k])), i])
      .sort((a, b) => a[0] - b[0])[0];
    if (near && near[0] <= 6) { send({ type: "explain", index: near[1] }); return; }
  }
  const e = view.limits.extent;
  send({ type: "point", x: px / canvas.width * 2 * e - e, y: e - py / canvas.height * 2 * e, label: event.shiftKey ? 0 : 1 });
});

function draw() {
  if (!view.limits) return;
  const canvas = $("plane"), g = canvas.getContext("2d"), n = view.limits.grid;
  if (view.grid) {
    const small = document.createElement("canvas");
    small.width = small.height = n;
    const image = small.getContext("2d").createImageData(n, n);
    view.grid.forEach((v, i) => {
      const p = v / 255, [c, w] = p >= 0.5 ? [CLASS1, 2 * p - 1] : [CLASS0, 1 - 2 * p];
      for (let k = 0; k < 3; k++) image.data[4 * i + k] = 255 + (c[k] - 255) * 0.6 * w;
      image.data[4 * i + 3] = 255;
    });
    small.getContext("2d").putImageData(image, 0, 0);
    g.imageSmoothingEnabled = true;
    g.drawImage(small, 0, 0, canvas.width, canvas.height);
  } else {
    g.clearRect(0, 0, canvas.width, canvas.height);
  }
  for (const [x, y, label, held_out] of view.points) {
    const [px, py] = toPixel(x, y, canvas.width);
    g.beginPath();
    if (label === 1) g.arc(px, py, 4, 0, 2 * Math.PI);
    else { g.moveTo(px, py - 5); g.lineTo(px + 4.5, py + 3.5); g.lineTo(px - 4.5, py + 3.5); g.closePath(); }
    g.fillStyle = `rgb(${label === 1 ? CLASS1 : CLASS0})`; g.strokeStyle = "#222"; g.lineWidth = 1;
    if (held_out) { g.fillStyle = "white"; g.fill(); g.strokeStyle = `rgb(${label === 1 ? CLASS1 : CLASS0})`; g.lineWidth = 2; }
    else g.fill();
    g.stroke();
  }
  drawCurves();
}

// ---- the curves: loss above, accuracy below; training solid, validation dashed ---------------

function drawCurves() {
  const canvas = $("curves"), g = canvas.getContext("2d"), W = canvas.width, H = canvas.height / 2;
  g.clearRect(0, 0, W, canvas.height);
  const rows = view.curves, epochs = rows.length ? rows[rows.length - 1][0] : 1;
  const lossTop = Math.max(1e-9, ...rows.map((r) => Math.max(r[1], r[3] ?? 0)));
  const panels = [[1, 3, "loss", 0, lossTop], [2, 4, "accuracy", H, 1]];
  for (const [train, val, name, top, high] of panels) {
    g.strokeStyle = "#ccc"; g.setLineDash([]); g.strokeRect(30, top + 6, W - 36, H - 20);
    g.fillStyle = "#444"; g.font = "11px sans-serif";
    g.fillText(`${name} (${high.toPrecision(2)} at top) — training solid, validation dashed`, 34, top + 18);
    for (const [column, dash] of [[train, []], [val, [5, 4]]]) {
      g.beginPath(); g.setLineDash(dash); g.strokeStyle = name === "loss" ? "#c0392b" : "#2c3e90";
      rows.forEach((r, i) => {
        if (r[column] == null) return;
        const x = 30 + (W - 36) * r[0] / epochs, y = top + 6 + (H - 20) * (1 - r[column] / high);
        i ? g.lineTo(x, y) : g.moveTo(x, y);
      });
      g.stroke();
    }
  }
  g.setLineDash([]);
  g.fillText(`epoch ${epochs}`, W - 60, canvas.height - 2);
}
