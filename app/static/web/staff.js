// The staff pages: logging in as staff (the answer sets the session cookie) and out.
import { api, form, forget } from "/static/web/core.js";

const login = document.getElementById("staff-login-form");
if (login) {
  // What this browser kept for a shopper is not for staff eyes.
  forget();
  form(login, async (v) => {
    const { data } = await api("POST", "/staff/session", { email: v.email, password: v.password, next: v.next || "/staff/analytics" });
    location.assign(data.redirect);
  });
}

const logout = document.getElementById("staff-logout");
if (logout) {
  logout.addEventListener("click", async () => {
    logout.disabled = true;
    try {
      const { data } = await api("POST", "/staff/logout");
      location.assign(data.redirect);
    } catch {
      logout.disabled = false;
    }
  });
}
