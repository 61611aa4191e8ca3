/**
 * The ENS operations the identity layer and the verifier need.
 *
 * Writes (resolver, addr, text, primary name) go through @ensdomains/ensjs on a viem wallet client whose
 * custom chain points `ensRegistry`, `ensPublicResolver` and `ensReverseRegistrar` at the deployment's
 * contracts. ensjs' write functions only encode calls against those addresses and send them, which works with
 * the ENS 0.6.2 registry / ReverseRegistrar and the 0.3.1 PublicResolver statetrail deploys on a local chain
 * (setResolver(bytes32,address), setAddr(bytes32,uint256,bytes), setText, ReverseRegistrar.setName(string))
 * as well as with the current contracts on Sepolia. ensjs has no FIFS registrar call, so the local
 * registration is an ethers call on the FIFSRegistrar ABI. ensjs' *read* side needs a UniversalResolver,
 * which a local chain does not have: reads use ethers' EnsPlugin provider (see provider.ts) and, to confirm
 * each write, plain calls on the registry and resolver ABIs.
 *
 * Every write is read back; a record that does not read back as written is an ENS_FAILED error.
 */
import fs from "node:fs";
import {
  AbstractProvider,
  Contract,
  Wallet,
  HDNodeWallet,
  ZeroAddress,
  ensNormalize,
  getAddress,
  id,
  namehash,
  type ContractRunner,
  type InterfaceAbi,
  type Provider,
  type Signer,
} from "ethers";
import { type Account, type Address, type Hex } from "viem";
import type { ChainWithEns } from "@ensdomains/ensjs/contracts";
import { StatetrailError } from "../errors";
import { lazy } from "../lazy";

// viem and ensjs write ENS records (identity); the reads an auditor makes use ethers only, and don't load them.
/* eslint-disable @typescript-eslint/no-require-imports */
const viemLib = lazy(() => require("viem") as typeof import("viem"));
const viemAccounts = lazy(() => require("viem/accounts") as typeof import("viem/accounts"));
const ensjs = lazy(() => require("@ensdomains/ensjs/wallet") as typeof import("@ensdomains/ensjs/wallet"));
const ensjsContracts = lazy(
  () => require("@ensdomains/ensjs/contracts") as typeof import("@ensdomains/ensjs/contracts"),
);
/* eslint-enable @typescript-eslint/no-require-imports */
import type { Deployment } from "./deployments";
import { chainIdOf, chainName, ensRegistryOf, toChainError, waitForReceipt } from "./provider";

/** The ENS contracts of a network, as recorded in a deployment. */
export type EnsAddresses = Deployment["ens"];

export interface EnsWriteOptions {
  /** Confirmations to wait for each transaction. Default 1. */
  confirmations?: number;
  /** How long to wait for each transaction, in ms. Default 120 s. */
  timeoutMs?: number;
}

// ---------------------------------------------------------------------------------------------------------------
// Artifacts of the ENS contracts (ABI + bytecode from the npm packages; statetrail writes no ENS contract)
// ---------------------------------------------------------------------------------------------------------------

export const ENS_CONTRACT_NAMES = ["ENSRegistry", "FIFSRegistrar", "ReverseRegistrar", "PublicResolver"] as const;
export type EnsContractName = (typeof ENS_CONTRACT_NAMES)[number];

const ENS_ARTIFACT_PATHS: Record<EnsContractName, string> = {
  ENSRegistry: "@ensdomains/ens/build/contracts/ENSRegistry.json",
  FIFSRegistrar: "@ensdomains/ens/build/contracts/FIFSRegistrar.json",
  ReverseRegistrar: "@ensdomains/ens/build/contracts/ReverseRegistrar.json",
  PublicResolver: "@ensdomains/resolver/build/contracts/PublicResolver.json",
};

export interface EnsArtifact {
  abi: InterfaceAbi;
  bytecode: string;
  deployedBytecode: string;
}

