// Direct Uploads — the browser part uploader. One ES module, no build step.
//
// It speaks the same JSON API as every client (/v1/files/uploads…), with the portal's session
// cookie and CSRF header. Parts go straight to the URLs the server signs (S3, or the app itself
// in local mode), several at a time, with retries, re-signing of expired URLs, progress from XHR
// upload events, and resume after a reload (localStorage remembers file → upload id; the server's
// parts endpoint says what the store already holds).
//
// Integrity: each part's SHA-256 (WebCrypto) is signed into its URL, so the store refuses bytes
// that differ from the file's. Parts are hashed one at a time, a few ahead of the senders: memory
// holds the parts in flight and the one being hashed. On resume a stored part is kept only if its
// checksum matches the picked file's; a part the store cannot vouch for is sent again.

const API_BASE = "/v1";
const STORE_PREFIX = "direct-uploads:v1:";
const SIGN_BATCH = 100; // URLs asked for at a time; the server caps a batch at 1,000.
const MAX_ATTEMPTS = 6; // per part: the first try and five retries
const SHA256 = "SHA256";
const HASH_AHEAD = 16; // parts hashed ahead of the senders (only their digests are kept)
const MAX_REPAIRS = 3; // rounds of re-sending parts that complete says the store lacks
// The store refused a body that does not match the checksum signed into its URL (the local
// store's code, S3's): altered on the way, so it is sent again.
const ALTERED = /checksum_mismatch|<Code>BadDigest<\/Code>/;
const SPEED_WINDOW_MS = 5000;

export const State = Object.freeze({
  QUEUED: "queued",
  INITIALIZING: "initializing",
  SENDING: "sending",
  PAUSED: "paused",
  FINALIZING: "finalizing",
  DONE: "done",
  FAILED: "failed",
  CANCELLED: "cancelled",
});

export class ApiError extends Error {
  constructor(status, detail, code, extra = {}) {
    super(detail);
    this.status = status;
    this.code = code;
    this.extra = extra;
  }
}

class PartError extends Error {
  constructor(message, { retryable = false, expired = false } = {}) {
    super(message);
    this.retryable = retryable;
    this.expired = expired;
  }
}

class Aborted extends Error {}

function csrfToken() {
  return document.body.dataset.csrfToken || "";
}

