import {
  Contract,
  ContractFactory,
  ZeroAddress,
  ZeroHash,
  getAddress,
  namehash,
  type BaseContract,
  type ContractTransactionResponse,
  type Provider,
  type Signer,
} from "ethers";
import { StatetrailError } from "../errors";
import { CertificateRegistry__factory, InstanceRegistry__factory, ModelRegistry__factory } from "../../typechain-types";
import { checkRegistryCode, registryAbis, type RegistryName } from "./contracts";
import {
  DEPLOYMENTS_DIR,
  deploymentSchema,
  loadDeployment,
  saveDeployment,
  type DeployedContract,
  type Deployment,
} from "./deployments";
import { DETERMINISTIC_DEPLOYER, canonicalRegistries, deployCanonicalRegistries } from "./create2";
import { ensArtifact, ensContract, labelhash, type EnsAddresses, type EnsContractName } from "./ens";
import { assertKeyAllowed, LOCAL_CHAIN_ID } from "./keys";
import { CANONICAL_ENS_REGISTRY, chainIdOf, chainName, toChainError, waitForReceipt } from "./provider";

export interface DeployOptions {
  /** Confirmations to wait for each deployment transaction. Default 1. */
  confirmations?: number;
  /** How long to wait for each transaction, in ms. Default 10 minutes. */
  timeoutMs?: number;
  /** Progress lines (e.g. console.log). */
  log?: (line: string) => void;
  /**
   * Nonces to use, shared across calls so that back-to-back transactions never reuse one (providers cache
   * `eth_getTransactionCount` briefly). Default: a fresh counter from the pending nonce.
   */
  nonces?: NonceCounter;
  /**
   * Deploy through the deterministic deployment proxy at the canonical CREATE2 addresses of
   * deployments/canonical.json (installing the proxy if the chain lacks it): idempotent, the same addresses on
   * every chain. Default false: plain deployments at fresh addresses (test fixtures that want their own).
   */
  canonical?: boolean;
}

/** Hands out consecutive nonces for one account, starting at its pending nonce. */
export class NonceCounter {
  private next: number | null = null;

  constructor(private readonly signer: Signer) {}

  async take(): Promise<number> {
    if (this.next === null) this.next = await this.signer.getNonce("pending");
    return this.next++;
  }
}

/** A registry deployment without its ENS part. */
export type RegistriesDeployment = Omit<Deployment, "ens">;

/**
 * Deploys ModelRegistry, CertificateRegistry and InstanceRegistry (bytecode and ABI of the compiled artifacts,
 * through the TypeChain factories). The three transactions are sent back to back with consecutive nonces and
 * then awaited, so a public network needs one block time rather than three. Refuses the development accounts
 * off the local chain (KEY_REFUSED) and an unfunded account (INSUFFICIENT_FUNDS) before sending anything.
 */
export async function deployRegistries(
  signer: Signer,
  network: string,
  options: DeployOptions = {},
): Promise<RegistriesDeployment> {
  const provider = requireProvider(signer);
  const chainId = await chainIdOf(provider);
  const deployer = getAddress(await signer.getAddress());
  assertKeyAllowed(deployer, chainId);
  // Deploying what is already at the canonical addresses costs nothing: only a missing contract needs funds.
  if (!options.canonical || (await canonicalMissing(provider))) await requireFunds(provider, deployer, chainId);
  const log = options.log ?? (() => undefined);
  const confirmations = options.confirmations ?? 1;
  const timeoutMs = options.timeoutMs ?? 600_000;

  if (options.canonical) {
    log(`deploying the registries to ${network} (chain ${chainId}) at their canonical addresses, from ${deployer}`);
    const deployed = await deployCanonicalRegistries(signer, { confirmations, timeoutMs, log });
    const entry = (name: RegistryName): DeployedContract => {
      const { address, transactionHash, blockNumber, codeHash, salt } = deployed[name];
      return { address, transactionHash, blockNumber, codeHash, salt };
    };
    const result: RegistriesDeployment = {
      network,
      chainId,
      deployer: DETERMINISTIC_DEPLOYER,
      deployedAt: new Date().toISOString(),
      canonical: true,
      contracts: {
        ModelRegistry: entry("ModelRegistry"),
        CertificateRegistry: entry("CertificateRegistry"),
        InstanceRegistry: entry("InstanceRegistry"),
      },
    };
    await assertRegistryCode(provider, result);
    return result;
  }
  log(`deploying the registries to ${network} (chain ${chainId}) from ${deployer}`);
  const nonces = options.nonces ?? new NonceCounter(signer);
  let model, certificate, instance;
  try {
    model = await new ModelRegistry__factory(signer).deploy({ nonce: await nonces.take() });
    certificate = await new CertificateRegistry__factory(signer).deploy({ nonce: await nonces.take() });
    instance = await new InstanceRegistry__factory(signer).deploy(await model.getAddress(), {
      nonce: await nonces.take(),
    });
  } catch (error) {
    throw toChainError(error, "sending the registry deployments");
  }
  const contracts = {
    ModelRegistry: await confirmDeployment("ModelRegistry", model, confirmations, timeoutMs, log),
    CertificateRegistry: await confirmDeployment("CertificateRegistry", certificate, confirmations, timeoutMs, log),
    InstanceRegistry: await confirmDeployment("InstanceRegistry", instance, confirmations, timeoutMs, log),
  };
  const result: RegistriesDeployment = {
    network,
    chainId,
    deployer,
    deployedAt: new Date().toISOString(),
    contracts,
  };
  await assertRegistryCode(provider, result);
  return result;
}

