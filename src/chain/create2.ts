import fs from "node:fs";
import path from "node:path";
import {
  AbiCoder,
  decodeRlp,
  concat,
  dataSlice,
  getAddress,
  getCreate2Address,
  id,
  keccak256,
  type Provider,
  type Signer,
} from "ethers";
import { z } from "zod";
import { StatetrailError } from "../errors";
import { CertificateRegistry__factory, InstanceRegistry__factory, ModelRegistry__factory } from "../../typechain-types";
import { REGISTRY_NAMES, type RegistryName } from "./contracts";
import { DEPLOYMENTS_DIR } from "./deployments";
import { chainIdOf, chainName, toChainError, waitForReceipt } from "./provider";

/**
 * The deterministic deployment proxy (github.com/Arachnid/deterministic-deployment-proxy): the same address on
 * mainnet, Sepolia and most EVM chains, deployed by a pre-signed pre-EIP-155 transaction from a one-time
 * account. Called with `salt ++ initCode` it CREATE2s the code and returns the new address (20 bytes).
 */
export const DETERMINISTIC_DEPLOYER = getAddress("0x4e59b44847b379578588920ca78fbf26c0b4956c");
/** The one-time account that signed {@link DETERMINISTIC_DEPLOYER_TX} (nonce 0, 100 gwei, 100,000 gas). */
export const DETERMINISTIC_DEPLOYER_SIGNER = getAddress("0x3fab184622dc19b6109349b94811493bf2a45362");
/** The proxy's published deployment transaction; valid on every chain (no chain id in its signature). */
export const DETERMINISTIC_DEPLOYER_TX =
  "0xf8a58085174876e800830186a08080b853604580600e600039806000f350fe7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffe03601600081602082378035828234f58015156039578182fd5b8082525050506014600cf31ba02222222222222222222222222222222222222222222222222222222222222222a02222222222222222222222222222222222222222222222222222222222222222";
/** What the one-time account must hold before its transaction can be sent: 100 gwei × 100,000 gas. */
export const DETERMINISTIC_DEPLOYER_FUNDING = 100_000_000_000n * 100_000n;
/**
 * The proxy's runtime code: its deployment transaction's data (the sixth field of the legacy transaction's RLP list)
 * after the 14-byte constructor. Read from the RLP rather than `Transaction.from`, which recovers the signer: that
 * cost every `verify` (V0 loads this module) tens of milliseconds at start.
 */
export const DETERMINISTIC_DEPLOYER_RUNTIME = dataSlice((decodeRlp(DETERMINISTIC_DEPLOYER_TX) as string[])[5], 14);

/** Fixed CREATE2 salts: with the byte-stable init code they fix each registry's address on every chain. */
export const REGISTRY_SALTS: Record<RegistryName, string> = {
  ModelRegistry: id("statetrail ModelRegistry"),
  CertificateRegistry: id("statetrail CertificateRegistry"),
  InstanceRegistry: id("statetrail InstanceRegistry"),
};

/** Where the chain-independent record of the canonical addresses lives (written by `npm run addresses`). */
export const CANONICAL_FILE = path.join(DEPLOYMENTS_DIR, "canonical.json");

const REGISTRY_BYTECODE: Record<RegistryName, string> = {
  ModelRegistry: ModelRegistry__factory.bytecode,
  CertificateRegistry: CertificateRegistry__factory.bytecode,
  InstanceRegistry: InstanceRegistry__factory.bytecode,
};

/** The init code of a canonical registry: the compiled artifact's bytecode and its constructor arguments. */
export function canonicalInitCode(name: RegistryName): string {
  return concat([REGISTRY_BYTECODE[name], canonicalRegistries()[name].constructorArguments]);
}

export interface CanonicalContract {
  salt: string;
  initCodeHash: string;
  address: string;
  /** ABI-encoded constructor arguments appended to the artifact's bytecode ("0x" for none). */
  constructorArguments: string;
}

/**
 * The registries' addresses through the deterministic deployment proxy, computed offline from the compiled
 * artifacts, in order: InstanceRegistry's init code holds ModelRegistry's address.
 */
export function canonicalRegistries(): Record<RegistryName, CanonicalContract> {
  const entry = (name: RegistryName, constructorArguments = "0x"): CanonicalContract => {
    const bytecode = REGISTRY_BYTECODE[name];
    const initCodeHash = keccak256(concat([bytecode, constructorArguments]));
    const salt = REGISTRY_SALTS[name];
    const address = getCreate2Address(DETERMINISTIC_DEPLOYER, salt, initCodeHash);
    return { salt, initCodeHash, address, constructorArguments };
  };
  const model = entry("ModelRegistry");
  const certificate = entry("CertificateRegistry");
  const instance = entry("InstanceRegistry", AbiCoder.defaultAbiCoder().encode(["address"], [model.address]));
  return { ModelRegistry: model, CertificateRegistry: certificate, InstanceRegistry: instance };
}

