//! A run's usage attributed to the parts of an agent team that spent it — the global
//! supervisor, each node, each node's agents and supervisor — read off the structural
//! keys the team records its model and tool calls at:
//!
//! ```text
//! supervisor/decide/llm                                    node "supervisor" (the global one)
//! supervisor/report/repair/1/llm                           node "supervisor"
//! node/<node>/supervisor/round/<r>/llm                     node <node>, agent "supervisor"
//! node/<node>/agent/<agent>/round/<r>/iter/<i>/llm         node <node>, agent <agent>
//! node/<node>/agent/<agent>/round/<r>/iter/<i>/call/<id>   node <node>, agent <agent>
//! node/<node>/finding                                      node <node> (no agent)
//! ```
//!
//! Segments are escaped by [`key_segment`](crate::key_segment) and decoded here. A key of
//! any other shape counts in the total only. Nothing here reads the database: the
//! breakdown is a function of the (key, usage) pairs of a run's steps.

use std::collections::BTreeMap;

use crate::context::decode_key_segment;
use crate::usage::Usage;

/// The name of the global supervisor in [`UsageBreakdown::by_node`], and of a node's
/// supervisor in [`UsageBreakdown::by_agent`].
pub const SUPERVISOR: &str = "supervisor";

/// Which part of a team a step belongs to, by its key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attribution {
    /// The node id (decoded), or [`SUPERVISOR`] for the global supervisor's steps.
    pub node: Option<String>,
    /// The agent id (decoded), or [`SUPERVISOR`] for a node supervisor's steps; `None`
    /// for the global supervisor and for a node's own steps.
    pub agent: Option<String>,
}

/// The part of a team the step at `key` belongs to (see the module's table).
pub fn attribute(key: &str) -> Attribution {
    let segments: Vec<&str> = key.split('/').collect();
    let unattributed = Attribution::default();
    match segments.as_slice() {
        [SUPERVISOR, _, ..] => Attribution {
            node: Some(SUPERVISOR.to_owned()),
            agent: None,
        },
        ["node", node, rest @ ..] if !node.is_empty() && !rest.is_empty() => {
            let agent = match rest {
                ["agent", agent, _, ..] if !agent.is_empty() => Some(decode_key_segment(agent)),
                [SUPERVISOR, _, ..] => Some(SUPERVISOR.to_owned()),
                _ => None,
            };
            Attribution {
                node: Some(decode_key_segment(node)),
                agent,
            }
        }
        _ => unattributed,
    }
}

/// A run's usage in total, per node and per agent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UsageBreakdown {
    /// Every step's usage, attributed or not.
    pub total: Usage,
    /// By node id, sorted; the global supervisor's steps under [`SUPERVISOR`].
    pub by_node: Vec<(String, Usage)>,
    /// By (node id, agent id), sorted; a node supervisor's steps under agent
    /// [`SUPERVISOR`]. The global supervisor is not an agent of a node: it appears in
    /// `by_node` only, as do a node's steps outside its agents and supervisor.
    pub by_agent: Vec<(String, String, Usage)>,
}