export async function api(method, path, body) {
  const response = await fetch(API_BASE + path, {
    method,
    credentials: "same-origin",
    headers: {
      Accept: "application/json",
      "Content-Type": "application/json",
      "X-CSRFToken": csrfToken(),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    throw new ApiError(
      response.status,
      (data && data.detail) || `The server answered ${response.status}.`,
      (data && data.code) || "error",
      (data && data.extra) || {},
    );
  }
  return data;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// WebCrypto exists only in secure contexts (HTTPS, or localhost): elsewhere no checksums.
const canHash = () => Boolean(globalThis.crypto && crypto.subtle);

function base64(buffer) {
  let text = "";
  for (const byte of new Uint8Array(buffer)) text += String.fromCharCode(byte);
  return btoa(text);
}

const bareEtag = (etag) => String(etag).replace(/"/g, "").toLowerCase();

// Exponential backoff with jitter: ~0.5 s, 1 s, 2 s, 4 s, 8 s.
const backoff = (attempt) => Math.min(15000, 500 * 2 ** (attempt - 1)) * (0.75 + Math.random() / 2);

// A server or network hiccup (5xx, a dropped connection) is retried with backoff; a clear
// refusal (4xx) is not.
const transient = (err) => (err instanceof ApiError ? err.status >= 500 : err instanceof TypeError);

async function withRetries(call) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      if (!transient(err) || attempt >= MAX_ATTEMPTS) throw err;
      await sleep(backoff(attempt));
    }
  }
}

export const resumeStore = {
  key: (file) => `${STORE_PREFIX}${file.name}:${file.size}:${file.lastModified}`,
  get(file) {
    try {
      return JSON.parse(localStorage.getItem(this.key(file)) || "null");
    } catch {
      return null;
    }
  },
  set(file, value) {
    try {
      localStorage.setItem(this.key(file), JSON.stringify(value));
    } catch {
      // Private mode or a full quota: resume after reload is lost, the upload itself is not.
    }
  },
  delete(file) {
    try {
      localStorage.removeItem(this.key(file));
    } catch {
      /* see set() */
    }
  },
};

export class Upload extends EventTarget {
  // `checksums`: sign each part's SHA-256 into its URL (new uploads; a resumed upload keeps the
  // choice it was started with). Off, or without WebCrypto, parts go as the spec's clients send.
  constructor(file, { concurrency = 4, resumeId = null, checksums = true } = {}) {
    super();
    this.file = file;
    this.concurrency = Math.max(1, concurrency);
    this.resumeId = resumeId;
    this.checksums = checksums && canHash();
    this.state = State.QUEUED;
    this.id = null;
    this.partSize = 0;
    this.totalParts = 0;
    this.algorithm = ""; // "SHA256" when the upload's parts carry checksums
    this.urls = new Map(); // part number → {url, headers, expiresAt}
    this.etags = new Map(); // part number → ETag of a stored part
    this.hashes = new Map(); // part number → promise of its base64 SHA-256
    this.digests = new Map(); // part number → base64 SHA-256, once computed
    this._hashing = Promise.resolve(); // parts are hashed one after another
    this.pending = [];
    this.active = new Map(); // part number → {xhr, loaded}
    this.doneBytes = 0;
    this.resumedParts = 0;
    this.replacedParts = 0;
    this.samples = [];
    this.error = null;
    this.record = null;
    this._signing = null;
    this._sendDone = null;
  }

  get uploadedBytes() {
    let inFlight = 0;
    for (const slot of this.active.values()) inFlight += slot.loaded;
    return Math.min(this.file.size, this.doneBytes + inFlight);
  }

  partBytes(number) {
    const start = (number - 1) * this.partSize;
    return Math.max(0, Math.min(this.partSize, this.file.size - start));
  }

  _setState(state, detail = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, ...detail } }));
    this._progress();
  }

  _progress() {
    const now = performance.now();
    const bytes = this.uploadedBytes;
    this.samples.push([now, bytes]);
    while (this.samples.length > 2 && now - this.samples[0][0] > SPEED_WINDOW_MS) this.samples.shift();
    const [t0, b0] = this.samples[0];
    const speed = now - t0 > 250 ? ((bytes - b0) * 1000) / (now - t0) : 0;
    this.dispatchEvent(
      new CustomEvent("progress", {
        detail: { bytes, total: this.file.size, speed: Math.max(0, speed) },
      }),
    );
  }

  async start() {
    if (![State.QUEUED, State.FAILED].includes(this.state)) return;
    this.error = null;
    this._setState(State.INITIALIZING);
    try {
      const known = this.id || this.resumeId || (resumeStore.get(this.file) || {}).id;
      const resumed = known ? await this._resume(known) : false;
      if (!resumed && this.state === State.INITIALIZING) await this._initiate();
      if (this.state === State.CANCELLED) {
        // Cancelled while the server was starting (or finding) the upload: abort it as well.
        await this._discard();
        return;
      }
      await this._sendAll();
      if (this.state !== State.SENDING) return;
      await this._finalize();
    } catch (err) {
      this._fail(err);
    }
  }

  async _initiate() {
    const body = {
      file_name: this.file.name,
      file_size: this.file.size,
      file_content_type: this.file.type || "",
    };
    // With an algorithm and no checksums yet, initiate signs nothing: the part size is the
    // server's choice, so parts are hashed once it is known and signed through …/presign.
    if (this.checksums) body.checksum_algorithm = SHA256;
    else body.presign = SIGN_BATCH;
    const data = await withRetries(() => api("POST", "/files/uploads", body));
    this.id = data.id;
    this.partSize = data.part_size;
    this.totalParts = data.total_parts;
    this.algorithm = data.checksum_algorithm || "";
    this._keepUrls(data.presigned_urls, data.expires_in);
    this.pending = Array.from({ length: this.totalParts }, (_, i) => i + 1);
    resumeStore.set(this.file, { id: this.id });
  }

  async _resume(id) {
    let info;
    try {
      info = await api("GET", `/files/uploads/${id}/parts`);
    } catch (err) {
      // Gone, finished or not ours any more: start afresh rather than fail.
      if (err instanceof ApiError && [404, 409].includes(err.status)) {
        resumeStore.delete(this.file);
        return false;
      }
      throw err;
    }
    // An upload whose parts need checksums cannot go on without WebCrypto to compute them.
    if (info.file_size !== this.file.size || (info.checksum_algorithm && !canHash())) return false;
    this.id = id;
    this.partSize = info.part_size;
    this.totalParts = info.total_parts;
    this.algorithm = info.checksum_algorithm || "";
    // A part stays only if it is provably this file's: one this page sent (same ETag), or one
    // whose stored checksum is this file's. Same name and size prove nothing: the rest is sent.
    const kept = new Map();
    this.replacedParts = 0;
    for (const part of info.parts) {
      const n = part.part_number;
      if (part.size !== this.partBytes(n)) continue;
      const mine = this.etags.get(n);
      if (mine !== undefined && bareEtag(mine) === bareEtag(part.etag)) kept.set(n, mine);
      else if (await this._isThisFiles(part)) kept.set(n, part.etag);
      else this.replacedParts++;
    }
    this.etags = kept;
    this.doneBytes = 0;
    for (const n of kept.keys()) this.doneBytes += this.partBytes(n);
    this.resumedParts = kept.size;
    this.pending = [];
    for (let n = 1; n <= this.totalParts; n++) if (!this.etags.has(n)) this.pending.push(n);
    resumeStore.set(this.file, { id });
    if (this.state === State.INITIALIZING) {
      this.dispatchEvent(
        new CustomEvent("resumed", {
          detail: { parts: this.resumedParts, replaced: this.replacedParts },
        }),
      );
    }
    return true;
  }

  async _isThisFiles(part) {
    if (this.algorithm !== SHA256 || !part.checksum) return false;
    return (await this._checksum(part.part_number)) === part.checksum;
  }

  _checksum(number) {
    let promise = this.hashes.get(number);
    if (!promise) {
      promise = this._hashing.then(async () => {
        const start = (number - 1) * this.partSize;
        const bytes = await this.file.slice(start, start + this.partBytes(number)).arrayBuffer();
        const digest = base64(await crypto.subtle.digest("SHA-256", bytes));
        this.digests.set(number, digest);
        this._signAhead();
        return digest;
      });
      this._hashing = promise.catch(() => {});
      this.hashes.set(number, promise);
    }
    return promise;
  }

  _forgetChecksum(number) {
    this.hashes.delete(number);
    this.digests.delete(number);
  }

  _keepUrls(targets, expiresIn) {
    // Renew a minute early so a slow part does not start on a URL about to expire.
    const expiresAt = Date.now() + Math.max(10, expiresIn - 60) * 1000;
    for (const { part_number, url, headers } of targets) {
      this.urls.set(part_number, { url, headers: headers || {}, expiresAt });
    }
  }

  _fresh(number) {
    const known = this.urls.get(number);
    return known && known.expiresAt > Date.now() ? known : null;
  }

  async _urlFor(number) {
    // One signing call at a time; a part missing from the batch in flight starts the next one.
    for (let round = 0; round < 8; round++) {
      const known = this._fresh(number);
      if (known) return known;
      if (!this._signing) this._startSigning(number);
      await this._signing;
    }
    throw new PartError(`Could not get an upload URL for part ${number}.`, { retryable: true });
  }

  _startSigning(number) {
    this._signing = this._sign(number).finally(() => {
      this._signing = null;
      this._signAhead();
    });
    return this._signing;
  }

  // With checksums, hashed parts are signed in the background, before a sender waits for them:
  // once there are enough of them to be worth a request (or they are all that is left).
  _signAhead() {
    if (!this.algorithm || this._signing || this.state !== State.SENDING) return;
    const unsigned = this.pending.filter((n) => !this._fresh(n));
    const ready = unsigned.filter((n) => this.digests.has(n));
    if (ready.length && ready.length >= Math.min(this.concurrency, unsigned.length)) {
      this._startSigning(ready[0]).catch(() => {}); // a sender that needs the URL sees the error
    }
  }

  async _sign(number) {
    // The part asked for, and the next parts without a fresh URL (those being started, then
    // those waiting); with checksums, only those already hashed: a URL is for one exact body.
    if (this.algorithm) await this._checksum(number);
    const batch = [number];
    for (const n of [...this.active.keys(), ...this.pending]) {
      if (batch.length >= SIGN_BATCH) break;
      if (n !== number && !this._fresh(n) && (!this.algorithm || this.digests.has(n))) batch.push(n);
    }
    const body = { part_numbers: batch };
    if (this.algorithm) {
      const sums = await Promise.all(batch.map((n) => this._checksum(n)));
      body.checksums = Object.fromEntries(batch.map((n, i) => [n, sums[i]]));
    }
    const data = await api("POST", `/files/uploads/${this.id}/presign`, body);
    this._keepUrls(data.presigned_urls, data.expires_in);
  }

  _sendAll() {
    this._setState(State.SENDING);
    return new Promise((resolve) => {
      this._sendDone = resolve;
      this._pump();
    });
  }

  _pump() {
    if (this.state !== State.SENDING) return;
    while (this.active.size < this.concurrency && this.pending.length) {
      this._sendPart(this.pending.shift());
    }
    if (this.algorithm) {
      // In sending order: the parts just started first, then the next ones waiting.
      for (const n of [...this.active.keys(), ...this.pending.slice(0, HASH_AHEAD)]) {
        this._checksum(n).catch(() => {});
      }
      this._signAhead();
    }
    if (this.active.size === 0 && this.pending.length === 0 && this._sendDone) {
      const done = this._sendDone;
      this._sendDone = null;
      done();
    }
  }

  async _sendPart(number) {
    const slot = { xhr: null, loaded: 0 };
    this.active.set(number, slot);
    try {
      for (let attempt = 1; ; attempt++) {
        if (this.state !== State.SENDING) {
          if (this.state === State.PAUSED) this.pending.unshift(number);
          return;
        }
        try {
          const target = await this._urlFor(number);
          // Paused or cancelled while the URL was being signed: do not start the PUT.
          if (this.state !== State.SENDING) {
            if (this.state === State.PAUSED) this.pending.unshift(number);
            return;
          }
          const etag = await this._put(number, target, slot);
          this.etags.set(number, etag);
          this.doneBytes += this.partBytes(number);
          return;
        } catch (err) {
          slot.loaded = 0;
          if (err instanceof Aborted) {
            if (this.state === State.PAUSED) this.pending.unshift(number);
            return;
          }
          if (err.expired) this.urls.delete(number);
          const retryable = err.retryable || (err instanceof ApiError && err.status >= 500);
          if (!retryable || attempt >= MAX_ATTEMPTS) throw err;
          this.dispatchEvent(
            new CustomEvent("retry", { detail: { part: number, attempt, reason: err.message } }),
          );
          await sleep(backoff(attempt));
        }
      }
    } catch (err) {
      this._fail(err);
    } finally {
      this.active.delete(number);
      this._progress();
      this._pump();
    }
  }

  _put(number, target, slot) {
    const start = (number - 1) * this.partSize;
    const blob = this.file.slice(start, start + this.partBytes(number));
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      slot.xhr = xhr;
      xhr.open("PUT", target.url);
      // Signed into the URL (the part's checksum): the store wants them exactly.
      for (const [name, value] of Object.entries(target.headers)) xhr.setRequestHeader(name, value);
      xhr.upload.onprogress = (event) => {
        slot.loaded = event.loaded;
        this._progress();
      };
      xhr.onload = () => {
        if (xhr.status >= 200 && xhr.status < 300) {
          const etag = xhr.getResponseHeader("ETag");
          if (!etag) {
            reject(
              new PartError(
                `Part ${number} was stored, but the storage did not expose its ETag header. ` +
                  "The bucket's CORS rule must expose ETag (see `manage.py setup_bucket`).",
              ),
            );
            return;
          }
          resolve(etag);
        } else if (xhr.status === 403) {
          // S3 answers 403 to an expired signature: sign again and retry.
          reject(new PartError(`Part ${number} was refused (403).`, { retryable: true, expired: true }));
        } else if (xhr.status >= 500 || xhr.status === 408 || xhr.status === 429) {
          reject(new PartError(`Part ${number} failed (${xhr.status}).`, { retryable: true }));
        } else if (xhr.status === 400 && ALTERED.test(xhr.responseText || "")) {
          reject(new PartError(`Part ${number} arrived altered (400).`, { retryable: true }));
        } else {
          reject(new PartError(`Part ${number} was refused (${xhr.status}).`));
        }
      };
      xhr.onerror = () => reject(new PartError(`Network error on part ${number}.`, { retryable: true }));
      xhr.ontimeout = () => reject(new PartError(`Part ${number} timed out.`, { retryable: true }));
      xhr.onabort = () => reject(new Aborted());
      xhr.send(blob);
    });
  }

  async _finalize() {
    for (let repair = 0; ; repair++) {
      this._setState(State.FINALIZING);
      const parts = [...this.etags.entries()]
        .sort((a, b) => a[0] - b[0])
        .map(([part_number, etag]) => ({ part_number, etag }));
      let again;
      try {
        this.record = await withRetries(() =>
          api("POST", `/files/uploads/${this.id}/complete`, { parts }),
        );
        break;
      } catch (err) {
        // A failed verification ends the upload for good: nothing is left to resume.
        if (err instanceof ApiError && err.code === "verification_failed") {
          resumeStore.delete(this.file);
        }
        again = this._partsToResend(err);
        if (!again.length) throw err;
        if (repair >= MAX_REPAIRS) {
          throw new ApiError(
            err.status,
            `The store still disagrees about part(s) ${again.join(", ")} after ${MAX_REPAIRS} ` +
              "re-sends; the upload stays open: pick the file again to resume it.",
            err.code,
            err.extra,
          );
        }
      }
      // Complete named parts the store holds wrongly or not at all, and left the upload open:
      // send them again (hashed again, on fresh URLs), then complete again.
      for (const n of again) {
        if (this.etags.delete(n)) this.doneBytes -= this.partBytes(n);
        this.urls.delete(n);
        this._forgetChecksum(n);
      }
      this.pending = again;
      await this._sendAll();
      if (this.state !== State.SENDING) return;
    }
    resumeStore.delete(this.file);
    this._setState(State.DONE, { record: this.record });
  }

  _partsToResend(err) {
    if (!(err instanceof ApiError) || err.code !== "parts_mismatch") return [];
    const { parts, upload_status: status } = err.extra || {};
    if (!["pending", "uploading"].includes(status) || !Array.isArray(parts)) return [];
    const valid = parts.filter((n) => Number.isInteger(n) && n >= 1 && n <= this.totalParts);
    return [...new Set(valid)].sort((a, b) => a - b);
  }

  _abortInFlight() {
    for (const slot of this.active.values()) if (slot.xhr) slot.xhr.abort();
  }

  _fail(err) {
    if ([State.FAILED, State.CANCELLED, State.DONE].includes(this.state)) return;
    this.error = err;
    this._setState(State.FAILED, { message: err.message || String(err) });
    this._abortInFlight();
  }

  pause() {
    if (this.state !== State.SENDING) return;
    this._setState(State.PAUSED);
    this._abortInFlight();
  }

  resume() {
    if (this.state !== State.PAUSED) return;
    this._setState(State.SENDING);
    this._pump();
  }

  async cancel() {
    if ([State.DONE, State.CANCELLED].includes(this.state)) return;
    const wasSending = this._sendDone;
    this._setState(State.CANCELLED);
    this._abortInFlight();
    this.pending = [];
    if (wasSending) {
      this._sendDone = null;
      wasSending();
    }
    await this._discard();
  }

  async _discard() {
    resumeStore.delete(this.file);
    if (!this.id) return;
    try {
      await api("DELETE", `/files/uploads/${this.id}`);
    } catch (err) {
      if (!(err instanceof ApiError && [404, 409].includes(err.status))) throw err;
    }
  }
}