/**
 * A registry found already at its address (idempotent redeployment) keeps the transaction and block the previous
 * record of the network gave it.
 */
function keepRecordedTransactions(deployment: Deployment, dir: string): void {
  let previous: Deployment;
  try {
    previous = loadDeployment(deployment.network, dir);
  } catch {
    return;
  }
  if (previous.chainId !== deployment.chainId) return;
  for (const name of Object.keys(deployment.contracts) as RegistryName[]) {
    const now = deployment.contracts[name];
    const before = previous.contracts[name];
    if (now.transactionHash === null && before.transactionHash !== null && before.address === now.address) {
      now.transactionHash = before.transactionHash;
      now.blockNumber = before.blockNumber;
    }
  }
}

async function canonicalMissing(provider: Provider): Promise<boolean> {
  const addresses = [DETERMINISTIC_DEPLOYER, ...Object.values(canonicalRegistries()).map((c) => c.address)];
  const codes = await Promise.all(addresses.map((a) => provider.getCode(a)));
  return codes.some((code) => code === "0x");
}

async function assertRegistryCode(provider: Provider, result: RegistriesDeployment): Promise<void> {
  const checks = await checkRegistryCode(provider, { ...result, ens: placeholderEns() });
  const failed = checks.filter((c) => !c.ok);
  if (failed.length > 0) {
    throw new StatetrailError("TX_FAILED", `deployed, but ${failed.map((c) => c.detail).join("; ")}`);
  }
}

/**
 * Deploys a private ENS on a local chain (ENS 0.6.2 / resolver 0.3.1 artifacts, no ENS code of our own):
 * ENSRegistry; PublicResolver; ReverseRegistrar owning `addr.reverse` (under `reverse`) with the PublicResolver
 * as its default resolver, so `setName` writes a `name` record that `lookupAddress` reads; a FIFSRegistrar per
 * TLD (default `test` and `eth`) owning the TLD; and `resolver.eth` resolving to the PublicResolver, as on
 * mainnet and Sepolia, so {@link findEns} finds it the same way on every chain.
 */
export async function deployLocalEns(
  signer: Signer,
  options: DeployOptions & { tlds?: string[] } = {},
): Promise<EnsAddresses> {
  const log = options.log ?? (() => undefined);
  log("deploying a local ENS");
  const shared = { ...options, nonces: options.nonces ?? new NonceCounter(signer) };
  const registry = await deployEnsContract(signer, "ENSRegistry", [], shared);
  const ens = await setupEns(signer, await registry.getAddress(), shared);
  return { ...ens, deployedByStatetrail: true };
}

/**
 * Configures an ENS registry whose root the signer owns (freshly deployed, or placed by `hardhat_setCode` at the
 * canonical address to mimic Sepolia): deploys the PublicResolver, ReverseRegistrar and FIFS registrars and
 * wires them as {@link deployLocalEns} describes.
 */
