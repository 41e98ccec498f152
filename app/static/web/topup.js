// Top up a card from a bank card (the sandbox gateway's test cards). One attempt keeps one
// Idempotency-Key until it has an outcome: a double click, a retry after a lost connection,
// or the page asking again while the bank is late all send the same key, so the card is
// charged and credited once. A pending answer (202) is asked again with that key every
// couple of seconds, and sooner when the event stream says the top-up settled.
import { api, t, money, live, parseAmount, newKey, ApiError, OfflineError } from "/static/web/core.js";

const data = JSON.parse(document.getElementById("topup-data").textContent);
const path = `/v1/cards/${data.card_id}/top-ups`;
const formEl = document.getElementById("topup-form");
const alertEl = formEl.querySelector("[role=alert]");
const submitButton = document.getElementById("topup-submit");
const custom = document.getElementById("custom");
const customError = document.getElementById("custom-error");
const outcome = document.getElementById("outcome");
const outcomeText = document.getElementById("outcome-text");
const balanceEl = document.getElementById("card-balance");

const RETRY_EVERY_MS = 2000;
const GIVE_UP_WAITING_AFTER = 30; // tries: about a minute

const digits = new Intl.NumberFormat("en", { style: "currency", currency: data.currency }).resolvedOptions().maximumFractionDigits;
const cash = (amount) => money({ amount, currency: data.currency });

let balance = null;
function showBalance(m) {
  balance = m;
  balanceEl.textContent = money(m);
}

// -- the card ----------------------------------------------------------------------------

function cardName(card) {
  return t(card.kind === "physical" ? "card.physical" : "card.digital", { last4: card.last4 });
}

async function readCard() {
  const summary = document.getElementById("card-summary");
  try {
    const { data: card } = await api("GET", `/v1/cards/${data.card_id}`);
    document.getElementById("card-name").textContent = cardName(card);
    showBalance(card.balance);
    if (card.status !== "active") cardProblem(t("pay.topup.card_frozen"));
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) location.assign(`/login?next=${encodeURIComponent(location.pathname)}`);
    else if (err instanceof ApiError && err.code === "card_not_found") cardProblem(t("pay.topup.card_not_found"));
  } finally {
    summary.setAttribute("aria-busy", "false");
  }
}

function cardProblem(text) {
  const problem = document.getElementById("card-problem");
  problem.textContent = text;
  problem.hidden = false;
  formEl.hidden = true;
}

// -- the amount --------------------------------------------------------------------------

for (const span of document.querySelectorAll("#picks [data-minor]")) span.textContent = cash(Number(span.dataset.minor));
document.getElementById("amount-limits").textContent = t("pay.topup.limits", { minimum: cash(data.minimum), maximum: cash(data.maximum) });

function chosenPick() {
  return formEl.querySelector("input[name=pick]:checked")?.value ?? "other";
}

function syncAmountFields() {
  const other = chosenPick() === "other";
  document.getElementById("custom-field").hidden = !other;
  const amount = other ? parseAmount(custom.value, digits) : Number(chosenPick());
  submitButton.textContent = amount ? t("pay.topup.submit_amount", { amount: cash(amount) }) : t("pay.topup.submit");
}
formEl.addEventListener("change", syncAmountFields);
custom.addEventListener("input", syncAmountFields);
syncAmountFields();

/** The amount chosen in minor units, or throws a field error. */
function chosenAmount() {
  const pick = chosenPick();
  if (pick !== "other") return Number(pick);
  const text = custom.value.trim();
  const amount = text ? parseAmount(text, digits) : null;
  let problem = null;
  if (!text) problem = t("pay.topup.amount_missing");
  else if (amount === null) problem = t("pay.topup.amount_invalid");
  else if (amount < data.minimum || amount > data.maximum) problem = rangeText();
  if (problem) throw new FieldProblem(problem);
  return amount;
}

function rangeText() {
  return t("pay.topup.amount_range", { minimum: cash(data.minimum), maximum: cash(data.maximum) });
}

class FieldProblem extends Error {}

// -- what the page says ------------------------------------------------------------------

function clearMessages() {
  alertEl.hidden = true;
  alertEl.textContent = "";
  customError.textContent = "";
  custom.removeAttribute("aria-invalid");
}

function sayAlert(text, { field = false } = {}) {
  outcome.hidden = true;
  outcome.className = "outcome";
  alertEl.textContent = field ? t("error.validation_error") : text;
  alertEl.hidden = false;
  if (field) {
    customError.textContent = text;
    custom.setAttribute("aria-invalid", "true");
    custom.focus();
    return;
  }
  alertEl.setAttribute("tabindex", "-1");
  alertEl.focus();
}

function sayOutcome(kind, text, { focus = true } = {}) {
  outcome.className = `outcome outcome-${kind}`;
  outcome.dataset.state = kind;
  outcomeText.textContent = text;
  outcome.hidden = false;
  outcome.setAttribute("aria-busy", kind === "pending" ? "true" : "false");
  if (focus) outcome.focus();
}

// -- one attempt, one key ----------------------------------------------------------------

