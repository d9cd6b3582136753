// torchgate dashboard: plain JavaScript over the v1 and admin APIs, same origin only.
// The admin token lives in sessionStorage and travels only in the Authorization header.
"use strict";

const TOKEN_KEY = "torchgate.adminToken";
const REFRESH_MS = 5000;
const POLL_MS = 300;
const $ = (id) => document.getElementById(id);

const state = { models: [], labels: {}, admin: "here", job: null };

// ---- HTTP -----------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, detail) {
    super(`${status}: ${detail}`);
    this.status = status;
  }
}

async function request(path, options = {}, admin = false) {
  const headers = new Headers(options.headers || {});
  if (admin) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) throw new ApiError(401, "enter the admin token first");
    headers.set("Authorization", `Bearer ${token}`);
  }
  const response = await fetch(path, { ...options, headers, credentials: "same-origin" });
  if (!response.ok) {
    let detail = response.statusText;
    try {
      const body = await response.json();
      detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    } catch (_) { /* not JSON: keep the status text */ }
    if (admin && response.status === 401) detail = `the token was refused (${detail})`;
    if (admin && response.status === 403) detail = `wrong admin token (${detail})`;
    throw new ApiError(response.status, detail);
  }
  return response;
}

const getJson = async (path, admin = false) => (await request(path, {}, admin)).json();
const postJson = async (path, body, admin = false) =>
  (await request(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  }, admin)).json();