// --- Page wiring ---------------------------------------------------------------------------

export function formatBytes(bytes) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value.toFixed(value >= 100 || unit === 0 ? 0 : 1)} ${units[unit]}`;
}

function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds <= 0) return "";
  if (seconds < 60) return `${Math.ceil(seconds)} s left`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.ceil(seconds % 60)} s left`;
  return `${Math.floor(seconds / 3600)} h ${Math.ceil((seconds % 3600) / 60)} min left`;
}

const STATE_LABELS = {
  queued: "Waiting",
  initializing: "Starting…",
  sending: "Uploading",
  paused: "Paused",
  finalizing: "Verifying…",
  done: "Completed",
  failed: "Failed",
  cancelled: "Cancelled",
};

function button(action, label, hidden = false) {
  const el = document.createElement("button");
  el.type = "button";
  el.dataset.action = action;
  el.textContent = label;
  el.className = "secondary";
  el.hidden = hidden;
  return el;
}

function renderRow(upload, list) {
  const row = document.createElement("li");
  row.className = "upload-row";
  row.dataset.testid = "upload-row";
  row.dataset.fileName = upload.file.name;
  const head = document.createElement("div");
  head.className = "row-head";
  const name = document.createElement("span");
  name.className = "file-name";
  name.textContent = upload.file.name; // text, never HTML: file names are user input
  const state = document.createElement("span");
  state.className = "state";
  state.dataset.testid = "upload-state";
  head.append(name, state);
  const bar = document.createElement("div");
  bar.className = "bar";
  bar.setAttribute("role", "progressbar");
  bar.setAttribute("aria-valuemin", "0");
  bar.setAttribute("aria-valuemax", "100");
  bar.setAttribute("aria-valuenow", "0");
  bar.setAttribute("aria-label", `Upload progress of ${upload.file.name}`);
  const fill = document.createElement("div");
  fill.className = "fill";
  bar.append(fill);
  const stats = document.createElement("div");
  stats.className = "stats";
  stats.dataset.testid = "upload-stats";
  const message = document.createElement("p");
  message.className = "message";
  message.setAttribute("role", "status");
  message.dataset.testid = "upload-message";
  const actions = document.createElement("div");
  actions.className = "row-actions";
  const pause = button("pause", "Pause");
  const resume = button("resume", "Resume", true);
  const cancel = button("cancel", "Cancel");
  const retry = button("retry", "Retry", true);
  const open = document.createElement("a");
  open.hidden = true;
  open.textContent = "Open";
  open.dataset.action = "open";
  actions.append(pause, resume, cancel, retry, open);
  row.append(head, bar, stats, actions, message);
  list.prepend(row);

  pause.addEventListener("click", () => upload.pause());
  resume.addEventListener("click", () => upload.resume());
  retry.addEventListener("click", () => upload.start());
  cancel.addEventListener("click", () =>
    upload.cancel().catch((err) => {
      message.textContent = `Could not cancel: ${err.message}`;
    }),
  );

  const showState = () => {
    const s = upload.state;
    row.dataset.state = s;
    state.textContent = STATE_LABELS[s] || s;
    pause.hidden = s !== State.SENDING;
    resume.hidden = s !== State.PAUSED;
    cancel.hidden = [State.DONE, State.CANCELLED].includes(s);
    retry.hidden = s !== State.FAILED;
  };
  upload.addEventListener("state", (event) => {
    showState();
    const { state: s, message: text, record } = event.detail;
    if (s === State.FAILED) message.textContent = text;
    else if (s === State.DONE) {
      message.textContent = "";
      open.href = `/files/${record.id}/`;
      open.hidden = false;
      document.querySelector(`[data-unfinished-id="${record.id}"]`)?.remove();
    } else if (s === State.CANCELLED) message.textContent = "Cancelled; nothing was kept.";
    else if (s === State.SENDING) message.textContent = "";
  });
  upload.addEventListener("resumed", (event) => {
    const { parts, replaced } = event.detail;
    message.textContent =
      `Resuming: ${parts} part(s) already stored.` +
      (replaced ? ` ${replaced} stored part(s) could not be shown to be this file's: sent again.` : "");
  });
  upload.addEventListener("retry", (event) => {
    message.textContent = `Retrying part ${event.detail.part} (attempt ${event.detail.attempt + 1})…`;
  });
  upload.addEventListener("progress", (event) => {
    const { bytes, total, speed } = event.detail;
    const percent = total ? Math.floor((bytes / total) * 100) : upload.state === State.DONE ? 100 : 0;
    bar.setAttribute("aria-valuenow", String(percent));
    fill.style.width = `${percent}%`;
    const parts = [`${formatBytes(bytes)} of ${formatBytes(total)}`, `${percent}%`];
    if (upload.state === State.SENDING && speed > 0) {
      parts.push(`${formatBytes(speed)}/s`, formatDuration((total - bytes) / speed));
    }
    stats.textContent = parts.filter(Boolean).join(" · ");
  });
  showState();
  return row;
}

