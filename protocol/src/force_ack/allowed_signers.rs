//! The OpenSSH `allowed_signers` file (`man ssh-keygen`, ALLOWED SIGNERS): who may sign what.
//!
//! Each line is `principals [options] keytype base64 [comment]`. Principals and the
//! `namespaces` option are pattern lists (`*`, `?`, `!` negation, comma-separated), options
//! are `namespaces="..."`, `valid-after="..."` and `valid-before="..."`.
//!
//! The parser is stricter than OpenSSH in three places, each to keep trust decisions
//! independent of the host and obvious to read:
//! - a malformed line anywhere is an error naming its line, even if another line would match;
//! - times must be UTC (`Z`, `z` or `UTC` suffix): OpenSSH reads a bare time in the host's
//!   local zone, which would make the validity interval depend on `TZ`;
//! - `cert-authority` lines are refused: trusting SSH certificates needs certificate
//!   validation that force-acks do not use; list each signer's own key instead.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use ssh_key::public::KeyData;
use ssh_key::PublicKey;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

use super::show_time;

/// Why an `allowed_signers` file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AllowedSignersError {
    /// The file could not be read.
    #[error("cannot read allowed_signers file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// A line is malformed.
    #[error("{}line {line}: {reason}", in_file(path.as_deref()))]
    Line {
        /// The file, when the text came from one.
        path: Option<PathBuf>,
        /// 1-based line number.
        line: usize,
        /// What is wrong, and how to write it instead.
        reason: String,
    },
}

fn in_file(path: Option<&Path>) -> String {
    path.map(|p| format!("allowed_signers file {}, ", p.display()))
        .unwrap_or_else(|| "allowed_signers ".to_owned())
}

/// A parsed `allowed_signers` file: the trusted keys, in file order.
#[derive(Debug, Clone, Default)]
pub struct AllowedSigners {
    entries: Vec<Entry>,
}

/// One line of an `allowed_signers` file.
#[derive(Debug, Clone)]
pub struct Entry {
    /// 1-based line number, for messages.
    pub line: usize,
    /// Identities this key may sign as.
    pub principals: PatternList,
    /// Namespaces the key may sign in; `None` means any.
    pub namespaces: Option<PatternList>,
    /// The key is trusted from this second on, if set.
    pub valid_after: Option<OffsetDateTime>,
    /// The key is trusted until this second inclusive, if set.
    pub valid_before: Option<OffsetDateTime>,
    /// The trusted public key.
    pub key: PublicKey,
}

/// Why a key is not trusted for a principal and namespace at a time.
///
/// When several lines list the key, the one that got furthest decides the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The file lists no key at all.
    #[error("allowed_signers lists no keys, so nobody is trusted")]
    NoSigners,
    /// The key is on no line.
    #[error("the key is not listed in allowed_signers")]
    UnknownKey,
    /// The key is listed, but for other principals.
    #[error("allowed_signers line {line} lists the key for principals {principals}, which do not match {principal:?}")]
    Principal {
        /// The line that lists the key.
        line: usize,
        /// Its principal patterns.
        principals: String,
        /// The identity asked for.
        principal: String,
    },
    /// The key is listed for the principal, but restricted to other namespaces.
    #[error("allowed_signers line {line} restricts the key to namespaces {namespaces}, which do not include {namespace:?}")]
    Namespace {
        /// The line that lists the key.
        line: usize,
        /// Its namespace patterns.
        namespaces: String,
        /// The namespace asked for.
        namespace: String,
    },
    /// The key is listed for principal and namespace, but not for this time.
    #[error("allowed_signers line {line} trusts the key only {}, and now is {}", interval(*.valid_after, *.valid_before), show_time(*.now))]
    Validity {
        /// The line that lists the key.
        line: usize,
        /// Its `valid-after`.
        valid_after: Option<OffsetDateTime>,
        /// Its `valid-before`.
        valid_before: Option<OffsetDateTime>,
        /// The time of the check.
        now: OffsetDateTime,
    },
}