const artifactCache = new Map<EnsContractName, EnsArtifact>();

/** ABI and bytecode of an ENS contract from @ensdomains/ens@0.6.2 or @ensdomains/resolver@0.3.1. */
export function ensArtifact(name: EnsContractName): EnsArtifact {
  let artifact = artifactCache.get(name);
  if (!artifact) {
    let file: string;
    try {
      file = require.resolve(ENS_ARTIFACT_PATHS[name]);
    } catch (error) {
      throw new StatetrailError(
        "ENS_FAILED",
        `the ENS contract artifact ${ENS_ARTIFACT_PATHS[name]} is not installed`,
        {
          hint: "install the ENS packages: npm install @ensdomains/ens@0.6.2 @ensdomains/resolver@0.3.1",
          cause: error,
        },
      );
    }
    const json = JSON.parse(fs.readFileSync(file, "utf8")) as EnsArtifact;
    artifact = { abi: json.abi, bytecode: json.bytecode, deployedBytecode: json.deployedBytecode };
    artifactCache.set(name, artifact);
  }
  return artifact;
}

export function ensContract(name: EnsContractName, address: string, runner: ContractRunner | null): Contract {
  return new Contract(address, ensArtifact(name).abi, runner);
}

// ---------------------------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------------------------

/** ENS-normalises a name (UTS-46 / ENSIP-15); INVALID_ARGUMENT if it can't be. */
export function normalizeName(name: string): string {
  try {
    return ensNormalize(name);
  } catch (error) {
    throw new StatetrailError("INVALID_ARGUMENT", `"${name}" is not a valid ENS name`, { cause: error });
  }
}

/** keccak256 of a single label, as FIFSRegistrar.register and setSubnodeOwner take it. */
export function labelhash(label: string): string {
  return id(normalizeName(label));
}

/** The reverse name of an address: `<lowercase hex without 0x>.addr.reverse`. */
export function reverseNameOf(address: string): string {
  return `${getAddress(address).slice(2).toLowerCase()}.addr.reverse`;
}

// ---------------------------------------------------------------------------------------------------------------
// Writes
// ---------------------------------------------------------------------------------------------------------------

/**
 * Registers `<label>.<tld>` through the FIFS registrar statetrail deployed for `tld` on a local chain, owned by
 * the signer, and points it at the public resolver. First come, first served: a label owned by someone else is
 * refused (ENS_FAILED). Registering a name the signer already owns is a no-op. Returns the full name.
 */
export async function registerLocalName(
  signer: Signer,
  ens: EnsAddresses,
  label: string,
  tld = "test",
  options: EnsWriteOptions = {},
): Promise<string> {
  const registrarAddress = ens.fifsRegistrars[tld];
  if (!registrarAddress) {
    throw new StatetrailError("ENS_FAILED", `no FIFS registrar for ".${tld}" in this deployment`, {
      hint: ens.deployedByStatetrail
        ? `the local ENS has registrars for: ${
            Object.keys(ens.fifsRegistrars)
              .map((t) => "." + t)
              .join(", ") || "none"
          }`
        : "names on a public network are registered in the ENS app (https://app.ens.domains); then set its records here",
    });
  }
  if (label.includes("."))
    throw new StatetrailError("INVALID_ARGUMENT", `"${label}" must be a single label, without dots`);
  const name = normalizeName(`${label}.${tld}`);
  const node = namehash(name);
  const me = await signer.getAddress();
  const provider = requireProvider(signer);
  const registry = ensContract("ENSRegistry", ens.registry, provider);

  const owner = getAddress(await registry.owner(node));
  if (owner !== ZeroAddress && owner !== me) {
    throw new StatetrailError("ENS_FAILED", `${name} is already registered to ${owner}`, {
      hint: "choose another name (--ens-name)",
    });
  }
  if (owner !== me) {
    const fifs = ensContract("FIFSRegistrar", registrarAddress, signer);
    await send(provider, `registering ${name}`, () => fifs.register(labelhash(label), me), options);
    const readBack = getAddress(await registry.owner(node));
    if (readBack !== me) {
      throw new StatetrailError("ENS_FAILED", `registered ${name} but the registry says its owner is ${readBack}`);
    }
  }
  if (ens.publicResolver) await setResolver(signer, ens, name, ens.publicResolver, options);
  return name;
}

