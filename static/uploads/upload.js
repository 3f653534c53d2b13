// One file's upload: the state machine of S3FF's client (Initializing → Sending → Finalizing →
// Done), with pause, cancel, resume after a reload and repair of parts the store disagrees about.
// Its parts are sent by the page's Queue (one concurrency limit for all files); no DOM here.
//
// Integrity: each part's SHA-256 (WebCrypto) is signed into its URL, so the store refuses bytes
// that differ from the file's. Parts are hashed one at a time, a few ahead of the senders: memory
// holds the parts in flight and the one being hashed. On resume a stored part is kept only if its
// checksum matches the picked file's; a part the store cannot vouch for is sent again.

import { ApiError, isRetryable, retrying } from "./api.js";
import { Queue } from "./queue.js";

const STORE_PREFIX = "direct-uploads:v1:";
const SIGN_BATCH = 100; // URLs asked for at a time; the server caps a batch at 1,000.
const SHA256 = "SHA256";
const HASH_AHEAD = 16; // parts hashed ahead of the senders (only their digests are kept)
const MAX_REPAIRS = 3; // rounds of re-sending parts that complete says the store lacks
// The store refused a body that does not match the checksum signed into its URL (the local
// store's code, S3's): altered on the way, so it is sent again.
const ALTERED = /checksum_mismatch|<Code>BadDigest<\/Code>/;
// A part whose upload shows no progress for this long is given up and sent again. Chromium can
// wait for ever on a connection the store answered early (an S3 403 before the body) and kept
// open: the next PUT on it never moves.
export const STALL_MS = 30000;

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

const ACTIVE = [State.INITIALIZING, State.SENDING, State.FINALIZING];

export class PartError extends Error {
  constructor(message, { retryable = false, expired = false } = {}) {
    super(message);
    this.retryable = retryable;
    this.expired = expired;
  }
}

// The user paused or cancelled: not a failure, never retried.
class Stopped extends Error {
  retryable = false;
}

// WebCrypto exists only in secure contexts (HTTPS, or localhost): elsewhere no checksums.
const canHash = () => Boolean(globalThis.crypto && crypto.subtle);

function base64(buffer) {
  let text = "";
  for (const byte of new Uint8Array(buffer)) text += String.fromCharCode(byte);
  return btoa(text);
}

