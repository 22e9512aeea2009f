//! What `terraform apply -json` reported: the resource actions it completed and the errors it
//! diagnosed. After a failed apply, the completed actions say which planned changes landed
//! (terraform cannot roll them back).

use std::collections::BTreeSet;

use serde_json::Value;

/// The machine-readable log of one apply.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplyLog {
    /// Each `(address, action)` terraform reported complete, e.g. `("terraform_data.a", "create")`.
    pub completed: BTreeSet<(String, String)>,
    /// The error diagnostics, one line each.
    pub errors: Vec<String>,
}

impl ApplyLog {
    /// Reads the JSON lines `terraform apply -json` printed; lines that are not JSON are
    /// ignored (terraform prints none, but a wrapper might).
    pub fn read(stdout: &[u8]) -> Self {
        let mut log = Self::default();
        for line in stdout.split(|b| *b == b'\n') {
            let Ok(event) = serde_json::from_slice::<Value>(line) else {
                continue;
            };
            match event["type"].as_str() {
                Some("apply_complete") => {
                    let hook = &event["hook"];
                    if let (Some(address), Some(action)) =
                        (hook["resource"]["addr"].as_str(), hook["action"].as_str())
                    {
                        log.completed
                            .insert((address.to_owned(), action.to_owned()));
                    }
                }
                Some("diagnostic") if event["diagnostic"]["severity"] == "error" => {
                    let diagnostic = &event["diagnostic"];
                    let summary = diagnostic["summary"].as_str().unwrap_or("error");
                    log.errors.push(match diagnostic["detail"].as_str() {
                        Some(detail) if !detail.is_empty() => format!("{summary}: {detail}"),
                        _ => summary.to_owned(),
                    });
                }
                _ => {}
            }
        }
        log
    }

    /// Whether every one of `actions` (a planned change's, e.g. `["delete", "create"]`) was
    /// completed on `address`.
    pub fn landed(&self, address: &str, actions: &[String]) -> bool {
        !actions.is_empty()
            && actions
                .iter()
                .all(|a| self.completed.contains(&(address.to_owned(), a.clone())))
    }

    /// Whether some but not all of `actions` were completed on `address` (a replace whose
    /// delete landed but whose create did not).
    pub fn partly_landed(&self, address: &str, actions: &[String]) -> bool {
        let done = actions
            .iter()
            .filter(|a| self.completed.contains(&(address.to_owned(), (*a).clone())))
            .count();
        done > 0 && done < actions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_actions_and_errors_are_read_from_the_json_lines() {
        let stdout = br#"{"type":"apply_start","hook":{"resource":{"addr":"terraform_data.c"},"action":"create"}}
{"type":"apply_complete","hook":{"resource":{"addr":"terraform_data.b"},"action":"delete"}}
{"type":"apply_complete","hook":{"resource":{"addr":"terraform_data.a"},"action":"create"}}
{"type":"apply_errored","hook":{"resource":{"addr":"terraform_data.c"},"action":"create"}}
not json
{"type":"diagnostic","diagnostic":{"severity":"error","summary":"local-exec provisioner error","detail":"exit status 3"}}
{"type":"diagnostic","diagnostic":{"severity":"warning","summary":"ignored"}}
"#;
        let log = ApplyLog::read(stdout);
        let create = vec!["create".to_owned()];
        let replace = vec!["delete".to_owned(), "create".to_owned()];
        assert!(log.landed("terraform_data.a", &create));
        assert!(!log.landed("terraform_data.c", &create));
        assert!(!log.landed("terraform_data.b", &replace));
        assert!(log.partly_landed("terraform_data.b", &replace));
        assert!(!log.partly_landed("terraform_data.a", &create));
        assert!(!log.landed("terraform_data.a", &[]));
        assert_eq!(
            log.errors,
            vec!["local-exec provisioner error: exit status 3".to_owned()]
        );
    }
}
