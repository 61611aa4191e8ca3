import { ethers } from "hardhat";
import type { TypedDataDomain } from "ethers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import type {
  CertificateRegistry,
  ContractWallet,
  EventFloor,
  InstanceRegistry,
  ModelRegistry,
} from "../../typechain-types";

/** Mirrors `IInstanceRegistry.InstanceStatus`. */
export const InstanceStatus = {
  None: 0n,
  Running: 1n,
  Succeeded: 2n,
  Failed: 3n,
  Aborted: 4n,
} as const;
export type InstanceStatusValue = (typeof InstanceStatus)[keyof typeof InstanceStatus];

export const TERMINAL_STATUSES = [
  ["Succeeded", InstanceStatus.Succeeded],
  ["Failed", InstanceStatus.Failed],
  ["Aborted", InstanceStatus.Aborted],
] as const;

/** Hashes the InstanceRegistry refuses: zero and the status sentinels 1..4. */
export const RESERVED_HASHES: readonly string[] = [0, 1, 2, 3, 4].map((n) => ethers.toBeHex(n, 32));
/** The smallest hash that is not reserved. */
export const FIRST_UNRESERVED_HASH = ethers.toBeHex(5, 32);

/** SHA-256 of a UTF-8 label as `bytes32`, the way statetrail hashes model, instance and state bytes. */
export function hashOf(label: string): string {
  return ethers.sha256(ethers.toUtf8Bytes(label));
}

/** `count` distinct state hashes derived from `prefix`. */
export function stateHashes(prefix: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => hashOf(`${prefix}/state/${i}`));
}

export const MODEL_HASH = hashOf("model: HelloWorld.asl.json");
export const MODEL_URI = "https://statetrail.example/models/" + MODEL_HASH.slice(2);
export const INSTANCE_HASH = hashOf("instance: HelloWorld #1");

// ---------------------------------------------------------------------------------------------------------------
// EIP-712 certificate binding
// ---------------------------------------------------------------------------------------------------------------

export const CERTIFICATE_DOMAIN_NAME = "statetrail CertificateRegistry";
export const CERTIFICATE_DOMAIN_VERSION = "1";
export const CERTIFICATE_TYPES = {
  Certificate: [
    { name: "fingerprint", type: "bytes32" },
    { name: "notBefore", type: "uint48" },
    { name: "notAfter", type: "uint48" },
    { name: "holder", type: "address" },
  ],
};

export interface CertificateBinding {
  fingerprint: string;
  notBefore: bigint;
  notAfter: bigint;
  holder: string;
}

export async function certificateDomain(registry: CertificateRegistry): Promise<TypedDataDomain> {
  const { chainId } = await ethers.provider.getNetwork();
  return {
    name: CERTIFICATE_DOMAIN_NAME,
    version: CERTIFICATE_DOMAIN_VERSION,
    chainId,
    verifyingContract: await registry.getAddress(),
  };
}

/** The digest of a binding computed off-chain, independent of the contract. */
export async function certificateDigestOf(registry: CertificateRegistry, binding: CertificateBinding): Promise<string> {
  return ethers.TypedDataEncoder.hash(await certificateDomain(registry), CERTIFICATE_TYPES, binding);
}

/** `signer` signs the binding with EIP-712 (`eth_signTypedData_v4`). */
export async function signCertificate(
  signer: HardhatEthersSigner,
  registry: CertificateRegistry,
  binding: CertificateBinding,
): Promise<string> {
  return signer.signTypedData(await certificateDomain(registry), CERTIFICATE_TYPES, binding);
}

/** Sends `registerCertificate` for `binding` with `signature`, from `sender`. */
export function registerCertificate(
  registry: CertificateRegistry,
  sender: HardhatEthersSigner,
  binding: CertificateBinding,
  signature: string,
) {
  return registry
    .connect(sender)
    .registerCertificate(binding.fingerprint, binding.notBefore, binding.notAfter, binding.holder, signature);
}

// ---------------------------------------------------------------------------------------------------------------
// Fixtures (always used through loadFixture)
// ---------------------------------------------------------------------------------------------------------------

export interface Accounts {
  deployer: HardhatEthersSigner;
  issuer: HardhatEthersSigner;
  other: HardhatEthersSigner;
  relayer: HardhatEthersSigner;
}

async function accounts(): Promise<Accounts> {
  const [deployer, issuer, other, relayer] = await ethers.getSigners();
  return { deployer, issuer, other, relayer };
}

export async function deployModelRegistryFixture(): Promise<Accounts & { models: ModelRegistry }> {
  const signers = await accounts();
  const models = await ethers.deployContract("ModelRegistry");
  return { ...signers, models };
}

export interface CertificateFixture extends Accounts {
  certificates: CertificateRegistry;
  wallet: ContractWallet;
  /** A binding for `issuer`, valid from one hour ago for a year from the fixture's block time. */
  binding: CertificateBinding;
  now: bigint;
}

export async function deployCertificateRegistryFixture(): Promise<CertificateFixture> {
  const signers = await accounts();
  const certificates = await ethers.deployContract("CertificateRegistry");
  const wallet = await ethers.deployContract("ContractWallet", [signers.issuer.address]);
  const block = await ethers.provider.getBlock("latest");
  const now = BigInt(block!.timestamp);
  const binding: CertificateBinding = {
    fingerprint: hashOf("certificate: issuer.der"),
    notBefore: now - 3_600n,
    notAfter: now + 365n * 86_400n,
    holder: signers.issuer.address,
  };
  return { ...signers, certificates, wallet, binding, now };
}

/** A certificate registry with the fixture binding already registered for `issuer`. */
export async function registeredCertificateFixture(): Promise<CertificateFixture & { signature: string }> {
  const fixture = await deployCertificateRegistryFixture();
  const signature = await signCertificate(fixture.issuer, fixture.certificates, fixture.binding);
  await registerCertificate(fixture.certificates, fixture.issuer, fixture.binding, signature);
  return { ...fixture, signature };
}

export interface InstanceFixture extends Accounts {
  models: ModelRegistry;
  instances: InstanceRegistry;
}

/** Model and instance registries, with MODEL_HASH registered by `issuer`. */
export async function deployInstanceRegistryFixture(): Promise<InstanceFixture> {
  const signers = await accounts();
  const models = await ethers.deployContract("ModelRegistry");
  const instances = await ethers.deployContract("InstanceRegistry", [await models.getAddress()]);
  await models.connect(signers.issuer).registerModel(MODEL_HASH, MODEL_URI);
  return { ...signers, models, instances };
}

/** INSTANCE_HASH created by `issuer`, no state yet. */
export async function createdInstanceFixture(): Promise<InstanceFixture> {
  const fixture = await deployInstanceRegistryFixture();
  await fixture.instances.connect(fixture.issuer).createInstance(INSTANCE_HASH, MODEL_HASH);
  return fixture;
}

export const FIRST_STATES = stateHashes("fixture", 3);

/** INSTANCE_HASH created by `issuer` with FIRST_STATES appended; its head is FIRST_STATES[2]. */
export async function runningInstanceFixture(): Promise<InstanceFixture> {
  const fixture = await createdInstanceFixture();
  const registry = fixture.instances.connect(fixture.issuer);
  let prev = INSTANCE_HASH;
  for (const state of FIRST_STATES) {
    await registry.registerState(INSTANCE_HASH, state, prev);
    prev = state;
  }
  return fixture;
}

export async function deployEventFloorFixture(): Promise<Accounts & { floor: EventFloor }> {
  const signers = await accounts();
  const floor = await ethers.deployContract("EventFloor");
  return { ...signers, floor };
}
