// Adding a physical card: its number and security code (printed on it) go to the API, which
// says the same thing for every wrong combination. Then the card's own page, with its balance.
import { api, t, form, ApiError } from "/static/web/core.js";

const digits = (text) => String(text || "").replace(/[\s-]/g, "");

form(document.getElementById("add-form"), async (values) => {
  const number = digits(values.number);
  const securityCode = digits(values.security_code);
  const fields = {};
  if (!/^\d{16}$/.test(number)) fields.number = [t("cards.add_number_invalid")];
  if (!/^\d{8}$/.test(securityCode)) fields.security_code = [t("cards.add_code_invalid")];
  if (Object.keys(fields).length) {
    throw new ApiError(422, { code: "validation_error", details: { fields } });
  }
  const { data } = await api("POST", "/v1/me/cards", { number, security_code: securityCode });
  location.assign(`/cards/${data.id}?added=1`);
});
