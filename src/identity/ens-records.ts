/**
 * The ENS side of an identity, behind a few small functions: claim a name, publish address ↔ name ↔ URL,
 * read it all back. Writes go through the chain layer (src/chain/ens.ts); reads are plain calls on the
 * registry and resolver given by address, so they work on any provider (also Hardhat's in-process one,
 * which has no ENS support) and always ask the registry the identity was made with.
 */
import { Contract, ZeroAddress, getAddress, namehash, type Provider, type Signer } from "ethers";
import { StatetrailError } from "../errors";
import {
  normalizeName,
  ownerOf,
  publishEnsIdentity,
  registerLocalName,
  reverseNameOf,
  setPrimaryName,
  setResolver,
} from "../chain/ens";
import type { Deployment } from "../chain/deployments";

export type EnsAddresses = Deployment["ens"];

/** The TLD statetrail's local ENS hands out names under (first come, first served). */
export const LOCAL_TLD = "test";
/** The text record that carries the issuer's HTTPS base URL. */
export const URL_TEXT_KEY = "url";

export interface EnsWrite {
  confirmations?: number;
}

/** Whether `<label>.<tld>` can be claimed here (a local ENS statetrail deployed, with a FIFS registrar). */
export function canRegisterLocally(ens: EnsAddresses, tld = LOCAL_TLD): boolean {
  return ens.fifsRegistrars[tld] !== undefined;
}

/** Claims `<label>.<tld>` through the local FIFS registrar, owned by the signer, with the public resolver. */
export async function claimLocalName(
  signer: Signer,
  ens: EnsAddresses,
  label: string,
  tld = LOCAL_TLD,
  options: EnsWrite = {},
): Promise<string> {
  return registerLocalName(signer, ens, label, tld, options);
}

/**
 * Who controls `name` (the zero address when nobody holds it): the registry's owner, or the NameWrapper's owner of
 * a wrapped name.
 */
export async function nameOwner(provider: Provider, ens: EnsAddresses, name: string): Promise<string> {
  return ownerOf(provider, ens, name);
}

export { nameOwnership, notOwnerError, type NameOwnership } from "../chain/ens";

/** Sets `addr` = the signer, text `url`, and the signer's primary name (reverse record) to `name`. */
export async function publishRecords(
  signer: Signer,
  ens: EnsAddresses,
  name: string,
  url: string,
  options: EnsWrite = {},
): Promise<void> {
  await publishEnsIdentity(signer, ens, { name, url }, options);
}

/** Points a name the signer owns at the network's public resolver when it has no resolver yet. */
export async function ensureResolver(
  signer: Signer,
  ens: EnsAddresses,
  name: string,
  options: EnsWrite = {},
): Promise<void> {
  const provider = signer.provider;
  if (!provider) throw new StatetrailError("ENS_FAILED", "the signer is not connected to a provider");
  const registry = new Contract(ens.registry, REGISTRY_ABI, provider);
  if (nonZero(await registry.resolver(namehash(normalizeName(name)))) !== null) return;
  await setResolver(signer, ens, name, ens.publicResolver, options);
}

/** Sets the signer's primary name (its reverse record); needs no ownership of the forward name. */
export async function setPrimary(signer: Signer, ens: EnsAddresses, name: string, options: EnsWrite = {}) {
  await setPrimaryName(signer, ens, name, options);
}

export function normalizeEnsName(name: string): string {
  return normalizeName(name);
}

/** What ENS says now about a name and an address. */
export interface EnsRecords {
  name: string;
  /** The name's resolver (null: none set). */
  resolver: string | null;
  /** `addr(name)` (null: unset). */
  address: string | null;
  /** Text record `url` (null: unset). */
  url: string | null;
  /** The reverse record of the address (null: unset); unconfirmed on its own. */
  reverseName: string | null;
}

const REGISTRY_ABI = [
  "function resolver(bytes32) view returns (address)",
  "function owner(bytes32) view returns (address)",
];
const RESOLVER_ABI = [
  "function addr(bytes32) view returns (address)",
  "function text(bytes32,string) view returns (string)",
  "function name(bytes32) view returns (string)",
];

/** Reads `addr` and `url` of `name`, and the reverse record of `address`, from the registry at `registry`. */
export async function readRecords(
  provider: Provider,
  registry: string,
  name: string,
  address: string,
): Promise<EnsRecords> {
  const normalized = normalizeName(name);
  try {
    const node = namehash(normalized);
    const ens = new Contract(registry, REGISTRY_ABI, provider);
    const resolverAddress = nonZero(await ens.resolver(node));
    let forward: string | null = null;
    let url: string | null = null;
    if (resolverAddress) {
      const resolver = new Contract(resolverAddress, RESOLVER_ABI, provider);
      forward = nonZero(await resolver.addr(node));
      url = nonEmpty(await resolver.text(node, URL_TEXT_KEY));
    }
    const reverseNode = namehash(reverseNameOf(address));
    const reverseResolver = nonZero(await ens.resolver(reverseNode));
    let reverseName: string | null = null;
    if (reverseResolver) {
      reverseName = nonEmpty(await new Contract(reverseResolver, RESOLVER_ABI, provider).name(reverseNode));
    }
    return { name: normalized, resolver: resolverAddress, address: forward, url, reverseName };
  } catch (error) {
    if (error instanceof StatetrailError) throw error;
    throw new StatetrailError("ENS_FAILED", `the ENS records of ${normalized} could not be read: ${String(error)}`, {
      cause: error,
      hint: `check that the ENS registry is deployed at ${registry}`,
    });
  }
}

/** The differences between what ENS says and what the identity expects (empty: consistent). */
export function recordMismatches(records: EnsRecords, expected: { address: string; url: string }): string[] {
  const problems: string[] = [];
  if (records.resolver === null) problems.push(`${records.name} has no resolver`);
  if (records.address === null || records.address !== getAddress(expected.address)) {
    problems.push(`addr(${records.name}) is ${records.address ?? "unset"}, expected ${getAddress(expected.address)}`);
  }
  if (records.url !== expected.url) {
    problems.push(
      `the url text record of ${records.name} is ${JSON.stringify(records.url)}, expected "${expected.url}"`,
    );
  }
  if (records.reverseName !== records.name) {
    problems.push(
      `the primary name of ${getAddress(expected.address)} is ${JSON.stringify(records.reverseName)}, expected "${records.name}"`,
    );
  }
  return problems;
}

function nonZero(value: string): string | null {
  const address = getAddress(value);
  return address === ZeroAddress ? null : address;
}

function nonEmpty(value: string): string | null {
  return value === "" ? null : value;
}
