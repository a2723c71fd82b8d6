// Compiles each test contract (AppAuth.sol, KmsAuth.sol) with the pinned solc (package.json) and
// writes NAME.json beside it, an artifact alloy's `sol!` macro reads. Deterministic: the same
// inputs give the same files, byte for byte.
import { readFileSync, writeFileSync, renameSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import solc from "solc";

const here = dirname(fileURLToPath(import.meta.url));
const CONTRACTS = ["AppAuth", "KmsAuth"];
// Cancun: what Ethereum and Base run, and what anvil executes; newer opcodes are not needed.
const EVM_VERSION = "cancun";

for (const CONTRACT of CONTRACTS) compileOne(CONTRACT, `${CONTRACT}.sol`);

function compileOne(CONTRACT, SOURCE) {
  const input = {
    language: "Solidity",
    sources: { [SOURCE]: { content: readFileSync(join(here, SOURCE), "utf8") } },
    settings: {
      optimizer: { enabled: true, runs: 200 },
      evmVersion: EVM_VERSION,
      outputSelection: { [SOURCE]: { [CONTRACT]: ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
    },
  };

  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const diagnostics = output.errors ?? [];
  for (const d of diagnostics) console.error(d.formattedMessage ?? d.message);
  if (diagnostics.some((d) => d.severity === "error")) process.exit(1);

  const compiled = output.contracts?.[SOURCE]?.[CONTRACT];
  if (!compiled) {
    console.error(`solc produced no ${CONTRACT} in ${SOURCE}`);
    process.exit(1);
  }

  const artifact = {
    abi: compiled.abi,
    bytecode: { object: `0x${compiled.evm.bytecode.object}` },
    deployedBytecode: { object: `0x${compiled.evm.deployedBytecode.object}` },
    metadata: {
      compiler: `solc ${solc.version()}`,
      evmVersion: EVM_VERSION,
      optimizer: input.settings.optimizer,
      source: SOURCE,
    },
  };

  const target = join(here, `${CONTRACT}.json`);
  const tmp = `${target}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(artifact, null, 2)}\n`);
  renameSync(tmp, target);
  console.log(`wrote ${target} (${artifact.metadata.compiler})`);
}