/** Points `name` at `resolver` (default: the public resolver) in the registry; the signer must own the name. */
export async function setResolver(
  signer: Signer,
  ens: EnsAddresses,
  name: string,
  resolver: string | null = ens.publicResolver,
  options: EnsWriteOptions = {},
): Promise<void> {
  if (!resolver) throw new StatetrailError("ENS_FAILED", "no public resolver is known for this network's ENS");
  const normalized = normalizeName(name);
  const node = namehash(normalized);
  const provider = requireProvider(signer);
  const registry = ensContract("ENSRegistry", ens.registry, provider);
  if (getAddress(await registry.resolver(node)) === getAddress(resolver)) return;
  const ownership = await requireOwner(signer, registry, ens, normalized);
  const wallet = await ensWalletClient(signer, ens);
  // A wrapped name's resolver is set through the NameWrapper (the registry's owner of its node).
  const contract = ownership.wrapper === null ? "registry" : "nameWrapper";
  await send(
    provider,
    `setting the resolver of ${normalized}${ownership.wrapper === null ? "" : " (wrapped: through the NameWrapper)"}`,
    () => ensjs.setResolver(wallet, { name: normalized, contract, resolverAddress: resolver as Address }),
    options,
  );
  const readBack = getAddress(await registry.resolver(node));
  if (readBack !== getAddress(resolver)) {
    throw new StatetrailError("ENS_FAILED", `the resolver of ${normalized} reads ${readBack}, expected ${resolver}`);
  }
}

/** Sets the ETH address record (`addr`, coin type 60) of `name` on its resolver and reads it back. */
export async function setAddr(
  signer: Signer,
  ens: EnsAddresses,
  name: string,
  address: string,
  options: EnsWriteOptions = {},
): Promise<void> {
  const normalized = normalizeName(name);
  const target = getAddress(address);
  const { resolver, provider } = await writableResolver(signer, ens, normalized);
  const wallet = await ensWalletClient(signer, ens);
  await send(
    provider,
    `setting the address of ${normalized}`,
    async () =>
      ensjs.setAddressRecord(wallet, {
        name: normalized,
        coin: "eth",
        value: target,
        resolverAddress: (await resolver.getAddress()) as Address,
      }),
    options,
  );
  const readBack = getAddress(await resolver["addr(bytes32)"](namehash(normalized)));
  if (readBack !== target) {
    throw new StatetrailError(
      "ENS_FAILED",
      `the address record of ${normalized} reads ${readBack}, expected ${target}`,
    );
  }
}

/** Sets a text record (e.g. key `url`) of `name` on its resolver and reads it back. */
export async function setText(
  signer: Signer,
  ens: EnsAddresses,
  name: string,
  key: string,
  value: string,
  options: EnsWriteOptions = {},
): Promise<void> {
  const normalized = normalizeName(name);
  const { resolver, provider } = await writableResolver(signer, ens, normalized);
  const wallet = await ensWalletClient(signer, ens);
  await send(
    provider,
    `setting the "${key}" text record of ${normalized}`,
    async () =>
      ensjs.setTextRecord(wallet, {
        name: normalized,
        key,
        value,
        resolverAddress: (await resolver.getAddress()) as Address,
      }),
    options,
  );
  const readBack: string = await resolver.text(namehash(normalized), key);
  if (readBack !== value) {
    throw new StatetrailError(
      "ENS_FAILED",
      `the "${key}" text record of ${normalized} reads "${readBack}", expected "${value}"`,
    );
  }
}

