// Product page: the price the server worked out with the one pricing function, formatted in
// the shopper's language (money is always formatted in the browser, by Intl).
import { money, t } from "/static/web/core.js";

const prices = JSON.parse(document.getElementById("product-prices").textContent);
const price = document.getElementById("price");
price.textContent = money(prices.price);
price.setAttribute("aria-busy", "false");
if (prices.list_price.amount > prices.price.amount) {
  const was = document.getElementById("list-price");
  was.textContent = money(prices.list_price);
  was.setAttribute("aria-label", t("product.list_price", { amount: money(prices.list_price) }));
  was.hidden = false;
}
