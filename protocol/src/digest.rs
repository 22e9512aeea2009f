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
        let mut out = [0u8; 64];
        for (pair, byte) in out.chunks_exact_mut(2).zip(self.0) {
            pair.copy_from_slice(&[HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0x0f)]]);
        }
        // ASCII, so never the empty default.
        String::from_utf8(out.to_vec()).unwrap_or_default()
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
        // By bytes, not chars: every request names a digest or two. Any other byte, a UTF-8
        // sequence's included, is not a hex digit; the first bad char is found only then.
        let nibble = |b: u8| match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            _ => None,
        };
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            match (
                pair.first().copied().and_then(nibble),
                pair.get(1).copied().and_then(nibble),
            ) {
                (Some(high), Some(low)) => *byte = high << 4 | low,
                _ => {
                    let (i, c) = hex
                        .char_indices()
                        .find(|(_, c)| !matches!(c, '0'..='9' | 'a'..='f'))
                        .unwrap_or_default();
                    return Err(DigestParseError::BadCharacter(c, PREFIX.len() + i));
                }
            }
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
            format!("sha256:0g{}", &hex[2..]).parse::<Digest>(),
            Err(DigestParseError::BadCharacter('g', 8))
        );
        // 64 bytes, 63 chars: the bad char is named, not a length.
        assert_eq!(
            format!("sha256:01\u{e9}{}", &hex[4..]).parse::<Digest>(),
            Err(DigestParseError::BadCharacter('\u{e9}', 9))
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
