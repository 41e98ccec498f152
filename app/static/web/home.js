// Home: the shopper's cards with their balances and Stars, live. A sale at a till or a top-up
// on another device arrives on the event stream and the page reads /v1/me again. Offline, it
// shows what it last knew, marked with when that was.
import { api, t, money, number, when, live, announce, remember, recall, showOffline, OfflineError } from "/static/web/core.js";

const list = document.getElementById("cards");
const template = document.getElementById("card-template");

function cardName(card) {
  return t(card.kind === "physical" ? "card.physical" : "card.digital", { last4: card.last4 });
}

function render(me) {
  document.getElementById("greeting").textContent = t("home.greeting", { name: me.name.split(" ")[0] || me.name });
  document.getElementById("stars-count").textContent = number(me.stars);
  document.getElementById("tier").textContent = t(`tier.${me.tier}`);
  const items = me.cards.map((card) => {
    const item = template.content.firstElementChild.cloneNode(true);
    item.dataset.cardId = card.id;
    const field = (name) => item.querySelector(`[data-field="${name}"]`);
    field("link").href = `/cards/${card.id}`;
    field("name").textContent = cardName(card) + (card.primary ? ` · ${t("card.primary")}` : "");
    field("balance").textContent = money(card.balance);
    field("status").textContent = card.status === "active" ? "" : t(`card.status.${card.status}`);
    field("held").textContent = card.held.amount > 0 ? t("card.held", { amount: money(card.held) }) : "";
    const topUp = field("topup");
    if (card.status === "active") {
      topUp.href = `/cards/${card.id}/top-up`;
      topUp.setAttribute("aria-label", `${t("home.top_up")}: ${cardName(card)}`);
    } else topUp.remove();
    return item;
  });
  list.replaceChildren(...items);
  list.setAttribute("aria-busy", "false");
}

let reading = null;
async function refresh() {
  if (reading) return reading;
  reading = (async () => {
    try {
      const { data } = await api("GET", "/v1/me");
      remember("me", data);
      render(data);
      showOffline(null);
    } catch (err) {
      if (err instanceof OfflineError) {
        const kept = recall("me");
        if (kept) render(kept.value);
        showOffline(kept ? kept.saved_at : null);
      } else if (err.status === 401) location.assign("/login");
    } finally {
      reading = null;
    }
  })();
  return reading;
}

// Saved for later: products the shopper saved at a kiosk in store. A save at a kiosk arrives
// as "saved.added" and the list is read again.
const savedList = document.getElementById("saved");
const savedTemplate = document.getElementById("saved-template");

function renderSaved(saved) {
  const items = saved.items.map(({ product, store, saved_at }) => {
    const item = savedTemplate.content.firstElementChild.cloneNode(true);
    item.dataset.productId = product.id;
    const field = (name) => item.querySelector(`[data-field="${name}"]`);
    field("link").href = `/p/${encodeURIComponent(product.sku)}`;
    field("name").textContent = product.name;
    field("price").textContent = product.active ? money(product.price) : t("saved.not_sold");
    field("where").textContent = t("saved.where", { store: store.name, when: when(saved_at) });
    const remove = field("remove");
    remove.setAttribute("aria-label", t("saved.remove_label", { name: product.name }));
    remove.addEventListener("click", () => unsave(product, remove));
    return item;
  });
  savedList.replaceChildren(...items);
  savedList.setAttribute("aria-busy", "false");
  document.getElementById("saved-empty").hidden = items.length > 0;
}

async function unsave(product, button) {
  button.disabled = true;
  try {
    await api("DELETE", `/v1/me/saved/${product.id}`);
    announce(t("saved.removed", { name: product.name }));
  } catch (err) {
    if (!(err.status === 404)) {
      button.disabled = false;
      announce(t(err instanceof OfflineError ? "error.offline" : "error.unexpected"));
      return;
    }
  }
  await refreshSaved();
}

async function refreshSaved() {
  try {
    const { data } = await api("GET", "/v1/me/saved");
    remember("saved", data);
    renderSaved(data);
  } catch (err) {
    if (err instanceof OfflineError) {
      const held = recall("saved");
      if (held) renderSaved(held.value);
    }
  }
}

const kept = recall("me");
if (kept) render(kept.value);
refresh();
const keptSaved = recall("saved");
if (keptSaved) renderSaved(keptSaved.value);
refreshSaved();

let again = false;
live(async (type) => {
  if (type === "open" || type === "saved.added" || type === "saved.removed") refreshSaved();
  if (type === "saved.added" || type === "saved.removed") return;
  // Events may come in bursts (a sale moves the balance and the Stars): read once more after
  // a read in flight, so the last event is always reflected.
  if (reading) { again = true; return; }
  await refresh();
  while (again) { again = false; await refresh(); }
});
window.addEventListener("online", () => { refresh(); refreshSaved(); });
