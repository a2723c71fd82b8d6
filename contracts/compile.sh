#!/bin/sh
# Rebuilds AppAuth.json and KmsAuth.json from their .sol sources with the solc pinned in package-lock.json.
set -eu
cd "$(dirname "$0")" && npm ci --no-audit --no-fund && node compile.mjs