/**
 * Sets the signer's primary name (reverse record) through the ReverseRegistrar and reads the reverse record
 * back. The reverse record alone proves nothing: readers must confirm it forward ({@link lookupName}), so set
 * the name's `addr` to the signer first.
 */
export async function setPrimaryName(
  signer: Signer,
  ens: EnsAddresses,
  name: string,
  options: EnsWriteOptions = {},
): Promise<void> {
  if (!ens.reverseRegistrar) {
    throw new StatetrailError("ENS_FAILED", "no reverse registrar is known for this network's ENS", {
      hint: "the deployment's ens.reverseRegistrar is empty: redeploy, or set the primary name in the ENS app",
    });
  }
  const normalized = normalizeName(name);
  const me = await signer.getAddress();
  const provider = requireProvider(signer);
  const wallet = await ensWalletClient(signer, ens);
  await send(
    provider,
    `setting the primary name of ${me} to ${normalized}`,
    () => ensjs.setPrimaryName(wallet, { name: normalized }),
    options,
  );
  const readBack = await readReverseRecord(provider, ens.registry, me);
  if (readBack !== normalized) {
    throw new StatetrailError(
      "ENS_FAILED",
      `the reverse record of ${me} reads ${JSON.stringify(readBack)}, expected "${normalized}"`,
      {
        hint: "the ReverseRegistrar's default resolver must implement setName (the public resolver does)",
      },
    );
  }
}

export interface EnsIdentity {
  name: string;
  /** The address `name` resolves to; default: the signer. */
  address?: string;
  /** The issuer's HTTPS base URL, written as the `url` text record. */
  url: string;
}

/**
 * Links address ↔ name ↔ URL (DESIGN.md flow 2.2): `addr`, text `url`, and the signer's primary name. The name
 * must already be owned by the signer with a resolver set (see {@link registerLocalName}).
 */
export async function publishEnsIdentity(
  signer: Signer,
  ens: EnsAddresses,
  identity: EnsIdentity,
  options: EnsWriteOptions = {},
): Promise<void> {
  const me = await signer.getAddress();
  await setAddr(signer, ens, identity.name, identity.address ?? me, options);
  await setText(signer, ens, identity.name, "url", identity.url, options);
  await setPrimaryName(signer, ens, identity.name, options);
}

// ---------------------------------------------------------------------------------------------------------------
// Reads (ethers' EnsPlugin provider)
// ---------------------------------------------------------------------------------------------------------------

/** The address `name` resolves to, or null when it has no resolver or no address. */
export async function resolveAddress(provider: AbstractProvider, name: string): Promise<string | null> {
  const normalized = normalizeName(name);
  return ensRead(provider, `resolving ${normalized}`, async () => {
    const address = await provider.resolveName(normalized);
    return address === null || address === ZeroAddress ? null : getAddress(address);
  });
}

/** A text record of `name` (e.g. `url`), or null when unset or when the name has no resolver. */
export async function getText(provider: AbstractProvider, name: string, key: string): Promise<string | null> {
  const normalized = normalizeName(name);
  return ensRead(provider, `reading the "${key}" text record of ${normalized}`, async () => {
    const resolver = await provider.getResolver(normalized);
    if (!resolver) return null;
    const value = await resolver.getText(key);
    return value === null || value === "" ? null : value;
  });
}

export interface ReverseLookup {
  /** What the reverse record says, unconfirmed (null if none). */
  name: string | null;
  /** What that name resolves to forward (null if no name or no address). */
  forwardAddress: string | null;
  /** True only if the name resolves back to the address. */
  confirmed: boolean;
}

/**
 * Reverse record of `address` and its forward check, with the details a verifier reports. A name that is not
 * stored in ENS-normalised form is never confirmed.
 */
