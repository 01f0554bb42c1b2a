//! The `atrest` command, as a library so its parts are testable.

/// Every rule and fix: the one list, in `atrest-catalog`.
pub use atrest_catalog as catalog;
pub mod commands;
pub mod demo;
pub mod fix_all;
pub mod output;
pub mod report;
pub mod smoke;
pub mod targets;