const hashSchema = z.string().regex(/^0x[0-9a-f]{64}$/);
const addressSchema = z.string().regex(/^0x[0-9a-fA-F]{40}$/);

/** What deployments/canonical.json holds. */
export const canonicalRecordSchema = z.object({
  description: z.string(),
  deployer: z.object({
    address: addressSchema,
    runtimeCodeHash: hashSchema,
    signer: addressSchema,
    transaction: z.string(),
  }),
  compiler: z.object({ version: z.string(), settings: z.record(z.unknown()) }),
  contracts: z.object({
    ModelRegistry: z.object({
      salt: hashSchema,
      initCodeHash: hashSchema,
      address: addressSchema,
      constructorArguments: z.string(),
    }),
    CertificateRegistry: z.object({
      salt: hashSchema,
      initCodeHash: hashSchema,
      address: addressSchema,
      constructorArguments: z.string(),
    }),
    InstanceRegistry: z.object({
      salt: hashSchema,
      initCodeHash: hashSchema,
      address: addressSchema,
      constructorArguments: z.string(),
    }),
  }),
  /**
   * keccak256 of each registry's runtime code by chain id. CertificateRegistry's differs per chain: OpenZeppelin's
   * EIP712 keeps the chain id and the domain separator in immutables.
   */
  runtimeCodeHashes: z.record(
    z.object({ ModelRegistry: hashSchema, CertificateRegistry: hashSchema, InstanceRegistry: hashSchema }),
  ),
});
export type CanonicalRecord = z.infer<typeof canonicalRecordSchema>;

let cached: CanonicalRecord | null | undefined;

/** The committed deployments/canonical.json, or null when there is none. */
export function loadCanonicalRecord(file = CANONICAL_FILE): CanonicalRecord | null {
  if (file === CANONICAL_FILE && cached !== undefined) return cached;
  const record = fs.existsSync(file) ? canonicalRecordSchema.parse(JSON.parse(fs.readFileSync(file, "utf8"))) : null;
  if (file === CANONICAL_FILE) cached = record;
  return record;
}

/**
 * The committed runtime code hash of the registry at `address` on `chainId`, when `address` is that registry's
 * canonical address and the record has the chain; null otherwise (a registry deployed elsewhere).
 */
export function committedCodeHash(
  name: RegistryName,
  address: string,
  chainId: number,
  record: CanonicalRecord | null = loadCanonicalRecord(),
): string | null {
  if (!record) return null;
  if (getAddress(record.contracts[name].address) !== getAddress(address)) return null;
  return record.runtimeCodeHashes[String(chainId)]?.[name] ?? null;
}

/** keccak256 of the code at `address` ("0x" code hashes to keccak256 of nothing; null for no code). */
export async function codeHashAt(provider: Provider, address: string, blockTag?: number): Promise<string | null> {
  const code = await provider.getCode(address, blockTag);
  return code === "0x" ? null : keccak256(code);
}

export interface ProxyOptions {
  confirmations?: number;
  timeoutMs?: number;
  log?: (line: string) => void;
}

/**
 * Makes sure the deterministic deployment proxy is at its address: reports it when its code is there (refusing
 * other code there), otherwise funds its one-time account and broadcasts its published transaction, exactly as
 * on a new public chain. Permissionless: any funded signer can do it.
 */