export async function reverseLookup(provider: AbstractProvider, address: string): Promise<ReverseLookup> {
  const checksummed = getAddress(address);
  return ensRead(provider, `looking up the name of ${checksummed}`, async () => {
    const registry = await requireEnsRegistry(provider);
    const name = await readReverseRecord(provider, registry, checksummed);
    if (!name) return { name: null, forwardAddress: null, confirmed: false };
    // A primary name must be stored normalised: "Alice.test" or a homoglyph spelling is not "alice.test".
    let normalized: string | null;
    try {
      normalized = normalizeName(name);
    } catch {
      normalized = null;
    }
    if (normalized !== name) return { name, forwardAddress: null, confirmed: false };
    const forwardAddress = await resolveAddress(provider, name);
    return { name, forwardAddress, confirmed: forwardAddress === checksummed };
  });
}

/**
 * What the reverse record of `address` says, unconfirmed (null if none): no forward lookup, for a caller that checks
 * the name's normal form and forward address itself (the verifier's V2, which says which link is broken).
 */
export async function reverseRecord(provider: AbstractProvider, address: string): Promise<string | null> {
  const checksummed = getAddress(address);
  return ensRead(provider, `looking up the name of ${checksummed}`, async () =>
    readReverseRecord(provider, await requireEnsRegistry(provider), checksummed),
  );
}

/**
 * The primary name of `address`: its reverse record, returned only if that name's forward `addr` is the same
 * address (anyone can claim any name in their own reverse record). Null otherwise.
 */
export async function lookupName(provider: AbstractProvider, address: string): Promise<string | null> {
  const result = await reverseLookup(provider, address);
  return result.confirmed ? result.name : null;
}

/**
 * Who controls `name`: the owner in the registry, or, when the registry's owner is the chain's NameWrapper (a
 * wrapped name, as the ENS app registers them today), `NameWrapper.ownerOf(uint256(node))`. ZeroAddress when
 * unregistered.
 */
export async function ownerOf(provider: Provider, ens: Pick<EnsAddresses, "registry">, name: string): Promise<string> {
  return (await nameOwnership(provider, ens, name)).owner;
}

// ---------------------------------------------------------------------------------------------------------------
// Wrapped names (NameWrapper)
// ---------------------------------------------------------------------------------------------------------------

/**
 * The NameWrapper of a chain, from @ensdomains/ensjs's chain definitions (mainnet and Sepolia); null on chains
 * without one (the local chain: its ENS 0.6.2 has no NameWrapper, so its names are never wrapped).
 */
export function nameWrapperOf(chainId: number): string | null {
  const addresses = ensjsContracts.addresses as Record<number, { ensNameWrapper?: { address: string } } | undefined>;
  const wrapper = addresses[chainId]?.ensNameWrapper?.address;
  return wrapper ? getAddress(wrapper) : null;
}

/** Who holds a name in the registry and who controls it. */
export interface NameOwnership {
  name: string;
  /** The owner the ENS registry records (ZeroAddress: unregistered). */
  registryOwner: string;
  /** The chain's NameWrapper when the registry's owner is it (the name is wrapped), else null. */
  wrapper: string | null;
  /** Who controls the name: `registryOwner`, or NameWrapper.ownerOf(node) for a wrapped name. */
  owner: string;
}

/**
 * Reads {@link NameOwnership}: the registry's owner of the node, and for a wrapped name (owner = the chain's
 * NameWrapper, {@link nameWrapperOf}) its real owner from `NameWrapper.ownerOf(uint256(node))` (ABI from ensjs).
 */
