// One card: its balance (live), its history a page at a time, moving money to another of the
// shopper's cards, auto-reload, and reporting it lost. Every change goes through the API, and
// the event stream says when to read again (a sale at a till, a top-up on another device).
import {
  api, t, money, when, live, announce, form, showError, parseAmount, newKey,
  ApiError, OfflineError,
} from "/static/web/core.js";

const pageData = JSON.parse(document.getElementById("card-page").textContent);
const cardId = pageData.card_id;
const PAGE_SIZE = 10;
const $ = (id) => document.getElementById(id);

let card = null; // the card as last read
let currency = pageData.currency;

function cardName(c) {
  return t(c.kind === "physical" ? "card.physical" : "card.digital", { last4: c.last4 });
}

/** A form's error made of the page's own checks, shown like the API's (core.js showError). */
function fieldError(fields) {
  return new ApiError(422, { code: "validation_error", details: { fields } });
}

/** The API names a field as its body does; the form may call it otherwise (ids are unique). */
function renamed(err, names) {
  if (!(err instanceof ApiError) || !err.details || !err.details.fields) return err;
  const fields = {};
  for (const [name, problems] of Object.entries(err.details.fields)) fields[names[name] || name] = problems;
  err.details = { ...err.details, fields };
  return err;
}

/** Limits the API gives in minor units, shown as money in the error's text. */
function withMoney(err) {
  if (err instanceof ApiError && err.details) {
    const details = { ...err.details };
    for (const k of ["minimum", "maximum", "available", "limit", "max_balance"]) {
      if (typeof details[k] === "number") details[k] = money({ amount: details[k], currency });
    }
    err.details = details;
  }
  return err;
}

// --- the card and its balance ---------------------------------------------------------

function renderCard(c) {
  card = c;
  currency = c.balance.currency;
  $("card-name").textContent = cardName(c) + (c.primary ? ` · ${t("card.primary")}` : "");
  document.title = `${cardName(c)} · Omnicard`;
  const balance = money(c.balance);
  // Announced when it changes (aria-live), so written only then.
  if ($("card-balance").textContent !== balance) $("card-balance").textContent = balance;
  $("card-status").textContent = t(`cards.status.${c.status}`);
  $("card-held").textContent = c.held.amount > 0 ? t("card.held", { amount: money(c.held) }) : "";
  const active = c.status === "active";
  $("card-actions").hidden = !active;
  $("card-top-up").hidden = !active;
  const replaced = $("card-replaced");
  if (c.replaced_by_id) {
    const link = document.createElement("a");
    link.href = `/cards/${c.replaced_by_id}`;
    link.textContent = t("cards.replaced_link");
    replaced.replaceChildren(document.createTextNode(`${t("cards.replaced")} `), link);
    replaced.hidden = false;
  } else replaced.hidden = true;
  $("lost-confirm-text").textContent = t("cards.lost_confirm_text", { name: cardName(c), amount: money(c.balance) });
}

function renderOtherCards(me) {
  const others = me.cards.filter((c) => c.id !== cardId && c.status === "active");
  const select = $("to_card_id");
  const chosen = select.value;
  select.replaceChildren(...others.map((c) => {
    const option = document.createElement("option");
    option.value = String(c.id);
    option.textContent = `${cardName(c)} (${money(c.balance)})`;
    return option;
  }));
  if (others.some((c) => String(c.id) === chosen)) select.value = chosen;
  $("transfer-form").hidden = others.length === 0;
  $("transfer-none").hidden = others.length > 0;
}

async function readCard() {
  const [{ data: c }, { data: me }] = await Promise.all([
    api("GET", `/v1/cards/${cardId}`),
    api("GET", "/v1/me"),
  ]);
  renderCard(c);
  renderOtherCards(me);
  $("card-load-error").hidden = true;
}

// --- history ---------------------------------------------------------------------------

const history = $("history");
const more = $("history-more");
let nextCursor = null;

const CHANNELS = new Set(["app", "web", "pos", "kiosk", "admin", "system"]);

function kindText(item) {
  const direction = item.amount.amount < 0 ? "out" : "in";
  const exact = `cards.kind.${item.kind}.${direction}`;
  if (t(exact) !== exact) return t(exact);
  const key = `cards.kind.${item.kind}`;
  return t(key) !== key ? t(key) : t("cards.kind.other");
}