export async function ensureDeterministicDeployer(
  signer: Signer,
  options: ProxyOptions = {},
): Promise<"present" | "deployed"> {
  const provider = signer.provider;
  if (!provider) throw new StatetrailError("INVALID_ARGUMENT", "the signer is not connected to a provider");
  const log = options.log ?? (() => undefined);
  const code = await provider.getCode(DETERMINISTIC_DEPLOYER);
  if (code !== "0x") {
    if (code.toLowerCase() !== DETERMINISTIC_DEPLOYER_RUNTIME.toLowerCase()) {
      throw new StatetrailError(
        "DEPLOYMENT_CODE_MISMATCH",
        `the code at ${DETERMINISTIC_DEPLOYER} is not the deterministic deployment proxy`,
        { hint: "this chain can't hold statetrail's canonical registries; deploy nowhere else from here" },
      );
    }
    return "present";
  }
  const chainId = await chainIdOf(provider);
  const nonce = await provider.getTransactionCount(DETERMINISTIC_DEPLOYER_SIGNER);
  if (nonce !== 0) {
    throw new StatetrailError(
      "DEPLOYMENT_MISSING",
      `the deterministic deployment proxy is not on chain ${chainId} and its one-time account has already sent a transaction`,
      { hint: "this chain can't hold the proxy at its canonical address" },
    );
  }
  log(
    `installing the deterministic deployment proxy at ${DETERMINISTIC_DEPLOYER} (chain ${chainId}, ${chainName(chainId)})`,
  );
  const confirmations = options.confirmations ?? 1;
  const timeoutMs = options.timeoutMs ?? 600_000;
  try {
    const balance = await provider.getBalance(DETERMINISTIC_DEPLOYER_SIGNER);
    if (balance < DETERMINISTIC_DEPLOYER_FUNDING) {
      const funding = await signer.sendTransaction({
        to: DETERMINISTIC_DEPLOYER_SIGNER,
        value: DETERMINISTIC_DEPLOYER_FUNDING - balance,
      });
      await waitForReceipt(provider, funding.hash, confirmations, timeoutMs);
    }
    const hash = await provider.broadcastTransaction(DETERMINISTIC_DEPLOYER_TX);
    const receipt = await waitForReceipt(provider, hash.hash, confirmations, timeoutMs);
    if (receipt.status !== 1) throw new StatetrailError("TX_FAILED", "the proxy's deployment transaction reverted");
  } catch (error) {
    throw toChainError(error, "installing the deterministic deployment proxy");
  }
  if ((await provider.getCode(DETERMINISTIC_DEPLOYER)).toLowerCase() !== DETERMINISTIC_DEPLOYER_RUNTIME.toLowerCase()) {
    throw new StatetrailError("TX_FAILED", `the deterministic deployment proxy is not at ${DETERMINISTIC_DEPLOYER}`);
  }
  return "deployed";
}

export interface CanonicalDeployed {
  name: RegistryName;
  address: string;
  codeHash: string;
  salt: string;
  /** "deployed" by this call, or "present" (already there, code hash checked). */
  status: "deployed" | "present";
  transactionHash: string | null;
  blockNumber: number | null;
}

/**
 * Deploys what is missing of the three registries at their canonical addresses through the proxy and reports
 * what is already there. Every address must end up holding code whose hash is the committed one for this chain
 * (when the chain is in deployments/canonical.json) — else DEPLOYMENT_CODE_MISMATCH: a look-alike is never accepted.
 */
export async function deployCanonicalRegistries(
  signer: Signer,
  options: ProxyOptions & { record?: CanonicalRecord | null } = {},
): Promise<Record<RegistryName, CanonicalDeployed>> {
  const provider = signer.provider;
  if (!provider) throw new StatetrailError("INVALID_ARGUMENT", "the signer is not connected to a provider");
  const log = options.log ?? (() => undefined);
  const confirmations = options.confirmations ?? 1;
  const timeoutMs = options.timeoutMs ?? 600_000;
  const chainId = await chainIdOf(provider);
  const record = options.record === undefined ? loadCanonicalRecord() : options.record;
  await ensureDeterministicDeployer(signer, options);
  const canonical = canonicalRegistries();
  const result = {} as Record<RegistryName, CanonicalDeployed>;
  for (const name of REGISTRY_NAMES) {
    const { address, salt, constructorArguments } = canonical[name];
    const expected = record ? committedCodeHash(name, address, chainId, record) : null;
    let codeHash = await codeHashAt(provider, address);
    let status: CanonicalDeployed["status"] = "present";
    let transactionHash: string | null = null;
    let blockNumber: number | null = null;
    if (codeHash === null) {
      const initCode = concat([REGISTRY_BYTECODE[name], constructorArguments]);
      try {
        const tx = await signer.sendTransaction({ to: DETERMINISTIC_DEPLOYER, data: concat([salt, initCode]) });
        const receipt = await waitForReceipt(provider, tx.hash, confirmations, timeoutMs);
        if (receipt.status !== 1) throw new StatetrailError("TX_FAILED", `deploying ${name} reverted (tx ${tx.hash})`);
        transactionHash = tx.hash;
        blockNumber = receipt.blockNumber;
      } catch (error) {
        throw toChainError(error, `deploying ${name} through the deterministic deployment proxy`);
      }
      codeHash = await codeHashAt(provider, address);
      if (codeHash === null)
        throw new StatetrailError("TX_FAILED", `${name} is not at ${address} after its deployment`);
      status = "deployed";
    }
    if (expected !== null && codeHash !== expected) {
      throw new StatetrailError(
        "DEPLOYMENT_CODE_MISMATCH",
        `the code at ${name}'s canonical address ${address} hashes to ${codeHash}, the committed runtime code hash for chain ${chainId} is ${expected}`,
        { hint: "the compiled registries differ from the committed ones: run npm run addresses -- --check" },
      );
    }
    log(
      `  ${name.padEnd(22)} ${address} ${status === "deployed" ? `deployed (block ${blockNumber}, tx ${transactionHash})` : "already there"}, code hash ${codeHash}${expected ? " (committed)" : ""}`,
    );
    result[name] = { name, address, codeHash, salt, status, transactionHash, blockNumber };
  }
  return result;
}
