//! Token usage and cost of model calls, recorded per attempt of a step and summed per
//! step and per run; per node and agent in `usage_breakdown`.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// Tokens in and out, and what they cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub cost_usd: f64,
}

impl Usage {
    pub fn is_zero(&self) -> bool {
        *self == Usage::default()
    }

    /// As stored with a step (`None` when nothing was used).
    pub(crate) fn to_json(self) -> Option<Json> {
        (!self.is_zero()).then(|| serde_json::to_value(self).unwrap_or(Json::Null))
    }

    /// From what a step stored; anything unreadable counts as nothing.
    pub(crate) fn from_json(value: Option<&Json>) -> Usage {
        value
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    }
}

impl std::ops::Add for Usage {
    type Output = Usage;
    fn add(self, other: Usage) -> Usage {
        Usage {
            input_tokens: self.input_tokens.saturating_add(other.input_tokens),
            output_tokens: self.output_tokens.saturating_add(other.output_tokens),
            cost_usd: self.cost_usd + other.cost_usd,
        }
    }
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Usage) {
        *self = *self + other;
    }
}

impl std::iter::Sum for Usage {
    fn sum<I: Iterator<Item = Usage>>(iter: I) -> Usage {
        iter.fold(Usage::default(), |a, b| a + b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_and_round_trips() {
        let a = Usage {
            input_tokens: 10,
            output_tokens: 2,
            cost_usd: 0.5,
        };
        let total: Usage = [a, a].into_iter().sum();
        assert_eq!(total.input_tokens, 20);
        assert_eq!(Usage::from_json(total.to_json().as_ref()), total);
        assert_eq!(Usage::default().to_json(), None);
        assert_eq!(
            Usage::from_json(Some(&serde_json::json!("junk"))),
            Usage::default()
        );
    }
}
