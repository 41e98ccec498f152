// Logging in and signing up: the answer sets the session cookie; then on to the home page.
import { api, form, forget } from "/static/web/core.js";

// A login page is never shown to a signed-in shopper: what this browser kept is another's.
forget();

const login = document.getElementById("login-form");
if (login) {
  form(login, async (v) => {
    const { data } = await api("POST", "/session", { email: v.email, password: v.password, next: v.next || "/" });
    location.assign(data.redirect);
  });
}

const signup = document.getElementById("signup-form");
if (signup) {
  form(signup, async (v) => {
    const { data } = await api("POST", "/signup", { name: v.name, email: v.email, password: v.password });
    location.assign(data.redirect);
  });
}
