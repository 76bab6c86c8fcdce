// A small Markdown renderer for reports: headings, paragraphs, lists, block quotes,
// fenced code, tables, rules, and inline code, bold, italics and links. It builds
// Preact elements, never HTML text, so anything in the report (raw HTML included)
// can only ever become text: nothing to sanitise afterwards. Links keep only http(s),
// mailto and same-origin targets; others become plain text.

import { h } from "preact";

/** Whether `href` may be a link: http(s), mailto, or a path/anchor of this origin. */
export function safeHref(href) {
  const url = href.trim();
  if (/^(https?:|mailto:)/i.test(url)) return url;
  if (url.startsWith("/") && !url.startsWith("//")) return url;
  if (url.startsWith("#")) return url;
  return null;
}

const INLINE = /(`+)([\s\S]*?[^`])\1(?!`)|\[([^\]]+)\]\(([^)\s]+)(?:\s+"[^"]*")?\)|(\*\*|__)(?=\S)([\s\S]*?\S)\5|(\*|_)(?=\S)([\s\S]*?\S)\7(?![\w*])|(https?:\/\/[^\s<>()]+[^\s<>().,;:!?'"])/;

/** Inline Markdown of `text` as an array of strings and elements. */
export function inline(text) {
  const out = [];
  let rest = text;
  while (rest) {
    const m = INLINE.exec(rest);
    if (!m) {
      out.push(rest);
      break;
    }
    if (m.index > 0) out.push(rest.slice(0, m.index));
    if (m[1]) out.push(h("code", null, m[2]));
    else if (m[3]) {
      const href = safeHref(m[4]);
      out.push(href ? link(href, inline(m[3])) : m[0]);
    } else if (m[5]) out.push(h("strong", null, inline(m[6])));
    else if (m[7]) out.push(h("em", null, inline(m[8])));
    else if (m[9]) out.push(link(m[9], m[9]));
    rest = rest.slice(m.index + m[0].length);
  }
  return out;
}

function link(href, children) {
  const external = /^https?:/i.test(href);
  return h("a", external ? { href, target: "_blank", rel: "noopener noreferrer" } : { href }, children);
}

function slug(text) {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-|-$/g, "");
}

const LIST_ITEM = /^(\s*)([-*+]|\d+[.)])\s+(.*)$/;

/** The block elements of a Markdown document. */
export function markdown(source) {
  const lines = (source ?? "").replace(/\r\n?/g, "\n").split("\n");
  const blocks = [];
  let i = 0;
  let key = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) {
      i++;
      continue;
    }
    const fence = /^\s*(```|~~~)(.*)$/.exec(line);
    if (fence) {
      const body = [];
      i++;
      while (i < lines.length && !lines[i].trim().startsWith(fence[1])) body.push(lines[i++]);
      i++;
      blocks.push(h("pre", { key: key++, class: "code" }, h("code", null, body.join("\n"))));
      continue;
    }
    const heading = /^(#{1,6})\s+(.*?)\s*#*\s*$/.exec(line);
    if (heading) {
      const level = heading[1].length;
      blocks.push(h(`h${Math.min(level + 1, 6)}`, { key: key++, id: `report-${slug(heading[2])}`, "data-section": heading[2] }, inline(heading[2])));
      i++;
      continue;
    }
    if (/^\s*([-*_])(\s*\1){2,}\s*$/.test(line)) {
      blocks.push(h("hr", { key: key++ }));
      i++;
      continue;
    }
    if (/^\s*>/.test(line)) {
      const body = [];
      while (i < lines.length && /^\s*>/.test(lines[i])) body.push(lines[i++].replace(/^\s*>\s?/, ""));
      blocks.push(h("blockquote", { key: key++ }, markdown(body.join("\n"))));
      continue;
    }
    if (/^\s*\|.*\|\s*$/.test(line) && i + 1 < lines.length && /^\s*\|[\s:|-]+\|\s*$/.test(lines[i + 1])) {
      const cells = (l) => l.trim().replace(/^\||\|$/g, "").split("|").map((c) => c.trim());
      const head = cells(line);
      i += 2;
      const rows = [];
      while (i < lines.length && /^\s*\|.*\|\s*$/.test(lines[i])) rows.push(cells(lines[i++]));
      blocks.push(
        h("div", { key: key++, class: "table-wrap" },
          h("table", null,
            h("thead", null, h("tr", null, head.map((c, j) => h("th", { key: j }, inline(c))))),
            h("tbody", null, rows.map((r, k) => h("tr", { key: k }, r.map((c, j) => h("td", { key: j }, inline(c)))))),
          ),
        ),
      );
      continue;
    }
    if (LIST_ITEM.test(line)) {
      const ordered = /^\s*\d/.test(line);
      const base = LIST_ITEM.exec(line)[1].length;
      const items = [];
      while (i < lines.length) {
        const m = LIST_ITEM.exec(lines[i]);
        if (m && m[1].length <= base) {
          items.push([m[3]]);
          i++;
        } else if (lines[i].trim() && (/^\s/.test(lines[i]) || (m && m[1].length > base))) {
          items[items.length - 1].push(lines[i].slice(Math.min(base + 2, lines[i].search(/\S/))));
          i++;
        } else break;
      }
      const children = items.map((item, k) => {
        const [first, ...more] = item;
        const nested = more.length ? markdown(more.join("\n")) : null;
        return h("li", { key: k }, inline(first), nested);
      });
      blocks.push(h(ordered ? "ol" : "ul", { key: key++ }, children));
      continue;
    }
    const para = [];
    while (
      i < lines.length &&
      lines[i].trim() &&
      !/^(#{1,6}\s|\s*(```|~~~)|\s*>)/.test(lines[i]) &&
      !LIST_ITEM.test(lines[i])
    ) {
      para.push(lines[i++].trim());
    }
    if (!para.length) {
      // A line no block claims (e.g. a lone table row): keep it as text.
      para.push(lines[i++].trim());
    }
    blocks.push(h("p", { key: key++ }, inline(para.join(" "))));
  }
  return blocks;
}
