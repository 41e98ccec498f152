// Omnicard's website: what every page shares. The pages read and change the shopper's data
// through the JSON API with the session cookie, so the API's rules are the only rules.

const doc = document.documentElement;
export const lang = doc.lang || "en";
const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
const messages = JSON.parse(document.getElementById("messages")?.textContent || "{}");

export class ApiError extends Error {
  constructor(status, error) {
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || "http_error";
    this.details = error.details || {};
  }
}

export class OfflineError extends Error {}

/** A translated text; `{name}` placeholders are filled from `values`. */
export function t(key, values = {}) {
  const text = messages[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in values ? String(values[name]) : whole));
}

export function newKey() {
  return crypto.randomUUID ? crypto.randomUUID() : Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Call the API as the signed-in shopper. Anything but a GET carries an Idempotency-Key: a new
 * one unless `key` is given (give the same key to retry the same action safely).
 * Resolves to {status, data}; throws ApiError for an error answer, OfflineError when the
 * network is down.
 */
export async function api(method, path, body = undefined, { key } = {}) {
  const headers = { Accept: "application/json", "X-CSRF-Token": csrf, "X-Omnicard-Channel": "web" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["Idempotency-Key"] = key || newKey();
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch (err) {
    throw new OfflineError(String(err));
  }
  let data = null;
  if (response.status !== 204) {
    try {
      data = await response.json();
    } catch (err) {
      // A success whose body did not arrive whole (the page was left mid-read, the network
      // dropped) says nothing: never pass it on as an answer, nor keep it for offline.
      if (response.ok) throw new OfflineError(String(err));
    }
  }
  if (!response.ok) {
    if (response.status === 401 && path !== "/session") forget();
    throw new ApiError(response.status, (data && data.error) || {});
  }
  return { status: response.status, data };
}

const moneyFormats = new Map();
/** {amount, currency} in minor units, formatted for the page's language. */
export function money(m) {
  if (!m) return "";
  let format = moneyFormats.get(m.currency);
  if (!format) {
    format = new Intl.NumberFormat(lang, { style: "currency", currency: m.currency });
    moneyFormats.set(m.currency, format);
  }
  const digits = format.resolvedOptions().maximumFractionDigits;
  return format.format(m.amount / 10 ** digits);
}

export function number(n) {
  return new Intl.NumberFormat(lang).format(n);
}

const dateFormat = new Intl.DateTimeFormat(lang, { dateStyle: "medium", timeStyle: "short" });
export function when(iso) {
  return iso ? dateFormat.format(new Date(iso)) : "";
}

/** Say something to screen readers without moving focus. */
export function announce(text) {
  const status = document.getElementById("status");
  if (!status) return;
  status.textContent = "";
  setTimeout(() => { status.textContent = text; }, 50);
}

/**
 * The shopper's live events. `onEvent(type, data)` is called for each event, and with
 * type "open" whenever the stream (re)connects, so a page re-reads what it shows and a
 * long drop leaves no gap. The browser resumes the stream with Last-Event-ID by itself.
 */
const EVENT_TYPES = [
  "card.added", "card.balance_changed", "card.status_changed", "card.updated",
  "stars.balance_changed", "stars.changed", "top_up.settled", "top_up.updated",
  "sale.completed", "sale.refunded", "refund.completed", "saved.added", "saved.removed",
];
export function live(onEvent) {
  let source;
  const connect = () => {
    source = new EventSource("/v1/events", { withCredentials: true });
    source.onopen = () => onEvent("open", null);
    source.onmessage = (e) => handle(e);
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) setTimeout(connect, 3000);
    };
    for (const type of EVENT_TYPES) {
      source.addEventListener(type, handle);
    }
  };
  const handle = (e) => {
    let data = null;
    try { data = JSON.parse(e.data); } catch { /* a heartbeat or unknown payload */ }
    onEvent(e.type, data);
  };
  connect();
  return () => source && source.close();
}

// What the offline shell shows: the last answers seen, per shopper, in this browser only.
const STORE = "omnicard:";
export function remember(name, value) {
  try {
    localStorage.setItem(STORE + name, JSON.stringify({ value, saved_at: new Date().toISOString() }));
  } catch { /* storage full or refused: the page still works online */ }
}
export function recall(name) {
  try {
    return JSON.parse(localStorage.getItem(STORE + name) || "null");
  } catch {
    return null;
  }
}
export function forget() {
  try {
    for (const k of Object.keys(localStorage)) if (k.startsWith(STORE)) localStorage.removeItem(k);
  } catch { /* nothing kept */ }
}