fn interval(after: Option<OffsetDateTime>, before: Option<OffsetDateTime>) -> String {
    match (after, before) {
        (Some(a), Some(b)) => format!("from {} until {}", show_time(a), show_time(b)),
        (Some(a), None) => format!("from {}", show_time(a)),
        (None, Some(b)) => format!("until {}", show_time(b)),
        (None, None) => "always".to_owned(),
    }
}

impl Refusal {
    /// How far the search got; the furthest refusal is the most useful one to report.
    fn rank(&self) -> u8 {
        match self {
            Refusal::NoSigners => 0,
            Refusal::UnknownKey => 1,
            Refusal::Principal { .. } => 2,
            Refusal::Namespace { .. } => 3,
            Refusal::Validity { .. } => 4,
        }
    }
}

impl AllowedSigners {
    /// Parses the text of an `allowed_signers` file.
    pub fn parse(text: &str) -> Result<Self, AllowedSignersError> {
        let mut entries = Vec::new();
        for (index, raw) in text.split('\n').enumerate() {
            let line = index + 1;
            match parse_line(line, raw) {
                Ok(Some(entry)) => entries.push(entry),
                Ok(None) => {}
                Err(reason) => {
                    return Err(AllowedSignersError::Line {
                        path: None,
                        line,
                        reason,
                    })
                }
            }
        }
        Ok(Self { entries })
    }

    /// Reads and parses an `allowed_signers` file.
    pub fn read(path: &Path) -> Result<Self, AllowedSignersError> {
        let bytes = std::fs::read(path).map_err(|source| AllowedSignersError::Read {
            path: path.to_owned(),
            source,
        })?;
        let with_path = |line, reason| AllowedSignersError::Line {
            path: Some(path.to_owned()),
            line,
            reason,
        };
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            let before = &bytes[..e.valid_up_to()];
            let line = before.iter().filter(|b| **b == b'\n').count() + 1;
            with_path(line, "not UTF-8".to_owned())
        })?;
        Self::parse(text).map_err(|e| match e {
            AllowedSignersError::Line { line, reason, .. } => with_path(line, reason),
            other => other,
        })
    }

    /// The trusted keys, one per non-comment line, in file order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// True when the file lists no key, so no signature can be trusted.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The first line that trusts `key` to sign as `principal` in `namespace` at `now`.
    pub fn authorize(
        &self,
        key: &KeyData,
        principal: &str,
        namespace: &str,
        now: OffsetDateTime,
    ) -> Result<&Entry, Refusal> {
        let mut best = if self.entries.is_empty() {
            Refusal::NoSigners
        } else {
            Refusal::UnknownKey
        };
        for entry in self.entries.iter().filter(|e| e.key.key_data() == key) {
            let refusal = if !entry.principals.matches(principal) {
                Refusal::Principal {
                    line: entry.line,
                    principals: entry.principals.to_string(),
                    principal: principal.to_owned(),
                }
            } else if let Some(namespaces) = entry
                .namespaces
                .as_ref()
                .filter(|ns| !ns.matches(namespace))
            {
                Refusal::Namespace {
                    line: entry.line,
                    namespaces: namespaces.to_string(),
                    namespace: namespace.to_owned(),
                }
            } else if !entry.is_valid_at(now) {
                Refusal::Validity {
                    line: entry.line,
                    valid_after: entry.valid_after,
                    valid_before: entry.valid_before,
                    now,
                }
            } else {
                return Ok(entry);
            };
            if refusal.rank() > best.rank() {
                best = refusal;
            }
        }
        Err(best)
    }
}

impl Entry {
    /// Whether `now` lies inside `[valid_after, valid_before]`, compared in whole seconds as
    /// OpenSSH does.
    pub fn is_valid_at(&self, now: OffsetDateTime) -> bool {
        let now = now.unix_timestamp();
        self.valid_after
            .is_none_or(|after| now >= after.unix_timestamp())
            && self
                .valid_before
                .is_none_or(|before| now <= before.unix_timestamp())
    }
}

/// A comma-separated OpenSSH pattern list: `*` any run, `?` one character, `!` negates.
///
/// It matches when some plain pattern matches and no negated one does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternList {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    negated: bool,
    glob: Vec<char>,
}

