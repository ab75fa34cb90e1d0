// The dit serve page: pick a class and settings, queue a job (POST /v1/jobs),
// follow its event stream for progress and x̂0 previews, show the results.
// Plain JavaScript, no build step; served from the dit binary.
"use strict";

const $ = (id) => document.getElementById(id);
let classes = [];      // [{id, name, synonyms}]
let running = null;    // {id, abort: AbortController}

function headers(json) {
  const h = {};
  if (json) h["Content-Type"] = "application/json";
  const key = $("api-key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function say(text) { $("message").textContent = text || ""; }

async function apiError(response) {
  try {
    const body = await response.json();
    return body.error && body.error.message ? body.error.message : response.statusText;
  } catch (_) {
    return response.status + " " + response.statusText;
  }
}

async function loadModel() {
  const health = await (await fetch("health")).json();
  $("key-box").hidden = !health.auth_required;
  const key = sessionStorage.getItem("dit-api-key");
  if (key) $("api-key").value = key;
  const response = await fetch("v1/models", { headers: headers(false) });
  if (!response.ok) {
    say(await apiError(response) + (health.auth_required ? "\nEnter the API key, then reload." : ""));
    return;
  }
  const model = (await response.json()).data[0];
  $("model-name").textContent = `${model.description} · ${model.id} · ${model.image_size}×${model.image_size} · ${model.classes.length} classes`;
  classes = model.classes;
  const d = model.defaults, l = model.limits;
  $("guidance").value = d.guidance_scale;
  $("guidance").disabled = !model.guidance;
  $("guidance").max = l.max_guidance;
  $("steps").value = d.steps;
  $("steps").max = l.max_steps;
  $("sampler").value = d.sampler;
  $("n").value = d.n;
  $("n").max = l.max_n;
  showClasses("");
  $("generate").disabled = false;
}

function matches(c, query) {
  if (!query) return true;
  if (String(c.id) === query) return true;
  const q = query.toLowerCase();
  return [c.name, ...c.synonyms].some((s) => s.toLowerCase().includes(q));
}

function showClasses(query) {
  const select = $("class");
  const previous = select.value;
  select.replaceChildren();
  for (const c of classes.filter((c) => matches(c, query.trim()))) {
    const option = document.createElement("option");
    option.value = c.id;
    option.textContent = c.name === String(c.id) ? `${c.id}` : `${c.id} · ${c.name}`;
    select.append(option);
  }
  if ([...select.options].some((o) => o.value === previous)) select.value = previous;
  else if (select.options.length > 0) select.selectedIndex = 0;
  chosen();
}

function chosen() {
  const c = classes.find((c) => String(c.id) === $("class").value);
  $("class-chosen").textContent = c ? `chosen: ${c.name} (id ${c.id})` : "no class matches";
}

function request() {
  const fixed = document.querySelector("input[name=seed-mode]:checked").value === "fixed";
  const body = {
    prompt: $("class").value,
    n: Number($("n").value),
    steps: Number($("steps").value),
    sampler: $("sampler").value,
    response_format: "b64_json",
  };
  if (!$("guidance").disabled) body.guidance_scale = Number($("guidance").value);
  if (fixed) body.seed = Number($("seed").value);
  return body;
}

// Reads a text/event-stream body, calling onEvent(name, data) per event.
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (data) onEvent(name, JSON.parse(data));
    }
  }
}

function setBusy(busy) {
  $("generate").disabled = busy;
  $("cancel").hidden = !busy;
}

function progress(step, total, text) {
  $("progress").max = total || 1;
  $("progress").value = step;
  $("progress-text").textContent = text;
}

async function generate(event) {
  event.preventDefault();
  say("");
  if ($("api-key").value) sessionStorage.setItem("dit-api-key", $("api-key").value);
  const body = request();
  setBusy(true);
  progress(0, 1, "queueing…");
  const abort = new AbortController();
  try {
    const queued = await fetch("v1/jobs", {
      method: "POST", headers: headers(true), body: JSON.stringify(body), signal: abort.signal,
    });
    if (!queued.ok) throw new Error(await apiError(queued));
    const job = await queued.json();
    running = { id: job.id, abort };
    const stream = await fetch(`v1/jobs/${job.id}/events`, { headers: headers(false), signal: abort.signal });
    if (!stream.ok) throw new Error(await apiError(stream));
    let finished = false;
    await readEvents(stream, (name, data) => {
      if (name === "queued") progress(0, 1, `waiting in the queue (position ${data.position + 1})`);
      else if (name === "progress") {
        const eta = data.eta_seconds == null ? "" : `, about ${data.eta_seconds.toFixed(1)} s left`;
        progress(data.step, data.total, `step ${data.step} of ${data.total}${eta}`);
      } else if (name === "preview") {
        $("preview").src = "data:image/png;base64," + data.png;
        $("preview").hidden = false;
      } else if (name === "done") {
        finished = true;
        progress(1, 1, `done in ${data.timing.run_seconds.toFixed(2)} s (batch of ${data.timing.batch_images} images)`);
        addResults(data);
      } else if (name === "failed") {
        finished = true;
        throw new Error("generation failed: " + data.error.message);
      } else if (name === "cancelled") {
        finished = true;
        progress(0, 1, `cancelled at step ${data.step}`);
      }
    });
    if (!finished) throw new Error("the event stream ended early");
  } catch (err) {
    if (err.name !== "AbortError") say(err.message);
  } finally {
    running = null;
    setBusy(false);
  }
}

async function cancel() {
  if (!running) return;
  const { id, abort } = running;
  await fetch(`v1/jobs/${id}`, { method: "DELETE", headers: headers(false) }).catch(() => {});
  abort.abort();
  progress(0, 1, "cancelled");
}

function addResults(result) {
  const s = result.settings;
  for (const image of [...result.data].reverse()) {
    const url = "data:image/png;base64," + image.b64_json;
    const card = document.createElement("figure");
    card.className = "card";
    const img = document.createElement("img");
    img.src = url;
    img.alt = `${image.class_name}, seed ${image.seed}, image ${image.index}`;
    const caption = document.createElement("figcaption");
    caption.textContent = `${image.class_name} (id ${image.class}) · seed ${image.seed} #${image.index} · ` +
      `${s.steps} ${s.sampler} steps · guidance ${s.guidance_scale}`;
    const link = document.createElement("a");
    link.href = url;
    link.download = `dit-${image.class}-seed${image.seed}-${image.index}.png`;
    link.textContent = "Download PNG";
    card.append(img, caption, link);
    $("gallery").prepend(card);
  }
}

$("class-search").addEventListener("input", (e) => showClasses(e.target.value));
$("class").addEventListener("change", chosen);
for (const radio of document.querySelectorAll("input[name=seed-mode]")) {
  radio.addEventListener("change", () => {
    $("seed").disabled = document.querySelector("input[name=seed-mode]:checked").value !== "fixed";
  });
}
$("settings").addEventListener("submit", generate);
$("cancel").addEventListener("click", cancel);
loadModel().catch((err) => say("cannot reach the server: " + err.message));
