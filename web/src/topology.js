// A team's topology drawn as SVG: dagre lays the nodes out left to right
// (dependencies first), Preact draws them. Each node is an element with
// `data-node-id` and `data-state`, so a person (by colour and label), a screen
// reader (`aria-label`) and a test (`[data-node-id=db][data-state=failing]`) all
// read the same thing.

import dagre from "@dagrejs/dagre";
import { useMemo } from "preact/hooks";
import { html } from "./ui.js";

const WIDTH = 150;
const HEIGHT = 46;

/** The nodes of a team spec: `[{ id, kind, depends_on }]`. */
export function specNodes(spec) {
  return (spec?.nodes ?? []).map((n) => ({ id: n.id, kind: n.kind ?? "", depends_on: n.depends_on ?? [] }));
}

function layout(nodes) {
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: "LR", nodesep: 18, ranksep: 56, marginx: 10, marginy: 10 });
  g.setDefaultEdgeLabel(() => ({}));
  const ids = new Set(nodes.map((n) => n.id));
  for (const n of nodes) g.setNode(n.id, { width: WIDTH, height: HEIGHT });
  for (const n of nodes) for (const dep of n.depends_on) if (ids.has(dep)) g.setEdge(dep, n.id);
  dagre.layout(g);
  const placed = g.nodes().map((id) => ({ id, ...g.node(id) }));
  const edges = g.edges().map((e) => ({ from: e.v, to: e.w, points: g.edge(e).points }));
  const { width, height } = g.graph();
  return { placed, edges, width: Math.max(width, WIDTH + 20), height: Math.max(height, HEIGHT + 20) };
}

function path(points) {
  return points.map((p, i) => `${i ? "L" : "M"}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" ");
}

/**
 * The topology of `spec`; `states` maps node ids to a state word (pending,
 * running, waiting, failing, degraded, healthy, skipped, failed); `selected` and
 * `onSelect` let a node filter what else the page shows.
 */
export function Topology({ spec, states = {}, selected, onSelect, label = "Team topology" }) {
  const nodes = useMemo(() => specNodes(spec), [spec]);
  const graph = useMemo(() => (nodes.length ? layout(nodes) : null), [nodes]);
  if (!graph) return html`<p class="empty">This team has no nodes.</p>`;
  const kinds = Object.fromEntries(nodes.map((n) => [n.id, n.kind]));
  const key = (e, id) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      onSelect?.(selected === id ? null : id);
    }
  };
  return html`<div class="topology-wrap">
    <svg class="topology" role="group" aria-label=${label} viewBox=${`0 0 ${graph.width} ${graph.height}`}
      width=${graph.width} height=${graph.height}>
      <defs>
        <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
          <path d="M 0 0 L 10 5 L 0 10 z" class="arrow-head" />
        </marker>
      </defs>
      ${graph.edges.map((e) => html`<path key=${`${e.from}->${e.to}`} class="edge" d=${path(e.points)} marker-end="url(#arrow)"
        data-edge=${`${e.from}->${e.to}`} />`)}
      ${graph.placed.map((n) => {
        const state = states[n.id] ?? "idle";
        return html`<g key=${n.id} class=${`node st-${state}${selected === n.id ? " selected" : ""}`}
          data-node-id=${n.id} data-state=${state} tabindex="0" role="button"
          aria-pressed=${selected === n.id ? "true" : "false"}
          aria-label=${`${n.id}${kinds[n.id] ? ` (${kinds[n.id]})` : ""}: ${state}`}
          transform=${`translate(${(n.x - WIDTH / 2).toFixed(1)},${(n.y - HEIGHT / 2).toFixed(1)})`}
          onClick=${() => onSelect?.(selected === n.id ? null : n.id)} onKeyDown=${(e) => key(e, n.id)}>
          <rect width=${WIDTH} height=${HEIGHT} rx="8" />
          <text x="10" y="19" class="node-id">${n.id.length > 18 ? `${n.id.slice(0, 17)}…` : n.id}</text>
          <text x="10" y="36" class="node-sub">${kinds[n.id] ? `${kinds[n.id]} · ` : ""}${state}</text>
        </g>`;
      })}
    </svg>
  </div>`;
}