/** Show an error answer in a form: the message in its alert, each field's next to it. */
export function showError(formEl, err) {
  const alert = formEl.querySelector("[role=alert]");
  formEl.querySelectorAll(".field-error").forEach((el) => { el.textContent = ""; });
  formEl.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
  let text;
  if (err instanceof OfflineError) text = t("error.offline");
  else if (err instanceof ApiError) {
    const known = messages[`error.${err.code}`];
    text = known ? t(`error.${err.code}`, err.details) : err.message;
    const fields = (err.details && err.details.fields) || {};
    for (const [name, problems] of Object.entries(fields)) {
      const input = formEl.querySelector(`[name="${CSS.escape(name)}"]`);
      const slot = formEl.querySelector(`#${CSS.escape(name)}-error`);
      const detail = Array.isArray(problems) ? problems.join(" ") : typeof problems === "object" ? Object.values(problems).flat().join(" ") : String(problems);
      if (slot) slot.textContent = detail;
      if (input) input.setAttribute("aria-invalid", "true");
    }
  } else text = t("error.unexpected");
  if (alert) {
    alert.textContent = text;
    alert.hidden = false;
    alert.setAttribute("tabindex", "-1");
    alert.focus();
  }
}

/**
 * The browser's own checks of the form's fields (required, type, length, pattern), told in
 * the page's language next to each field. The API checks again; this only saves a trip.
 * True when every field is fine.
 */
function checkFields(formEl) {
  let first = null;
  for (const input of formEl.querySelectorAll("input, select, textarea")) {
    const slot = formEl.querySelector(`#${CSS.escape(input.name)}-error`);
    if (!input.willValidate) continue;
    if (input.validity.valid) {
      input.removeAttribute("aria-invalid");
      if (slot) slot.textContent = "";
      continue;
    }
    const v = input.validity;
    let text;
    if (v.valueMissing) text = t("field.required");
    else if (v.typeMismatch && input.type === "email") text = t("field.bad_email");
    else if (v.tooShort) text = t("field.too_short", { min: input.minLength });
    else if (v.tooLong) text = t("field.too_long", { max: input.maxLength });
    else if (v.patternMismatch && input.dataset.patternMessage) text = t(input.dataset.patternMessage);
    else text = t("field.invalid");
    input.setAttribute("aria-invalid", "true");
    if (slot) slot.textContent = text;
    first = first || input;
  }
  if (first) {
    const alert = formEl.querySelector("[role=alert]");
    if (alert) { alert.textContent = t("error.validation_error"); alert.hidden = false; }
    first.focus();
    return false;
  }
  return true;
}

/**
 * Run `handler(values, formEl)` when the form is submitted: the button is disabled while it
 * runs, and an error is shown in the form.
 */
export function form(formEl, handler) {
  formEl.addEventListener("submit", async (e) => {
    e.preventDefault();
    const alert = formEl.querySelector("[role=alert]");
    if (alert) { alert.hidden = true; alert.textContent = ""; }
    if (!checkFields(formEl)) return;
    const buttons = formEl.querySelectorAll("button[type=submit]");
    buttons.forEach((b) => { b.disabled = true; });
    try {
      await handler(Object.fromEntries(new FormData(formEl)), formEl);
    } catch (err) {
      showError(formEl, err);
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  });
}

/** Parse a typed amount ("12.50", "12,50") into minor units, or null. */
export function parseAmount(text, digits = 2) {
  const clean = String(text).trim().replace(/\s/g, "").replace(",", ".");
  if (!/^\d{1,7}(\.\d{1,2})?$/.test(clean)) return null;
  const [whole, frac = ""] = clean.split(".");
  return Number(whole) * 10 ** digits + Number((frac + "00").slice(0, digits));
}

/** The offline banner: shown while the page shows what it last knew. */
export function showOffline(savedAt) {
  const banner = document.getElementById("offline-banner");
  if (!banner) return;
  if (savedAt === null) { banner.hidden = true; return; }
  banner.textContent = t("offline.banner", { when: when(savedAt) });
  banner.hidden = false;
}

document.getElementById("logout")?.addEventListener("click", async () => {
  try {
    await api("POST", "/logout");
  } catch { /* logged out here in any case */ }
  forget();
  location.assign("/login");
});

if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("/sw.js", { scope: "/" })
    .then(() => navigator.serviceWorker.ready)
    .then((registration) => {
      // A page still loading when the worker took over (or loaded past it, a hard reload) has
      // no worker in control; it asks, so that it too works offline from now on.
      if (!navigator.serviceWorker.controller) registration.active?.postMessage("claim");
    })
    .catch(() => { /* no offline shell */ });
}
