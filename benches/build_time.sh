#!/usr/bin/env bash
# Build-time cost of generating the client at compile time.
#
# Measures, in one run and on the same machine:
#   generated: a cold `cargo build --lib` of this crate as it is, default features (build.rs
#              runs progenitor over the operations the crate uses);
#   baseline:  a cold `cargo build --lib` of the same crate with the same runtime dependencies
#              and the same code, but with the generated file pre-expanded into src/ and no
#              build script or build-dependencies: what the crate would cost without generation;
#   full-api:  a cold `cargo build --lib --features full-api` (every operation of the spec).
# Prints the three, the ratio generated / baseline (goal: at most 1.25), the generated line
# counts, and the time to rebuild after touching openapi.json (goal: under 3 s).
#
# Usage: bash benches/build_time.sh   (about 7 minutes on 2 cores; needs the registry cache,
# which a prior `cargo build` fills)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work="$root/target/build-bench"
rm -rf "$work"
mkdir -p "$work"

# The generated file, from a normal build.
cargo build --lib --quiet --manifest-path "$root/Cargo.toml"
codegen=$(ls -t "$root"/target/debug/build/phala-cloud-*/out/codegen.rs | head -n1)

copy_crate() {
  mkdir -p "$1"
  cp -r "$root/src" "$root/Cargo.toml" "$root/Cargo.lock" "$1/"
  # Benches, tests and examples are not part of a library build.
  python3 - "$1/Cargo.toml" <<'PY'
import re, sys
path = sys.argv[1]
text = open(path).read()
text = re.sub(r'(?ms)^\[\[(bench|example|test)\]\].*?(?=^\[|\Z)', '', text)
text = re.sub(r'(?ms)^\[dev-dependencies\].*?(?=^\[|\Z)', '', text)
open(path, 'w').write(text)
PY
}

copy_crate "$work/generated"
cp -r "$root/build.rs" "$root/build" "$root/openapi.json" "$work/generated/"

copy_crate "$work/baseline"
python3 - "$work/baseline/Cargo.toml" <<'PY'
import re, sys
path = sys.argv[1]
text = open(path).read()
text = re.sub(r'(?ms)^\[build-dependencies\].*?(?=^\[|\Z)', '', text)
open(path, 'w').write(text)
PY
cp "$codegen" "$work/baseline/src/codegen.rs"
sed -i 's|include!(concat!(env!("OUT_DIR"), "/codegen.rs"));|include!("codegen.rs");|' "$work/baseline/src/generated.rs"

cold_build() {
  local dir=$1
  shift
  rm -rf "$dir/target"
  local start end
  start=$(date +%s.%N)
  (cd "$dir" && cargo build --lib --offline --quiet "$@")
  end=$(date +%s.%N)
  python3 -c "print($end - $start)"
}

# Alternate, twice each, and take the smaller of each pair (less disturbed by the machine).
b1=$(cold_build "$work/baseline"); g1=$(cold_build "$work/generated")
g2=$(cold_build "$work/generated"); b2=$(cold_build "$work/baseline")
base=$(printf '%s\n%s\n' "$b1" "$b2" | sort -g | head -n1)
gen=$(printf '%s\n%s\n' "$g1" "$g2" | sort -g | head -n1)

full=$(cold_build "$work/generated" --features full-api)
full_codegen=$(ls -t "$work"/generated/target/debug/build/phala-cloud-*/out/codegen.rs | head -n1)
lines_default=$(wc -l < "$codegen")
lines_full=$(wc -l < "$full_codegen")
# Leave the default build in place for the rebuild measurement.
(cd "$work/generated" && cargo build --lib --offline --quiet)

touch "$work/generated/openapi.json"
start=$(date +%s.%N)
(cd "$work/generated" && cargo build --lib --offline --quiet)
rebuild=$(python3 -c "print($(date +%s.%N) - $start)")

printf 'baseline (same deps and code, no build-time generation): %.1f s (runs: %.1f, %.1f)\n' "$base" "$b1" "$b2"
printf 'generated (build.rs runs progenitor):                    %.1f s (runs: %.1f, %.1f)\n' "$gen" "$g1" "$g2"
printf 'full-api (every operation generated):                    %.1f s\n' "$full"
printf 'ratio generated / baseline: %.3f (goal <= 1.25); full-api / baseline: %.3f\n' \
  "$(python3 -c "print($gen / $base)")" "$(python3 -c "print($full / $base)")"
printf 'generated lines: default %s, full-api %s\n' "$lines_default" "$lines_full"
printf 'rebuild after touching openapi.json: %.2f s (goal < 3 s)\n' "$rebuild"