export async function setupEns(
  signer: Signer,
  registryAddress: string,
  options: DeployOptions & { tlds?: string[] } = {},
): Promise<EnsAddresses> {
  options = { ...options, nonces: options.nonces ?? new NonceCounter(signer) };
  const nonces = options.nonces!;
  const tlds = options.tlds ?? ["test", "eth"];
  const me = getAddress(await signer.getAddress());
  const registry = ensContract("ENSRegistry", registryAddress, signer);
  const rootOwner = getAddress(await registry.owner(ZeroHash));
  if (rootOwner !== me) {
    throw new StatetrailError(
      "ENS_FAILED",
      `the ENS root at ${registryAddress} is owned by ${rootOwner}, not by ${me}`,
    );
  }
  const tx = async (what: string, call: (overrides: { nonce: number }) => Promise<ContractTransactionResponse>) =>
    sendAndWait(what, call, { nonce: await nonces.take() }, options);

  const resolver = await deployEnsContract(signer, "PublicResolver", [registryAddress], options);
  const resolverAddress = await resolver.getAddress();

  // reverse → addr.reverse, owned by the ReverseRegistrar. Its default resolver is the PublicResolver: setName
  // claims the caller's reverse node for the registrar, points it at that resolver and writes `name` there.
  await tx("creating reverse", (o) => registry.setSubnodeOwner(ZeroHash, labelhash("reverse"), me, o));
  const reverseRegistrar = await deployEnsContract(
    signer,
    "ReverseRegistrar",
    [registryAddress, resolverAddress],
    options,
  );
  const reverseAddress = await reverseRegistrar.getAddress();
  await tx("handing addr.reverse to the ReverseRegistrar", (o) =>
    registry.setSubnodeOwner(namehash("reverse"), labelhash("addr"), reverseAddress, o),
  );

  const fifsRegistrars: Record<string, string> = {};
  for (const tld of tlds) {
    await tx(`creating .${tld}`, (o) => registry.setSubnodeOwner(ZeroHash, labelhash(tld), me, o));
    if (tld === "eth") {
      // resolver.eth → PublicResolver, the way clients discover the public resolver on mainnet and Sepolia.
      await tx("creating resolver.eth", (o) => registry.setSubnodeOwner(namehash("eth"), labelhash("resolver"), me, o));
      await tx("setting the resolver of resolver.eth", (o) =>
        registry.setResolver(namehash("resolver.eth"), resolverAddress, o),
      );
      const publicResolver = ensContract("PublicResolver", resolverAddress, signer);
      await tx("setting the address of resolver.eth", (o) =>
        publicResolver["setAddr(bytes32,address)"](namehash("resolver.eth"), resolverAddress, o),
      );
    }
    const fifs = await deployEnsContract(signer, "FIFSRegistrar", [registryAddress, namehash(tld)], options);
    const fifsAddress = await fifs.getAddress();
    await tx(`handing .${tld} to its FIFS registrar`, (o) =>
      registry.setSubnodeOwner(ZeroHash, labelhash(tld), fifsAddress, o),
    );
    fifsRegistrars[tld] = fifsAddress;
  }

  options.log?.(
    `  ENS registry ${registryAddress}, public resolver ${resolverAddress}, reverse registrar ${reverseAddress}`,
  );
  return {
    registry: getAddress(registryAddress),
    publicResolver: getAddress(resolverAddress),
    reverseRegistrar: getAddress(reverseAddress),
    fifsRegistrars,
    deployedByStatetrail: false,
  };
}

/**
 * The ENS of a chain that has one (Sepolia, mainnet): the registry (default the canonical one), the public
 * resolver as `resolver.eth` resolves, and the reverse registrar as the owner of `addr.reverse`. Nothing is
 * deployed (`deployedByStatetrail: false`). ENS_FAILED when no registry code is at the address.
 */
