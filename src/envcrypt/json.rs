//! The plaintext JSON, `{"env":[{"key":"NAME","value":"text"},…]}`.
//!
//! Written by hand so that it goes straight into the one buffer [`encrypt`](super::encrypt)
//! allocates, with nothing copied on the way; escaping is serde_json's (`\"`, `\\`, `\b`, `\f`,
//! `\n`, `\r`, `\t`, `\u00XX` for other control characters), with no whitespace. The escaped
//! length of each value is computed once, when [`EnvVars`] takes the value in, so that encryption
//! sizes its buffer exactly without scanning the values again and copies a value that needs no
//! escaping in one `memcpy`.

use super::EnvVars;

const ENV_OPEN: &[u8] = br#"{"env":["#;
const ENV_CLOSE: &[u8] = b"]}";
const KEY_OPEN: &[u8] = br#"{"key":""#;
const VALUE_OPEN: &[u8] = br#"","value":""#;
const ENTRY_CLOSE: &[u8] = br#""}"#;
const ENTRY_FIXED: usize = KEY_OPEN.len() + VALUE_OPEN.len() + ENTRY_CLOSE.len();

/// Bytes checked at once. The check has no early exit, so it compiles to SIMD compares.
const CHUNK: usize = 32;

/// Exact length of the plaintext of `env`.
pub(super) fn plaintext_len(env: &EnvVars) -> usize {
    let entries: usize = env.json_entries().map(|(key, _, value_len)| ENTRY_FIXED + key.len() + value_len).sum();
    ENV_OPEN.len() + entries + env.len().saturating_sub(1) + ENV_CLOSE.len()
}

/// Appends the plaintext of `env` to `out`: exactly [`plaintext_len`] bytes.
pub(super) fn write_plaintext(env: &EnvVars, out: &mut Vec<u8>) {
    out.extend_from_slice(ENV_OPEN);
    for (i, (key, value, value_len)) in env.json_entries().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(KEY_OPEN);
        // Names are checked to be `[a-zA-Z_][a-zA-Z0-9_]*`: nothing to escape.
        debug_assert_eq!(escaped_len(key.as_bytes()), key.len());
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(VALUE_OPEN);
        if value_len == value.len() {
            out.extend_from_slice(value.as_bytes());
        } else {
            write_escaped(out, value.as_bytes());
        }
        out.extend_from_slice(ENTRY_CLOSE);
    }
    out.extend_from_slice(ENV_CLOSE);
}

#[inline(always)]
fn needs_escape(b: u8) -> u8 {
    u8::from(b < 0x20) | u8::from(b == b'"') | u8::from(b == b'\\')
}

#[inline(always)]
fn chunk_is_clean(chunk: &[u8; CHUNK]) -> bool {
    chunk.iter().fold(0u8, |acc, &b| acc | needs_escape(b)) == 0
}

/// Extra bytes escaping `b` takes.
#[inline(always)]
fn escape_extra(b: u8) -> usize {
    match b {
        b'"' | b'\\' | 0x08 | 0x0c | b'\n' | b'\r' | b'\t' => 1,
        0..0x20 => 5,
        _ => 0,
    }
}

/// Length of `s` as the inside of a JSON string.
pub(super) fn escaped_len(s: &[u8]) -> usize {
    let (chunks, rest) = s.as_chunks::<CHUNK>();
    let mut extra = 0;
    for chunk in chunks {
        if !chunk_is_clean(chunk) {
            extra += chunk.iter().map(|&b| escape_extra(b)).sum::<usize>();
        }
    }
    extra += rest.iter().map(|&b| escape_extra(b)).sum::<usize>();
    s.len() + extra
}

