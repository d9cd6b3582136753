// torchgate dashboard: the admin panel's precision trial (POST /admin/models/{name}/precision)
// and its comparison with float32 as a table. Uses app.js's helpers ($, el, getJson, postJson).
"use strict";

function fixed(value, digits = 4) {
  return value == null ? "-" : Number(value).toFixed(digits);
}

function precisionTable(result) {
  const metric = result.metric;
  const row = (who, side) => el("tr", { "data-side": who },
    el("td", { text: who === "baseline" ? "float32" : result.dtype }),
    el("td", { text: fixed(side[metric]) }),
    el("td", { text: side.images_per_second == null ? "-" : side.images_per_second.toFixed(1) }));
  const head = el("tr", {}, el("th", { text: "dtype" }), el("th", { text: metric }),
    el("th", { text: "images/s" }));
  $("precision-table").replaceChildren(el("thead", {}, head),
    el("tbody", {}, row("baseline", result.baseline), row("candidate", result.candidate)));
  const converged = result.promotion ? `, converged: ${result.promotion.converged}` : "";
  $("precision-verdict").textContent =
    `${result.promoted ? "promoted" : "not promoted"}: ${result.reason}; ` +
    `top-1 agreement ${fixed(result.agreement)}, ${fixed(result.throughput_ratio, 2)}x ` +
    `float32's images/s, n=${result.n}${converged}`;
  $("precision-verdict").dataset.promoted = String(result.promoted);
}

async function trialPrecision() {
  showError("admin-error", null);
  const name = $("admin-model").value;
  const button = $("precision-trial");
  const body = { dtype: $("precision-dtype").value, max_accuracy_drop: number("precision-drop") };
  const folder = $("precision-folder").value.trim();
  if (folder) body.image_folder = folder;
  if (body.max_accuracy_drop === null) delete body.max_accuracy_drop;
  button.disabled = true;
  $("precision-status").textContent = "starting…";
  try {
    const path = `/admin/models/${encodeURIComponent(name)}/precision`;
    const accepted = await postJson(path, body, true);
    let job;
    for (;;) {
      job = await getJson(`/admin/jobs/${encodeURIComponent(accepted.job_id)}`, true);
      const { done, total } = job.progress;
      $("precision-status").textContent = `${job.status} · ${done}/${total}`;
      if (!["queued", "running"].includes(job.status)) break;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
    if (job.status !== "succeeded") throw new Error(job.error || `the trial ${job.status}`);
    $("precision-status").textContent = "succeeded";
    precisionTable(job.result);
    await refreshModels();
  } catch (error) {
    $("precision-status").textContent = "";
    adminFailed(error);
  } finally {
    button.disabled = state.admin !== "here";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("precision-trial").addEventListener("click", trialPrecision);
});