impl UsageBreakdown {
    /// The breakdown of steps given as (key, usage) pairs; steps that used nothing
    /// add no entry.
    pub fn from_steps<K: AsRef<str>>(steps: impl IntoIterator<Item = (K, Usage)>) -> Self {
        let mut total = Usage::default();
        let mut by_node: BTreeMap<String, Usage> = BTreeMap::new();
        let mut by_agent: BTreeMap<(String, String), Usage> = BTreeMap::new();
        for (key, usage) in steps {
            if usage.is_zero() {
                continue;
            }
            total += usage;
            let Attribution { node, agent } = attribute(key.as_ref());
            let Some(node) = node else { continue };
            if let Some(agent) = agent {
                *by_agent.entry((node.clone(), agent)).or_default() += usage;
            }
            *by_node.entry(node).or_default() += usage;
        }
        UsageBreakdown {
            total,
            by_node: by_node.into_iter().collect(),
            by_agent: by_agent
                .into_iter()
                .map(|((node, agent), usage)| (node, agent, usage))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(tokens: u64, cost: f64) -> Usage {
        Usage {
            input_tokens: tokens,
            output_tokens: tokens / 10,
            cost_usd: cost,
        }
    }

    fn at(node: &str, agent: Option<&str>) -> Attribution {
        Attribution {
            node: Some(node.to_owned()),
            agent: agent.map(str::to_owned),
        }
    }

    #[test]
    fn attributes_the_keys_a_team_records() {
        let cases = [
            ("supervisor/decide/llm", at("supervisor", None)),
            ("supervisor/report/llm", at("supervisor", None)),
            ("supervisor/report/repair/1/llm", at("supervisor", None)),
            ("supervisor/call/alerts", at("supervisor", None)),
            (
                "node/db/supervisor/round/0/llm",
                at("db", Some("supervisor")),
            ),
            (
                "node/db/agent/metrics/round/2/iter/3/llm",
                at("db", Some("metrics")),
            ),
            (
                "node/db/agent/metrics/round/0/iter/0/call/call_9",
                at("db", Some("metrics")),
            ),
            // The rules analyst has no rounds.
            (
                "node/db/agent/rules/iter/0/call/targets",
                at("db", Some("rules")),
            ),
            ("node/db/finding", at("db", None)),
            // A step *named* like a branch is the node's own step, not an agent's.
            ("node/db/agent", at("db", None)),
            ("node/db/supervisor", at("db", None)),
            ("node/db/agent/metrics", at("db", None)),
        ];
        for (key, want) in cases {
            assert_eq!(attribute(key), want, "{key}");
        }
    }

    #[test]
    fn decodes_escaped_segments() {
        assert_eq!(
            attribute("node/web%2Fedge/agent/50%25%2Flogs/round/0/iter/0/llm"),
            at("web/edge", Some("50%/logs"))
        );
        // An escaped id in the call segment changes nothing about who called.
        assert_eq!(
            attribute("node/db/agent/metrics/round/0/iter/0/call/a%2Fb%2F..%2Fc"),
            at("db", Some("metrics"))
        );
    }

    #[test]
    fn keys_of_no_known_shape_are_unattributed() {
        for key in [
            "plan",
            "team",
            "llm",
            "supervisor",
            "node",
            "node/db",
            "node//agent/x/llm",
            "nodes/db/agent/x/llm",
            "Supervisor/decide/llm",
            "other/node/db/agent/x/llm",
            "",
        ] {
            assert_eq!(attribute(key), Attribution::default(), "{key:?}");
        }
    }

    #[test]
    fn sums_per_node_and_agent_and_keeps_the_unattributed_in_the_total() {
        let steps = [
            ("supervisor/decide/llm", usage(100, 0.1)),
            ("supervisor/report/repair/1/llm", usage(10, 0.2)),
            ("node/db/supervisor/round/0/llm", usage(200, 0.3)),
            ("node/db/agent/metrics/round/0/iter/0/llm", usage(300, 0.4)),
            ("node/db/agent/metrics/round/0/iter/1/llm", usage(30, 0.5)),
            ("node/db/finding", usage(7, 0.6)),
            (
                "node/web%2Fedge/agent/logs/round/1/iter/0/llm",
                usage(50, 0.7),
            ),
            ("plan", usage(1000, 0.8)),
            (
                "node/db/agent/metrics/round/0/iter/0/call/x",
                Usage::default(),
            ),
        ];
        let b = UsageBreakdown::from_steps(steps);
        assert_eq!(b.total.input_tokens, 1697);
        assert_eq!(b.total.output_tokens, 10 + 1 + 20 + 30 + 3 + 5 + 100);
        assert!((b.total.cost_usd - 3.6).abs() < 1e-9);
        let nodes: Vec<(&str, u64)> = b
            .by_node
            .iter()
            .map(|(n, u)| (n.as_str(), u.input_tokens))
            .collect();
        assert_eq!(
            nodes,
            [("db", 537), ("supervisor", 110), ("web/edge", 50)],
            "sorted, decoded, the global supervisor a node of its own"
        );
        let agents: Vec<(&str, &str, u64)> = b
            .by_agent
            .iter()
            .map(|(n, a, u)| (n.as_str(), a.as_str(), u.input_tokens))
            .collect();
        assert_eq!(
            agents,
            [
                ("db", "metrics", 330),
                ("db", "supervisor", 200),
                ("web/edge", "logs", 50)
            ]
        );
        // Nodes plus the unattributed step make the total; agents plus the node's own
        // step make the node.
        let nodes_total: Usage = b.by_node.iter().map(|(_, u)| *u).sum();
        assert_eq!(nodes_total.input_tokens + 1000, b.total.input_tokens);
        assert!((nodes_total.cost_usd + 0.8 - b.total.cost_usd).abs() < 1e-9);
        let db_agents: Usage = b.by_agent.iter().filter(|a| a.0 == "db").map(|a| a.2).sum();
        assert_eq!(db_agents.input_tokens + 7, b.by_node[0].1.input_tokens);
        // Steps that used nothing add no entry.
        assert_eq!(
            UsageBreakdown::from_steps([("node/x/agent/y/llm", Usage::default())]),
            UsageBreakdown::default()
        );
    }
}
