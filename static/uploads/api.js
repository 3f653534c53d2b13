// The JSON API every client speaks (/v1/…), with the portal's session cookie and CSRF header,
// and the one retry rule that every call and every part PUT of the uploader follows.

export const MAX_ATTEMPTS = 6; // the first try and five retries

export class ApiError extends Error {
  constructor(status, detail, code, extra = {}) {
    super(detail);
    this.status = status;
    this.code = code;
    this.extra = extra;
  }
}

export class Api {
  // `base`: the API's root URL as the page got it from {% url %} (e.g. "/v1/").
  constructor(base, csrfToken = "") {
    this.base = base.endsWith("/") ? base : `${base}/`;
    this.csrfToken = csrfToken;
  }

  async call(method, path, body) {
    const response = await fetch(this.base + path.replace(/^\//, ""), {
      method,
      credentials: "same-origin",
      headers: {
        Accept: "application/json",
        "Content-Type": "application/json",
        "X-CSRFToken": this.csrfToken,
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
}

// Worth another try: the network dropped (fetch rejects with a TypeError), the server or the
// store had a hiccup (5xx, 408), asked us to slow down (429), or a part said so itself (stalled,
// refused as expired, altered on the way). A clear refusal (other 4xx) is final.
export function isRetryable(err) {
  if (err && err.retryable !== undefined) return Boolean(err.retryable);
  if (err instanceof ApiError) return err.status >= 500 || err.status === 408 || err.status === 429;
  return err instanceof TypeError;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Exponential backoff with jitter: ~0.5 s, 1 s, 2 s, 4 s, 8 s.
export const backoff = (attempt) =>
  Math.min(15000, 500 * 2 ** (attempt - 1)) * (0.75 + Math.random() / 2);

export const isOffline = () => navigator.onLine === false;

export function online() {
  if (!isOffline()) return Promise.resolve();
  return new Promise((resolve) => window.addEventListener("online", () => resolve(), { once: true }));
}

// Runs `call(attempt)` until it succeeds, fails for good, or has used its attempts. A failure
// while the browser is offline spends no attempt: the next one waits for the network.
// `onRetry(err, attempt, {offline})` tells the page before each wait; `wait(err, attempt)`
// replaces the backoff (the upload queue slows everyone down after a 429).
export async function retrying(call, { attempts = MAX_ATTEMPTS, onRetry, wait } = {}) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call(attempt);
    } catch (err) {
      if (!isRetryable(err)) throw err;
      if (isOffline()) {
        onRetry?.(err, attempt, { offline: true });
        await online();
        attempt--;
        continue;
      }
      if (attempt >= attempts) throw err;
      onRetry?.(err, attempt, { offline: false });
      await (wait ? wait(err, attempt) : sleep(backoff(attempt)));
    }
  }
}
