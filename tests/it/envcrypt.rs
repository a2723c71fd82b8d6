//! Env encryption, the CVM's limits, and KMS signature verification, through the public API.

use crate::support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k256::ecdsa::SigningKey;
use phala_cloud::AppId;
// The CVM's side, to read back what was encrypted, is the simulator's (or, in a build without
// it, the hidden `__internals`'): the tests that decrypt need one of the two features.
#[cfg(all(feature = "__internals", not(feature = "simulator")))]
use phala_cloud::__internals::{RecipientSecretKey, decrypt, decrypt_bytes};
#[cfg(feature = "simulator")]
use phala_cloud::simulator::{RecipientSecretKey, decrypt, decrypt_bytes};
use phala_cloud::{
    CryptError, EncryptedEnv, EnvError, EnvVars, K256PublicKey, KmsSignatureError, MAX_ENV_ENTRIES,
    MAX_ENV_TOTAL_BYTES, MAX_ENV_VALUE_BYTES, RecipientPublicKey, SignedEnvPubkey, encrypt,
};
use serde_json::Value;

const CANARY: &str = "CANARY-sup3r-s3cret-9f1c";

fn vectors() -> Value {
    serde_json::from_str(include_str!("../fixtures/crypto/vectors.json")).unwrap()
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key} missing"))
}

/// Everything a user could print about an error.
fn all_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = format!("{e} | {e:?}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(" | {s} | {s:?}"));
        source = s.source();
    }
    text
}

fn assert_no_canary(text: &str) {
    assert!(!text.contains(CANARY) && !text.contains("sup3r"), "secret leaked: {text}");
}

// ---------------------------------------------------------------- vectors

#[test]
#[cfg(any(feature = "simulator", feature = "__internals"))]
fn first_vector_decrypts_to_its_env() {
    let v = &vectors()["env_encryption"][0];
    let secret = RecipientSecretKey::from_hex(str_of(v, "recipient_secret_key")).unwrap();
    assert_eq!(secret.public_key().to_hex(), str_of(v, "recipient_public_key"));
    let env = decrypt(str_of(v, "encrypted_env"), &secret).unwrap();
    assert_eq!(env, EnvVars::from_pairs([("FOO", "bar")]).unwrap());
    let plaintext = decrypt_bytes(str_of(v, "encrypted_env"), &secret).unwrap();
    assert_eq!(plaintext.as_slice(), str_of(v, "plaintext").as_bytes());
}

#[test]
#[cfg(any(feature = "simulator", feature = "__internals"))]
fn dstack_vector_decrypts_with_the_recipient_secret() {
    let v = &vectors()["env_encryption"][1];
    let secret = RecipientSecretKey::from_hex(str_of(v, "recipient_secret_key")).unwrap();
    let plaintext = decrypt_bytes(str_of(v, "encrypted_env"), &secret).unwrap();
    assert_eq!(plaintext.as_slice(), str_of(v, "plaintext").as_bytes());
    // Its plaintext is a bare array, not the {"env":[…]} envelope.
    assert!(matches!(
        decrypt(str_of(v, "encrypted_env"), &secret),
        Err(CryptError::MalformedPlaintext { line: 1, .. })
    ));
}

// ---------------------------------------------------------------- encryption

/// Encrypts `env` and, where the CVM's side is built (feature `simulator`), reads it back.
fn encrypt_and_read_back(env: &EnvVars) -> EncryptedEnv {
    #[cfg(any(feature = "simulator", feature = "__internals"))]
    {
        let cvm = RecipientSecretKey::generate().unwrap();
        let out = encrypt(env, cvm.public_key()).unwrap();
        assert_eq!(&decrypt(out.as_hex(), &cvm).unwrap(), env);
        out
    }
    #[cfg(not(any(feature = "simulator", feature = "__internals")))]
    encrypt(env, support::random_recipient()).unwrap()
}

fn sample_env() -> EnvVars {
    EnvVars::from_pairs([
        ("DATABASE_URL", "postgres://u:p@h/db".to_string()),
        ("MULTI", "line1\nline2\t\"quoted\" \\ é 漢 \u{1}".to_string()),
        ("EMPTY", String::new()),
        ("SECRET", CANARY.to_string()),
    ])
    .unwrap()
}

