// Pay in store: a one-use pay code for the till's scanner, as a QR code and a Code 128
// barcode drawn by the server, with its digits and the card's balance under it. A new code
// replaces it before it expires; the countdown is for the eye only (screen readers get the
// time it is valid until, once per code). The screen is kept awake where the browser allows.
// Offline, the last code is shown until it expires: a new one needs the server.
import { api, t, money, live, announce, remember, recall, showOffline, ApiError, OfflineError, lang } from "/static/web/core.js";

const REFRESH_BEFORE_MS = 10_000;
const RETRY_AFTER_FAILURE_MS = 5_000;
const KEPT = "pay_code";

const el = (id) => document.getElementById(id);
const codes = el("codes");
const qr = el("qr");
const barcode = el("barcode");
const digits = el("code-digits");
const balanceLine = el("balance-line");
const countdown = el("countdown");
const forReaders = el("expiry-for-readers");
const problem = el("pay-problem");
const notice = el("pay-notice");
const cardSelect = el("card");

const timeFormat = new Intl.DateTimeFormat(lang, { hour: "numeric", minute: "2-digit", second: "2-digit" });

let shown = null; // the code on screen: the server's answer plus `expires_local` (ms, this clock)
let refreshTimer = null;
let fetching = null;

function grouped(code) {
  return code.replace(/(\d{4})(?=\d)/g, "$1 ");
}

function say(element, text) {
  element.textContent = text || "";
  element.hidden = !text;
}

function show(code) {
  shown = code;
  qr.src = code.qr;
  qr.alt = t("pay.code.qr_alt", { code: grouped(code.code) });
  barcode.src = code.barcode;
  barcode.alt = t("pay.code.barcode_alt", { code: grouped(code.code) });
  qr.hidden = barcode.hidden = false;
  digits.textContent = grouped(code.code);
  codes.dataset.code = code.code;
  codes.dataset.cardId = String(code.card_id);
  codes.setAttribute("aria-busy", "false");
  codes.hidden = false;
  showBalance(code.balance);
  forReaders.textContent = t("pay.code.valid_until", { time: timeFormat.format(new Date(code.expires_local)) });
  if (cardSelect.options.length) cardSelect.value = String(code.card_id);
  tick();
}

function hideCode() {
  shown = null;
  qr.hidden = barcode.hidden = true;
  qr.removeAttribute("src");
  barcode.removeAttribute("src");
  qr.alt = barcode.alt = "";
  digits.textContent = "";
  delete codes.dataset.code;
  say(countdown, "");
  forReaders.textContent = "";
  balanceLine.hidden = true;
}

function showBalance(balance) {
  el("balance").textContent = money(balance);
  balanceLine.hidden = false;
  if (shown) shown.balance = balance;
}

// -- getting a code ------------------------------------------------------------------------

function chosenCardId() {
  const value = cardSelect.value;
  return value ? Number(value) : (shown ? shown.card_id : null);
}

async function newCode(cardId = chosenCardId()) {
  if (fetching) return fetching;
  fetching = (async () => {
    clearTimeout(refreshTimer);
    try {
      const { data } = await api("POST", "/pay/code", { card_id: cardId });
      const code = { ...data, expires_local: Date.now() + data.expires_in_s * 1000 };
      remember(KEPT, code);
      say(problem, "");
      showOffline(null);
      show(code);
      schedule(code.expires_local - REFRESH_BEFORE_MS - Date.now());
    } catch (err) {
      failed(err);
    } finally {
      fetching = null;
    }
  })();
  return fetching;
}

function schedule(ms) {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => newCode(), Math.max(0, ms));
}

function failed(err) {
  if (err instanceof OfflineError) {
    offline();
    return;
  }
  if (err instanceof ApiError && err.status === 401) {
    location.assign("/login?next=/pay");
    return;
  }
  if (err instanceof ApiError && err.code === "card_not_found") {
    hideCode();
    say(problem, t("pay.code.no_primary"));
    return;
  }
  if (err instanceof ApiError && (err.code === "card_frozen" || err.code === "card_inactive")) {
    hideCode();
    say(problem, t("pay.code.card_frozen"));
    return;
  }
  // The server could not make one now: keep what is shown while it is good, and try again.
  say(problem, t("pay.code.failed"));
  if (!shown || shown.expires_local <= Date.now()) hideCode();
  schedule(RETRY_AFTER_FAILURE_MS);
}

// -- offline -------------------------------------------------------------------------------