fn write_escaped(out: &mut Vec<u8>, s: &[u8]) {
    let (chunks, _) = s.as_chunks::<CHUNK>();
    let mut run_start = 0; // start of the bytes not yet copied
    let mut escape_at = |out: &mut Vec<u8>, at: usize| {
        out.extend_from_slice(&s[run_start..at]);
        push_escape(out, s[at]);
        run_start = at + 1;
    };
    for (c, chunk) in chunks.iter().enumerate() {
        if !chunk_is_clean(chunk) {
            for (j, &b) in chunk.iter().enumerate() {
                if needs_escape(b) != 0 {
                    escape_at(out, c * CHUNK + j);
                }
            }
        }
    }
    for (at, &b) in s.iter().enumerate().skip(chunks.len() * CHUNK) {
        if needs_escape(b) != 0 {
            escape_at(out, at);
        }
    }
    out.extend_from_slice(&s[run_start..]);
}

fn push_escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match b {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        0x08 => out.extend_from_slice(b"\\b"),
        0x0c => out.extend_from_slice(b"\\f"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        _ => out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]),
    }
}

/// What [`decrypt`](super::decrypt) parses; values go straight into wiped storage.
pub(super) mod de {
    use serde::Deserialize;
    use zeroize::Zeroizing;

    #[derive(Deserialize)]
    pub(in crate::envcrypt) struct Envelope {
        pub(in crate::envcrypt) env: Vec<Entry>,
    }

    #[derive(Deserialize)]
    pub(in crate::envcrypt) struct Entry {
        pub(in crate::envcrypt) key: String,
        pub(in crate::envcrypt) value: SecretString,
    }

    pub(in crate::envcrypt) struct SecretString(pub(in crate::envcrypt) Zeroizing<String>);

    impl<'de> Deserialize<'de> for SecretString {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visitor;
            impl serde::de::Visitor<'_> for Visitor {
                type Value = SecretString;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a string")
                }
                fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SecretString, E> {
                    Ok(SecretString(Zeroizing::new(v.to_owned())))
                }
                fn visit_string<E: serde::de::Error>(self, v: String) -> Result<SecretString, E> {
                    Ok(SecretString(Zeroizing::new(v)))
                }
            }
            d.deserialize_string(Visitor)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_serde_json() {
        let all_ascii: String = (0u8..0x80).map(char::from).collect();
        let long = format!("{}\"{}\\{}\u{1}é漢{}", "a".repeat(40), "b".repeat(31), "c".repeat(64), "d".repeat(33));
        let cases: Vec<(&str, String)> = vec![
            ("EMPTY", String::new()),
            ("ALL_ASCII", all_ascii.repeat(3)),
            ("LONG", long),
            ("QUOTES", "\"\\\"".repeat(50)),
            ("NL", "line1\nline2\r\n\ttab\u{7f}".into()),
            ("CLEAN", "x".repeat(100)),
        ];
        let env = EnvVars::from_pairs(cases.clone()).unwrap();
        let mut ours = Vec::new();
        write_plaintext(&env, &mut ours);
        assert_eq!(ours.len(), plaintext_len(&env));
        let expected = serde_json::json!({
            "env": cases.iter().map(|(k, v)| serde_json::json!({"key": k, "value": v})).collect::<Vec<_>>()
        });
        assert_eq!(ours, serde_json::to_vec(&expected).unwrap());
    }

    #[test]
    fn every_byte_at_every_chunk_position() {
        for b in 0u8..0x80 {
            for at in [0, 1, 31, 32, 33, 63, 64, 70] {
                let mut value = vec![b'x'; 71];
                value[at] = b;
                let value = String::from_utf8(value).unwrap();
                let expected = serde_json::to_vec(&value).unwrap();
                assert_eq!(escaped_len(value.as_bytes()) + 2, expected.len(), "byte {b:#x} at {at}");
                let mut out = Vec::new();
                write_escaped(&mut out, value.as_bytes());
                assert_eq!(out, &expected[1..expected.len() - 1], "byte {b:#x} at {at}");
            }
        }
    }

    #[test]
    fn empty_env() {
        let env = EnvVars::new();
        let mut out = Vec::new();
        write_plaintext(&env, &mut out);
        assert_eq!(out, br#"{"env":[]}"#);
        assert_eq!(plaintext_len(&env), out.len());
    }
}
