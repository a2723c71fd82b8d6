#!/usr/bin/env python3
"""Decrypts env blobs that the crate produced, with an implementation it did not write.

Runs `cargo run --quiet --example encrypt_blob -- CASES` (random envs, random recipient keys;
or reads its JSON lines from --input), then for every line decrypts `encrypted_env` with Python's
`cryptography` package (X25519 + AES-256-GCM, raw shared secret as the key, no AAD) and checks:
the blob is lowercase hex without 0x laid out as ephemeral key (32) | IV (12) | ciphertext | tag (16),
the plaintext is UTF-8 JSON equal to {"env": [...]} as generated, and env_keys lists every
encrypted key in order. Prints `interop: N passed, M failed`; exits non-zero on any failure or
when nothing was checked.

Usage: python3 scripts/interop_decrypt.py [--cases N] [--input FILE|-]
Needs: pip install cryptography
"""

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

REPO = Path(__file__).resolve().parent.parent
LOWER_HEX = re.compile(r"\A(?:[0-9a-f]{2})+\Z")


def check(case: dict) -> None:
    """Raises AssertionError (or a cryptography error) when the case does not decrypt as expected."""
    secret = X25519PrivateKey.from_private_bytes(bytes.fromhex(case["recipient_secret_key"]))
    assert secret.public_key().public_bytes_raw().hex() == case["recipient_public_key"], "public key mismatch"

    blob_hex = case["encrypted_env"]
    assert LOWER_HEX.match(blob_hex), "encrypted_env is not lowercase hex without 0x"
    blob = bytes.fromhex(blob_hex)
    assert len(blob) >= 32 + 12 + 16, "blob shorter than key, IV and tag"
    ephemeral, iv, ciphertext_and_tag = blob[:32], blob[32:44], blob[44:]

    shared = secret.exchange(X25519PublicKey.from_public_bytes(ephemeral))  # refuses an all-zero secret
    plaintext = AESGCM(shared).decrypt(iv, ciphertext_and_tag, None)

    document = json.loads(plaintext.decode("utf-8"))
    expected = {"env": case["env"]}
    assert document == expected, "decrypted JSON differs from the env that was encrypted"
    keys = [entry["key"] for entry in document["env"]]
    assert case["env_keys"] == keys, "env_keys does not list the encrypted keys in order"


def produce(cases: int) -> list[str]:
    cargo = os.environ.get("CARGO", "cargo")
    command = [cargo, "run", "--quiet", "--example", "encrypt_blob", "--", str(cases)]
    result = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"interop: `{' '.join(command)}` failed with exit code {result.returncode}")
    # Split on "\n" only: values hold U+2028 and other characters that str.splitlines() breaks on.
    return result.stdout.split("\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=50, help="cases to generate (default 50)")
    parser.add_argument("--input", help="read JSON lines from this file ('-' for stdin) instead of running cargo")
    args = parser.parse_args()

    if args.input is None:
        lines = produce(args.cases)
        expected_count = args.cases
    elif args.input == "-":
        lines, expected_count = sys.stdin.read().split("\n"), None
    else:
        lines, expected_count = Path(args.input).read_text(encoding="utf-8").split("\n"), None

    passed = failed = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            case = json.loads(line)
            check(case)
            passed += 1
        except Exception as error:  # any failure of any kind counts, and is reported
            failed += 1
            if failed <= 10:
                print(f"interop: case on line {number} failed: {type(error).__name__}: {error}", file=sys.stderr)

    if expected_count is not None and passed + failed != expected_count:
        print(f"interop: expected {expected_count} cases, got {passed + failed}", file=sys.stderr)
        failed += abs(expected_count - (passed + failed))
    print(f"interop: {passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
