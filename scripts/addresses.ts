/**
 * Computes the registries' canonical CREATE2 addresses (deterministic deployment proxy, fixed salts, the compiled
 * artifacts) and their runtime code hashes, offline, and writes
 *
 *   deployments/canonical.json   the chain-independent record: proxy, salts, init code hashes, addresses,
 *                                runtime code hashes by chain id (CertificateRegistry's EIP-712 domain holds the chain id)
 *   deployments/sepolia/         deployment.json (addresses, code hashes, no transaction or block) and the ABIs
 *
 *   npm run addresses              # write
 *   npm run addresses -- --check   # compare with the committed files; exit 1 when they differ
 *
 * The runtime code hashes come from running the init code on Hardhat's in-process EVM, one chain per chain id,
 * through the proxy installed by its published transaction: nothing is contacted.
 */
import fs from "node:fs";
import path from "node:path";
import { BrowserProvider, keccak256 } from "ethers";
import type { HardhatRuntimeEnvironment } from "hardhat/types";
import { registryAbis, REGISTRY_NAMES, type RegistryName } from "../src/chain/contracts";
import {
  DETERMINISTIC_DEPLOYER,
  DETERMINISTIC_DEPLOYER_RUNTIME,
  DETERMINISTIC_DEPLOYER_SIGNER,
  DETERMINISTIC_DEPLOYER_TX,
  canonicalRegistries,
  canonicalRecordSchema,
  deployCanonicalRegistries,
  type CanonicalRecord,
} from "../src/chain/create2";
import { DEPLOYMENTS_DIR, deploymentSchema, type Deployment } from "../src/chain/deployments";
import { CANONICAL_ENS_REGISTRY, CHAIN_IDS } from "../src/chain/provider";

/** Chains whose runtime code hashes are recorded. */
export const RECORDED_CHAINS = [CHAIN_IDS.mainnet, CHAIN_IDS.sepolia, CHAIN_IDS.local] as const;

/** Sepolia's ENS, from @ensdomains/ensjs's chain definitions (public resolver, reverse registrar). */
const SEPOLIA_ENS = {
  registry: CANONICAL_ENS_REGISTRY,
  publicResolver: "0xE99638b40E4Fff0129D56f03b55b6bbC4BBE49b5",
  reverseRegistrar: "0xA0a1AbcDAe1a2a4A2EF8e9113Ff0e02DD81DC0C6",
  fifsRegistrars: {},
  deployedByStatetrail: false,
};

/** Runs the canonical deployment on a fresh in-process EVM with `chainId` and returns the runtime code hashes. */
async function measureRuntimeCodeHashes(
  hre: HardhatRuntimeEnvironment,
  chainId: number,
): Promise<Record<RegistryName, string>> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { createProvider } = require("hardhat/internal/core/providers/construction") as {
    createProvider(config: unknown, network: string): Promise<{ request(a: unknown): Promise<unknown> }>;
  };
  const config = {
    ...hre.config,
    networks: { ...hre.config.networks, hardhat: { ...hre.config.networks.hardhat, chainId } },
  };
  const eip1193 = await createProvider(config, "hardhat");
  const provider = new BrowserProvider(eip1193 as never, chainId, { cacheTimeout: -1 });
  const signer = await provider.getSigner(0);
  const deployed = await deployCanonicalRegistries(signer, { record: null });
  const result = {} as Record<RegistryName, string>;
  for (const name of REGISTRY_NAMES) result[name] = deployed[name].codeHash;
  return result;
}

export interface CanonicalFiles {
  /** Relative path under deployments/ → exact file content. */
  [relativePath: string]: string;
}