function historyItem(item) {
  const li = document.createElement("li");
  li.className = "entry";
  li.dataset.id = String(item.id);
  li.tabIndex = -1;
  const out = item.amount.amount < 0;
  const what = document.createElement("span");
  what.className = "entry-kind";
  what.textContent = kindText(item);
  const amount = document.createElement("span");
  amount.className = `entry-amount ${out ? "out" : "in"}`;
  const figure = money({ amount: Math.abs(item.amount.amount), currency: item.amount.currency });
  amount.textContent = t(out ? "cards.amount_out" : "cards.amount_in", { amount: figure });
  const details = document.createElement("span");
  details.className = "entry-details";
  const parts = [];
  if (item.channel) parts.push(CHANNELS.has(item.channel) ? t(`cards.channel.${item.channel}`) : item.channel);
  if (item.store) parts.push(item.store.name);
  const time = document.createElement("time");
  time.dateTime = item.created_at;
  time.textContent = when(item.created_at);
  details.append(parts.join(" · ") + (parts.length ? " · " : ""), time);
  li.append(what, amount, details);
  return li;
}

function showHistoryError(err) {
  const box = $("history-error");
  box.textContent = err instanceof OfflineError ? t("error.offline") : t("cards.history_error");
  box.hidden = false;
}

async function readPage(cursor) {
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (cursor) query.set("cursor", cursor);
  const { data } = await api("GET", `/v1/cards/${cardId}/activity?${query}`);
  return data;
}

function settleHistory() {
  history.setAttribute("aria-busy", "false");
  $("history-empty").hidden = history.children.length > 0;
  more.parentElement.hidden = nextCursor === null;
}

/** The newest page: what is new is added on top; after a long gap the list starts over. */
async function readNewest() {
  const page = await readPage(null);
  const shown = history.firstElementChild ? Number(history.firstElementChild.dataset.id) : null;
  const fresh = shown === null ? page.items : page.items.filter((item) => item.id > shown);
  if (shown === null || (fresh.length === page.items.length && page.next_cursor !== null)) {
    history.replaceChildren(...page.items.map(historyItem));
    nextCursor = page.next_cursor;
  } else if (fresh.length) {
    history.prepend(...fresh.map(historyItem));
  }
  $("history-error").hidden = true;
  settleHistory();
}

let loadingMore = false; // the button stays enabled (and focused) while a page loads
more.addEventListener("click", async () => {
  if (nextCursor === null || loadingMore) return;
  loadingMore = true;
  more.setAttribute("aria-busy", "true");
  try {
    const page = await readPage(nextCursor);
    const shownIds = new Set(Array.from(history.children, (li) => li.dataset.id));
    const items = page.items.filter((item) => !shownIds.has(String(item.id))).map(historyItem);
    history.append(...items);
    nextCursor = page.next_cursor;
    $("history-error").hidden = true;
    settleHistory();
    announce(t("cards.history_more_shown", { count: items.length }));
    if (items.length && nextCursor === null) items[0].focus();
  } catch (err) {
    showHistoryError(err);
  } finally {
    loadingMore = false;
    more.removeAttribute("aria-busy");
  }
});

// --- reading it all, and again on every change ------------------------------------------

let reading = null;
let again = false;
async function refresh() {
  if (reading) { again = true; return reading; }
  reading = (async () => {
    do {
      again = false;
      try {
        await Promise.all([readCard(), readNewest()]);
      } catch (err) {
        if (err instanceof ApiError && err.status === 401) { location.assign(`/login?next=${encodeURIComponent(location.pathname)}`); return; }
        const box = $("card-load-error");
        box.textContent = err instanceof OfflineError ? t("error.offline") : t("cards.load_error");
        box.hidden = false;
        if (err instanceof ApiError || err instanceof OfflineError) history.setAttribute("aria-busy", "false");
      }
    } while (again);
  })();
  try { await reading; } finally { reading = null; }
}

// --- moving money to another card -----------------------------------------------------

const transferForm = $("transfer-form");
let transferKey = newKey(); // one action, however often it is retried
transferForm.addEventListener("input", () => { transferKey = newKey(); });
form(transferForm, async (values) => {
  const amount = parseAmount(values.transfer_amount);
  if (amount === null || amount <= 0) throw fieldError({ transfer_amount: [t("cards.amount_invalid")] });
  const target = Number(values.to_card_id);
  let data;
  try {
    ({ data } = await api("POST", `/v1/cards/${cardId}/transfers`, {
      to_card_id: target, amount: { amount, currency },
    }, { key: transferKey }));
  } catch (err) {
    throw withMoney(renamed(err, { amount: "transfer_amount" }));
  }
  transferKey = newKey();
  transferForm.reset();
  renderCard(data.from_card);
  announce(t("cards.transfer_done", { amount: money(data.amount), name: cardName(data.to_card) }));
  await refresh();
});

// --- auto-reload ----------------------------------------------------------------------

const reloadForm = $("reload-form");
const reloadOff = $("reload-off");