// The attempt being made: its request and its key, kept until it has an outcome, so that
// submitting the same request again (a double click, a retry after the network dropped)
// replays it instead of charging again.
let attempt = null;
let wake = null; // resolves the wait between two asks of a pending top-up
let waitingFor = null; // the id of a top-up the bank has not answered yet

function sleep(ms) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    wake = () => { clearTimeout(timer); resolve(); };
  });
}

async function topUp(body) {
  const signature = JSON.stringify(body);
  if (!attempt || attempt.signature !== signature) attempt = { signature, key: newKey() };
  const { key } = attempt;
  const amountText = cash(body.amount.amount);
  for (let tries = 0; ; tries += 1) {
    let answer;
    try {
      answer = await api("POST", path, body, { key });
    } catch (err) {
      if (err instanceof ApiError && err.code === "request_in_progress" && tries < GIVE_UP_WAITING_AFTER) {
        await sleep(RETRY_EVERY_MS); // the same request is being carried out: ask for its answer
        continue;
      }
      // A refusal ends the attempt; with no answer, or an unknown outcome (5xx), the next
      // try must be the same request with the same key.
      if (err instanceof ApiError && err.status < 500 && err.code !== "request_in_progress") attempt = null;
      waitingFor = null;
      throw err;
    }
    const topUpBody = answer.data;
    showBalance(topUpBody.card_balance);
    if (answer.status === 201) {
      attempt = null;
      waitingFor = null;
      // Read out by the status region (or on focus, when it is shown for the first time).
      sayOutcome("done", t("pay.topup.done", { amount: money(topUpBody.amount), balance: money(topUpBody.card_balance) }), { focus: tries === 0 });
      return;
    }
    // 202: the bank is late. Ask again with the same key until it settles.
    waitingFor = topUpBody.id;
    if (tries === 0) sayOutcome("pending", t("pay.topup.pending", { amount: amountText }));
    if (tries >= GIVE_UP_WAITING_AFTER) {
      sayOutcome("pending", t("pay.topup.still_pending", { amount: amountText }), { focus: false });
      return; // the stream's top_up.settled shows the end (see below)
    }
    await sleep(RETRY_EVERY_MS);
  }
}

function explain(err) {
  if (err instanceof FieldProblem) return sayAlert(err.message, { field: true });
  if (err instanceof OfflineError) return sayAlert(t("pay.topup.offline"));
  if (!(err instanceof ApiError)) return sayAlert(t("error.unexpected"));
  const now = balance ? money(balance) : "";
  switch (err.code) {
    case "payment_declined":
      return sayAlert(t(err.details.decline_code === "card_declined" ? "pay.topup.declined" : "pay.topup.declined_invalid", { balance: now }));
    case "request_in_progress":
      return sayAlert(t("pay.topup.in_progress"));
    case "top_up_not_loaded":
      return sayAlert(t("pay.topup.not_loaded", { balance: now }));
    case "amount_out_of_range":
      return sayAlert(rangeText(), { field: chosenPick() === "other" });
    case "balance_limit_exceeded":
      return sayAlert(t("pay.topup.card_too_full"));
    case "card_not_found":
      return cardProblem(t("pay.topup.card_not_found"));
    case "card_frozen":
    case "card_inactive":
      return cardProblem(t("pay.topup.card_frozen"));
    case "unauthenticated":
      location.assign(`/login?next=${encodeURIComponent(location.pathname)}`);
      return undefined;
    default: {
      const known = `error.${err.code}`;
      const text = t(known, err.details);
      return sayAlert(text === known ? err.message : text);
    }
  }
}

let busy = false;
formEl.addEventListener("submit", async (e) => {
  e.preventDefault();
  if (busy) return; // the first click's request is on its way (and carries the key)
  busy = true;
  submitButton.disabled = true;
  clearMessages();
  try {
    const amount = chosenAmount();
    const body = { amount: { amount, currency: data.currency }, payment_token: formEl.elements.payment_token.value };
    await topUp(body);
  } catch (err) {
    explain(err);
    if (!(err instanceof FieldProblem) && !(err instanceof OfflineError)) readCard();
  } finally {
    busy = false;
    submitButton.disabled = false;
  }
});

// -- live: the balance, and a late bank's answer -----------------------------------------

live((type, envelope) => {
  const event = envelope && envelope.data; // the payload, inside {id, type, created_at, data}
  if (type === "open") {
    if (!busy) readCard();
    return;
  }
  if (!event || event.card_id !== data.card_id) return;
  if (type === "card.balance_changed") showBalance(event.balance);
  if (type === "top_up.settled" && event.top_up_id === waitingFor) {
    if (busy && wake) wake(); // ask again now: the answer is there
    else settledWhileNotAsking(event);
  }
});

// The page stopped asking (the bank took more than a minute) and the top-up settled since.
function settledWhileNotAsking(event) {
  waitingFor = null;
  attempt = null;
  if (event.status === "succeeded") {
    readCard().then(() => {
      sayOutcome("done", t("pay.topup.done", { amount: money(event.amount), balance: balance ? money(balance) : "" }), { focus: false });
    });
  } else {
    sayAlert(t("pay.topup.declined", { balance: balance ? money(balance) : "" }));
  }
}

readCard();
