//! Runs the stack's SSM Automation documents locally, straight from `template.yaml`.
//!
//! The Config console's "Remediate" button starts an SSM Automation execution of the document a
//! `AWS::Config::RemediationConfiguration` names, with `RESOURCE_ID` and the configuration's
//! static values as parameters; the document then loops over the worker Lambda. `atrest
//! remediate` and the console tests take exactly that path here: this crate reads the template
//! (CloudFormation short-form tags included), resolves each remediation configuration and its
//! document for the stack's parameter defaults, settles parameters as SSM does (defaults,
//! `allowedValues`, `allowedPattern`, unknown and missing parameters refused) and interprets
//! exactly the subset of Automation the template uses, with each action's outputs as AWS
//! documents them:
//!
//! - `aws:invokeLambdaFunction`: the worker is called in-process through `FixRunner::step`. Its
//!   outputs are `StatusCode` (200) and `Payload`, a *string*: the JSON of what the function
//!   returned, or Lambda's error object (`errorType`, `errorMessage`) when it panicked (a
//!   function error is an answer, not a failed step). Selectors into `Payload` are refused.
//! - `aws:executeScript`: only scripts the runner knows, by handler and exact text
//!   ([`known_script`]), whose semantics are implemented here in Rust (no Python needed);
//!   `tests/python_scripts.rs` runs the template's Python over a table of inputs and proves
//!   both agree. The returned object is selectable as `$.Payload.<key>`; a raised exception
//!   fails the step, and with `onFailure: Abort` the run.
//! - `aws:branch` (`StringEquals` choices and `Default`), `aws:sleep` (at most 604,799 s),
//!   `nextStep`, `isEnd` and the implicit next step.
//!
//! Anything else (an action, step property, operator, selector or variable not modelled here)
//! is refused when the document is loaded ([`Document::check`]): a document that grows a new
//! construct must grow its interpretation here too.
//!
//! The template is embedded at build time ([`Template::embedded`]), so the `atrest` binary runs
//! the documents of the stack it was built with, wherever it is run.
//!
//! Modules by concern: `template` (CloudFormation intrinsics, the embedded template),
//! `remediation` (remediation configurations, parameters settled as SSM does), `document`
//! (loading a document and the load-time check of what the runner models), `run` (executing
//! steps), `scripts` (our scripts' Rust semantics); what goes wrong is an [`Error`] that says
//! which of these refused.

mod document;
mod error;
mod remediation;
mod run;
mod scripts;
mod template;

pub use document::Document;
pub use error::Error;
pub use remediation::{Remediation, RemediationParam};
pub use run::{Execution, MAX_SLEEP_SECONDS, Progress, RunOptions, Sleep, parse_sleep_duration};
pub use scripts::{FAIL_SCRIPT, READ_ANSWER_SCRIPT, Script, known_script};
pub use template::{Stack, TEMPLATE_YAML, Template};
