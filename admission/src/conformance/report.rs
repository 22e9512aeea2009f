//! The harness's findings: one row per check, for people and for machines.

use serde::Serialize;

use crate::outcome::Outcome;

/// One check's finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// The check's stable id, e.g. `plan.repeatable`.
    pub check: &'static str,
    /// What it was checked on, e.g. `write#1` for an operation's first example.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// PASS, FAIL or SKIP.
    pub outcome: Outcome,
    /// What was seen, or why it fails.
    pub detail: String,
}

/// Every finding, in the order the checks ran.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The rows.
    pub rows: Vec<Row>,
}

impl Report {
    /// Records a finding.
    pub fn push(
        &mut self,
        check: &'static str,
        subject: Option<&str>,
        outcome: Outcome,
        detail: impl Into<String>,
    ) {
        self.rows.push(Row {
            check,
            subject: subject.map(str::to_owned),
            outcome,
            detail: detail.into(),
        });
    }

    /// Records PASS or FAIL from a check's result.
    pub fn record(
        &mut self,
        check: &'static str,
        subject: Option<&str>,
        result: Result<String, String>,
    ) {
        match result {
            Ok(detail) => self.push(check, subject, Outcome::Pass, detail),
            Err(detail) => self.push(check, subject, Outcome::Fail, detail),
        }
    }

    /// The rows that failed.
    pub fn failures(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.outcome == Outcome::Fail)
    }

    /// How many rows came out `outcome`.
    pub fn count(&self, outcome: Outcome) -> usize {
        self.rows.iter().filter(|r| r.outcome == outcome).count()
    }

    /// The report as aligned text, one row a line, and a summary line.
    pub fn to_text(&self) -> String {
        let width = self.rows.iter().map(|r| label(r).len()).max().unwrap_or(0);
        let mut text = String::new();
        for row in &self.rows {
            text.push_str(&format!(
                "{}  {:width$}  {}\n",
                row.outcome.label(),
                label(row),
                row.detail
            ));
        }
        text.push_str(&format!(
            "\n{} passed, {} failed, {} skipped",
            self.count(Outcome::Pass),
            self.count(Outcome::Fail),
            self.count(Outcome::Skip)
        ));
        text
    }
}

fn label(row: &Row) -> String {
    match &row.subject {
        Some(subject) => format!("{} [{subject}]", row.check),
        None => row.check.to_owned(),
    }
}
