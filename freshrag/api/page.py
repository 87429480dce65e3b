"""The search page at `/`: one HTML document, inline CSS and JS, no build step."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>freshrag search</title>
<style>
 body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;
      color:#222}
 form{display:flex;gap:.5rem;flex-wrap:wrap}
 input,select,button{font:inherit;padding:.35rem .5rem}
 #q{flex:1 1 20rem} #key{width:10rem}
 .hit{border-top:1px solid #ddd;padding:.6rem 0}
 .meta{color:#666;font-size:.85em} .text{white-space:pre-wrap}
 .fresh{font-size:.85em;background:#f4f6f8;padding:.4rem .6rem;margin:.8rem 0}
 .err{color:#b00020}
</style></head><body>
<h1>freshrag</h1>
<form id="f">
 <input id="q" name="q" placeholder="search the index" required autofocus>
 <select id="mode"><option>hybrid</option><option>vector</option><option>keyword</option></select>
 <select id="k"><option>5</option><option>10</option><option>20</option></select>
 <input id="key" type="password" placeholder="API key (if set)">
 <button>Search</button>
</form>
<div id="fresh" class="fresh" hidden></div>
<div id="out"></div>
<p class="meta"><a href="/docs">API docs</a> &middot; <a href="/status">status</a></p>
<script>
const $ = (id) => document.getElementById(id);
$("key").value = localStorage.getItem("freshrag-key") || "";
const when = (t) => t ? new Date(t * 1000).toLocaleString() : "never";
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;  // never innerHTML: hits are untrusted text
  return e;
}
$("f").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const key = $("key").value.trim();
  localStorage.setItem("freshrag-key", key);
  const out = $("out"), fresh = $("fresh");
  out.replaceChildren(el("p", "meta", "searching..."));
  const headers = {"Content-Type": "application/json"};
  if (key) headers["X-API-Key"] = key;
  const body = {query: $("q").value, k: Number($("k").value), mode: $("mode").value};
  let res, data;
  try {
    res = await fetch("/search", {method: "POST", headers, body: JSON.stringify(body)});
    data = await res.json();
  } catch (e) { out.replaceChildren(el("p", "err", String(e))); return; }
  if (!res.ok) { out.replaceChildren(el("p", "err", res.status + ": " + data.detail)); return; }
  fresh.replaceChildren(...Object.entries(data.freshness).map(([name, f]) => el("div", "",
    `${name}: up to date until ${when(f.watermark)}, lag ${f.lag_ms === null ? "unknown"
      : f.lag_ms + " ms"}, ${f.pending === null ? "pending unknown" : f.pending + " pending"}`)));
  fresh.hidden = false;
  out.replaceChildren(el("p", "meta", `${data.hits.length} hits in ${data.took_ms} ms`));
  for (const h of data.hits) {
    const d = el("div", "hit");
    d.append(el("div", "", `${h.title || h.doc_key}`),
             el("div", "meta", `${h.source} \\u00b7 ${h.location}${h.page ? " p." + h.page : ""}`
                + ` \\u00b7 score ${h.score.toFixed(3)}`
                + ` \\u00b7 changed ${when(h.source_modified_at)}`
                + ` \\u00b7 indexed ${when(h.indexed_at)}`),
             el("div", "text", h.text));
    out.append(d);
  }
});
</script></body></html>
"""
