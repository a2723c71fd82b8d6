#!/usr/bin/env node
// Runs the official Phala Cloud JS SDK (@phala/cloud, pinned in package.json) against a Phala
// Cloud API, meant for this crate's simulator: the unified `PATCH /api/v1/cvms/{cvm_id}` in its
// two phases, `patchCvm` then `confirmCvmPatch`, and prints what the SDK made of each reply.
//
// Usage (after `npm ci` in this directory):
//   PHALA_CLOUD_API_PREFIX=http://127.0.0.1:PORT/api/v1 PHALA_CLOUD_API_KEY=… \
//     node patch_cvm.mjs --cvm ID --compose FILE [--allowed-env NAME]… [--prepare-only]
//   PHALA_CLOUD_API_PREFIX=… PHALA_CLOUD_API_KEY=… [PHALA_INTEROP_TX_HASH=0x…] \
//     node patch_cvm.mjs --cvm ID --confirm COMPOSE_HASH
//
// The API's base URL and key come from the environment only (the SDK's own variables, read by
// its createClient); the key is never printed.
//
// Patch mode: calls patchCvm with `docker_compose_file` (the file's text) and, if given,
// `allowed_envs`; prints one JSON line {"step":"patch","result":…}. If the SDK's result is
// `requiresOnChainHash: true`, it then reads one line from stdin: a transaction hash calls
// confirmCvmPatch with the compose hash from phase 1 and prints {"step":"confirm","result":…};
// an empty line or end of input stops there.
// Confirm mode: calls confirmCvmPatch with COMPOSE_HASH and the transaction hash from
// PHALA_INTEROP_TX_HASH, else the first line of stdin.
//
// `result` is the SDK's return value as is (camelCase, as the SDK names it), except that
// `kmsInfo.chain` (a viem chain object the SDK adds for chain ids 1, 8453 and 31337) is
// replaced by that chain's id, so the line stays small. A call that throws prints
// {"step":…,"error":{"name","status","message","detail"}} and the process exits 1.
// Bad usage exits 2 before anything is sent.

import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";

// When DEBUG names it, the SDK logs every request as a curl command (body included, and meant
// to list the headers, X-API-Key among them) and every reply: never here. `debug` reads the
// variable when the SDK is loaded, hence the dynamic import.
delete process.env.DEBUG;
const { createClient, patchCvm, confirmCvmPatch } = await import("@phala/cloud");

const SDK_VERSION = JSON.parse(
  readFileSync(new URL("./node_modules/@phala/cloud/package.json", import.meta.url), "utf8"),
).version;

function usage(message) {
  process.stderr.write(`patch_cvm.mjs: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const args = { allowedEnvs: [], prepareOnly: false };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined || v === "") usage(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case "--cvm": args.cvm = value(); break;
      case "--compose": args.compose = value(); break;
      case "--allowed-env": args.allowedEnvs.push(value()); break;
      case "--prepare-only": args.prepareOnly = true; break;
      case "--confirm": args.confirm = value(); break;
      default: usage(`unknown argument ${JSON.stringify(flag)}`);
    }
  }
  if (!args.cvm) usage("--cvm ID is required");
  if (args.confirm !== undefined && (args.compose || args.allowedEnvs.length || args.prepareOnly)) {
    usage("--confirm takes only --cvm");
  }
  if (args.confirm === undefined && !args.compose) usage("--compose FILE (or --confirm COMPOSE_HASH) is required");
  return args;
}

function print(line) {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

/** The SDK's result, with the viem chain object the SDK adds to kmsInfo cut to its id. */
function view(result) {
  if (result && result.kmsInfo && typeof result.kmsInfo === "object" && "chain" in result.kmsInfo) {
    return { ...result, kmsInfo: { ...result.kmsInfo, chain: result.kmsInfo.chain?.id ?? null } };
  }
  return result;
}

/** What a failed call threw: PhalaCloudError (status, detail), ZodError (issues) or other. */
function failure(step, error) {
  const out = { name: error?.name ?? typeof error, message: String(error?.message ?? error) };
  if (error && typeof error === "object") {
    if ("status" in error) out.status = error.status;
    if ("detail" in error) out.detail = error.detail;
    if ("issues" in error) out.issues = error.issues;
  }
  print({ step, sdk_version: SDK_VERSION, error: out });
  process.exit(1);
}

let stdinLines;
async function readLine() {
  stdinLines ??= createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  const next = await stdinLines.next();
  return next.done ? "" : next.value.trim();
}

async function confirm(client, cvm, composeHash, transactionHash) {
  let result;
  try {
    result = await confirmCvmPatch(client, { id: cvm, composeHash, transactionHash });
  } catch (error) {
    failure("confirm", error);
  }
  print({ step: "confirm", sdk_version: SDK_VERSION, result: view(result) });
}

const args = parseArgs(process.argv.slice(2));
if (!process.env.PHALA_CLOUD_API_PREFIX) usage("set PHALA_CLOUD_API_PREFIX (the API's base URL, ending in /api/v1)");
if (!process.env.PHALA_CLOUD_API_KEY) usage("set PHALA_CLOUD_API_KEY");
// Both read by the SDK from the environment: nothing secret is passed around here.
const client = createClient();

if (args.confirm !== undefined) {
  const tx = process.env.PHALA_INTEROP_TX_HASH || (await readLine());
  if (!tx) usage("no transaction hash: set PHALA_INTEROP_TX_HASH or give it on stdin");
  await confirm(client, args.cvm, args.confirm, tx);
} else {
  let compose;
  try {
    compose = readFileSync(args.compose, "utf8");
  } catch (error) {
    usage(`cannot read --compose ${args.compose}: ${error.message}`);
  }
  const request = { id: args.cvm, docker_compose_file: compose };
  if (args.allowedEnvs.length) request.allowed_envs = args.allowedEnvs;
  if (args.prepareOnly) request.prepareOnly = true;
  let result;
  try {
    result = await patchCvm(client, request);
  } catch (error) {
    failure("patch", error);
  }
  print({ step: "patch", sdk_version: SDK_VERSION, result: view(result) });
  if (result.requiresOnChainHash) {
    const tx = await readLine();
    if (tx) await confirm(client, args.cvm, result.composeHash, tx);
  }
}
// The readline interface would keep the process alive.
process.exit(0);
