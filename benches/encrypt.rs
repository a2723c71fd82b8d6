//! `cargo bench --bench encrypt --features simulator`: the time of `encrypt` beside the floor measured in the
//! same run, for three payloads.
//!
//! The floor is what any implementation of the format must do: draw and derive one X25519 key, one
//! Diffie-Hellman, AES-256-GCM over the same plaintext bytes, and hex of the blob. `encrypt` adds
//! building the JSON plaintext and bookkeeping; the goal is a ratio of at most 1.3 per payload.
//! The last column, for reference, is the cost of building the `EnvVars` (where the values are
//! checked and their JSON-escaped lengths measured) and dropping it (where they are wiped).
//! Each figure is the median over batches of the mean time per call within a batch; encrypt, floor
//! and hex batches are interleaved so drift hits all three alike.

use std::hint::black_box;
use std::time::{Duration, Instant};

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit};
use phala_cloud::simulator::{RecipientSecretKey, decrypt_bytes};
use phala_cloud::{EnvVars, encrypt};
use x25519_dalek::{PublicKey, StaticSecret};

const BATCHES: usize = 41;
const BATCH_TARGET: Duration = Duration::from_millis(4);
const GOAL: f64 = 1.3;

/// Deterministic printable values (no byte needs JSON escaping), like tokens and URLs.
fn payload(count: usize, value_len: usize) -> EnvVars {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/:-._";
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    EnvVars::from_pairs((0..count).map(|i| {
        let value: String = (0..value_len)
            .map(|_| {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                char::from(ALPHABET[(state >> 33) as usize % ALPHABET.len()])
            })
            .collect();
        (format!("VAR_{i:04}"), value)
    }))
    .expect("payload within the CVM's limits")
}

/// Calls per batch so that one batch takes about `BATCH_TARGET`.
fn calibrate(mut f: impl FnMut()) -> usize {
    for _ in 0..3 {
        f();
    }
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < BATCH_TARGET / 2 {
        f();
        n += 1;
    }
    (2 * n).max(3)
}

fn batch(iters: usize, f: &mut impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed().as_secs_f64() / iters as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn fmt_time(secs: f64) -> String {
    match secs {
        s if s >= 1e-3 => format!("{:.3} ms", s * 1e3),
        s if s >= 1e-6 => format!("{:.1} µs", s * 1e6),
        s => format!("{:.0} ns", s * 1e9),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument, if any, is ignored.
    let recipient_secret = RecipientSecretKey::generate().expect("OS RNG");
    let recipient = recipient_secret.public_key();
    let recipient_x = PublicKey::from(*recipient.as_bytes());

    println!(
        "{:<16} {:>11} {:>11} {:>7} {:>11} {:>9} {:>10} {:>13}",
        "payload", "encrypt", "floor", "ratio", "hex", "hex/enc", "goal<=1.3", "build+drop*"
    );
    let mut all_met = true;
    for (count, value_len) in [(10, 32), (100, 64), (1024, 1000)] {
        let env = payload(count, value_len);
        let sample = encrypt(&env, recipient).expect("encrypt");
        let plaintext = decrypt_bytes(sample.as_hex(), &recipient_secret).expect("decrypt");
        let blob_len = 32 + 12 + plaintext.len() + 16;

        let mut run_encrypt = || {
            black_box(encrypt(black_box(&env), recipient).expect("encrypt"));
        };

        // The floor: key generation (OS randomness and base-point multiply), Diffie-Hellman,
        // AES-256-GCM in place over a blob-sized buffer holding the same plaintext, hex of it.
        let mut floor_buf = vec![0u8; blob_len];
        floor_buf[44..44 + plaintext.len()].copy_from_slice(&plaintext);
        let mut run_floor = || {
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret).expect("OS RNG");
            let mut iv = [0u8; 12];
            getrandom::fill(&mut iv).expect("OS RNG");
            let secret = StaticSecret::from(secret);
            let public = PublicKey::from(&secret);
            let shared = secret.diffie_hellman(black_box(&recipient_x));
            let cipher = Aes256Gcm::new(shared.as_bytes().into());
            floor_buf[..32].copy_from_slice(public.as_bytes());
            floor_buf[32..44].copy_from_slice(&iv);
            let end = blob_len - 16;
            let tag =
                cipher.encrypt_inout_detached((&iv).into(), &[], (&mut floor_buf[44..end]).into()).expect("aes-gcm");
            floor_buf[end..].copy_from_slice(&tag);
            black_box(const_hex::encode(&floor_buf));
        };

        let hex_input = vec![0xa5u8; blob_len];
        let mut run_hex = || {
            black_box(const_hex::encode(black_box(&hex_input)));
        };

        // Not part of `encrypt`: building the env (which checks it and measures each value's
        // JSON-escaped length) from borrowed pairs, and dropping it (which wipes the values).
        let pairs: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut run_build = || {
            black_box(EnvVars::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))).expect("valid"));
        };

        let n_encrypt = calibrate(&mut run_encrypt);
        let n_floor = calibrate(&mut run_floor);
        let n_hex = calibrate(&mut run_hex);
        let n_build = calibrate(&mut run_build);
        let (mut t_encrypt, mut t_floor, mut t_hex, mut t_build) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..BATCHES {
            t_encrypt.push(batch(n_encrypt, &mut run_encrypt));
            t_floor.push(batch(n_floor, &mut run_floor));
            t_hex.push(batch(n_hex, &mut run_hex));
            t_build.push(batch(n_build, &mut run_build));
        }
        let (encrypt_s, floor_s, hex_s, build_s) = (median(t_encrypt), median(t_floor), median(t_hex), median(t_build));
        let ratio = encrypt_s / floor_s;
        let met = ratio <= GOAL;
        all_met &= met;
        println!(
            "{:<16} {:>11} {:>11} {:>7.3} {:>11} {:>8.1}% {:>10} {:>13}",
            format!("{count} x {value_len} B"),
            fmt_time(encrypt_s),
            fmt_time(floor_s),
            ratio,
            fmt_time(hex_s),
            100.0 * hex_s / encrypt_s,
            if met { "met" } else { "MISSED" },
            fmt_time(build_s),
        );
    }
    println!("goal (ratio <= {GOAL} for every payload): {}", if all_met { "met" } else { "missed" });
    println!(
        "* not in `encrypt`: EnvVars::from_pairs from borrowed pairs (checks, escape-length scan) and its drop (wipe)"
    );
}
