//! atrest: the building blocks every rule Lambda, fix Lambda, the CLI and the tests share.
//!
//! - [`event`], [`item`]: decoding what AWS Config sends.
//! - [`rule`], [`evaluation`], [`config_api`]: the Config rule runtime.
//! - [`remediation`]: the reconciler contract and the SSM loop.
//! - [`params`], [`kms`], [`policy`]: parameter parsing, key matching, policy reading.
//! - [`alerts`], [`clients`], [`telemetry`], [`lambda`]: plumbing; [`overrides`]: the clients a
//!   test puts in place of the ones a handler builds (`ctx.client(...)`).

pub mod alerts;
pub mod clients;
pub mod config_api;
pub mod error;
pub mod evaluation;
pub mod event;
pub mod item;
pub mod kms;
pub mod lambda;
pub mod overrides;
pub mod params;
pub mod policy;
pub mod progress;
pub mod remediation;
pub mod rule;
pub mod s3;
pub mod tags;
pub mod telemetry;

pub use error::{Error, ErrorClass, Result};
pub use evaluation::{Compliance, Evaluation, Verdict};
pub use item::ConfigurationItem;
pub use overrides::ClientOverrides;
pub use params::{ParamKind, ParamSpec, Params};
pub use remediation::{Fix, FixContext, FixOutcome, FixRequest, FixRunner, FixSpec, FixStatus};
pub use rule::{ConfigRule, Discovered, RuleContext, RuleRunner, RuleSpec, TriggerKind};

// Re-exported so rule and fix crates need no direct dependency for the trait macro.
pub use async_trait::async_trait;
