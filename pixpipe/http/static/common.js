// What every panel of the dashboard uses: DOM helpers, the API key, formatting, copying.

export const $ = (sel, root = document) => root.querySelector(sel);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

// ---- the API key: from #key=… (what `pixpipe up` prints), else remembered, else typed in ----
export function rememberedKey() {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("key");
  if (fromHash) {
    localStorage.setItem("pixpipe-key", fromHash);
    history.replaceState(null, "", location.pathname);
  }
  return localStorage.getItem("pixpipe-key") || "";
}

export const apiKey = () => $("#api-key").value.trim();

export function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** GET a JSON document with the API key: `{ok, status, body}` (body null unless ok). */
export async function getJSON(path) {
  try {
    const res = await fetch(path, { headers: authHeaders() });
    return { ok: res.ok, status: res.status, body: res.ok ? await res.json() : null };
  } catch {
    return { ok: false, status: 0, body: null };
  }
}

// ---- formatting ----
export const enc = (key) => key.split("/").map(encodeURIComponent).join("/");

export const fmtBytes = (n) =>
  n >= 1048576 ? `${(n / 1048576).toFixed(1)} MB` : n >= 1024 ? `${Math.round(n / 1024)} kB` : `${n} B`;

export function fmtNumber(n, digits = 2) {
  if (n === null || n === undefined) return "–";
  if (n >= 100) return String(Math.round(n));
  if (n >= 10) return n.toFixed(1);
  return String(Number(n.toFixed(digits)));
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 0.1) return "< 0.1 s";
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  if (seconds < 90) return `${Math.round(seconds)} s`;
  const minutes = Math.round(seconds / 60);
  return minutes < 90 ? `${minutes} min` : `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

// ---- a bar of parts, e.g. done (green) and failed (red) out of a total ----
export function bar(parts, total, label) {
  const box = el("div", { class: "bar", role: "img", "aria-label": label, title: label });
  const whole = Math.max(total, 1);
  for (const [value, cls] of parts) {
    const width = Math.min(100, (100 * value) / whole);
    box.append(el("span", { class: cls, style: `width:${width.toFixed(2)}%`, "data-value": value }));
  }
  return box;
}

// ---- copying: the Clipboard API where the page may use it (https, localhost), else the
// older selection copy, which works on a plain-http LAN address too ----
async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch { /* refused: try the other way */ }
  }
  const area = el("textarea", { readonly: "", style: "position:fixed;opacity:0" });
  area.value = text;
  document.body.append(area);
  area.select();
  const done = document.execCommand("copy");
  area.remove();
  return done;
}

export function copyButton(text, label = "Copy") {
  const button = el("button", { class: "copy", type: "button", title: "Copy to the clipboard" }, label);
  button.addEventListener("click", async () => {
    const ok = await copyText(text);
    button.textContent = ok ? "Copied" : "Copy failed";
    button.classList.toggle("copied", ok);
    setTimeout(() => { button.textContent = label; button.classList.remove("copied"); }, 1500);
  });
  return button;
}