export async function findEns(
  provider: Provider,
  registryAddress: string = CANONICAL_ENS_REGISTRY,
): Promise<EnsAddresses> {
  const chainId = await chainIdOf(provider);
  const code = await provider.getCode(registryAddress);
  if (code === "0x") {
    throw new StatetrailError(
      "ENS_FAILED",
      `there is no ENS registry at ${registryAddress} on chain ${chainId} (${chainName(chainId)})`,
      { hint: "ENS exists on mainnet and Sepolia; on a local chain statetrail deploys its own (statetrail node)" },
    );
  }
  const registry = ensContract("ENSRegistry", registryAddress, provider);
  let publicResolver: string | null = null;
  const resolverOfResolverEth = getAddress(await registry.resolver(namehash("resolver.eth")));
  if (resolverOfResolverEth !== ZeroAddress) {
    try {
      const resolved = getAddress(
        await ensContract("PublicResolver", resolverOfResolverEth, provider)["addr(bytes32)"](namehash("resolver.eth")),
      );
      publicResolver = resolved === ZeroAddress ? null : resolved;
    } catch {
      publicResolver = null;
    }
  }
  const reverseOwner = getAddress(await registry.owner(namehash("addr.reverse")));
  return {
    registry: getAddress(registryAddress),
    publicResolver,
    reverseRegistrar: reverseOwner === ZeroAddress ? null : reverseOwner,
    fifsRegistrars: {},
    deployedByStatetrail: false,
  };
}

export interface DeployAllOptions extends DeployOptions {
  /**
   * `deploy`: a private ENS (default on chain 31337); `canonical`: find the ENS at `ensRegistry` (default on
   * every other chain).
   */
  ens?: "deploy" | "canonical";
  /** ENS registry for `canonical`; default 0x00000000000C2E074eC69A0dFb2997BA6C7d2e1e. */
  ensRegistry?: string;
  /** Where `<network>/deployment.json` goes; default the repository's deployments/. */
  dir?: string;
  /** Write the record (default true). */
  save?: boolean;
}

export interface DeployAllResult {
  deployment: Deployment;
  /** The written deployment.json, or null when `save: false`. */
  file: string | null;
}

/**
 * Everything a network needs: the registries, plus ENS (a private one on the local chain, the canonical one
 * elsewhere), recorded in `<dir>/<network>/deployment.json` with the ABIs beside it. Used by
 * `npm run deploy` and `statetrail node`.
 */
export async function deployAll(
  signer: Signer,
  network: string,
  options: DeployAllOptions = {},
): Promise<DeployAllResult> {
  const provider = requireProvider(signer);
  const chainId = await chainIdOf(provider);
  assertKeyAllowed(await signer.getAddress(), chainId);
  const mode = options.ens ?? (chainId === LOCAL_CHAIN_ID ? "deploy" : "canonical");
  // Look the canonical ENS up before sending anything: a chain without it fails here, not after paying for gas.
  const canonical = mode === "canonical" ? await findEns(provider, options.ensRegistry) : null;
  const shared = { ...options, nonces: options.nonces ?? new NonceCounter(signer) };
  const registries = await deployRegistries(signer, network, shared);
  const ens = canonical ?? (await deployLocalEns(signer, shared));
  const deployment = deploymentSchema.parse({ ...registries, ens });
  keepRecordedTransactions(deployment, options.dir ?? DEPLOYMENTS_DIR);
  let file: string | null = null;
  if (options.save ?? true) {
    const abis: Record<string, unknown> = { ...registryAbis() };
    if (ens.deployedByStatetrail) {
      for (const name of ["ENSRegistry", "FIFSRegistrar", "ReverseRegistrar", "PublicResolver"] as EnsContractName[]) {
        abis[name] = ensArtifact(name).abi;
      }
    }
    file = saveDeployment(deployment, abis, options.dir ?? DEPLOYMENTS_DIR);
    options.log?.(`wrote ${file}`);
  }
  return { deployment, file };
}

/** A human-readable summary of a deployment, one line per contract. */
export function formatDeployment(deployment: Deployment): string {
  const lines = [`network ${deployment.network} (chain ${deployment.chainId}), deployer ${deployment.deployer}`];
  for (const [name, c] of Object.entries(deployment.contracts)) {
    const where =
      c.transactionHash === null ? "not deployed by this record" : `block ${c.blockNumber}  tx ${c.transactionHash}`;
    lines.push(`  ${name.padEnd(22)} ${c.address}  ${where}${c.codeHash ? `  code ${c.codeHash}` : ""}`);
  }
  const { ens } = deployment;
  lines.push(
    `  ${"ENS registry".padEnd(22)} ${ens.registry}${ens.deployedByStatetrail ? " (deployed by statetrail)" : ""}`,
  );
  lines.push(`  ${"ENS public resolver".padEnd(22)} ${ens.publicResolver ?? "-"}`);
  lines.push(`  ${"ENS reverse registrar".padEnd(22)} ${ens.reverseRegistrar ?? "-"}`);
  for (const [tld, address] of Object.entries(ens.fifsRegistrars)) {
    lines.push(`  ${("FIFS ." + tld).padEnd(22)} ${address}`);
  }
  return lines.join("\n");
}

