//! What can go wrong reading the template, settling parameters and running a document.

/// An error of the local Automation runner. Each message reads as it did when the runner
/// returned plain strings: users and tests read them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The template is not one the runner can read, or a value in it does not resolve for the
    /// stack defaults (an unsupported intrinsic, a reference to nothing, a malformed
    /// remediation configuration).
    #[error("{0}")]
    Template(String),
    /// No remediation configuration of the template runs this worker.
    #[error("no remediation configuration in the template runs {worker}")]
    UnknownRemediation { worker: String },
    /// More than one remediation configuration runs this worker.
    #[error("{} remediation configurations run {worker} ({}): name the rule instead of the fix", remediations.len(), remediations.join(", "))]
    AmbiguousRemediation { worker: String, remediations: Vec<String> },
    /// SSM would refuse the run's parameters (unknown, missing, not allowed, not matching).
    #[error("{0}")]
    ParameterRefused(String),
    /// The document is one SSM would refuse, or uses a construct the runner does not model;
    /// refused when the document is loaded.
    #[error("{0}")]
    NotModelled(String),
    /// A step failed while the document ran (a failing script, an unresolvable variable, the
    /// run's bounds reached).
    #[error("{0}")]
    StepFailed(String),
}