function showError(id, error) {
  const el = $(id);
  if (error) {
    el.textContent = error instanceof ApiError ? error.message : `Error: ${error.message || error}`;
    el.hidden = false;
  } else {
    el.hidden = true;
    el.textContent = "";
  }
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

const pct = (x) => (x == null ? "-" : `${(100 * x).toFixed(2)}%`);

// ---- models ---------------------------------------------------------------------------------

function fillSelect(select, names, keep = true) {
  const previous = select.value;
  select.replaceChildren(...names.map((name) => el("option", { value: name, text: name })));
  if (keep && names.includes(previous)) select.value = previous;
}

async function refreshModels() {
  try {
    const { models } = await getJson("/v1/models");
    state.models = models;
    const rows = models.map((m) => {
      const status = el("td", { class: `status status-${m.status}`, text: m.status });
      if (m.reason) status.append(el("span", { class: "reason", text: m.reason }));
      const sha = m.parameters_sha256 ? m.parameters_sha256.slice(0, 16) + "…" : "-";
      return el("tr", { "data-model": m.name, "data-status": m.status },
        el("td", { text: m.name }), el("td", { text: m.kind }), status,
        el("td", { text: m.device || "-" }), el("td", { text: m.graph || "-" }),
        el("td", { class: "dtype", text: m.dtype || "-" }),
        el("td", { text: m.parameters_version ?? "-" }),
        el("td", {}, el("code", { title: m.parameters_sha256 || "", text: sha })),
        el("td", { text: m.load_seconds == null ? "-" : `${m.load_seconds.toFixed(2)} s` }));
    });
    $("models").tBodies[0].replaceChildren(...rows);
    $("models-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    const ready = models.filter((m) => m.status === "ready");
    fillSelect($("predict-model"), ready.filter((m) => m.kind !== "generator").map((m) => m.name));
    fillSelect($("admin-model"), models.map((m) => m.name));
    showAdminModel();
    showError("models-error", null);
  } catch (error) {
    showError("models-error", error);
  }
}

// ---- try a classifier -----------------------------------------------------------------------

async function predict(blob) {
  showError("predict-error", null);
  const name = $("predict-model").value;
  if (!name) return showError("predict-error", new Error("no classifier is ready"));
  const topK = Number($("predict-topk").value) || 5;
  const started = performance.now();
  try {
    const response = await request(
      `/v1/models/${encodeURIComponent(name)}/predict?top_k=${topK}`,
      { method: "POST", headers: { "Content-Type": blob.type || "image/png" }, body: blob });
    const body = await response.json();
    const ms = performance.now() - started;
    $("predict-latency").textContent =
      `${name} · ${ms.toFixed(1)} ms round trip · parameters version ${body.parameters_version}`;
    const items = body.predictions[0].map((p) => barItem(p.label, p.probability));
    $("predictions").replaceChildren(...items);
  } catch (error) {
    $("predictions").replaceChildren();
    $("explain-figure").hidden = true;
    showError("predict-error", error);
    return;
  }
  await explain(name, blob);
}

// The heatmap of the image just classified, asked for once its answer is shown (an
// explanation waits behind every predict, so it never delays one).
async function explain(name, blob) {
  showError("explain-error", null);
  const figure = $("explain-figure");
  const method = $("explain-method").value;
  const started = performance.now();
  try {
    const response = await request(
      `/v1/models/${encodeURIComponent(name)}/explain?format=png&method=${method}`,
      { method: "POST", headers: { "Content-Type": blob.type || "image/png" }, body: blob });
    const png = await response.blob();
    const img = $("explain-heatmap");
    if (img.src) URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(png);
    const label = response.headers.get("X-Explanation-Label") || "";
    const ms = performance.now() - started;
    $("explain-caption").textContent =
      `${method.replace("_", " ")} for “${label}” · ${ms.toFixed(0)} ms`;
    figure.dataset.label = label;
    figure.dataset.method = method;
    figure.dataset.version = response.headers.get("X-Model-Version") || "";
    figure.hidden = false;
  } catch (error) {
    figure.hidden = true;
    showError("explain-error", error);
  }
}

function barItem(label, value) {
  const fill = el("span");
  fill.style.width = `${Math.max(0, Math.min(1, value || 0)) * 100}%`;
  return el("li", { "data-label": label },
    el("span", { class: "label", text: label }), el("div", { class: "bar" }, fill),
    el("span", { class: "value", text: pct(value) }));
}

function pickFile(file) {
  if (!file) return;
  const preview = $("predict-preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  predict(file);
}

function setUpDropZone() {
  const zone = $("drop-zone");
  $("predict-file").addEventListener("change", (e) => pickFile(e.target.files[0]));
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    pickFile(e.dataTransfer.files[0]);
  });
}

function setUpCanvas() {
  const canvas = $("draw-canvas");
  const ctx = canvas.getContext("2d");
  const clear = () => { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, canvas.width, canvas.height); };
  clear();
  let drawing = false;
  const point = (e) => {
    const box = canvas.getBoundingClientRect();
    return [(e.clientX - box.left) * canvas.width / box.width,
      (e.clientY - box.top) * canvas.height / box.height];
  };
  canvas.addEventListener("pointerdown", (e) => {
    drawing = true;
    canvas.setPointerCapture(e.pointerId);
    ctx.beginPath();
    ctx.moveTo(...point(e));
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!drawing) return;
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = 22;
    ctx.lineCap = ctx.lineJoin = "round";
    ctx.lineTo(...point(e));
    ctx.stroke();
  });
  canvas.addEventListener("pointerup", () => { drawing = false; });
  $("draw-clear").addEventListener("click", clear);
  $("draw-predict").addEventListener("click", () => {
    // Fashion-MNIST's own size: a light garment on black, 28x28
    const small = el("canvas", { width: 28, height: 28 });
    const sctx = small.getContext("2d");
    sctx.imageSmoothingQuality = "high";
    sctx.drawImage(canvas, 0, 0, 28, 28);
    small.toBlob((blob) => predict(blob), "image/png");
  });
}

// ---- GAN ------------------------------------------------------------------------------------

