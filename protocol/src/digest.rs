//! Content digests: `sha256:` followed by 64 lowercase hex digits.

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// The algorithm prefix every digest carries.
pub const PREFIX: &str = "sha256:";

/// A SHA-256 content digest, written `sha256:<64 lowercase hex>`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest([u8; 32]);

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestParseError {
    /// The string does not start with `sha256:`.
    #[error("digest must start with \"sha256:\"")]
    MissingPrefix,
    /// The hex part is not exactly 64 characters.
    #[error("digest must have 64 hex digits after \"sha256:\", found {0}")]
    WrongLength(usize),
    /// A character is not a lowercase hex digit.
    #[error("digest has {0:?} at position {1}; only lowercase hex digits are allowed")]
    BadCharacter(char, usize),
}

impl Digest {
    /// The digest of a byte string.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The digest of everything `reader` yields, read in fixed-size chunks.
    pub fn of_reader<R: Read>(mut reader: R) -> io::Result<Self> {
        let mut hasher = Hasher::new();
        io::copy(&mut reader, &mut hasher)?;
        Ok(hasher.finish())
    }

    /// Wraps raw SHA-256 output.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 lowercase hex digits, without the prefix.
    pub fn hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            out.push(HEX[usize::from(byte >> 4)] as char);
            out.push(HEX[usize::from(byte & 0x0f)] as char);
        }
        out
    }
}

impl FromStr for Digest {
    type Err = DigestParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s
            .strip_prefix(PREFIX)
            .ok_or(DigestParseError::MissingPrefix)?;
        if hex.len() != 64 {
            return Err(DigestParseError::WrongLength(hex.chars().count()));
        }
        let mut out = [0u8; 32];
        for (i, c) in hex.char_indices() {
            let nibble = match c {
                '0'..='9' => c as u8 - b'0',
                'a'..='f' => c as u8 - b'a' + 10,
                _ => return Err(DigestParseError::BadCharacter(c, PREFIX.len() + i)),
            };
            out[i / 2] |= if i % 2 == 0 { nibble << 4 } else { nibble };
        }
        Ok(Self(out))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An incremental SHA-256 hasher that is also an [`io::Write`] sink.
#[derive(Default, Clone)]
pub struct Hasher(Sha256);

impl Hasher {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds more bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        Digest(self.0.finalize().into())
    }
}

impl io::Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn digest_of_empty_input_is_the_known_value() {
        assert_eq!(Digest::of_bytes(b"").to_string(), EMPTY);
        assert_eq!(Digest::of_reader(&b""[..]).unwrap().to_string(), EMPTY);
    }

    #[test]
    fn parse_and_display_round_trip() {
        let d: Digest = EMPTY.parse().unwrap();
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(d, Digest::of_bytes(b""));
    }

    #[test]
    fn refuses_anything_but_the_canonical_spelling() {
        let hex = &EMPTY[7..];
        assert_eq!(hex.parse::<Digest>(), Err(DigestParseError::MissingPrefix));
        assert_eq!(
            format!("SHA256:{hex}").parse::<Digest>(),
            Err(DigestParseError::MissingPrefix)
        );
        assert_eq!(
            format!("sha256:{}", hex.to_uppercase()).parse::<Digest>(),
            Err(DigestParseError::BadCharacter('E', 7))
        );
        assert_eq!(
            format!("sha256:{}", &hex[1..]).parse::<Digest>(),
            Err(DigestParseError::WrongLength(63))
        );
        assert_eq!(
            format!("{EMPTY}0").parse::<Digest>(),
            Err(DigestParseError::WrongLength(65))
        );
        assert!(format!("sha256:{}é", &hex[2..]).parse::<Digest>().is_err());
        assert!(format!("sha256:{}g", &hex[1..]).parse::<Digest>().is_err());
    }

    #[test]
    fn serde_uses_the_string_form_and_refuses_bad_strings() {
        let d = Digest::of_bytes(b"x");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{d}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:abc\"").is_err());
        assert!(serde_json::from_str::<Digest>("42").is_err());
    }
}
