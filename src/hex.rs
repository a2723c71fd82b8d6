//! Fixed-size hex values the API exchanges: compose hashes, transaction hashes, app ids.
//!
//! The server and the chain write them with or without `0x` and in either case; these types
//! accept both, and print them the way the chain does (`0x`, lowercase).

use std::fmt;
use std::str::FromStr;

/// A hex string that is not the value it claims to be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HexError {
    /// Not hexadecimal.
    #[error("{what} is not hex")]
    NotHex {
        /// What was being parsed, e.g. "compose hash".
        what: &'static str,
    },
    /// Hexadecimal, but of the wrong length.
    #[error("{what} must be {expected} bytes ({} hex digits), got {got} hex digits", expected * 2)]
    WrongLength {
        /// What was being parsed.
        what: &'static str,
        /// Expected length in bytes.
        expected: usize,
        /// Hex digits given (without `0x`).
        got: usize,
    },
}

/// Strips an optional `0x`/`0X` prefix.
pub(crate) fn strip_0x(s: &str) -> &str {
    s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s)
}

/// Decodes exactly `N` bytes of hex, with or without `0x`.
pub(crate) fn decode_fixed<const N: usize>(s: &str, what: &'static str) -> Result<[u8; N], HexError> {
    let digits = strip_0x(s.trim());
    if digits.len() != N * 2 {
        return Err(if digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            HexError::WrongLength { what, expected: N, got: digits.len() }
        } else {
            HexError::NotHex { what }
        });
    }
    let mut out = [0u8; N];
    const_hex::decode_to_slice(digits, &mut out).map_err(|_| HexError::NotHex { what })?;
    Ok(out)
}

macro_rules! fixed_hex {
    ($(#[$doc:meta])* $name:ident, $len:literal, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// What this value is called in error messages.
            pub const WHAT: &'static str = $what;

            /// The raw bytes.
            pub const fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Lowercase hex with `0x`, as the chain prints it.
            pub fn to_hex(&self) -> String {
                const_hex::encode_prefixed(self.0)
            }
        }

        impl FromStr for $name {
            type Err = HexError;
            fn from_str(s: &str) -> Result<Self, HexError> {
                decode_fixed::<$len>(s, $what).map(Self)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = HexError;
            fn try_from(s: &str) -> Result<Self, HexError> {
                s.parse()
            }
        }

        impl From<[u8; $len]> for $name {
            fn from(bytes: [u8; $len]) -> Self {
                Self(bytes)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

fixed_hex!(
    /// The SHA-256 hash of an app compose, as phase 1 (465) returns it and the app contract
    /// stores it.
    ComposeHash,
    32,
    "compose hash"
);
fixed_hex!(
    /// The hash of the transaction that registered a compose hash on-chain.
    TransactionHash,
    32,
    "transaction hash"
);
fixed_hex!(
    /// An app id: the address of the app's auth contract (20 bytes).
    AppId,
    20,
    "app id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_and_without_prefix() {
        let a: ComposeHash = "18c6844ab5199260711a82b83367e977c1c152129c1e70deb252eae8b276cd49".parse().unwrap();
        let b: ComposeHash = "0x18C6844AB5199260711A82B83367E977C1C152129C1E70DEB252EAE8B276CD49".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "0x18c6844ab5199260711a82b83367e977c1c152129c1e70deb252eae8b276cd49");
    }

    #[test]
    fn errors_name_the_value() {
        let e = "0x1234".parse::<TransactionHash>().unwrap_err();
        assert_eq!(e.to_string(), "transaction hash must be 32 bytes (64 hex digits), got 4 hex digits");
        let e = "zz".repeat(20).parse::<AppId>().unwrap_err();
        assert_eq!(e, HexError::NotHex { what: "app id" });
        assert!("0x".parse::<AppId>().is_err());
    }

    #[test]
    fn serde_round_trip() {
        let id: AppId = "a172cedcae47474b615c54d510a5d84a8dea3032".parse().unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"0xa172cedcae47474b615c54d510a5d84a8dea3032\"");
        assert_eq!(serde_json::from_str::<AppId>(&json).unwrap(), id);
    }
}