export async function nameOwnership(
  provider: Provider,
  ens: Pick<EnsAddresses, "registry">,
  name: string,
): Promise<NameOwnership> {
  const normalized = normalizeName(name);
  const node = namehash(normalized);
  const registry = ensContract("ENSRegistry", ens.registry, provider);
  const registryOwner = getAddress(await registry.owner(node));
  const chainWrapper = nameWrapperOf(await chainIdOf(provider));
  const wrapper = chainWrapper !== null && registryOwner === chainWrapper ? chainWrapper : null;
  if (wrapper === null) return { name: normalized, registryOwner, wrapper: null, owner: registryOwner };
  const contract = new Contract(wrapper, ensjsContracts.nameWrapperOwnerOfSnippet as InterfaceAbi, provider);
  const owner = getAddress(await contract.ownerOf(BigInt(node)));
  return { name: normalized, registryOwner, wrapper, owner };
}

/**
 * Null when `me` controls the name; otherwise the ENS_FAILED error to throw: who owns it (the real owner of a
 * wrapped name, not the NameWrapper) and what to do.
 */
export function notOwnerError(ownership: NameOwnership, me: string): StatetrailError | null {
  const key = getAddress(me);
  if (ownership.owner === key) return null;
  const { name, wrapper, owner } = ownership;
  if (owner === ZeroAddress) {
    return new StatetrailError(
      "ENS_FAILED",
      wrapper === null
        ? `${name} is not registered`
        : `${name} is wrapped (the registry's owner is the NameWrapper ${wrapper}) but the NameWrapper gives it no owner: it has expired or was burnt`,
      { hint: `register ${name} for ${key} (on Sepolia and mainnet in the ENS app, https://app.ens.domains)` },
    );
  }
  const held =
    wrapper === null
      ? `${name} is owned by ${owner}`
      : `${name} is wrapped: the registry's owner is the NameWrapper ${wrapper}, whose owner of the name is ${owner}`;
  return new StatetrailError("ENS_FAILED", `${held}, not by ${key}: this key may not change its records`, {
    hint:
      `use the key of ${owner} (--private-key-env), or from ${owner} set the name's addr to ${key}, its url text ` +
      `record and ${key}'s primary name, or transfer the name to ${key}` +
      (wrapper === null ? "" : " (in the ENS app: the name's Ownership tab; a wrapped name stays wrapped)"),
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Internals
// ---------------------------------------------------------------------------------------------------------------

const NAME_ABI = ["function name(bytes32) view returns (string)"];
const RESOLVER_OF_ABI = ["function resolver(bytes32) view returns (address)"];

/** The raw `name` record of `address`'s reverse node, read from the registry's resolver for that node. */
async function readReverseRecord(provider: Provider, registryAddress: string, address: string): Promise<string | null> {
  const node = namehash(reverseNameOf(address));
  const registry = new Contract(registryAddress, RESOLVER_OF_ABI, provider);
  const resolverAddress = getAddress(await registry.resolver(node));
  if (resolverAddress === ZeroAddress) return null;
  try {
    const name: string = await new Contract(resolverAddress, NAME_ABI, provider).name(node);
    return name === "" ? null : name;
  } catch {
    return null;
  }
}

async function requireEnsRegistry(provider: AbstractProvider): Promise<string> {
  const registry = await ensRegistryOf(provider);
  if (!registry) {
    const chainId = await chainIdOf(provider);
    throw new StatetrailError(
      "ENS_FAILED",
      `the provider for chain ${chainId} (${chainName(chainId)}) knows no ENS registry`,
      {
        hint: "connect with connect({ rpcUrl, ensRegistry: deployment.ens.registry }) so the network carries an EnsPlugin",
      },
    );
  }
  return registry;
}

async function ensRead<T>(provider: AbstractProvider, what: string, read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (error) {
    if (error instanceof StatetrailError) throw error;
    const message = error instanceof Error ? error.message : String(error);
    if (/network does not support ENS/i.test(message)) {
      const chainId = await chainIdOf(provider).catch(() => 0);
      throw new StatetrailError("ENS_FAILED", `${what}: the provider for chain ${chainId} has no ENS registry`, {
        hint: "connect with connect({ rpcUrl, ensRegistry: deployment.ens.registry }) so the network carries an EnsPlugin",
        cause: error,
      });
    }
    const mapped = toChainError(error, what, "ENS_FAILED");
    if (mapped.code === "ENS_FAILED" || mapped.code === "TX_FAILED") {
      throw new StatetrailError("ENS_FAILED", mapped.message, {
        hint: "check that the ENS registry of this network is deployed at the configured address",
        cause: error,
      });
    }
    throw mapped;
  }
}

type SendingProvider = Provider & { send(method: string, params: unknown[]): Promise<unknown> };

function requireProvider(signer: Signer): SendingProvider {
  const provider = signer.provider as SendingProvider | null;
  if (!provider || typeof provider.send !== "function") {
    throw new StatetrailError("ENS_FAILED", "the signer is not connected to a JSON-RPC provider", {
      hint: "connect the signer to a provider from connect()",
    });
  }
  return provider;
}

async function requireOwner(
  signer: Signer,
  registry: Contract,
  ens: Pick<EnsAddresses, "registry">,
  name: string,
): Promise<NameOwnership> {
  const me = getAddress(await signer.getAddress());
  const ownership = await nameOwnership(requireProvider(signer), ens, name);
  const problem = notOwnerError(ownership, me);
  if (problem === null) return ownership;
  // An operator the registry owner approved may act for an unwrapped name.
  if (ownership.wrapper === null && ownership.owner !== ZeroAddress) {
    if (await registry.isApprovedForAll(ownership.owner, me)) return ownership;
  }
  throw problem;
}

/** The resolver of `name`, after checking that the signer may write its records. */
async function writableResolver(
  signer: Signer,
  ens: EnsAddresses,
  name: string,
): Promise<{ resolver: Contract; provider: SendingProvider }> {
  const provider = requireProvider(signer);
  const registry = ensContract("ENSRegistry", ens.registry, provider);
  const node = namehash(name);
  const resolverAddress = getAddress(await registry.resolver(node));
  if (resolverAddress === ZeroAddress) {
    throw new StatetrailError("ENS_FAILED", `${name} has no resolver`, {
      hint: "set one first (registerLocalName sets the public resolver; setResolver does it for an owned name)",
    });
  }
  const me = getAddress(await signer.getAddress());
  const ownership = await nameOwnership(provider, ens, name);
  const resolver = ensContract("PublicResolver", resolverAddress, provider);
  const problem = notOwnerError(ownership, me);
  if (problem !== null) {
    let authorised = false;
    // Approvals of an unwrapped name's owner (registry operator, resolver authorisation); a wrapped name's
    // approvals live in the NameWrapper, which statetrail does not read: the real owner's key is needed.
    if (ownership.wrapper === null && ownership.owner !== ZeroAddress) {
      try {
        authorised =
          Boolean(await registry.isApprovedForAll(ownership.owner, me)) ||
          Boolean(await resolver.authorisations(node, ownership.owner, me));
      } catch {
        authorised = false;
      }
    }
    if (!authorised) throw problem;
  }
  return { resolver, provider };
}

/**
 * A viem wallet client for ensjs, on a custom chain whose ENS contracts are this deployment's. Transactions go
 * through the signer's own provider (an EIP-1193 shim over `provider.send`), signed locally when the signer
 * holds its key (ethers Wallet) and by the node otherwise (an unlocked JSON-RPC account).
 */
async function ensWalletClient(signer: Signer, ens: EnsAddresses) {
  const provider = requireProvider(signer);
  const chainId = await chainIdOf(provider);
  const contracts: Record<string, { address: Address }> = { ensRegistry: { address: ens.registry as Address } };
  if (ens.publicResolver) contracts.ensPublicResolver = { address: ens.publicResolver as Address };
  if (ens.reverseRegistrar) contracts.ensReverseRegistrar = { address: ens.reverseRegistrar as Address };
  const wrapper = nameWrapperOf(chainId);
  if (wrapper) contracts.ensNameWrapper = { address: wrapper as Address };
  // ensjs' ChainWithEns type lists every mainnet ENS contract (UniversalResolver, NameWrapper, …). The write
  // functions used here read only the three above, so the chain is cast rather than padded with fake addresses.
  const chain = {
    ...viemLib.defineChain({
      id: chainId,
      name: chainName(chainId),
      nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
      rpcUrls: { default: { http: [] } },
    }),
    contracts,
    subgraphs: {},
  } as unknown as ChainWithEns;
  const account: Account | Address =
    signer instanceof Wallet || signer instanceof HDNodeWallet
      ? viemAccounts.privateKeyToAccount(signer.privateKey as Hex)
      : ((await signer.getAddress()) as Address);
  const transport = viemLib.custom({
    request: async ({ method, params }: { method: string; params?: unknown }) => {
      try {
        return await provider.send(method, Array.isArray(params) ? params : params === undefined ? [] : [params]);
      } catch (error) {
        throw toEip1193Error(error);
      }
    },
  });
  return viemLib.createWalletClient({ account, chain, transport });
}

/**
 * ethers wraps a JSON-RPC error in its own Error; viem needs the `{ code, message, data }` of the node to tell a
 * permanent error (e.g. -32004 method not supported, which Hardhat answers to viem's eth_fillTransaction probe)
 * from a transient one. Without this viem retries every such call with backoff, about a second per write.
 */
function toEip1193Error(error: unknown): unknown {
  const rpc = (error as { error?: unknown; info?: { error?: unknown } } | null) ?? {};
  const inner = (rpc.error ?? rpc.info?.error) as { code?: unknown; message?: unknown; data?: unknown } | undefined;
  if (inner && typeof inner.code === "number") {
    return Object.assign(new Error(typeof inner.message === "string" ? inner.message : "JSON-RPC error"), {
      code: inner.code,
      data: inner.data,
    });
  }
  return error;
}

/** Sends one transaction, waits for it, and maps failures to ENS_FAILED / INSUFFICIENT_FUNDS / RPC_UNREACHABLE. */
async function send(
  provider: SendingProvider,
  what: string,
  submit: () => Promise<string | { hash: string }>,
  options: EnsWriteOptions,
): Promise<void> {
  let hash: string;
  try {
    const sent = await submit();
    hash = typeof sent === "string" ? sent : sent.hash;
  } catch (error) {
    throw ensWriteError(error, what);
  }
  let receipt;
  try {
    receipt = await waitForReceipt(provider, hash, options.confirmations ?? 1, options.timeoutMs ?? 120_000);
  } catch (error) {
    throw ensWriteError(error, what);
  }
  if (receipt.status !== 1) {
    throw new StatetrailError("ENS_FAILED", `${what}: transaction ${hash} reverted`, {
      hint: "check that the signer owns the name and that the ENS contracts are the deployment's",
    });
  }
}

function ensWriteError(error: unknown, what: string): StatetrailError {
  const viem = error as { name?: string; shortMessage?: string; details?: string };
  const text = `${viem.shortMessage ?? ""} ${viem.details ?? ""} ${error instanceof Error ? error.message : String(error)}`;
  if (/insufficient funds/i.test(text)) {
    return new StatetrailError("INSUFFICIENT_FUNDS", `${what}: the account cannot pay for the transaction`, {
      hint: "fund the account (on Sepolia use a faucet) and try again",
      cause: error,
    });
  }
  const mapped = toChainError(error, what, "ENS_FAILED");
  if (mapped.code === "RPC_UNREACHABLE" || mapped.code === "INSUFFICIENT_FUNDS") return mapped;
  return new StatetrailError("ENS_FAILED", `${what}: ${viem.shortMessage ?? mapped.message}`, {
    hint: "check that the signer owns the name and that the ENS contracts are the deployment's",
    cause: error,
  });
}