async function generate() {
  showError("gan-error", null);
  const label = $("gan-label").value;
  const seed = $("gan-seed").value;
  const body = {
    n: Number($("gan-n").value) || 8,
    label: label === "" ? null : Number(label),
    seed: seed === "" ? null : Number(seed),
    format: "png",
  };
  const started = performance.now();
  try {
    const response = await request("/v1/models/gan/generate", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const blob = await response.blob();
    const img = $("gan-grid");
    if (img.src) URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(blob);
    img.hidden = false;
    $("gan-latency").textContent = `${body.n} images · ${(performance.now() - started).toFixed(1)} ms`;
  } catch (error) {
    showError("gan-error", error);
  }
}

// ---- admin ----------------------------------------------------------------------------------

function showTokenState() {
  const has = Boolean(sessionStorage.getItem(TOKEN_KEY));
  $("token-state").textContent = has ? "token set for this tab" : "no token";
}

function showAdminModel() {
  const m = state.models.find((x) => x.name === $("admin-model").value);
  $("admin-version").textContent = m?.parameters_version ?? "-";
  $("admin-sha").textContent = m?.parameters_sha256 ?? "-";
}

function adminFailed(error) {
  showError("admin-error", error);
}

async function checkToken() {
  showError("admin-error", null);
  const name = $("admin-model").value;
  if (!name) return;
  try {
    const accuracy = await getJson(`/admin/models/${encodeURIComponent(name)}/accuracy`, true);
    $("token-state").textContent = "token accepted";
    showRecorded(accuracy.recorded);
  } catch (error) {
    $("token-state").textContent = "token not accepted";
    adminFailed(error);
  }
}

function showRecorded(recorded) {
  const value = recorded?.test_accuracy ?? recorded?.top1 ?? recorded?.consistency;
  $("eval-summary").replaceChildren(
    el("dt", { text: "recorded at training" }),
    el("dd", { id: "recorded-accuracy", text: value == null ? "-" : value.toFixed(4) }),
    ...judgeRows(recorded));
}

async function evaluate() {
  showError("admin-error", null);
  const name = $("admin-model").value;
  const button = $("evaluate");
  button.disabled = true;
  $("eval-progress").value = 0;
  $("eval-status").textContent = "starting…";
  try {
    const accepted = await postJson(`/admin/models/${encodeURIComponent(name)}/evaluate`, {}, true);
    let job;
    for (;;) {
      job = await getJson(`/admin/jobs/${encodeURIComponent(accepted.job_id)}`, true);
      const { done, total } = job.progress;
      $("eval-progress").value = total ? done / total : 0;
      $("eval-status").textContent = `${job.status} · ${done}/${total}`;
      if (!["queued", "running"].includes(job.status)) break;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
    if (job.status !== "succeeded") throw new Error(job.error || `the evaluation ${job.status}`);
    $("eval-progress").value = 1;
    $("eval-status").textContent = `succeeded · 100% · ${job.progress.done}/${job.progress.total}`;
    const accuracy = await getJson(`/admin/models/${encodeURIComponent(name)}/accuracy`, true);
    showResult(name, job.result, accuracy.recorded);
  } catch (error) {
    $("eval-status").textContent = "";
    adminFailed(error);
  } finally {
    button.disabled = false;
  }
}

function showResult(name, result, recorded) {
  const labels = state.labels[name] || state.labels.cnn || [];
  const main = result.accuracy ?? result.consistency;
  const summary = [["accuracy", main, "eval-accuracy"], ["top-5", result.top5, "eval-top5"],
    ["loss", result.loss, "eval-loss"], ["n", result.n, "eval-n"]];
  const rows = [];
  for (const [key, value, id] of summary) {
    if (value == null) continue;
    const text = key === "n" ? String(value) : `${value.toFixed(4)}`;
    rows.push(el("dt", { text: key === "accuracy" && result.consistency != null
      ? "consistency" : key }), el("dd", { id, "data-value": String(value), text }));
  }
  $("eval-summary").replaceChildren(...rows);
  $("eval-summary").append(...recordedRows(recorded));
  const perClass = result.per_class_accuracy || result.per_class || [];
  $("per-class").replaceChildren(...perClass.map((v, i) => barItem(labels[i] ?? String(i), v)));
  drawConfusion(result.confusion_matrix || [], labels);
}

function recordedRows(recorded) {
  const value = recorded?.test_accuracy ?? recorded?.top1 ?? recorded?.consistency;
  if (value == null) return [];
  return [el("dt", { text: "recorded at training" }),
    el("dd", { id: "recorded-accuracy", text: value.toFixed(4) }), ...judgeRows(recorded)];
}

// The gan's figures by its independent judge (python -m app train gan-judge), when recorded.
function judgeRows(recorded) {
  const judge = recorded?.independent_judge;
  if (judge?.consistency == null) return [];
  const own = judge.test_accuracy == null ? "" : `, ${judge.test_accuracy.toFixed(4)} on the test split`;
  const weakest = Math.min(...judge.per_class_consistency);
  const { generated_mean: generated, real_mean: real } = judge.diversity;
  return [
    el("dt", { text: `independent judge (${judge.architecture}${own})` }),
    el("dd", { id: "judge-consistency",
      text: `${judge.consistency.toFixed(4)}, weakest class ${weakest.toFixed(2)}` }),
    el("dt", { text: "diversity, generated / real" }),
    el("dd", { id: "judge-diversity", text: `${generated.toFixed(3)} / ${real.toFixed(3)}` }),
  ];
}

function drawConfusion(matrix, labels) {
  const table = $("confusion");
  if (!matrix.length) return table.replaceChildren();
  const short = (i) => (labels[i] ?? String(i)).slice(0, 6);
  const head = el("tr", {}, el("th"), ...matrix.map((_, j) =>
    el("th", { title: labels[j] ?? String(j), text: short(j) })));
  const rows = matrix.map((row, i) => {
    const total = row.reduce((a, b) => a + b, 0) || 1;
    return el("tr", {}, el("th", { title: labels[i] ?? String(i), text: short(i) }),
      ...row.map((count, j) => {
        const share = count / total;
        const cell = el("td", { title: `${labels[i] ?? i} → ${labels[j] ?? j}: ${count}`,
          text: String(count) });
        cell.style.backgroundColor = `rgba(37, 99, 235, ${Math.sqrt(share).toFixed(3)})`;
        if (share > 0.35) cell.classList.add("hot");
        return cell;
      }));
  });
  table.replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows));
}