/** Show the remembered code while it lasts; then say that offline there is no new one. */
function offline() {
  const kept = recall(KEPT);
  const code = kept && kept.value;
  if (code && code.expires_local > Date.now()) {
    if (!shown || shown.code !== code.code) show(code);
    showOffline(kept.saved_at);
    say(problem, "");
    say(notice, t("pay.code.offline_showing", { time: timeFormat.format(new Date(code.expires_local)) }));
    // Try the server again when this code runs out (or sooner, when the browser is online).
    schedule(code.expires_local - Date.now());
  } else {
    hideCode();
    showOffline(null);
    say(notice, "");
    say(problem, t("pay.code.offline_expired"));
    codes.setAttribute("aria-busy", "false");
  }
}

window.addEventListener("online", () => newCode());
window.addEventListener("offline", () => {
  if (shown) say(notice, t("pay.code.offline_showing", { time: timeFormat.format(new Date(shown.expires_local)) }));
});

// -- the countdown (for the eye: aria-hidden) ----------------------------------------------

function tick() {
  if (!shown) return;
  const left = shown.expires_local - Date.now();
  if (left <= 0) {
    // Expired with no new code yet (offline, or the server failed): never show a dead code.
    hideCode();
    newCode();
    return;
  }
  const untilNew = Math.max(0, Math.ceil((left - REFRESH_BEFORE_MS) / 1000));
  countdown.textContent = t("pay.code.countdown", { seconds: untilNew });
  countdown.hidden = false;
}
setInterval(tick, 1000);

// -- the cards to pay with -----------------------------------------------------------------

function cardName(card) {
  return t(card.kind === "physical" ? "card.physical" : "card.digital", { last4: card.last4 });
}

async function readCards() {
  try {
    const { data: me } = await api("GET", "/v1/me");
    const usable = me.cards.filter((c) => c.status === "active");
    const options = usable.map((card) => {
      const option = document.createElement("option");
      option.value = String(card.id);
      option.textContent = cardName(card) + (card.primary ? ` · ${t("card.primary")}` : "");
      return option;
    });
    cardSelect.replaceChildren(...options);
    el("card-choice").hidden = usable.length < 2;
    if (shown) {
      cardSelect.value = String(shown.card_id);
      const card = me.cards.find((c) => c.id === shown.card_id);
      if (card) showBalance(card.balance);
    }
  } catch { /* offline: the code shows without the choice */ }
}

cardSelect.addEventListener("change", () => {
  say(notice, "");
  newCode(Number(cardSelect.value));
});
el("new-code").addEventListener("click", () => {
  say(notice, "");
  newCode();
});

// -- live: a sale with the code, a balance that moves --------------------------------------

live((type, envelope) => {
  const event = envelope && envelope.data; // the payload, inside {id, type, created_at, data}
  if (type === "open") {
    readCards();
    return;
  }
  if (!event || !shown || event.card_id !== shown.card_id) return;
  if (type === "card.balance_changed") {
    showBalance(event.balance);
    remember(KEPT, shown);
  } else if (type === "sale.completed" && event.total) {
    // The code may be the one just scanned: show a fresh one at once.
    if (event.card_balance) showBalance(event.card_balance);
    const text = t("pay.code.paid", { amount: money(event.total) });
    say(notice, text);
    announce(text);
    newCode(shown.card_id);
  }
});

// -- keep the screen on --------------------------------------------------------------------

let wakeLock = null;
async function keepAwake() {
  if (document.visibilityState !== "visible") return;
  try {
    wakeLock = await navigator.wakeLock.request("screen");
    el("wake-hint").hidden = true;
  } catch {
    // No Wake Lock here, or refused (battery saver): the shopper keeps the screen on.
    el("wake-hint").hidden = false;
  }
}

// Full screen: the code alone on a white screen, for the scanner.
const fullScreen = el("full-screen");
if (document.fullscreenEnabled) {
  fullScreen.hidden = false;
  fullScreen.addEventListener("click", () => {
    if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
    else document.querySelector(".paycode").requestFullscreen().catch(() => {});
  });
  document.addEventListener("fullscreenchange", () => {
    fullScreen.textContent = t(document.fullscreenElement ? "pay.code.leave_full_screen" : "pay.code.full_screen");
  });
}
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState !== "visible") return;
  if (!wakeLock || wakeLock.released) keepAwake();
  // Timers sleep in a hidden tab: catch up at once.
  if (!shown || shown.expires_local - Date.now() <= REFRESH_BEFORE_MS) newCode();
});

// -- start ---------------------------------------------------------------------------------

newCode(null);
readCards();
keepAwake();