function reloadHint() {
  $("reload_amount-hint").textContent = t("cards.reload_amount_hint", {
    minimum: money({ amount: pageData.top_up_min, currency }),
    maximum: money({ amount: pageData.top_up_max, currency }),
  });
}

function renderReload(rule) {
  reloadHint();
  const state = $("reload-state");
  if (rule && rule.enabled) {
    state.textContent = t("cards.reload_on", { threshold: money(rule.threshold), amount: money(rule.amount) });
    reloadForm.elements.threshold.value = (rule.threshold.amount / 100).toFixed(2);
    reloadForm.elements.reload_amount.value = (rule.amount.amount / 100).toFixed(2);
  } else {
    state.textContent = t("cards.reload_is_off");
  }
  reloadOff.hidden = !rule;
}

async function readReload() {
  try {
    const { data } = await api("GET", `/v1/cards/${cardId}/auto-reload`);
    renderReload(data);
  } catch (err) {
    if (err instanceof ApiError && err.code === "auto_reload_not_set") renderReload(null);
    else $("reload-state").textContent = t("cards.reload_unknown");
  }
}

form(reloadForm, async (values) => {
  const threshold = parseAmount(values.threshold);
  const amount = parseAmount(values.reload_amount);
  const problems = {};
  if (threshold === null) problems.threshold = [t("cards.amount_invalid")];
  if (amount === null || amount <= 0) problems.reload_amount = [t("cards.amount_invalid")];
  if (Object.keys(problems).length) throw fieldError(problems);
  let data;
  try {
    ({ data } = await api("PUT", `/v1/cards/${cardId}/auto-reload`, {
      threshold: { amount: threshold, currency },
      amount: { amount, currency },
      payment_token: values.payment_token,
    }));
  } catch (err) {
    if (err instanceof ApiError && err.code === "amount_out_of_range") {
      err.details = { ...err.details, fields: { reload_amount: [t("cards.reload_amount_range", withMoney(err).details)] } };
    }
    throw withMoney(renamed(err, { amount: "reload_amount" }));
  }
  renderReload(data);
  announce(t("cards.reload_saved"));
});

reloadOff.addEventListener("click", async () => {
  reloadOff.disabled = true;
  try {
    await api("DELETE", `/v1/cards/${cardId}/auto-reload`);
    reloadForm.reset();
    renderReload(null);
    announce(t("cards.reload_turned_off"));
    $("reload-state").focus();
  } catch (err) {
    showError(reloadForm, err);
  } finally {
    reloadOff.disabled = false;
  }
});

// --- reporting the card lost ----------------------------------------------------------

const lostStart = $("lost-start");
const confirmBox = $("lost-confirm");
const lostYes = $("lost-yes");
let lostKey = null;

function openConfirm() {
  lostKey = newKey();
  confirmBox.hidden = false;
  lostStart.setAttribute("aria-expanded", "true");
  const alert = confirmBox.querySelector("[role=alert]");
  alert.hidden = true;
  $("lost-confirm-title").focus();
}

function closeConfirm() {
  confirmBox.hidden = true;
  lostStart.setAttribute("aria-expanded", "false");
  lostStart.focus();
}

lostStart.addEventListener("click", () => (confirmBox.hidden ? openConfirm() : closeConfirm()));
$("lost-no").addEventListener("click", closeConfirm);
confirmBox.addEventListener("keydown", (e) => {
  if (e.key === "Escape") { e.preventDefault(); closeConfirm(); }
});
lostYes.addEventListener("click", async () => {
  lostYes.disabled = true;
  try {
    const { data } = await api("POST", `/v1/cards/${cardId}/report-lost`, undefined, { key: lostKey });
    const next = new URLSearchParams({ replaces: String(data.lost_card.last4) });
    location.assign(`/cards/${data.replacement_card.id}?${next}`);
  } catch (err) {
    showError(confirmBox, err);
    lostYes.disabled = false;
  }
});

// --- arriving here after adding a card or reporting one lost ---------------------------

function arrivalNotice() {
  const params = new URLSearchParams(location.search);
  const notice = $("card-notice");
  const lost = params.get("replaces");
  if (lost && /^\d{4}$/.test(lost)) notice.textContent = t("cards.replacement_notice", { last4: lost });
  else if (params.has("added")) notice.textContent = t("cards.added_notice");
  else return;
  notice.hidden = false;
}

arrivalNotice();
refresh();
readReload();
live((type) => {
  if (type === "open" || type.startsWith("card.") || type.startsWith("top_up.") || type.startsWith("sale.") || type.startsWith("refund.")) refresh();
});
window.addEventListener("online", refresh);