/** Everything `npm run addresses` writes, as file contents. */
export async function computeCanonicalFiles(hre: HardhatRuntimeEnvironment): Promise<CanonicalFiles> {
  const canonical = canonicalRegistries();
  const compiler = hre.config.solidity.compilers[0];
  const runtimeCodeHashes: CanonicalRecord["runtimeCodeHashes"] = {};
  for (const chainId of RECORDED_CHAINS)
    runtimeCodeHashes[String(chainId)] = await measureRuntimeCodeHashes(hre, chainId);
  const record: CanonicalRecord = canonicalRecordSchema.parse({
    description:
      "statetrail's registries at their canonical CREATE2 addresses: deployed through the deterministic deployment proxy with these salts, the same address on every chain. Computed offline by `npm run addresses` from the compiled artifacts; `npm run deploy -- --network <name>` deploys what a chain lacks.",
    deployer: {
      address: DETERMINISTIC_DEPLOYER,
      runtimeCodeHash: keccak256(DETERMINISTIC_DEPLOYER_RUNTIME),
      signer: DETERMINISTIC_DEPLOYER_SIGNER,
      transaction: DETERMINISTIC_DEPLOYER_TX,
    },
    compiler: {
      version: compiler.version,
      settings: {
        optimizer: compiler.settings.optimizer,
        evmVersion: compiler.settings.evmVersion,
        metadata: compiler.settings.metadata,
      },
    },
    contracts: canonical,
    runtimeCodeHashes,
  });
  const sepolia: Deployment = deploymentSchema.parse({
    network: "sepolia",
    chainId: CHAIN_IDS.sepolia,
    deployer: DETERMINISTIC_DEPLOYER,
    deployedAt: null,
    canonical: true,
    contracts: Object.fromEntries(
      REGISTRY_NAMES.map((name) => [
        name,
        {
          address: canonical[name].address,
          transactionHash: null,
          blockNumber: null,
          codeHash: runtimeCodeHashes[String(CHAIN_IDS.sepolia)][name],
          salt: canonical[name].salt,
        },
      ]),
    ),
    ens: SEPOLIA_ENS,
  });
  const json = (value: unknown) => JSON.stringify(value, null, 2) + "\n";
  const files: CanonicalFiles = {
    "canonical.json": json(record),
    "sepolia/deployment.json": json(sepolia),
  };
  for (const [name, abi] of Object.entries(registryAbis())) files[`sepolia/${name}.json`] = json({ abi });
  return files;
}

/** The committed files that differ from `files` (missing or other content). */
export function differingFiles(files: CanonicalFiles, dir = DEPLOYMENTS_DIR): string[] {
  return Object.entries(files)
    .filter(([relative, content]) => {
      const file = path.join(dir, relative);
      return !fs.existsSync(file) || fs.readFileSync(file, "utf8") !== content;
    })
    .map(([relative]) => relative);
}

async function main(): Promise<void> {
  const check = process.argv.includes("--check");
  const hre = (await import("hardhat")).default;
  const files = await computeCanonicalFiles(hre);
  const record = canonicalRecordSchema.parse(JSON.parse(files["canonical.json"]));
  for (const name of REGISTRY_NAMES) {
    const c = record.contracts[name];
    console.log(`${name.padEnd(20)} ${c.address}  salt ${c.salt}`);
    for (const [chainId, hashes] of Object.entries(record.runtimeCodeHashes)) {
      console.log(`${"".padEnd(20)} chain ${chainId.padEnd(9)} runtime code ${hashes[name]}`);
    }
  }
  if (check) {
    const differing = differingFiles(files);
    if (differing.length > 0) {
      console.error(
        `error [DEPLOYMENT_MISSING]: these committed files differ: ${differing.map((f) => `deployments/${f}`).join(", ")}`,
      );
      console.error("hint: the contracts or compiler settings changed: run npm run addresses and commit deployments/");
      process.exitCode = 1;
      return;
    }
    console.log("deployments/ matches the compiled registries");
    return;
  }
  for (const [relative, content] of Object.entries(files)) {
    const file = path.join(DEPLOYMENTS_DIR, relative);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, content);
    console.log(`wrote deployments/${relative}`);
  }
}

if (require.main === module) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
