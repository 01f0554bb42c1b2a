//! Output for people (tables) and for programs (JSON on stdout, nothing else there).

use comfy_table::{ContentArrangement, Table};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// `scan`'s formats: also a spreadsheet and a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
    /// One row per evaluation (RFC 4180), for spreadsheets.
    Csv,
    /// One self-contained HTML page: counts per rule and service with bars, then the findings.
    Html,
}

pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.set_content_arrangement(ContentArrangement::Dynamic).set_header(header.to_vec());
    table
}

pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