function number(id) {
  const value = $(id).value;
  return value === "" ? null : Number(value);
}

async function changeParameters(action) {
  showError("admin-error", null);
  const name = $("admin-model").value;
  const body = action === "reinitialize" ? {
    scheme: $("reinit-scheme").value, mean: number("reinit-mean"), std: number("reinit-std"),
    a: number("reinit-a"), b: number("reinit-b"), seed: number("reinit-seed"),
  } : {};
  for (const key of Object.keys(body)) if (body[key] === null) delete body[key];
  const before = $("admin-sha").textContent;
  try {
    const result = await postJson(`/admin/models/${encodeURIComponent(name)}/${action}`, body, true);
    $("admin-version").textContent = result.parameters_version;
    $("admin-sha").textContent = result.parameters_sha256;
    const changed = before === result.parameters_sha256 ? "unchanged" : "changed";
    $("params-result").textContent =
      `${action}: version ${result.parameters_version}, checksum ${changed}, ` +
      `${result.processes.length} process(es), converged: ${result.converged}`;
    await refreshModels();
  } catch (error) {
    adminFailed(error);
  }
}

async function showArtifacts() {
  try {
    const { artifacts } = await getJson("/ui/artifacts");
    $("artifacts").replaceChildren(...artifacts.map((name) => el("figure", {},
      el("img", { src: `/ui/artifacts/${encodeURIComponent(name)}`, alt: name, loading: "lazy" }),
      el("figcaption", { text: name }))));
  } catch (error) {
    $("artifacts").replaceChildren(el("p", { class: "error", text: String(error.message) }));
  }
}

function setUpAdmin() {
  showTokenState();
  if (state.admin !== "here") {
    const where = state.admin === "disabled"
      ? "The admin API is turned off on this server (TORCHGATE_ADMIN_ENABLED=false)."
      : "The admin API listens on its own port (TORCHGATE_ADMIN_PORT), not here: "
        + "this panel cannot reach it.";
    $("admin-where").textContent = where;
    $("admin-where").hidden = false;
    for (const b of $("admin-body").querySelectorAll("button, input, select")) b.disabled = true;
  }
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = $("admin-token").value.trim();
    $("admin-token").value = "";
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    showTokenState();
    checkToken();
  });
  $("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showTokenState();
  });
  $("admin-model").addEventListener("change", showAdminModel);
  $("evaluate").addEventListener("click", evaluate);
  $("reinit-form").addEventListener("submit", (e) => {
    e.preventDefault();
    changeParameters("reinitialize");
  });
  $("reload").addEventListener("click", () => changeParameters("reload"));
}

async function start() {
  try {
    const config = await getJson("/ui/config.json");
    state.admin = config.admin;
    state.labels = config.labels;
  } catch (error) {
    showError("models-error", error);
  }
  (state.labels.gan || []).forEach((label, i) =>
    $("gan-label").append(el("option", { value: String(i), text: label })));
  setUpDropZone();
  setUpCanvas();
  $("gan-generate").addEventListener("click", generate);
  await refreshModels();
  setUpAdmin();
  showArtifacts();
  setInterval(refreshModels, REFRESH_MS);
  document.body.dataset.ready = "true";
}

document.addEventListener("DOMContentLoaded", start);
