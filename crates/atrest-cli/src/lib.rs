//! The `atrest` command, as a library so its parts are testable.

pub mod catalog;
pub mod commands;
pub mod demo;
pub mod output;
pub mod smoke;
