// Team documents in the editor: a stored spec (JSON) written out as YAML, the line a
// violation's path (`nodes[2].depends_on[0]`) points at in the text being edited,
// and a line diff between two versions. The server parses and validates; this only
// presents.

const ORDER = {
  root: ["name", "description", "pattern", "supervisor", "nodes", "output_schema", "limits"],
  node: ["id", "kind", "depends_on", "match", "supervisor", "agents"],
  agent: ["id", "role", "model", "instructions", "tools"],
};

function ordered(obj, order) {
  const keys = Object.keys(obj).filter((k) => obj[k] !== null && obj[k] !== undefined);
  const rank = (k) => (order.includes(k) ? order.indexOf(k) : order.length);
  return keys.sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
}

const RESERVED = /^(true|false|null|yes|no|on|off|y|n|~)$/i;

function scalar(v) {
  if (typeof v === "string") {
    if (v === "" || RESERVED.test(v) || /^[-+]?(\d|\.\d)/.test(v) || !/^[A-Za-z0-9_.\/@(][A-Za-z0-9 _.\/@:()-]*$/.test(v) || /:\s|\s$|\s#/.test(v)) {
      return JSON.stringify(v);
    }
    return v;
  }
  return JSON.stringify(v);
}

function isScalar(v) {
  return v === null || typeof v !== "object";
}

function orderFor(path) {
  if (path === "") return ORDER.root;
  if (/^nodes\[\d+\]$/.test(path)) return ORDER.node;
  if (/agents\[\d+\]$/.test(path)) return ORDER.agent;
  return [];
}

function block(value, indent, path) {
  const pad = "  ".repeat(indent);
  const lines = [];
  if (Array.isArray(value)) {
    for (const [i, item] of value.entries()) {
      if (isScalar(item)) lines.push(`${pad}- ${scalar(item)}`);
      else if (Array.isArray(item)) lines.push(`${pad}- ${flow(item)}`);
      else {
        const inner = block(item, indent + 1, `${path}[${i}]`);
        if (!inner.length) lines.push(`${pad}- {}`);
        else lines.push(`${pad}- ${inner[0].trimStart()}`, ...inner.slice(1));
      }
    }
    return lines;
  }
  for (const key of ordered(value, orderFor(path))) {
    const v = value[key];
    const k = /^[A-Za-z_][A-Za-z0-9_-]*$/.test(key) ? key : JSON.stringify(key);
    const here = path ? `${path}.${key}` : key;
    if (typeof v === "string" && v.includes("\n")) {
      lines.push(`${pad}${k}: |`);
      for (const l of v.replace(/\n$/, "").split("\n")) lines.push(`${pad}  ${l}`);
    } else if (isScalar(v)) lines.push(`${pad}${k}: ${scalar(v)}`);
    else if (Array.isArray(v) && (v.length === 0 || v.every(isScalar))) lines.push(`${pad}${k}: ${flow(v)}`);
    else if (!Array.isArray(v) && Object.keys(v).length === 0) lines.push(`${pad}${k}: {}`);
    else if (!Array.isArray(v) && Object.values(v).every(isScalar) && JSON.stringify(v).length < 60 && key === "match") {
      lines.push(`${pad}${k}: ${flow(v)}`);
    } else {
      lines.push(`${pad}${k}:`);
      lines.push(...block(v, Array.isArray(v) ? indent + 1 : indent + 1, here));
    }
  }
  return lines;
}

function flow(v) {
  if (Array.isArray(v)) return `[${v.map((x) => (isScalar(x) ? scalar(x) : flow(x))).join(", ")}]`;
  return `{ ${Object.entries(v).map(([k, x]) => `${k}: ${isScalar(x) ? scalar(x) : flow(x)}`).join(", ")} }`;
}

/** A team spec (JSON) as YAML text. */
export function toYaml(spec) {
  return `${block(spec ?? {}, 0, "").join("\n")}\n`;
}

/** `nodes[2].depends_on[0]` -> ["nodes", 2, "depends_on", 0]. */
export function parsePath(path) {
  const out = [];
  for (const m of (path ?? "").matchAll(/([^.[\]]+)|\[(\d+)\]/g)) out.push(m[2] !== undefined ? Number(m[2]) : m[1]);
  return out;
}

const indentOf = (line) => line.search(/\S/);
const meaningful = (line) => line.trim() !== "" && !line.trim().startsWith("#");
/** Where a line's key starts: after its indentation and any `- `. */
const keyColumn = (line) => {
  const m = /^(\s*)((- )*)/.exec(line);
  return m[1].length + m[2].length;
};

/**
 * The 1-based line of `text` (YAML in block style, or JSON) that `path` names, as
 * near as can be told: the line of the deepest part of the path that was found.
 * Null when not even its first part is found.
 */
export function lineOf(text, path) {
  const lines = text.split("\n");
  const parts = parsePath(path);
  if (!parts.length) return null;
  if (text.trim().startsWith("{")) return jsonLineOf(lines, parts);
  let from = 0;
  let to = lines.length;
  let found = null;
  let base = Math.min(...lines.filter(meaningful).map(keyColumn));
  for (const part of parts) {
    if (typeof part === "string") {
      const key = new RegExp(`^\\s*(- )*["']?${part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}["']?\\s*:`);
      let hit = -1;
      for (let i = from; i < to; i++) {
        if (meaningful(lines[i]) && keyColumn(lines[i]) === base && key.test(lines[i])) {
          hit = i;
          break;
        }
      }
      if (hit < 0) break;
      found = hit;
      // Its value: the lines below it indented deeper (or a sequence at its column).
      let end = hit + 1;
      while (end < to) {
        const l = lines[end];
        if (meaningful(l) && !(indentOf(l) > base || (indentOf(l) === base && /^\s*- /.test(l)))) break;
        end++;
      }
      from = hit + 1;
      to = end;
      const first = lines.slice(from, to).find(meaningful);
      base = first === undefined ? base : keyColumn(first);
    } else {
      const here = lines[found ?? 0] ?? "";
      if (/:\s*\[/.test(here)) break; // a flow sequence: its line is the place
      let count = -1;
      let itemIndent = null;
      let hit = -1;
      for (let i = from; i < to; i++) {
        if (!meaningful(lines[i])) continue;
        const m = /^(\s*)-(\s|$)/.exec(lines[i]);
        if (m && (itemIndent === null || m[1].length === itemIndent)) {
          itemIndent = m[1].length;
          if (++count === part) {
            hit = i;
            break;
          }
        }
      }
      if (hit < 0) break;
      found = hit;
      let end = hit + 1;
      while (end < to && (!meaningful(lines[end]) || indentOf(lines[end]) > itemIndent)) end++;
      from = hit;
      to = end;
      base = itemIndent + 2;
    }
  }
  return found === null ? null : found + 1;
}

function jsonLineOf(lines, parts) {
  // JSON: find each key in order; good enough to point at the place.
  let from = 0;
  let found = null;
  for (const part of parts) {
    if (typeof part !== "string") continue;
    const i = lines.findIndex((l, j) => j >= from && l.includes(`"${part}"`));
    if (i < 0) break;
    found = i;
    from = i;
  }
  return found === null ? null : found + 1;
}

/** A line from a syntax error's message ("… at line 3 column 5"), or null. */
export function lineInMessage(message) {
  const m = /line (\d+)/.exec(message ?? "");
  return m ? Number(m[1]) : null;
}

/** Line diff (longest common subsequence): `[{ op: " " | "-" | "+", line }]`. */
export function diffLines(a, b) {
  const x = a.split("\n");
  const y = b.split("\n");
  const n = x.length;
  const m = y.length;
  const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) lcs[i][j] = x[i] === y[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  const out = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (x[i] === y[j]) {
      out.push({ op: " ", line: x[i++] });
      j++;
    } else if (lcs[i + 1][j] >= lcs[i][j + 1]) out.push({ op: "-", line: x[i++] });
    else out.push({ op: "+", line: y[j++] });
  }
  while (i < n) out.push({ op: "-", line: x[i++] });
  while (j < m) out.push({ op: "+", line: y[j++] });
  return out;
}
