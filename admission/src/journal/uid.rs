//! Execution uids: the journal's names for executions, and their directory names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::JournalError;

/// The uid of one execution: a UUID in its lowercase hyphenated form, version 7 when we make
/// it (time-ordered, so `ls exec/` lists executions by start time) and version 4 or 7 when
/// we read it.
///
/// It becomes a path component under `exec/`, so parsing accepts that one spelling and
/// nothing else: no braces, no `urn:uuid:` prefix, no upper case, and never a separator or
/// a dot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Uid(String);

impl Uid {
    /// A fresh time-ordered uid (UUID v7).
    pub fn generate() -> Self {
        Self(Uuid::now_v7().hyphenated().to_string())
    }

    /// The uid as text, also its directory name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Uid {
    type Err = JournalError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || JournalError::BadUid(text.to_owned());
        let uuid = Uuid::try_parse(text).map_err(|_| bad())?;
        // `try_parse` also takes braced, URN and unhyphenated spellings and any case; one
        // spelling per uid keeps a uid and its directory name the same string.
        if uuid.hyphenated().to_string() != text {
            return Err(bad());
        }
        match uuid.get_version_num() {
            4 | 7 => Ok(Self(text.to_owned())),
            _ => Err(bad()),
        }
    }
}

impl TryFrom<String> for Uid {
    type Error = JournalError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<Uid> for String {
    fn from(uid: Uid) -> Self {
        uid.0
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_uids_round_trip_and_sort_by_time() {
        let first = Uid::generate();
        let second = Uid::generate();
        assert_eq!(first.as_str().parse::<Uid>().unwrap(), first);
        assert!(first < second, "{first} should sort before {second}");
    }

    #[test]
    fn only_the_canonical_spelling_of_a_v4_or_v7_uuid_is_a_uid() {
        let v4 = "1b4e28ba-2fa1-4d2e-883f-0016d3cca427";
        assert_eq!(v4.parse::<Uid>().unwrap().to_string(), v4);
        for hostile in [
            "",
            "../x",
            "..",
            "a/b",
            "1b4e28ba-2fa1-4d2e-883f-0016d3cca427/..",
            "1B4E28BA-2FA1-4D2E-883F-0016D3CCA427",
            "{1b4e28ba-2fa1-4d2e-883f-0016d3cca427}",
            "urn:uuid:1b4e28ba-2fa1-4d2e-883f-0016d3cca427",
            "1b4e28ba2fa14d2e883f0016d3cca427",
            " 1b4e28ba-2fa1-4d2e-883f-0016d3cca427",
            // Version 1 (time and MAC address): not something we make or accept.
            "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        ] {
            let err = hostile.parse::<Uid>().unwrap_err();
            assert!(matches!(err, JournalError::BadUid(_)), "{hostile:?}: {err}");
        }
    }

    #[test]
    fn serde_refuses_a_bad_uid() {
        let uid: Uid = serde_json::from_str("\"1b4e28ba-2fa1-4d2e-883f-0016d3cca427\"").unwrap();
        assert_eq!(
            serde_json::to_string(&uid).unwrap(),
            "\"1b4e28ba-2fa1-4d2e-883f-0016d3cca427\""
        );
        assert!(serde_json::from_str::<Uid>("\"../x\"").is_err());
    }
}