const bareEtag = (etag) => String(etag).replace(/"/g, "").toLowerCase();

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

// Retrying can help: the network, the server or the store failed for now, or the store still
// disagrees about parts (a new round re-checks them). Not for a refusal such as "too large".
export const canRetry = (err) => isRetryable(err) || err?.code === "parts_mismatch";

export class Upload extends EventTarget {
  // `checksums`: sign each part's SHA-256 into its URL (new uploads; a resumed upload keeps the
  // choice it was started with). Off, or without WebCrypto, parts go as the spec's clients send.
  constructor(file, { api, queue, resumeId = null, checksums = true, stallMs = STALL_MS } = {}) {
    super();
    this.file = file;
    this.api = api;
    this.queue = queue || new Queue();
    this.resumeId = resumeId;
    this.checksums = checksums && canHash();
    this.stallMs = stallMs;
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
    this.error = null;
    this.record = null;
    this.onprogress = null; // called (cheaply, often) when uploadedBytes may have changed
    this._signing = null;
    this._sendDone = null;
    this.queue.add(this);
  }

  get uploadedBytes() {
    let inFlight = 0;
    for (const slot of this.active.values()) inFlight += slot.loaded;
    return Math.min(this.file.size, this.doneBytes + inFlight);
  }

  get retryable() {
    return this.state === State.FAILED && canRetry(this.error);
  }

  partBytes(number) {
    const start = (number - 1) * this.partSize;
    return Math.max(0, Math.min(this.partSize, this.file.size - start));
  }

  _emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _setState(state, detail = {}) {
    this.state = state;
    this._emit("state", { state, ...detail });
    this.onprogress?.();
  }

  _retryNote(what) {
    return (err, attempt, { offline }) =>
      this._emit("retry", { what, attempt, offline, reason: err.message || String(err) });
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
    const data = await retrying(() => this.api.call("POST", "files/uploads", body), {
      onRetry: this._retryNote("start"),
    });
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
      info = await retrying(() => this.api.call("GET", `files/uploads/${id}/parts`), {
        onRetry: this._retryNote("start"),
      });
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
      this._emit("resumed", { parts: this.resumedParts, replaced: this.replacedParts });
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
    const enough = Math.min(this.queue.limit, unsigned.length);
    if (ready.length && ready.length >= enough) {
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
    const data = await this.api.call("POST", `files/uploads/${this.id}/presign`, body);
    this._keepUrls(data.presigned_urls, data.expires_in);
  }

  _sendAll() {
    this._setState(State.SENDING);
    return new Promise((resolve) => {
      this._sendDone = resolve;
      this._checkSent();
      this.queue.pump();
    });
  }

  _checkSent() {
    if (this.active.size === 0 && this.pending.length === 0 && this._sendDone) {
      const done = this._sendDone;
      this._sendDone = null;
      done();
    }
  }

  // For the queue: this upload has a part to start now.
  wantsSlot() {
    return this.state === State.SENDING && this.pending.length > 0;
  }

  // Hash the parts about to be sent (in sending order) and sign those ready, ahead of need.
  prepare() {
    if (!this.algorithm || this.state !== State.SENDING) return;
    for (const n of [...this.active.keys(), ...this.pending.slice(0, HASH_AHEAD)]) {
      this._checksum(n).catch(() => {});
    }
    this._signAhead();
  }

  // For the queue: send the next waiting part, with its retries; settles when the part is
  // stored, given back (pause), or has failed the upload. Takes the part before any await.
  async sendNextPart() {
    const number = this.pending.shift();
    const slot = { xhr: null, loaded: 0 };
    this.active.set(number, slot);
    this.prepare();
    try {
      const etag = await retrying(
        async () => {
          if (this.state !== State.SENDING) throw new Stopped();
          const target = await this._urlFor(number);
          // Paused or cancelled while the URL was being signed: do not start the PUT.
          if (this.state !== State.SENDING) throw new Stopped();
          try {
            return await this._put(number, target, slot);
          } catch (err) {
            slot.loaded = 0;
            if (err.expired) this.urls.delete(number);
            throw err;
          }
        },
        {
          onRetry: (err, attempt, { offline }) =>
            this._emit("retry", { what: "part", part: number, attempt, offline, reason: err.message }),
          wait: (err, attempt) => this.queue.backoff(err, attempt),
        },
      );
      this.etags.set(number, etag);
      this.doneBytes += this.partBytes(number);
      this.queue.succeeded();
    } catch (err) {
      slot.loaded = 0;
      // Paused: the part goes back to the front of the line, to be sent whole again.
      if (this.state === State.PAUSED) this.pending.unshift(number);
      else if (!(err instanceof Stopped)) this._fail(err);
    } finally {
      this.active.delete(number);
      this.onprogress?.();
      this._checkSent();
    }
  }

  _put(number, target, slot) {
    const start = (number - 1) * this.partSize;
    const blob = this.file.slice(start, start + this.partBytes(number));
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      slot.xhr = xhr;
      let stalled = false;
      let watchdog = null;
      const watch = () => {
        clearTimeout(watchdog);
        watchdog = setTimeout(() => {
          stalled = true;
          xhr.abort();
        }, this.stallMs);
      };
      xhr.open("PUT", target.url);
      // Signed into the URL (the part's checksum): the store wants them exactly.
      for (const [name, value] of Object.entries(target.headers)) xhr.setRequestHeader(name, value);
      xhr.upload.onprogress = (event) => {
        watch();
        slot.loaded = event.loaded;
        this.onprogress?.();
      };
      xhr.upload.onload = watch; // the body is sent: the answer gets the same time to come
      xhr.onloadend = () => clearTimeout(watchdog);
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
          const err = new PartError(`Part ${number} failed (${xhr.status}).`, { retryable: true });
          err.status = xhr.status;
          const after = Number(xhr.getResponseHeader("Retry-After"));
          if (after > 0) err.retryAfterMs = after * 1000;
          reject(err);
        } else if (xhr.status === 400 && ALTERED.test(xhr.responseText || "")) {
          reject(new PartError(`Part ${number} arrived altered (400).`, { retryable: true }));
        } else {
          reject(new PartError(`Part ${number} was refused (${xhr.status}).`));
        }
      };
      xhr.onerror = () => reject(new PartError(`Network error on part ${number}.`, { retryable: true }));
      xhr.onabort = () =>
        reject(
          stalled
            ? new PartError(
                `Part ${number} made no progress for ${Math.round(this.stallMs / 1000)} s.`,
                { retryable: true },
              )
            : new Stopped(),
        );
      watch();
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
        this.record = await retrying(
          () => this.api.call("POST", `files/uploads/${this.id}/complete`, { parts }),
          { onRetry: this._retryNote("complete") },
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
    this.queue.remove(this);
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
    this._setState(State.FAILED, { message: err.message || String(err), retryable: canRetry(err) });
    this._abortInFlight();
  }

  get busy() {
    return ACTIVE.includes(this.state);
  }

  pause() {
    if (this.state !== State.SENDING) return;
    this._setState(State.PAUSED);
    this._abortInFlight();
  }

  resume() {
    if (this.state !== State.PAUSED) return;
    this._setState(State.SENDING);
    this.queue.pump();
  }

  async cancel() {
    if ([State.DONE, State.CANCELLED].includes(this.state)) return;
    const wasSending = this._sendDone;
    this._setState(State.CANCELLED);
    this._abortInFlight();
    this.pending = [];
    this.queue.remove(this);
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
      await this.api.call("DELETE", `files/uploads/${this.id}`);
    } catch (err) {
      if (!(err instanceof ApiError && [404, 409].includes(err.status))) throw err;
    }
  }
}
