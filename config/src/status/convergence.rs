//! Where each resource kind stands against the applied config (`config.convergence`).

use serde::{Deserialize, Serialize};

/// One resource kind against the applied generation (`config.convergence` in `/v1/status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindConvergence {
    /// `network`, `sysctl`, `files`, `storage`, `services`.
    pub kind: String,
    pub state: ConvergenceState,
    /// The items that are not as desired, with why (empty when converged).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConvergenceState {
    /// Every item of the generation is as desired.
    Converged,
    /// Working on it (or still at an older generation).
    Pending,
    /// Done trying for now, not converged: see `problems` (retried on resync or when what they wait for changes).
    Stuck,
}

impl std::fmt::Display for ConvergenceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConvergenceState::Converged => "converged",
            ConvergenceState::Pending => "pending",
            ConvergenceState::Stuck => "stuck",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_shape_is_stable() {
        let k = KindConvergence {
            kind: "storage".into(),
            state: ConvergenceState::Stuck,
            problems: vec!["data: blocked: holds xfs".into()],
        };
        let text = serde_json::to_string(&k).unwrap();
        assert_eq!(text, r#"{"kind":"storage","state":"stuck","problems":["data: blocked: holds xfs"]}"#);
        assert_eq!(serde_json::from_str::<KindConvergence>(&text).unwrap(), k);
        let done: KindConvergence = serde_json::from_str(r#"{"kind":"files","state":"converged"}"#).unwrap();
        assert!(done.problems.is_empty() && done.state == ConvergenceState::Converged);
    }
}
