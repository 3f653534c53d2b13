// The upload rows and the overall line: built from the page's <template>, painted in an
// animation frame at most ten times a second. A part's progress events come every few
// milliseconds per connection; they only mark a row dirty. The bar moves with `transform` (no
// layout; the compositor eases it between paints), its text a few times a second.

import { formatBytes, formatDuration } from "./units.js";
import { State } from "./upload.js";

const LABELS = {
  queued: "Waiting",
  initializing: "Starting…",
  sending: "Uploading",
  paused: "Paused",
  finalizing: "Verifying…",
  done: "Completed",
  failed: "Failed",
  cancelled: "Cancelled",
};
const PAINT_EVERY_MS = 100;
const TEXT_EVERY_MS = 250;
const SPEED_WINDOW_MS = 5000;

// Bytes per second over the last few seconds of sending; reset whenever sending (re)starts,
// so bytes stored before a pause or a reload never count as speed.
class Speed {
  constructor() {
    this.samples = [];
  }

  reset() {
    this.samples = [];
  }

  measure(now, bytes) {
    const samples = this.samples;
    samples.push([now, bytes]);
    while (samples.length > 2 && now - samples[0][0] > SPEED_WINDOW_MS) samples.shift();
    const [t0, b0] = samples[0];
    return now - t0 > 250 ? Math.max(0, ((bytes - b0) * 1000) / (now - t0)) : 0;
  }
}

function progressText(bytes, total, speed) {
  const percent = total ? Math.floor((bytes / total) * 100) : 100;
  const parts = [`${formatBytes(bytes)} of ${formatBytes(total)}`, `${percent}%`];
  if (speed > 0) parts.push(`${formatBytes(speed)}/s`, formatDuration((total - bytes) / speed));
  return parts.filter(Boolean).join(" · ");
}