// ---------------------------------------------------------------------------------------------------------------

function requireProvider(signer: Signer): Provider {
  if (!signer.provider) {
    throw new StatetrailError("INVALID_ARGUMENT", "the signer is not connected to a provider", {
      hint: "connect the signer to a provider from connect()",
    });
  }
  return signer.provider;
}

async function requireFunds(provider: Provider, address: string, chainId: number): Promise<void> {
  const balance = await provider.getBalance(address);
  if (balance === 0n) {
    throw new StatetrailError(
      "INSUFFICIENT_FUNDS",
      `${address} has no ETH on chain ${chainId} (${chainName(chainId)})`,
      {
        hint:
          chainId === 11155111
            ? "get Sepolia ETH from a faucet for this address, then deploy again"
            : "fund the account first",
      },
    );
  }
}

async function confirmDeployment(
  name: RegistryName,
  contract: BaseContract,
  confirmations: number,
  timeoutMs: number,
  log: (line: string) => void,
): Promise<DeployedContract> {
  const tx = contract.deploymentTransaction();
  if (!tx) throw new StatetrailError("INTERNAL", `${name} has no deployment transaction`);
  let receipt;
  try {
    receipt = await waitForReceipt(tx.provider, tx.hash, confirmations, timeoutMs);
  } catch (error) {
    throw toChainError(error, `deploying ${name} (tx ${tx.hash})`);
  }
  if (receipt.status !== 1) throw new StatetrailError("TX_FAILED", `deploying ${name} reverted (tx ${tx.hash})`);
  const address = getAddress(await contract.getAddress());
  if (receipt.contractAddress && getAddress(receipt.contractAddress) !== address) {
    throw new StatetrailError("TX_FAILED", `${name} was deployed at ${receipt.contractAddress}, expected ${address}`);
  }
  log(`  ${name.padEnd(22)} ${address} (block ${receipt.blockNumber}, tx ${tx.hash})`);
  return { address, transactionHash: tx.hash, blockNumber: receipt.blockNumber };
}

async function deployEnsContract(
  signer: Signer,
  name: EnsContractName,
  args: unknown[],
  options: DeployOptions,
): Promise<Contract> {
  const { abi, bytecode } = ensArtifact(name);
  const factory = new ContractFactory(abi, bytecode, signer);
  let contract: BaseContract;
  try {
    const nonce = options.nonces ? await options.nonces.take() : undefined;
    contract = await factory.deploy(...args, { nonce });
    const tx = contract.deploymentTransaction();
    if (!tx) throw new StatetrailError("INTERNAL", `${name} has no deployment transaction`);
    const receipt = await waitForReceipt(
      tx.provider,
      tx.hash,
      options.confirmations ?? 1,
      options.timeoutMs ?? 600_000,
    );
    if (receipt.status !== 1) throw new StatetrailError("TX_FAILED", `deploying ${name} reverted`);
  } catch (error) {
    throw ensDeployError(error, `deploying ENS ${name}`);
  }
  return new Contract(await contract.getAddress(), abi, signer);
}

async function sendAndWait(
  what: string,
  call: (overrides: { nonce: number }) => Promise<ContractTransactionResponse>,
  overrides: { nonce: number },
  options: DeployOptions,
): Promise<void> {
  try {
    const response = await call(overrides);
    const receipt = await waitForReceipt(
      response.provider,
      response.hash,
      options.confirmations ?? 1,
      options.timeoutMs ?? 600_000,
    );
    if (receipt.status !== 1) throw new StatetrailError("ENS_FAILED", `${what}: transaction reverted`);
  } catch (error) {
    throw ensDeployError(error, what);
  }
}

function ensDeployError(error: unknown, what: string): StatetrailError {
  const mapped = toChainError(error, what, "ENS_FAILED");
  if (mapped.code === "TX_FAILED") return new StatetrailError("ENS_FAILED", mapped.message, { cause: error });
  return mapped;
}

function placeholderEns(): EnsAddresses {
  return {
    registry: ZeroAddress,
    publicResolver: null,
    reverseRegistrar: null,
    fifsRegistrars: {},
    deployedByStatetrail: false,
  };
}
