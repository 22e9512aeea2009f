//! Text for people: counts with the noun in the number they call for, and colour, which
//! `anstream` keeps only where it is wanted (a terminal, no `NO_COLOR`, or `--color always`).

use anstyle::{AnsiColor, Style};

const ADDED: Style = AnsiColor::Green.on_default();
const REMOVED: Style = AnsiColor::Red.on_default();
const HUNK: Style = AnsiColor::Cyan.on_default();
const HEADER: Style = Style::new().bold();
const PASS: Style = AnsiColor::Green.on_default().bold();
const FAIL: Style = AnsiColor::Red.on_default().bold();

/// `text` in `style`.
fn paint(style: Style, text: &str) -> String {
    format!("{style}{text}{style:#}")
}

/// A gate's decision, `PASS` in green or `FAIL` (anything else) in red.
pub fn decision(mark: &str) -> String {
    paint(if mark == "PASS" { PASS } else { FAIL }, mark)
}

/// A unified diff with its lines coloured as `git diff` does.
pub fn diff(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    for (i, line) in text.lines().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let style = if line.starts_with("+++ ")
            || line.starts_with("--- ")
            || line.starts_with("diff ")
            || line.starts_with("index ")
        {
            Some(HEADER)
        } else if line.starts_with('+') {
            Some(ADDED)
        } else if line.starts_with('-') {
            Some(REMOVED)
        } else if line.starts_with("@@") {
            Some(HUNK)
        } else {
            None
        };
        match style {
            Some(style) => out.push_str(&paint(style, line)),
            None => out.push_str(line),
        }
    }
    out
}

/// `n` and the noun in its number: `count(1, "effect", "effects")` is `1 effect`.
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A value as the protocol spells it (`maybe`, `D0`, `SCHEDULED`): its JSON string, or its
/// JSON text when it is not one.
pub fn spelled<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::{count, diff};

    #[test]
    fn one_is_singular_and_every_other_count_plural() {
        assert_eq!(count(1, "effect", "effects"), "1 effect");
        assert_eq!(count(0, "effect", "effects"), "0 effects");
        assert_eq!(count(2, "touch", "touches"), "2 touches");
    }

    #[test]
    fn a_diff_keeps_its_text_and_colours_added_and_removed_lines() {
        let text = "--- a/f\n+++ b/f\n@@ -1 +1 @@\n-old\n+new\n same";
        let coloured = diff(text);
        assert_eq!(anstream::adapter::strip_str(&coloured).to_string(), text);
        assert!(coloured.contains("\x1b[32m+new"), "{coloured:?}");
        assert!(coloured.contains("\x1b[31m-old"), "{coloured:?}");
    }
}
