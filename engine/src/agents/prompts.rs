//! The prompts, as versioned files in `engine/prompts/` (their first line is
//! `version: N`). A run records the name and version of every prompt it used, so an
//! answer can be traced to the words that asked for it.

/// A prompt template: `{name}` placeholders filled by [`Prompt::render`].
#[derive(Clone, Copy, Debug)]
pub struct Prompt {
    pub name: &'static str,
    text: &'static str,
}

pub const AGENT: Prompt = Prompt {
    name: "agent",
    text: include_str!("../../prompts/agent.md"),
};
pub const NODE_SUPERVISOR: Prompt = Prompt {
    name: "node-supervisor",
    text: include_str!("../../prompts/node-supervisor.md"),
};
pub const SUPERVISOR: Prompt = Prompt {
    name: "supervisor",
    text: include_str!("../../prompts/supervisor.md"),
};
pub const REPORT: Prompt = Prompt {
    name: "report",
    text: include_str!("../../prompts/report.md"),
};
pub const PLANNER: Prompt = Prompt {
    name: "planner",
    text: include_str!("../../prompts/planner.md"),
};
pub const ALL: [Prompt; 5] = [AGENT, NODE_SUPERVISOR, SUPERVISOR, REPORT, PLANNER];

impl Prompt {
    pub fn version(&self) -> u32 {
        self.text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("version:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// `name@version`, as runs record it.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version())
    }

    /// The text without its version line, placeholders replaced.
    pub fn render(&self, values: &[(&str, &str)]) -> String {
        let body = self.text.split_once('\n').map_or("", |(_, rest)| rest);
        values.iter().fold(body.to_owned(), |text, (k, v)| {
            text.replace(&format!("{{{k}}}"), v)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prompt_has_a_version_and_renders() {
        for p in ALL {
            assert!(p.version() >= 1, "{} has no version line", p.name);
        }
        let text = NODE_SUPERVISOR.render(&[("node", "db"), ("kind", "postgres"), ("agents", "a")]);
        assert!(text.contains("node \"db\" (postgres)") && !text.starts_with("version"));
    }
}
