import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { subtask, vars, type HardhatUserConfig } from "hardhat/config";
import { TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD, TASK_TEST_RUN_MOCHA_TESTS } from "hardhat/builtin-tasks/task-names";
import "@nomicfoundation/hardhat-toolbox";

const SOLC_VERSION = "0.8.28";

// Compile offline with the solc npm package: Hardhat's compiler download cannot be reached here,
// and pinning the exact compiler keeps the bytecode deterministic.
subtask(TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD, async (args: { solcVersion: string }, _hre, runSuper) => {
  if (args.solcVersion !== SOLC_VERSION) return runSuper(args);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const solc = require("solc") as { version(): string };
  return {
    compilerPath: path.join(path.dirname(require.resolve("solc/package.json")), "soljson.js"),
    isSolcJs: true,
    version: SOLC_VERSION,
    longVersion: solc.version().replace(/\.Emscripten\.clang$/, ""),
  };
});

// Every temporary folder the tests make (homes, keystores, deployments, browser profiles), in this process and its
// children, goes into one folder of this run, removed when the tests end: a run left some hundred behind. The
// folder shared across runs (the bundled Chromium, inflated once) stays in the system's (STATETRAIL_SHARED_TMPDIR).
subtask(TASK_TEST_RUN_MOCHA_TESTS, async (args, _hre, runSuper) => {
  const shared = os.tmpdir();
  const run = fs.mkdtempSync(path.join(shared, "statetrail-test-run-"));
  const saved = { TMPDIR: process.env.TMPDIR, STATETRAIL_SHARED_TMPDIR: process.env.STATETRAIL_SHARED_TMPDIR };
  process.env.STATETRAIL_SHARED_TMPDIR ??= shared;
  process.env.TMPDIR = run;
  try {
    return await runSuper(args);
  } finally {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
    fs.rmSync(run, { recursive: true, force: true });
  }
});

// Public-network secrets come from Hardhat configuration variables (`npx hardhat vars set`) or the
// environment; nothing is committed. An empty key list makes a deployment fail before it sends anything.
const sepoliaUrl =
  process.env.SEPOLIA_RPC_URL ?? vars.get("SEPOLIA_RPC_URL", "https://ethereum-sepolia-rpc.publicnode.com");
const sepoliaKey = process.env.SEPOLIA_PRIVATE_KEY ?? vars.get("SEPOLIA_PRIVATE_KEY", "");

const config: HardhatUserConfig = {
  solidity: {
    version: SOLC_VERSION,
    settings: {
      optimizer: { enabled: true, runs: 10_000 },
      evmVersion: "cancun",
      // No metadata hash in the bytecode: the registries' CREATE2 addresses (deployments/canonical.json) then
      // depend on the code and these settings only, not on comments, line endings or file paths.
      metadata: { bytecodeHash: "none" },
    },
  },
  networks: {
    // STATETRAIL_HARDHAT_CHAIN_ID lets a `hardhat node` mimic another chain (e.g. 11155111 for Sepolia) in tests.
    hardhat: { chainId: Number(process.env.STATETRAIL_HARDHAT_CHAIN_ID ?? 31337) },
    localhost: { url: process.env.STATETRAIL_RPC_URL ?? "http://127.0.0.1:8545", chainId: 31337 },
    sepolia: { url: sepoliaUrl, chainId: 11155111, accounts: sepoliaKey ? [sepoliaKey] : [] },
  },
  gasReporter: {
    enabled: process.env.REPORT_GAS !== undefined,
    offline: true,
    currency: "USD",
  },
  mocha: { timeout: 120_000 },
  typechain: { outDir: "typechain-types", target: "ethers-v6" },
};

export default config;