impl PatternList {
    /// Parses `a,b*,!c`; an empty list or an empty item is refused.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut patterns = Vec::new();
        for item in list.split(',') {
            let (negated, glob) = match item.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, item),
            };
            if glob.is_empty() {
                return Err(format!("empty pattern in list {list:?}"));
            }
            if let Some(c) = glob.chars().find(|c| c.is_control() || c.is_whitespace()) {
                return Err(format!("pattern {item:?} contains {c:?}"));
            }
            patterns.push(Pattern {
                negated,
                glob: glob.chars().collect(),
            });
        }
        Ok(Self { patterns })
    }

    /// Whether `subject` is matched by a plain pattern and by no negated one.
    pub fn matches(&self, subject: &str) -> bool {
        let subject: Vec<char> = subject.chars().collect();
        let mut positive = false;
        for pattern in &self.patterns {
            if glob_matches(&pattern.glob, &subject) {
                if pattern.negated {
                    return false;
                }
                positive = true;
            }
        }
        positive
    }
}

impl fmt::Display for PatternList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, pattern) in self.patterns.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if pattern.negated {
                f.write_str("!")?;
            }
            pattern.glob.iter().try_for_each(|c| write!(f, "{c}"))?;
        }
        Ok(())
    }
}

/// Wildcard matching with one backtrack point, so a pattern of many `*` stays linear-ish
/// instead of exploding as the naive recursion does.
fn glob_matches(pattern: &[char], subject: &[char]) -> bool {
    let (mut p, mut s) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while s < subject.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, s));
                p += 1;
            }
            Some(&c) if c == '?' || c == subject[s] => {
                p += 1;
                s += 1;
            }
            _ => match star {
                Some((star_p, star_s)) => {
                    p = star_p + 1;
                    s = star_s + 1;
                    star = Some((star_p, star_s + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// Parses one line; `Ok(None)` for blank and comment lines.
fn parse_line(line: usize, raw: &str) -> Result<Option<Entry>, String> {
    // CRLF files: OpenSSH counts `\r` as whitespace too.
    let text = raw.strip_suffix('\r').unwrap_or(raw);
    let rest = skip_blanks(text);
    if rest.is_empty() || rest.starts_with('#') {
        return Ok(None);
    }
    let (principals, rest) = principals_field(rest)?;
    let principals = PatternList::parse(&principals).map_err(|e| format!("bad principals: {e}"))?;
    let rest = skip_blanks(rest);
    if rest.is_empty() {
        return Err(missing_key());
    }
    let (first, after) = options_field(rest)?;
    let mut options = Options::default();
    let rest = if looks_like_options(first) {
        parse_options(first, &mut options)?;
        skip_blanks(after)
    } else {
        rest
    };
    let key = public_key(rest)?;
    Ok(Some(Entry {
        line,
        principals,
        namespaces: options.namespaces,
        valid_after: options.valid_after,
        valid_before: options.valid_before,
        key,
    }))
}

fn missing_key() -> String {
    "missing public key: write `principals [options] keytype base64`, \
     e.g. `alice@example.com ssh-ed25519 AAAA...`"
        .to_owned()
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn skip_blanks(s: &str) -> &str {
    s.trim_start_matches(is_blank)
}

/// The principals field: a whole `"quoted"` token or a bare one without quotes.
fn principals_field(s: &str) -> Result<(String, &str), String> {
    if let Some(quoted) = s.strip_prefix('"') {
        let end = quoted
            .find('"')
            .ok_or("principals: missing closing double quote")?;
        let (inside, after) = (&quoted[..end], &quoted[end + 1..]);
        if !after.is_empty() && !after.starts_with(is_blank) {
            return Err("principals: the closing double quote must be followed by a space".into());
        }
        return Ok((inside.to_owned(), after));
    }
    let end = s.find(is_blank).unwrap_or(s.len());
    let token = &s[..end];
    if token.contains('"') {
        return Err(format!(
            "principals {token:?}: quote the whole field, as \"a@example.com,b@example.com\""
        ));
    }
    Ok((token.to_owned(), &s[end..]))
}

/// The next token, where blanks inside double quotes (with `\"` escapes) do not end it.
fn options_field(s: &str) -> Result<(&str, &str), String> {
    let mut quoted = false;
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if quoted && s[i + 1..].starts_with('"') => {
                chars.next();
            }
            '"' => quoted = !quoted,
            c if is_blank(c) && !quoted => return Ok((&s[..i], &s[i..])),
            _ => {}
        }
    }
    if quoted {
        return Err("options: missing closing double quote".to_owned());
    }
    Ok((s, ""))
}

/// Key types never contain `=`, and `cert-authority` is the one flag option.
fn looks_like_options(token: &str) -> bool {
    token.contains('=') || token.eq_ignore_ascii_case("cert-authority")
}

#[derive(Default)]
struct Options {
    namespaces: Option<PatternList>,
    valid_after: Option<OffsetDateTime>,
    valid_before: Option<OffsetDateTime>,
}

fn parse_options(text: &str, options: &mut Options) -> Result<(), String> {
    let mut rest = text;
    loop {
        let name_end = rest.find(['=', ',']).unwrap_or(rest.len());
        let name = &rest[..name_end];
        rest = &rest[name_end..];
        match rest.strip_prefix('=') {
            Some(value) => {
                let (value, after) = dequote(name, value)?;
                set_option(options, name, &value)?;
                rest = after;
            }
            None if name.eq_ignore_ascii_case("cert-authority") => {
                return Err(
                    "cert-authority is not supported: force-acks are checked against \
                            each signer's own key, not SSH certificates; list the key itself"
                        .to_owned(),
                )
            }
            None => return Err(unknown_option(name)),
        }
        match rest.strip_prefix(',') {
            None if rest.is_empty() => return Ok(()),
            Some("") => return Err("options end with a comma".to_owned()),
            Some(next) => rest = next,
            None => {
                return Err(format!(
                    "unexpected {rest:?} after option {name}; separate options with commas"
                ))
            }
        }
    }
}

fn unknown_option(name: &str) -> String {
    format!(
        "unknown option {name:?}: allowed are namespaces=\"...\", valid-after=\"...\" and \
         valid-before=\"...\""
    )
}

/// An option value in double quotes, `\"` standing for a quote; returns it and the rest.
fn dequote<'a>(name: &str, s: &'a str) -> Result<(String, &'a str), String> {
    let Some(inner) = s.strip_prefix('"') else {
        return Err(format!(
            "the value of {name} must be in double quotes, as {name}=\"...\" (OpenSSH requires it)"
        ));
    };
    let mut value = String::new();
    let mut chars = inner.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if inner[i + 1..].starts_with('"') => {
                value.push('"');
                chars.next();
            }
            '"' => return Ok((value, &inner[i + 1..])),
            c => value.push(c),
        }
    }
    Err(format!("the value of {name} has no closing double quote"))
}

