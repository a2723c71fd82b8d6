#!/bin/sh
# Rebuilds AppAuth.json from AppAuth.sol with the solc pinned in package-lock.json.
set -eu
cd "$(dirname "$0")" && npm ci --no-audit --no-fund && node compile.mjs
