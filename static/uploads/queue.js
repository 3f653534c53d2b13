// One queue for every file on the page: part PUTs share one concurrency limit (a browser
// opens about 6 connections per host; ten files with 4 parts each would queue 40 requests
// behind them). Files are served in the order they were added, so the first finishes first.
//
// A 429 from the server or the store slows the whole queue, not just the part that got it:
// fewer parts at once and a pause before the next start, then back up one slot at a time.

import { backoff, isOffline, sleep } from "./api.js";

const RECOVER_AFTER = 4; // parts that must succeed before the queue takes one more slot back

export class Queue {
  constructor({ limit = 4 } = {}) {
    this.limit = Math.max(1, limit);
    this.width = this.limit; // the limit in force: lower for a while after a 429
    this.uploads = [];
    this.running = 0;
    this.holdUntil = 0;
    this._holdTimer = null;
    this._successes = 0;
    window.addEventListener("online", () => this.pump());
  }

  add(upload) {
    if (!this.uploads.includes(upload)) this.uploads.push(upload);
    upload.queue = this;
  }

  remove(upload) {
    this.uploads = this.uploads.filter((u) => u !== upload);
  }

  pump() {
    // Offline: nothing is started to spend its retries on a dead network; "online" pumps.
    if (isOffline()) return;
    const wait = this.holdUntil - Date.now();
    if (wait > 0) {
      if (!this._holdTimer) {
        this._holdTimer = setTimeout(() => {
          this._holdTimer = null;
          this.pump();
        }, wait);
      }
      return;
    }
    while (this.running < this.width) {
      const upload = this.uploads.find((u) => u.wantsSlot());
      if (!upload) break;
      this.running++;
      upload.sendNextPart().finally(() => {
        this.running--;
        this.pump();
      });
    }
    // The file served next gets its first parts hashed while it waits for a slot.
    this.uploads.find((u) => u.wantsSlot())?.prepare();
  }

  // How long a part waits before its next attempt: its own backoff, and after a 429 everyone
  // waits (the server asked the page, not the part, to slow down).
  async backoff(err, attempt) {
    if (err && err.status === 429) this.slowDown(err.retryAfterMs || backoff(attempt));
    const hold = Math.max(0, this.holdUntil - Date.now());
    await sleep(Math.max(hold, backoff(attempt)));
  }

  slowDown(ms) {
    this.width = Math.max(1, Math.floor(this.width / 2));
    this.holdUntil = Math.max(this.holdUntil, Date.now() + ms);
    this._successes = 0;
  }

  succeeded() {
    if (this.width >= this.limit) return;
    if (++this._successes >= RECOVER_AFTER) {
      this._successes = 0;
      this.width++;
    }
  }
}