fn set_option(options: &mut Options, name: &str, value: &str) -> Result<(), String> {
    let duplicate = || format!("option {name} is given twice");
    if name.eq_ignore_ascii_case("namespaces") {
        if options.namespaces.is_some() {
            return Err(duplicate());
        }
        let list = PatternList::parse(value).map_err(|e| format!("namespaces: {e}"))?;
        options.namespaces = Some(list);
    } else if name.eq_ignore_ascii_case("valid-after") || name.eq_ignore_ascii_case("valid-before")
    {
        let after = name.eq_ignore_ascii_case("valid-after");
        let slot = if after {
            &mut options.valid_after
        } else {
            &mut options.valid_before
        };
        if slot.is_some() {
            return Err(duplicate());
        }
        *slot = Some(parse_time(value).map_err(|e| format!("{name}: {e}"))?);
        if let (Some(a), Some(b)) = (options.valid_after, options.valid_before) {
            if b <= a {
                return Err(format!(
                    "valid-before ({}) is not after valid-after ({})",
                    show_time(b),
                    show_time(a)
                ));
            }
        }
    } else {
        return Err(unknown_option(name));
    }
    Ok(())
}

/// `YYYYMMDD[HHMM[SS]]` with a `Z` or `UTC` suffix (any case), as UTC.
pub fn parse_time(value: &str) -> Result<OffsetDateTime, String> {
    let digits = if let Some(d) = value.strip_suffix(['Z', 'z']) {
        d
    } else if value.len() > 3 && value.is_char_boundary(value.len() - 3) {
        let (d, suffix) = value.split_at(value.len() - 3);
        if !suffix.eq_ignore_ascii_case("UTC") {
            return Err(no_utc(value));
        }
        d
    } else {
        return Err(no_utc(value));
    };
    if !matches!(digits.len(), 8 | 12 | 14) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{value:?} is not YYYYMMDD, YYYYMMDDHHMM or YYYYMMDDHHMMSS followed by Z"
        ));
    }
    // All ASCII digits, so every slice below is on a character boundary and parses.
    let number = |range: std::ops::Range<usize>| -> u16 {
        digits.get(range).and_then(|s| s.parse().ok()).unwrap_or(0)
    };
    let bad = |what: &str| format!("{value:?} has an invalid {what}");
    let month = Month::try_from(number(4..6) as u8).map_err(|_| bad("month"))?;
    let date = Date::from_calendar_date(i32::from(number(0..4)), month, number(6..8) as u8)
        .map_err(|_| bad("day"))?;
    let time = Time::from_hms(
        number(8..10) as u8,
        number(10..12) as u8,
        number(12..14) as u8,
    )
    .map_err(|_| bad("time of day"))?;
    Ok(PrimitiveDateTime::new(date, time).assume_utc())
}