const THUMBNAIL_MAX_BYTES = 20 * 1024 * 1024; // larger pictures get an icon: decoding costs
const KINDS = [
  [/^image\//, "IMG"],
  [/^video\//, "VID"],
  [/^audio\//, "AUD"],
  [/pdf$/, "PDF"],
  [/zip|compressed|tar|gzip|7z|rar/, "ZIP"],
  [/^text\/|json|xml|csv/, "TXT"],
];

// An image shows itself (a blob: URL of the local file: nothing is fetched); any other file
// a short label of its kind.
function showKind(el, file) {
  if (file.type.startsWith("image/") && file.size <= THUMBNAIL_MAX_BYTES) {
    const img = document.createElement("img");
    img.alt = "";
    img.src = URL.createObjectURL(file);
    img.addEventListener("error", () => img.replaceWith("IMG"), { once: true });
    el.append(img);
    return () => URL.revokeObjectURL(img.src);
  }
  const type = file.type || "";
  const extension = (file.name.match(/\.([a-z0-9]{1,4})$/i) || [])[1] || "";
  el.textContent = (KINDS.find(([pattern]) => pattern.test(type)) || [])[1] || extension.toUpperCase() || "FILE";
  return () => {};
}

// A click that is the second of a double click: the button under it changed after the first.
const repeated = (event) => event.detail > 1;

class Row {
  constructor(upload, template, fileUrl, onChange) {
    this.upload = upload;
    this.fileUrl = fileUrl;
    this.el = template.content.firstElementChild.cloneNode(true);
    const $ = (selector) => this.el.querySelector(selector);
    this.name = $(".file-name");
    this.state = $(".state");
    this.bar = $(".bar");
    this.fill = $(".fill");
    this.stats = $(".upload-stats");
    this.note = $(".note");
    this.message = $(".message");
    this.buttons = Object.fromEntries(
      [...this.el.querySelectorAll("[data-action]")].map((el) => [el.dataset.action, el]),
    );
    this.speed = new Speed();
    this.percent = -1;
    this.bytes = -1;
    this.textAt = -Infinity;
    this.rate = 0;

    this.el.dataset.fileName = upload.file.name;
    this.name.textContent = upload.file.name; // text, never HTML: file names are user input
    this.forget = showKind($(".kind"), upload.file);
    this.bar.setAttribute("aria-label", `Upload progress of ${upload.file.name}`);
    const { pause, resume, retry, cancel, remove } = this.buttons;
    pause.addEventListener("click", (e) => repeated(e) || upload.pause());
    resume.addEventListener("click", (e) => repeated(e) || upload.resume());
    retry.addEventListener("click", (e) => repeated(e) || upload.start());
    cancel.addEventListener("click", (e) => {
      if (repeated(e)) return;
      cancel.disabled = true;
      upload.cancel().catch((err) => {
        this.message.textContent = `Could not cancel: ${err.message}`;
        cancel.disabled = false;
      });
    });
    remove.addEventListener("click", () => onChange("remove", this));

    upload.addEventListener("state", (event) => this.onState(event.detail));
    upload.addEventListener("resumed", (event) => {
      const { parts, replaced } = event.detail;
      this.note.textContent =
        `Resuming: ${parts} part(s) already stored.` +
        (replaced ? ` ${replaced} stored part(s) could not be shown to be this file's: sent again.` : "");
    });
    upload.addEventListener("retry", (event) => {
      const { what, part, attempt, offline, reason } = event.detail;
      if (offline) this.message.textContent = "Offline: waiting for the network…";
      else if (what === "part") this.message.textContent = `Retrying part ${part} (attempt ${attempt + 1})…`;
      else this.message.textContent = `${reason} Retrying…`;
    });
    this.showState();
  }

  onState({ state, message, record, retryable }) {
    this.showState(retryable);
    if (state === State.FAILED) this.message.textContent = message;
    else if (state === State.DONE) {
      this.message.textContent = "";
      this.buttons.open.href = this.fileUrl.replace("FILE_ID", record.id);
      this.buttons.open.hidden = false;
    } else if (state === State.CANCELLED) this.message.textContent = "Cancelled; nothing was kept.";
    else if (state === State.SENDING) {
      this.message.textContent = "";
      this.speed.reset();
    }
    this.textAt = -Infinity; // the state's text shows at the next frame, whatever the clock
  }

  showState(retryable = false) {
    const s = this.upload.state;
    this.el.dataset.state = s;
    this.state.textContent = LABELS[s] || s;
    const { pause, resume, cancel, retry, remove } = this.buttons;
    pause.hidden = s !== State.SENDING;
    resume.hidden = s !== State.PAUSED;
    cancel.hidden = [State.DONE, State.CANCELLED].includes(s);
    retry.hidden = !(s === State.FAILED && retryable);
    remove.hidden = ![State.DONE, State.CANCELLED, State.FAILED].includes(s);
  }

  paint(now) {
    const { upload } = this;
    const total = upload.file.size;
    const bytes = upload.state === State.DONE ? total : upload.uploadedBytes;
    if (bytes !== this.bytes) {
      this.bytes = bytes;
      this.fill.style.transform = `scaleX(${total ? bytes / total : 1})`;
      const percent = total ? Math.floor((bytes / total) * 100) : 100;
      if (percent !== this.percent) {
        this.percent = percent;
        this.bar.setAttribute("aria-valuenow", String(percent));
      }
    }
    const sending = upload.state === State.SENDING;
    this.rate = sending ? this.speed.measure(now, bytes) : 0;
    if (now - this.textAt >= TEXT_EVERY_MS) {
      this.textAt = now;
      this.stats.textContent = progressText(bytes, total, this.rate);
    }
  }
}

export class View {
  // `list`: the <ul> rows go in; `template`: the row's <template>; `summary`: the overall line
  // (optional); `fileUrl`: a file page's URL with FILE_ID for the id.
  constructor({ list, template, summary = null, fileUrl }) {
    this.list = list;
    this.template = template;
    this.summary = summary;
    this.fileUrl = fileUrl;
    this.rows = [];
    this.dirty = new Set();
    this.frame = 0;
    this.timer = 0;
    this.paintedAt = -Infinity;
    this.summaryAt = -Infinity;
  }

  add(upload) {
    const row = new Row(upload, this.template, this.fileUrl, (what, r) => {
      if (what === "remove") this.remove(r.upload);
    });
    this.rows.push(row);
    this.list.prepend(row.el);
    upload.onprogress = () => this.touch(row);
    upload.addEventListener("state", () => this.touch(row));
    this.touch(row);
    return row;
  }

  // Only a finished row goes: one still sending would go on unseen.
  remove(upload) {
    const row = this.rows.find((r) => r.upload === upload);
    if (!row || upload.busy || upload.state === State.PAUSED) return;
    this.rows = this.rows.filter((r) => r !== row);
    this.dirty.delete(row);
    row.forget();
    row.el.remove();
    this.onremove?.(upload);
    this.touch(null);
  }

  clearCompleted() {
    for (const row of this.rows.filter((r) => r.upload.state === State.DONE)) this.remove(row.upload);
  }

  touch(row) {
    if (row) this.dirty.add(row);
    if (this.frame || this.timer) return;
    const wait = this.paintedAt + PAINT_EVERY_MS - performance.now();
    if (wait <= 0) this.frame = requestAnimationFrame((now) => this.paint(now));
    else {
      this.timer = setTimeout(() => {
        this.timer = 0;
        this.frame = requestAnimationFrame((now) => this.paint(now));
      }, wait);
    }
  }

  paint(now) {
    this.frame = 0;
    this.paintedAt = now;
    for (const row of this.dirty) row.paint(now);
    this.dirty.clear();
    this.paintSummary(now);
  }

  paintSummary(now) {
    const el = this.summary;
    if (!el) return;
    this.summaryParts ||= {
      fill: el.querySelector(".fill"),
      bar: el.querySelector(".bar"),
      stats: el.querySelector(".upload-stats"),
      clear: el.querySelector("[data-action=clear]"),
    };
    const { fill, bar, stats, clear } = this.summaryParts;
    const counted = this.rows.filter((r) => r.upload.state !== State.CANCELLED);
    el.hidden = counted.length === 0;
    if (!counted.length) return;
    let bytes = 0;
    let total = 0;
    let done = 0;
    let speed = 0; // each row's, so bytes stored before a resume never count here either
    for (const row of counted) {
      const { upload } = row;
      total += upload.file.size;
      bytes += upload.state === State.DONE ? upload.file.size : upload.uploadedBytes;
      done += upload.state === State.DONE;
      if (upload.state === State.SENDING) speed += row.rate;
    }
    clear.hidden = done === 0;
    fill.style.transform = `scaleX(${total ? bytes / total : 1})`;
    bar.setAttribute("aria-valuenow", String(total ? Math.floor((bytes / total) * 100) : 100));
    if (now - this.summaryAt >= TEXT_EVERY_MS || !speed) {
      this.summaryAt = now;
      stats.textContent = `${done} of ${counted.length} file(s) done · ${progressText(bytes, total, speed)}`;
    }
  }
}