#[test]
#[cfg(any(feature = "simulator", feature = "__internals"))]
fn round_trip_and_blob_layout() {
    let secret = RecipientSecretKey::generate().unwrap();
    let env = sample_env();
    let out = encrypt(&env, secret.public_key()).unwrap();
    assert_eq!(out.keys(), ["DATABASE_URL", "MULTI", "EMPTY", "SECRET"]);
    let hex = out.as_hex();
    assert!(hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "lowercase hex, no 0x");
    let plaintext = decrypt_bytes(hex, &secret).unwrap();
    assert_eq!(hex.len(), 2 * (32 + 12 + plaintext.len() + 16));
    // The plaintext is the JSON a standard parser reads back.
    let json: Value = serde_json::from_slice(&plaintext).unwrap();
    let pairs: Vec<(String, String)> = json["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["key"].as_str().unwrap().to_string(), e["value"].as_str().unwrap().to_string()))
        .collect();
    let expected: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert_eq!(pairs, expected);
    assert_eq!(decrypt(hex, &secret).unwrap(), env);
    assert_no_canary(hex);
}

#[test]
fn every_call_uses_fresh_randomness() {
    let recipient = support::random_recipient();
    let env = sample_env();
    let a = encrypt(&env, recipient).unwrap();
    let b = encrypt(&env, recipient).unwrap();
    assert_ne!(a.as_hex()[..64], b.as_hex()[..64], "ephemeral keys differ");
    assert_ne!(a.as_hex()[64..88], b.as_hex()[64..88], "IVs differ");
    assert_ne!(a, b);
}

#[test]
#[cfg(any(feature = "simulator", feature = "__internals"))]
#[allow(clippy::needless_borrows_for_generic_args)] // the borrowed forms are among those tested
fn recipient_key_forms() {
    let secret = RecipientSecretKey::generate().unwrap();
    let pk = secret.public_key();
    let env = EnvVars::from_pairs([("A", "1")]).unwrap();
    let hex = pk.to_hex();
    let forms: Vec<EncryptedEnv> = vec![
        encrypt(&env, hex.as_str()).unwrap(),
        encrypt(&env, &hex).unwrap(),
        encrypt(&env, format!("0x{hex}").as_str()).unwrap(),
        encrypt(&env, hex.to_uppercase().as_str()).unwrap(),
        encrypt(&env, *pk.as_bytes()).unwrap(),
        encrypt(&env, pk.as_bytes()).unwrap(),
        encrypt(&env, &pk.as_bytes()[..]).unwrap(),
        encrypt(&env, &pk).unwrap(),
    ];
    for out in forms {
        assert_eq!(decrypt(out.as_hex(), &secret).unwrap(), env);
    }
    assert_eq!(RecipientPublicKey::from_hex(&format!("0x{hex}")).unwrap(), pk);
    assert_eq!(pk.to_string(), hex);
}

#[test]
fn recipient_key_errors() {
    let env = EnvVars::from_pairs([("A", CANARY)]).unwrap();
    let e = encrypt(&env, "zz".repeat(32).as_str()).unwrap_err();
    assert_eq!(e.to_string(), "recipient public key is not hex");
    let e = encrypt(&env, "ab".repeat(31).as_str()).unwrap_err();
    assert_eq!(e.to_string(), "recipient public key must be 32 bytes (64 hex digits), got 62 hex digits");
    let e = encrypt(&env, "0x").unwrap_err();
    assert!(e.to_string().contains("got 0 hex digits"), "{e}");
    let e = encrypt(&env, &[1u8; 31][..]).unwrap_err();
    assert!(e.to_string().contains("must be 32 bytes"), "{e}");
    for low_order in ["00".repeat(32), format!("01{}", "00".repeat(31))] {
        let e = encrypt(&env, low_order.as_str()).unwrap_err();
        assert!(matches!(e, CryptError::LowOrderPublicKey), "{e:?}");
        assert!(e.to_string().contains("low-order"));
        assert_no_canary(&all_text(&e));
    }
}

#[test]
#[cfg(any(feature = "simulator", feature = "__internals"))]
fn decrypt_errors() {
    let secret = RecipientSecretKey::generate().unwrap();
    let other = RecipientSecretKey::generate().unwrap();
    let out = encrypt(&sample_env(), secret.public_key()).unwrap();
    let e = decrypt(out.as_hex(), &other).unwrap_err();
    assert!(matches!(e, CryptError::Decrypt), "{e:?}");
    assert_no_canary(&all_text(&e));

    let mut tampered = out.as_hex().to_string();
    let last = tampered.pop().unwrap();
    tampered.push(if last == '0' { '1' } else { '0' });
    assert!(matches!(decrypt(&tampered, &secret), Err(CryptError::Decrypt)));
    assert!(matches!(decrypt(&out.as_hex()[..119], &secret), Err(CryptError::MalformedBlob { .. })));
    assert!(matches!(decrypt(&out.as_hex()[..118], &secret), Err(CryptError::MalformedBlob { .. })));
    assert!(matches!(decrypt(&"zz".repeat(80), &secret), Err(CryptError::MalformedBlob { .. })));
    assert!(format!("{secret:?}").contains("redacted"));
}

// ---------------------------------------------------------------- env_keys and the request body

#[test]
fn body_env_keys_cover_the_encrypted_keys() {
    let recipient = support::random_recipient();
    let out = encrypt(&sample_env(), recipient).unwrap();
    let hex = out.as_hex().to_string();

    let body = out.clone().into_body();
    assert_eq!(body.encrypted_env, hex);
    assert_eq!(body.env_keys.as_deref().unwrap(), ["DATABASE_URL", "MULTI", "EMPTY", "SECRET"]);
    assert_eq!((body.compose_hash, body.transaction_hash), (None, None));
    assert_eq!(phala_cloud::UpdateCvmEnvsBody::from(out.clone()).env_keys, out.clone().into_body().env_keys);

    let superset = ["EXTRA", "SECRET", "EMPTY", "MULTI", "DATABASE_URL"];
    let body = out.clone().into_body_with_env_keys(superset).unwrap();
    assert_eq!(body.env_keys.as_deref().unwrap(), superset);

    let e = out.clone().into_body_with_env_keys(["DATABASE_URL", "MULTI", "EMPTY"]).unwrap_err();
    assert!(matches!(&e, EnvError::EnvKeysMissing { key } if key == "SECRET"), "{e:?}");
    assert!(e.to_string().contains("`SECRET`"), "{e}");
    assert_no_canary(&all_text(&e));

    let e = out.check_env_keys(&["DATABASE_URL", "MULTI", "EMPTY", "SECRET", "bad-name"]).unwrap_err();
    assert!(e.to_string().contains("env_keys[4]"), "{e}");
    assert!(out.check_env_keys(&superset).is_ok());
    assert_no_canary(&format!("{out:?}"));
}

// ---------------------------------------------------------------- limits

fn key(i: usize) -> String {
    format!("K{i:04}")
}

#[test]
fn entry_count_limit() {
    let at_limit = EnvVars::from_pairs((0..MAX_ENV_ENTRIES).map(|i| (key(i), "v"))).unwrap();
    assert_eq!(at_limit.len(), 1024);
    assert_eq!(encrypt_and_read_back(&at_limit).keys().len(), 1024);

    let e = EnvVars::from_pairs((0..=MAX_ENV_ENTRIES).map(|i| (key(i), CANARY))).unwrap_err();
    assert!(matches!(&e, EnvError::TooManyEntries { key, count: 1025, max: 1024 } if key == "K1024"), "{e:?}");
    assert!(e.to_string().contains("`K1024`"), "{e}");
    assert_no_canary(&all_text(&e));
}

#[test]
fn value_size_limit() {
    let ok = EnvVars::from_pairs([("BIG", "x".repeat(MAX_ENV_VALUE_BYTES))]).unwrap();
    assert_eq!(ok.total_bytes(), 3 + 128 * 1024);
    encrypt_and_read_back(&ok);

    let mut too_big = CANARY.repeat(MAX_ENV_VALUE_BYTES / CANARY.len() + 1);
    too_big.truncate(MAX_ENV_VALUE_BYTES + 1);
    let e = EnvVars::from_pairs([("OK", "1".to_string()), ("BIG", too_big)]).unwrap_err();
    assert!(matches!(&e, EnvError::ValueTooLarge { key, len: 131_073, max: 131_072 } if key == "BIG"), "{e:?}");
    assert!(e.to_string().contains("`BIG`"));
    assert_no_canary(&all_text(&e));
}

#[test]
fn total_size_limit_counts_names_and_values() {
    // 8 entries of a 2-byte name and a (128 KiB - 2)-byte value: exactly 1 MiB.
    let entry = |i: usize, extra: usize| (format!("K{i}"), "v".repeat(MAX_ENV_VALUE_BYTES - 2 + extra));
    let exact = EnvVars::from_pairs((0..8).map(|i| entry(i, 0))).unwrap();
    assert_eq!(exact.total_bytes(), MAX_ENV_TOTAL_BYTES);
    encrypt_and_read_back(&exact);

    let e = EnvVars::from_pairs((0..8).map(|i| entry(i, usize::from(i == 7)))).unwrap_err();
    assert!(matches!(&e, EnvError::TotalTooLarge { key, total: 1_048_577, max: 1_048_576 } if key == "K7"), "{e:?}");
    let mut env = exact.clone();
    assert!(matches!(env.push("X", ""), Err(EnvError::TotalTooLarge { .. })));
    assert_eq!(env, exact, "a refused push leaves the env unchanged");
}

#[test]
fn key_syntax() {
    for good in ["A", "_", "a_1", "FOO_BAR", "_9"] {
        assert!(EnvVars::from_pairs([(good, "v")]).is_ok(), "{good}");
    }
    for bad in ["", "1A", "A-B", "A B", "É", "A=B", "a.b"] {
        let e = EnvVars::from_pairs([("OK", "v"), (bad, CANARY)]).unwrap_err();
        assert!(matches!(&e, EnvError::Input(i) if i.field == "env[1]"), "{bad}: {e:?}");
        assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        assert_no_canary(&all_text(&e));
    }
}

// ---------------------------------------------------------------- constructors

#[test]
fn duplicate_keys_are_named() {
    let e = EnvVars::from_pairs([("A", "1"), ("B", CANARY), ("B", CANARY)]).unwrap_err();
    assert!(matches!(&e, EnvError::DuplicateKey { key } if key == "B"));
    assert_eq!(e.to_string(), "duplicate env name `B`");
    assert_no_canary(&all_text(&e));
    let e = EnvVars::from_assignments(["X=1", "X=2"]).unwrap_err();
    assert!(matches!(e, EnvError::DuplicateKey { key } if key == "X"));
    let e = EnvVars::from_dotenv_str("X=1\nY=2\nexport X=3\n").unwrap_err();
    assert!(matches!(e, EnvError::DuplicateKey { key } if key == "X"));
}

#[test]
fn assignments() {
    let env = EnvVars::from_assignments(["A=1", "B=", "C=x=y", "D==", "E= spaced "]).unwrap();
    let pairs: Vec<_> = env.iter().collect();
    assert_eq!(pairs, [("A", "1"), ("B", ""), ("C", "x=y"), ("D", "="), ("E", " spaced ")]);
    let e = EnvVars::from_assignments(["A=1", CANARY]).unwrap_err();
    assert!(matches!(e, EnvError::MissingEquals { index: 1 }));
    assert_no_canary(&all_text(&e));
    let e = EnvVars::from_assignments([format!(" A={CANARY}")]).unwrap_err();
    assert!(matches!(e, EnvError::InvalidAssignmentKey { index: 0 }), "a name with a space is refused: {e:?}");
    assert_no_canary(&all_text(&e));
    // A base64 secret with `=` padding, given without its key: no part of it is echoed.
    let e = EnvVars::from_assignments(["c2VjcmV0LXNlY3JldA+x=="]).unwrap_err();
    assert!(matches!(e, EnvError::InvalidAssignmentKey { index: 0 }));
    assert!(!all_text(&e).contains("c2VjcmV0"), "{}", all_text(&e));
}

#[test]
fn dotenv_syntax() {
    let text = r#"
# a comment line
PLAIN=value
export EXPORTED=yes
  INDENTED=ok
SPACED = around
EMPTY=
INLINE=value # trailing comment
SINGLE='single $NOT_SUBSTITUTED # not a comment'
DOUBLE="double \"quoted\" # not a comment"
ESCAPES="a\nb"
MULTI="first line
second line"
MULTI_SINGLE='one
two'
REF=${PLAIN}-suffix
"#;
    let env = EnvVars::from_dotenv_str(text).unwrap();
    let expected = [
        ("PLAIN", "value"),
        ("EXPORTED", "yes"),
        ("INDENTED", "ok"),
        ("SPACED", "around"),
        ("EMPTY", ""),
        ("INLINE", "value"),
        ("SINGLE", "single $NOT_SUBSTITUTED # not a comment"),
        ("DOUBLE", "double \"quoted\" # not a comment"),
        ("ESCAPES", "a\nb"),
        ("MULTI", "first line\nsecond line"),
        ("MULTI_SINGLE", "one\ntwo"),
        // No substitution: a reference to an earlier name stays as written.
        ("REF", "${PLAIN}-suffix"),
    ];
    assert_eq!(env.iter().collect::<Vec<_>>(), expected);
}

/// A dotenv file is data: `$NAME` and `${NAME}` are never replaced, not from this process's
/// environment (where the owner's wallet key may be) nor from names defined earlier.
#[test]
fn dotenv_values_are_literal_even_when_the_variable_is_set() {
    let path = std::env::var("PATH").expect("PATH is set in the test's environment");
    assert!(!path.is_empty());
    let env = EnvVars::from_dotenv_str("A=$PATH\nB=${PATH}\nC=\"x${PATH}y\"\n").unwrap();
    assert_eq!(env.iter().collect::<Vec<_>>(), [("A", "$PATH"), ("B", "${PATH}"), ("C", "x${PATH}y")]);

    let text = r#"
A=$PATH
B=${PATH}
C="x${PATH}y"
D=pa$sw0rd
E="pa$sw0rd"
F='pa$sw0rd'
G=${A}
H=$
I="\$PATH"
J=${PATH
"#;
    let env = EnvVars::from_dotenv_str(text).unwrap();
    let expected = [
        ("A", "$PATH"),
        ("B", "${PATH}"),
        ("C", "x${PATH}y"),
        ("D", "pa$sw0rd"),
        ("E", "pa$sw0rd"),
        ("F", "pa$sw0rd"),
        ("G", "${A}"),
        ("H", "$"),
        ("I", "$PATH"),
        ("J", "${PATH"),
    ];
    assert_eq!(env.iter().collect::<Vec<_>>(), expected);
    for (_, value) in env.iter() {
        assert!(!value.contains(path.as_str()), "the process environment leaked into a value: {value}");
    }
}

#[test]
fn dotenv_quotes_escapes_and_line_endings() {
    let text = concat!(
        "UNQUOTED_SPACES=hello big world  \n",
        "HASH_NO_SPACE=a#b\n",
        "TAB_COMMENT=value\t# comment\n",
        "BACKSLASHES=C:\\new\\path\n",
        "QUOTE_INSIDE=it's \"fine\"\n",
        "DQ_ESCAPES=\"tab\\there\\r\\n \\\\ \\\" \\' \\$ \\d\"\n",
        "SQ_LITERAL='no \\n escapes \\ here'\n",
        "DQ_COMMENT=\"quoted\" # comment\n",
        "SQ_COMMENT='quoted'# comment\n",
        "EMPTY_DQ=\"\"\n",
        "EMPTY_SQ=''\n",
        "EMPTY_COMMENT= # only a comment\n",
        "export=is a name\n",
        "export   SPACED_EXPORT  =  x  \n",
        "CRLF=windows\r\n",
        "CRLF_DQ=\"quoted\"\r\n",
        "\r\n",
        "  # indented comment\n",
        "MULTI_ESC=\"line one\\nline two\nline three\"\n",
        "LAST=no newline at the end",
    );
    let env = EnvVars::from_dotenv_str(text).unwrap();
    let expected = [
        ("UNQUOTED_SPACES", "hello big world"),
        ("HASH_NO_SPACE", "a#b"),
        ("TAB_COMMENT", "value"),
        ("BACKSLASHES", "C:\\new\\path"),
        ("QUOTE_INSIDE", "it's \"fine\""),
        ("DQ_ESCAPES", "tab\there\r\n \\ \" ' $ \\d"),
        ("SQ_LITERAL", "no \\n escapes \\ here"),
        ("DQ_COMMENT", "quoted"),
        ("SQ_COMMENT", "quoted"),
        ("EMPTY_DQ", ""),
        ("EMPTY_SQ", ""),
        ("EMPTY_COMMENT", ""),
        ("export", "is a name"),
        ("SPACED_EXPORT", "x"),
        ("CRLF", "windows"),
        ("CRLF_DQ", "quoted"),
        ("MULTI_ESC", "line one\nline two\nline three"),
        ("LAST", "no newline at the end"),
    ];
    assert_eq!(env.iter().collect::<Vec<_>>(), expected);
}

#[test]
fn dotenv_syntax_errors_say_where_and_what() {
    let cases = [
        (format!("A=1\nB=\"{CANARY}\nmore\n"), 2, "double quote"),
        (format!("A=1\n\nB='{CANARY}\n"), 3, "single quote"),
        (format!("A=1\nB=\"{CANARY}\"trailing\n"), 2, "after the closing quote"),
        (format!("A=1\nB {CANARY}\n"), 2, "`=`"),
        (format!("A=1\n-B={CANARY}\n"), 2, "env name"),
    ];
    for (text, line, says) in cases {
        let e = EnvVars::from_dotenv_str(&text).unwrap_err();
        let shown = e.to_string();
        assert!(shown.contains(&format!("line {line}")), "{text:?}: {shown}");
        assert!(shown.contains(says), "{text:?}: {shown}");
        assert!(shown.contains("after `A`"), "{text:?}: {shown}");
        assert_no_canary(&all_text(&e));
    }
}

#[test]
fn dotenv_errors_hide_the_line() {
    // An unterminated quote, and a name the CVM refuses (dotenvy accepts `.` in names).
    let e = EnvVars::from_dotenv_str(&format!("A=1\nB=\"{CANARY}\n")).unwrap_err();
    assert!(matches!(&e, EnvError::Dotenv { after_key: Some(k), .. } if k == "A"), "{e:?}");
    assert!(e.to_string().contains("after `A`"), "{e}");
    assert_no_canary(&all_text(&e));
    let e = EnvVars::from_dotenv_str(&format!("a.b={CANARY}\n")).unwrap_err();
    assert!(e.to_string().contains("\"a.b\""), "{e}");
    assert_no_canary(&all_text(&e));
    let e = EnvVars::from_dotenv_str(&format!("{CANARY}\n")).unwrap_err();
    assert!(matches!(&e, EnvError::Dotenv { after_key: None, .. }), "{e:?}");
    assert_no_canary(&all_text(&e));
}

#[test]
fn dotenv_file() {
    let dir = std::env::temp_dir().join(format!("phala-envcrypt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("app.env");
    std::fs::write(&path, format!("\u{feff}# comment\nexport TOKEN='{CANARY}'\nURL=https://x\n")).unwrap();
    let env = EnvVars::from_dotenv_file(&path).unwrap();
    assert_eq!(env.iter().collect::<Vec<_>>(), [("TOKEN", CANARY), ("URL", "https://x")]);

    let missing = dir.join("missing.env");
    let e = EnvVars::from_dotenv_file(&missing).unwrap_err();
    assert!(
        matches!(&e, EnvError::Io { path, source } if *path == missing && source.kind() == std::io::ErrorKind::NotFound)
    );
    assert!(e.to_string().contains("missing.env"), "{e}");

    std::fs::write(&path, b"A=\xff\xfe\n").unwrap();
    assert!(matches!(EnvVars::from_dotenv_file(&path), Err(EnvError::Io { .. })));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `from_dotenv_file` reads a regular file of bounded size, and refuses anything else before
/// reading it: a FIFO (which would block), a device such as `/dev/zero` (endless), a directory, or
/// a file larger than the CVM's limit could ever use.
#[cfg(unix)]
#[test]
fn dotenv_file_must_be_a_bounded_regular_file() {
    let dir = std::env::temp_dir().join(format!("phala-envcrypt-special-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // A FIFO nobody writes to: opening it for reading would block forever.
    let fifo = dir.join("fifo.env");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
    assert!(made.success());
    let (tx, rx) = std::sync::mpsc::channel();
    let path = fifo.clone();
    std::thread::spawn(move || {
        let _ = tx.send(EnvVars::from_dotenv_file(&path).map_err(|e| e.to_string()));
    });
    let result = rx.recv_timeout(Duration::from_secs(5)).expect("a FIFO is refused at once, not waited on");
    let e = result.unwrap_err();
    assert!(e.contains("fifo.env") && e.contains("not a regular file"), "{e}");

    let e = EnvVars::from_dotenv_file("/dev/zero").unwrap_err();
    assert!(matches!(&e, EnvError::DotenvFileNotRegular { path } if path.as_os_str() == "/dev/zero"), "{e:?}");
    assert!(e.to_string().contains("/dev/zero") && e.to_string().contains("regular file"), "{e}");

    let e = EnvVars::from_dotenv_file(&dir).unwrap_err();
    assert!(matches!(&e, EnvError::DotenvFileNotRegular { .. }), "{e:?}");

    // One byte over the cap is refused by its size, before it is read.
    let max = phala_cloud::MAX_DOTENV_FILE_BYTES;
    assert_eq!(max, 2 * 1024 * 1024);
    let big = dir.join("big.env");
    std::fs::write(&big, vec![b'#'; max as usize + 1]).unwrap();
    let e = EnvVars::from_dotenv_file(&big).unwrap_err();
    assert!(matches!(&e, EnvError::DotenvFileTooLarge { len, max: m, .. } if *len == max + 1 && *m == max), "{e:?}");
    assert!(e.to_string().contains("big.env") && e.to_string().contains(&max.to_string()), "{e}");
    // At the cap it is read (a file of comments is an empty env).
    std::fs::write(&big, vec![b'#'; max as usize]).unwrap();
    assert!(EnvVars::from_dotenv_file(&big).unwrap().is_empty());

    // A symlink to a regular file is followed.
    let target = dir.join("real.env");
    std::fs::write(&target, "A=1\n").unwrap();
    let link = dir.join("link.env");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert_eq!(EnvVars::from_dotenv_file(&link).unwrap().get("A"), Some("1"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn secrets_stay_out_of_debug() {
    let env = sample_env();
    let debug = format!("{env:?} {env:#?}");
    assert_no_canary(&debug);
    assert!(debug.contains("\"SECRET\": <redacted>"), "{debug}");
    assert!(!debug.contains("postgres"), "{debug}");
    let out = encrypt(&env, support::random_recipient()).unwrap();
    assert_no_canary(&format!("{out:?}"));
    assert_no_canary(&format!("{:?}", out.into_body()));
}

// ---------------------------------------------------------------- KMS signature

fn legacy() -> (SignedEnvPubkey, AppId, K256PublicKey) {
    let v = &vectors()["pubkey_signature_legacy"][0];
    let signed = SignedEnvPubkey::from_hex(str_of(v, "public_key"), str_of(v, "signature"), None).unwrap();
    let app_id: AppId = str_of(v, "app_id").parse().unwrap();
    let expected: K256PublicKey = str_of(v, "expected_signer_compressed").parse().unwrap();
    (signed, app_id, expected)
}

#[test]
fn kms_legacy_vector_recovers_the_published_signer() {
    let (signed, app_id, expected) = legacy();
    let v = &vectors()["pubkey_signature_legacy"][0];
    assert_eq!(signed.recover_signer(&app_id).unwrap(), expected);
    assert_eq!(expected.to_string(), str_of(v, "expected_signer_compressed"));
    assert_eq!(signed.verify(&app_id, &expected).unwrap(), signed.public_key);
    // The same, from the endpoint's JSON, with 0x everywhere.
    let json =
        format!(r#"{{"public_key":"0x{}","signature":"0x{}"}}"#, str_of(v, "public_key"), str_of(v, "signature"));
    let parsed: SignedEnvPubkey = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed, signed);
    let app_id_0x: AppId = format!("0x{}", str_of(v, "app_id")).parse().unwrap();
    assert_eq!(parsed.verify(&app_id_0x, &expected).unwrap(), signed.public_key);
}

#[test]
fn kms_tampered_key_signature_or_app_id_fails() {
    let (signed, app_id, expected) = legacy();

    let mut key = *signed.public_key.as_bytes();
    key[0] ^= 1;
    let tampered_key = SignedEnvPubkey { public_key: RecipientPublicKey::from_bytes(key), ..signed };
    let e = tampered_key.verify(&app_id, &expected).unwrap_err();
    assert!(matches!(&e, KmsSignatureError::SignerMismatch { expected: x, .. } if *x == expected), "{e:?}");
    assert!(e.to_string().contains(&expected.to_string()), "{e}");
    assert!(e.to_string().contains("not signed by the KMS"), "{e}");

    let mut sig = signed.signature;
    sig[5] ^= 0x40;
    let tampered_sig = SignedEnvPubkey { signature: sig, ..signed };
    assert!(matches!(
        tampered_sig.verify(&app_id, &expected),
        Err(KmsSignatureError::SignerMismatch { .. } | KmsSignatureError::Malformed { .. })
    ));

    let mut sig = signed.signature;
    sig[64] ^= 1; // the other recovery id
    let flipped_v = SignedEnvPubkey { signature: sig, ..signed };
    assert!(flipped_v.verify(&app_id, &expected).is_err());

    let mut sig = signed.signature;
    sig[64] = 2;
    let e = SignedEnvPubkey { signature: sig, ..signed }.verify(&app_id, &expected).unwrap_err();
    assert!(matches!(e, KmsSignatureError::Malformed { .. }), "{e:?}");

    let other_app: AppId = "0x0000000000000000000000000000000000000001".parse().unwrap();
    assert!(matches!(signed.verify(&other_app, &expected), Err(KmsSignatureError::SignerMismatch { .. })));

    // A timestamp turns the message into the newer form: the legacy signature no longer matches.
    let with_ts = SignedEnvPubkey { timestamp: Some(now_secs()), ..signed };
    assert!(matches!(with_ts.verify(&app_id, &expected), Err(KmsSignatureError::SignerMismatch { .. })));

    let e = SignedEnvPubkey::from_hex(&"ab".repeat(32), &"ab".repeat(64), None).unwrap_err();
    assert!(e.to_string().contains("KMS signature must be 65 bytes"), "{e}");
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A KMS key of our own signing the timestamped message.
fn sign_timestamped(app_id: &AppId, timestamp: u64) -> (SignedEnvPubkey, K256PublicKey) {
    let kms = SigningKey::from_slice(&[0x42; 32]).unwrap();
    (support::sign_env_pubkey(&kms, app_id, Some(timestamp)), support::k256_public(&kms))
}

#[test]
fn kms_timestamped_form_fresh_expired_future() {
    let app_id: AppId = "a172cedcae47474b615c54d510a5d84a8dea3032".parse().unwrap();
    let now = now_secs();

    let (fresh, kms) = sign_timestamped(&app_id, now);
    assert_eq!(fresh.verify(&app_id, &kms).unwrap(), fresh.public_key);
    assert_eq!(fresh.recover_signer(&app_id).unwrap(), kms);
    assert!(matches!(fresh.verify(&app_id, &legacy().2), Err(KmsSignatureError::SignerMismatch { .. })));

    let at = |secs: u64| UNIX_EPOCH + Duration::from_secs(secs);
    let signed_at = now - 301;
    let (old, kms) = sign_timestamped(&app_id, signed_at);
    let e = old.verify(&app_id, &kms).unwrap_err();
    assert!(matches!(e, KmsSignatureError::Expired { max_secs: 300, .. }), "{e:?}");
    assert!(e.to_string().contains("old"), "{e}");
    assert!(old.verify_at(&app_id, &kms, at(signed_at + 300)).is_ok(), "exactly 300 s old is accepted");
    assert!(matches!(
        old.verify_at(&app_id, &kms, at(signed_at + 301)),
        Err(KmsSignatureError::Expired { age_secs: 301, .. })
    ));

    let signed_at = now + 3600;
    let (future, kms) = sign_timestamped(&app_id, signed_at);
    let e = future.verify(&app_id, &kms).unwrap_err();
    assert!(matches!(e, KmsSignatureError::FromFuture { max_secs: 60, .. }), "{e:?}");
    assert!(e.to_string().contains("future"), "{e}");
    assert!(future.verify_at(&app_id, &kms, at(signed_at - 60)).is_ok(), "exactly 60 s ahead is accepted");
    assert!(matches!(
        future.verify_at(&app_id, &kms, at(signed_at - 61)),
        Err(KmsSignatureError::FromFuture { ahead_secs: 61, .. })
    ));

    // Tampering with the timestamp breaks the signature.
    let (signed, kms) = sign_timestamped(&app_id, now);
    let shifted = SignedEnvPubkey { timestamp: Some(now - 1), ..signed };
    assert!(matches!(shifted.verify(&app_id, &kms), Err(KmsSignatureError::SignerMismatch { .. })));

    // The endpoint's JSON in the newer form.
    let json = format!(
        r#"{{"public_key":"{}","signature":"{}","timestamp":{now}}}"#,
        signed.public_key,
        const_hex::encode(signed.signature)
    );
    let parsed: SignedEnvPubkey = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed.verify(&app_id, &kms).unwrap(), signed.public_key);
}