fn no_utc(value: &str) -> String {
    format!(
        "{value:?} has no Z suffix; OpenSSH would read it in the host's local time zone, which \
         this verifier refuses so trust does not depend on TZ: write it in UTC and append Z"
    )
}

/// `keytype base64 [comment]`; the comment is ignored.
fn public_key(s: &str) -> Result<PublicKey, String> {
    let mut tokens = s.split(is_blank).filter(|t| !t.is_empty());
    let (Some(kind), Some(base64)) = (tokens.next(), tokens.next()) else {
        return Err(missing_key());
    };
    PublicKey::from_openssh(&format!("{kind} {base64}"))
        .map_err(|e| format!("invalid public key {kind} {base64:.16}...: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHLgGE+0nmbuO9sAKBPQsPudNlhvED2Hwy1FPn4OTEqn";
    const OTHER: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti";

    fn key_data(line: &str) -> KeyData {
        PublicKey::from_openssh(line).unwrap().key_data().clone()
    }

    fn line_error(text: &str) -> (usize, String) {
        match AllowedSigners::parse(text).unwrap_err() {
            AllowedSignersError::Line { line, reason, .. } => (line, reason),
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn parses_comments_blank_lines_options_and_quotes() {
        let text = format!(
            "# trusted operators\n\
             \n\
             \t  # indented comment\n\
             alice@example.com,bob@example.com {KEY} alice's laptop\n\
             \"carol@example.com,*@ops.example.com\" namespaces=\"mechanism-force-ack,git\",valid-after=\"20260101Z\",VALID-BEFORE=\"202701020304UTC\" {OTHER}\r\n\
             dave@example.com\tnamespaces=\"a\\\"b\"\t{KEY}\n"
        );
        let signers = AllowedSigners::parse(&text).unwrap();
        let entries = signers.entries();
        assert_eq!(entries.len(), 3);

        assert_eq!(entries[0].line, 4);
        assert_eq!(
            entries[0].principals.to_string(),
            "alice@example.com,bob@example.com"
        );
        assert!(entries[0].namespaces.is_none());
        assert_eq!(entries[0].key.key_data(), &key_data(KEY));

        let carol = &entries[1];
        assert_eq!(carol.line, 5);
        assert!(carol.principals.matches("carol@example.com"));
        assert!(carol.principals.matches("eve@ops.example.com"));
        assert!(!carol.principals.matches("eve@example.com"));
        let namespaces = carol.namespaces.as_ref().unwrap();
        assert!(namespaces.matches("mechanism-force-ack") && namespaces.matches("git"));
        assert!(!namespaces.matches("file"));
        assert_eq!(carol.valid_after, Some(datetime!(2026-01-01 0:00 UTC)));
        assert_eq!(carol.valid_before, Some(datetime!(2027-01-02 3:04 UTC)));
        assert_eq!(carol.key.key_data(), &key_data(OTHER));

        assert_eq!(entries[2].namespaces.as_ref().unwrap().to_string(), "a\"b");
    }

    #[test]
    fn pattern_lists_follow_openssh_semantics() {
        let list = PatternList::parse("*@example.com,!mallory@example.com,o?s@*").unwrap();
        assert!(list.matches("alice@example.com"));
        assert!(!list.matches("mallory@example.com"));
        assert!(list.matches("ops@anywhere"));
        assert!(!list.matches("oops@anywhere"));
        assert!(!list.matches("alice@example.org"));
        assert!(PatternList::parse("*").unwrap().matches(""));
        assert!(!PatternList::parse("!x").unwrap().matches("y"));
        assert!(PatternList::parse("a**b*c").unwrap().matches("aXXbYYbc"));
        assert!(!PatternList::parse("a*b*c").unwrap().matches("aXXbYYb"));
        assert!(PatternList::parse("Alice").unwrap().matches("Alice"));
        assert!(!PatternList::parse("Alice").unwrap().matches("alice"));
        let many_stars = format!("{}b", "*a".repeat(30));
        assert!(!PatternList::parse(&many_stars)
            .unwrap()
            .matches(&"a".repeat(60)));
        assert!(PatternList::parse("a,,b").is_err());
        assert!(PatternList::parse("!").is_err());
    }

    #[test]
    fn times_are_utc_in_three_lengths() {
        assert_eq!(
            parse_time("20261122Z").unwrap(),
            datetime!(2026-11-22 0:00 UTC)
        );
        assert_eq!(
            parse_time("202611221930z").unwrap(),
            datetime!(2026-11-22 19:30 UTC)
        );
        assert_eq!(
            parse_time("20261122193005utc").unwrap(),
            datetime!(2026-11-22 19:30:05 UTC)
        );
        for bad in [
            "20261122",
            "2026112Z",
            "2026112219Z",
            "20261322Z",
            "20260230Z",
            "20261122250000Z",
            "2026-11-22Z",
            "Z",
            "éUTC",
        ] {
            assert!(parse_time(bad).is_err(), "{bad} was accepted");
        }
        assert!(parse_time("20261122")
            .unwrap_err()
            .contains("local time zone"));
    }

    #[test]
    fn each_malformed_line_names_its_line_number() {
        let cases = [
            ("alice@example.com".to_owned(), "missing public key"),
            (
                "alice@example.com ssh-ed25519".to_owned(),
                "missing public key",
            ),
            (
                "alice@example.com ssh-ed25519 AAAA".to_owned(),
                "invalid public key",
            ),
            (format!("\"alice@example.com {KEY}"), "closing double quote"),
            (format!("\"alice\"x {KEY}"), "followed by a space"),
            (format!("al\"ice {KEY}"), "quote the whole field"),
            (format!("a,,b {KEY}"), "empty pattern"),
            (
                format!("alice cert-authority {KEY}"),
                "cert-authority is not supported",
            ),
            (format!("alice namespaces=x {KEY}"), "double quotes"),
            (
                format!("alice namespaces=\"x {KEY}"),
                "closing double quote",
            ),
            (format!("alice namespaces=\"\" {KEY}"), "empty pattern"),
            (format!("alice foo=\"x\" {KEY}"), "unknown option"),
            (
                format!("alice namespaces=\"a\",namespaces=\"b\" {KEY}"),
                "given twice",
            ),
            (format!("alice namespaces=\"a\", {KEY}"), "end with a comma"),
            (
                format!("alice namespaces=\"a\"x {KEY}"),
                "separate options with commas",
            ),
            (
                format!("alice namespaces=\"a\",cert-authority {KEY}"),
                "cert-authority",
            ),
            (
                format!("alice namespaces=\"a\",no-touch-required {KEY}"),
                "unknown option",
            ),
            (
                format!("alice valid-after=\"20260101\" {KEY}"),
                "local time zone",
            ),
            (format!("alice valid-before=\"2026010Z\" {KEY}"), "YYYYMMDD"),
            (
                format!("alice valid-after=\"20270101Z\",valid-before=\"20260101Z\" {KEY}"),
                "not after valid-after",
            ),
            ("alice namespaces=\"a\"".to_owned(), "missing public key"),
        ];
        for (bad, reason) in cases {
            let text =
                format!("# header\n\nalice@example.com {KEY}\n{bad}\n{OTHER} never reached\n");
            let (line, message) = line_error(&text);
            assert_eq!(line, 4, "{bad}: {message}");
            assert!(message.contains(reason), "{bad}: {message}");
            let shown = AllowedSigners::parse(&text).unwrap_err().to_string();
            assert!(shown.starts_with("allowed_signers line 4: "), "{shown}");
        }
    }

    #[test]
    fn read_names_the_file_and_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("allowed_signers");
        std::fs::write(&path, format!("alice {KEY}\nbob\n")).unwrap();
        let message = AllowedSigners::read(&path).unwrap_err().to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("line 2: missing public key"), "{message}");

        std::fs::write(&path, b"alice x\n\xff\n").unwrap();
        let message = AllowedSigners::read(&path).unwrap_err().to_string();
        assert!(message.contains("line 2: not UTF-8"), "{message}");

        let missing = AllowedSigners::read(&dir.path().join("nope")).unwrap_err();
        assert!(matches!(missing, AllowedSignersError::Read { .. }));
    }

    #[test]
    fn authorize_reports_the_furthest_refusal() {
        let now = datetime!(2026-11-22 18:00 UTC);
        let ns = "mechanism-force-ack";
        let key = key_data(KEY);
        let other = key_data(OTHER);

        let empty = AllowedSigners::parse("# nobody\n").unwrap();
        assert!(empty.is_empty());
        assert_eq!(
            empty.authorize(&key, "alice", ns, now).unwrap_err(),
            Refusal::NoSigners
        );

        let text = format!(
            "bob {KEY}\n\
             alice namespaces=\"git\" {KEY}\n\
             alice valid-before=\"20261122175959Z\" {KEY}\n\
             carol valid-after=\"20261122180000Z\",valid-before=\"20261122180001Z\" {OTHER}\n"
        );
        let signers = AllowedSigners::parse(&text).unwrap();
        assert_eq!(signers.authorize(&key, "bob", ns, now).unwrap().line, 1);
        assert!(matches!(
            signers.authorize(&key, "alice", ns, now).unwrap_err(),
            Refusal::Validity { line: 3, .. }
        ));
        assert!(matches!(
            signers.authorize(&key, "alice", "file", now).unwrap_err(),
            Refusal::Validity { line: 3, .. }
        ));
        assert!(matches!(
            signers.authorize(&key, "alice", "git", now - time::Duration::hours(1)),
            Ok(Entry { line: 2, .. })
        ));
        assert!(matches!(
            signers.authorize(&key, "eve", ns, now).unwrap_err(),
            Refusal::Principal { line: 1, .. }
        ));
        assert_eq!(signers.authorize(&other, "carol", ns, now).unwrap().line, 4);
        assert_eq!(
            signers
                .authorize(
                    &other,
                    "carol",
                    ns,
                    now + time::Duration::milliseconds(1999)
                )
                .unwrap()
                .line,
            4
        );
        assert!(matches!(
            signers.authorize(&other, "carol", ns, now + time::Duration::seconds(2)),
            Err(Refusal::Validity { line: 4, .. })
        ));
        assert!(matches!(
            signers.authorize(&other, "carol", ns, now - time::Duration::milliseconds(1)),
            Err(Refusal::Validity { line: 4, .. })
        ));

        let only_other = AllowedSigners::parse(&format!("alice {OTHER}\n")).unwrap();
        assert_eq!(
            only_other.authorize(&key, "alice", ns, now).unwrap_err(),
            Refusal::UnknownKey
        );
        let message = Refusal::Namespace {
            line: 2,
            namespaces: "git".into(),
            namespace: ns.into(),
        }
        .to_string();
        assert!(
            message.contains("line 2") && message.contains("git"),
            "{message}"
        );
    }
}