export function mount(root) {
  const input = root.querySelector("#file-input");
  const zone = root.querySelector("#dropzone");
  const list = root.querySelector("#uploads");
  const concurrency = Number(root.dataset.concurrency) || 4;
  // data-checksums="off" (UPLOADS_BROWSER_CHECKSUMS=0): new uploads send no part checksums.
  const checksums = root.dataset.checksums !== "off";
  const uploads = [];
  let resumeTarget = null;

  const add = (file, resumeId = null) => {
    const upload = new Upload(file, { concurrency, resumeId, checksums });
    uploads.push(upload);
    renderRow(upload, list);
    upload.start();
    return upload;
  };

  input.addEventListener("change", () => {
    for (const file of input.files) {
      if (resumeTarget) {
        const target = resumeTarget;
        resumeTarget = null;
        if (file.size !== target.size) {
          const note = document.querySelector(`[data-unfinished-id="${target.id}"] .message`);
          if (note) {
            note.textContent = `“${file.name}” is not the file this upload started with (${formatBytes(target.size)}).`;
          }
          continue;
        }
        add(file, target.id);
      } else {
        add(file);
      }
    }
    input.value = "";
  });

  // The chooser closed without a pick: the next pick is a new upload, not that resume.
  input.addEventListener("cancel", () => {
    resumeTarget = null;
  });

  zone.addEventListener("click", (event) => {
    if (event.target === zone) input.click();
  });
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      input.click();
    }
  });
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => {
      event.preventDefault();
      zone.classList.add("over");
    });
  }
  for (const name of ["dragleave", "drop"]) {
    zone.addEventListener(name, () => zone.classList.remove("over"));
  }
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    for (const file of event.dataTransfer.files) add(file);
  });

  root.addEventListener("click", (event) => {
    const trigger = event.target.closest("[data-resume-id]");
    if (!trigger) return;
    resumeTarget = { id: trigger.dataset.resumeId, size: Number(trigger.dataset.size) };
    input.click();
  });

  window.addEventListener("beforeunload", (event) => {
    if (uploads.some((u) => [State.SENDING, State.INITIALIZING, State.FINALIZING].includes(u.state))) {
      event.preventDefault();
    }
  });
  return { uploads, add };
}

const root = document.querySelector("#uploader");
if (root) window.directUploads = mount(root);
