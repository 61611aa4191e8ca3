/**
 * Forges genuine instance protocols on the in-process Hardhat network, so the verifier can be tested
 * without the HTTPS server: the three registries are deployed, a model and the issuer's server certificate
 * are registered (EIP-712, checked on-chain), an instance runs through registerState and registerStates and
 * is terminated, and its protocol is built and signed exactly as the issuer would. Every published byte
 * lives in a {@link MemoryServer} whose fetcher stands in for the real pinned HTTPS fetcher.
 */
import { ethers } from "hardhat";
import { loadFixture } from "@nomicfoundation/hardhat-toolbox/network-helpers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import type { ContractTransactionResponse } from "ethers";
import {
  CertificateRegistry__factory,
  InstanceRegistry__factory,
  ModelRegistry__factory,
  type CertificateRegistry,
  type InstanceRegistry,
  type ModelRegistry,
} from "../../typechain-types";
import { signCertificateBinding } from "../../src/chain/certificate";
import { sha256Hex, toBytes32, type HexHash } from "../../src/chain/hash";
import { StatetrailError } from "../../src/errors";
import { canonicalBytes } from "../../src/protocol/canonical";
import { instanceHash as instanceHashOf, stateDataBytes, stateHash as stateHashOf } from "../../src/protocol/hashing";
import {
  EXECUTION_END_STATE,
  type InstanceProtocol,
  type InstanceStatus,
  type ProtocolEntry,
  type StateData,
  type StateType,
  type UnsignedProtocol,
} from "../../src/protocol/schema";
import { signProtocol } from "../../src/protocol/signing";
import { verifyProtocol, type TrustedSetup, type VerificationReport, type VerifyOptions } from "../../src/verify";
import { type Fetcher, type ServerCertificate } from "../../src/verify/types";

export const ISSUER_ORIGIN = "https://issuer.statetrail.test:8443";
const DAY = 86_400;

// ---------------------------------------------------------------------------------------------------------------
// The issuer's server, in memory
// ---------------------------------------------------------------------------------------------------------------

/** A stand-in X.509 certificate: its "DER" is a label, its fingerprint the SHA-256 of that. */
export function fakeCertificate(label: string, notBefore: number, notAfter: number): ServerCertificate {
  const der = Buffer.from(`fake DER certificate: ${label}`);
  return { fingerprint: sha256Hex(der), notBefore, notAfter, der, subject: `CN=${label}` };
}

/**
 * Serves bytes by URL and presents one certificate, honouring the verifier's pin. Counts requests and the
 * largest number in flight at once; `delayMs` makes every request take that long.
 */
export class MemoryServer {
  readonly requests: string[] = [];
  inFlight = 0;
  maxInFlight = 0;
  delayMs = 0;

  constructor(
    public certificate: ServerCertificate,
    private readonly files = new Map<string, Buffer>(),
  ) {}

  serve(url: string, bytes: Buffer | string): string {
    this.files.set(url, Buffer.from(bytes));
    return url;
  }

  remove(url: string): void {
    this.files.delete(url);
  }

  bytes(url: string): Buffer | undefined {
    return this.files.get(url);
  }

  /** An independent copy (fixtures are shared between tests; servers must not be). */
  clone(): MemoryServer {
    return new MemoryServer(this.certificate, new Map(this.files));
  }

  readonly fetcher: Fetcher = async (url, request) => {
    this.requests.push(url);
    this.inFlight += 1;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      if (this.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
      if (request.fingerprint !== undefined && request.fingerprint !== this.certificate.fingerprint) {
        throw new StatetrailError("TLS_FAILED", `certificate ${this.certificate.fingerprint} is not the pinned one`);
      }
      const bytes = this.files.get(url);
      if (!bytes) throw new StatetrailError("FETCH_FAILED", `GET ${url}: HTTP 404 NOT_FOUND`);
      if (bytes.length > request.maxBytes) throw new StatetrailError("FETCH_FAILED", `${url} is too large`);
      return { bytes: Buffer.from(bytes), certificate: this.certificate };
    } finally {
      this.inFlight -= 1;
    }
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Chain
// ---------------------------------------------------------------------------------------------------------------

export interface Registries {
  models: ModelRegistry;
  certificates: CertificateRegistry;
  instances: InstanceRegistry;
}

export async function deployRegistries(deployer: HardhatEthersSigner): Promise<Registries> {
  const models = await new ModelRegistry__factory(deployer).deploy();
  const certificates = await new CertificateRegistry__factory(deployer).deploy();
  const instances = await new InstanceRegistry__factory(deployer).deploy(await models.getAddress());
  return { models, certificates, instances };
}

export async function addressesOf(registries: Registries): Promise<InstanceProtocol["registries"]> {
  return {
    model: await registries.models.getAddress(),
    certificate: await registries.certificates.getAddress(),
    instance: await registries.instances.getAddress(),
  };
}

async function mined(
  tx: Promise<ContractTransactionResponse>,
): Promise<{ block_nr: number; transaction_hash: string }> {
  const receipt = await (await tx).wait();
  if (!receipt) throw new Error("transaction not mined");
  return { block_nr: receipt.blockNumber, transaction_hash: receipt.hash };
}

async function blockTime(blockNumber: number): Promise<number> {
  const block = await ethers.provider.getBlock(blockNumber);
  return block!.timestamp;
}

export interface Model {
  bytes: Buffer;
  hash: HexHash;
  url: string;
}

/** A small ASL model's bytes, distinct per label. */
export function modelBytes(label: string): Buffer {
  return Buffer.from(
    JSON.stringify({ Comment: label, StartAt: "Step0", States: { Step0: { Type: "Pass", End: true } } }, null, 2),
  );
}

/** Publishes model bytes (and registers them in `models` when given). */
export async function publishModel(
  env: Pick<ForgeEnv, "server">,
  bytes: Buffer,
  register?: { models: ModelRegistry; signer: HardhatEthersSigner },
): Promise<Model> {
  const hash = sha256Hex(bytes);
  const url = env.server.serve(`${ISSUER_ORIGIN}/models/${hash}`, bytes);
  if (register) await mined(register.models.connect(register.signer).registerModel(toBytes32(hash), url));
  return { bytes, hash, url };
}

/** Registers `certificate` for `holder` with the holder's EIP-712 signature. */
export async function registerServerCertificate(
  certificates: CertificateRegistry,
  holder: HardhatEthersSigner,
  certificate: ServerCertificate,
): Promise<void> {
  const binding = {
    fingerprint: certificate.fingerprint,
    notBefore: certificate.notBefore,
    notAfter: certificate.notAfter,
    holder: holder.address,
  };
  const { chainId } = await ethers.provider.getNetwork();
  const signature = await signCertificateBinding(holder, binding, {
    chainId,
    verifyingContract: await certificates.getAddress(),
  });
  await mined(
    certificates
      .connect(holder)
      .registerCertificate(
        toBytes32(certificate.fingerprint),
        certificate.notBefore,
        certificate.notAfter,
        holder.address,
        signature,
      ),
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Runs
// ---------------------------------------------------------------------------------------------------------------

export interface ForgeEnv extends Registries {
  deployer: HardhatEthersSigner;
  issuer: HardhatEthersSigner;
  other: HardhatEthersSigner;
  chainId: number;
  trusted: TrustedSetup;
  server: MemoryServer;
  /** Registered by the issuer. */
  model: Model;
}

export interface RunOptions {
  /** Who runs the instance (default the issuer). */
  signer?: HardhatEthersSigner;
  modelHash?: HexHash;
  /** Entries, the end entry included when the run terminates (default 6). */
  states?: number;
  /** How many are registered one per transaction before the rest go in one registerStates (default 3). */
  perState?: number;
  /** Default "succeeded"; "running" leaves the instance open, with no end entry. */
  status?: InstanceStatus;
  /** Distinguishes instances: it goes into their input and nonce. */
  label?: string;
  /** Registries to run on (default the trusted ones). */
  registries?: Registries;
}

export interface ForgedRun {
  protocol: InstanceProtocol;
  /** Where the protocol is published. */
  url: string;
  instanceHash: HexHash;
  stateData: StateData[];
  signer: HardhatEthersSigner;
}

const STATE_TYPES: StateType[] = ["Pass", "Task", "Choice", "Wait", "Task", "Map", "Parallel"];
const END_TYPES: Record<Exclude<InstanceStatus, "running">, StateType> = {
  succeeded: "ExecutionSucceeded",
  failed: "ExecutionFailed",
  aborted: "ExecutionAborted",
};
const STATUS_NUMBER: Record<InstanceStatus, number> = { running: 1, succeeded: 2, failed: 3, aborted: 4 };

export function stateUrl(hash: HexHash): string {
  return `${ISSUER_ORIGIN}/states/${hash}`;
}

export function protocolUrlOf(instanceHash: HexHash): string {
  return `${ISSUER_ORIGIN}/instances/${instanceHash}/protocol`;
}

/** Publishes state data and returns its hash and URL. */
export function publishState(server: MemoryServer, data: StateData): { hash: HexHash; url: string } {
  const hash = stateHashOf(data);
  return { hash, url: server.serve(stateUrl(hash), stateDataBytes(data)) };
}

/** Runs an instance on-chain, publishes its data and returns its signed protocol, published too. */
export async function forgeRun(env: ForgeEnv, options: RunOptions = {}): Promise<ForgedRun> {
  const signer = options.signer ?? env.issuer;
  const registries = options.registries ?? env;
  const modelHash = options.modelHash ?? env.model.hash;
  const status = options.status ?? "succeeded";
  const count = options.states ?? 6;
  const perState = Math.min(options.perState ?? 3, count);
  const label = options.label ?? "run";
  const instances = registries.instances.connect(signer);

  const input = canonicalBytes({ order: label, items: [1, 2, 3] });
  const record = {
    statetrail_instance: 1 as const,
    model_hash: modelHash,
    input_hash: sha256Hex(input),
    issuer: signer.address,
    nonce: sha256Hex(`nonce/${label}/${signer.address}`),
  };
  const instanceHash = instanceHashOf(record);
  const inputUrl = env.server.serve(`${ISSUER_ORIGIN}/instances/${instanceHash}/input`, input);
  const created = await mined(instances.createInstance(toBytes32(instanceHash), toBytes32(modelHash)));

  const stateData: StateData[] = Array.from({ length: count }, (_, seq) => {
    const end = status !== "running" && seq === count - 1;
    return {
      statetrail_state: 1,
      instance_hash: instanceHash,
      seq,
      state_name: end ? EXECUTION_END_STATE : `Step${seq}`,
      state_type: end ? END_TYPES[status as Exclude<InstanceStatus, "running">] : STATE_TYPES[seq % STATE_TYPES.length],
      iteration_path: [],
      attempt: 0,
      input: { label, seq },
      error: end && status === "failed" ? { error: "States.TaskFailed", cause: "forged failure" } : null,
    };
  });
  const published = stateData.map((data) => publishState(env.server, data));
  const hashes = published.map((state) => state.hash);

  const locations: { block_nr: number; transaction_hash: string }[] = [];
  let prev = instanceHash;
  for (let seq = 0; seq < perState; seq++) {
    locations.push(
      await mined(instances.registerState(toBytes32(instanceHash), toBytes32(hashes[seq]), toBytes32(prev))),
    );
    prev = hashes[seq];
  }
  if (perState < count) {
    const rest = hashes.slice(perState);
    const batch = await mined(instances.registerStates(toBytes32(instanceHash), toBytes32(prev), rest.map(toBytes32)));
    rest.forEach(() => locations.push(batch));
    prev = rest[rest.length - 1];
  }
  const terminated =
    status === "running"
      ? null
      : await mined(instances.terminateInstance(toBytes32(instanceHash), toBytes32(prev), STATUS_NUMBER[status]));

  const entries: ProtocolEntry[] = [];
  for (let seq = 0; seq < count; seq++) {
    entries.push({
      event_type: "Register State",
      seq,
      state_name: stateData[seq].state_name,
      state_type: stateData[seq].state_type,
      state_hash: hashes[seq],
      prev_state_hash: seq === 0 ? instanceHash : hashes[seq - 1],
      timestamp: await blockTime(locations[seq].block_nr),
      block_nr: locations[seq].block_nr,
      client_address: signer.address,
      transaction_hash: locations[seq].transaction_hash,
      state_data: published[seq].url,
      proof: null,
    });
  }
  const unsigned: UnsignedProtocol = {
    protocol_version: 1,
    chain_id: env.chainId,
    registries: await addressesOf(registries),
    issuer: {
      address: signer.address,
      ens_name: null,
      url: ISSUER_ORIGIN,
      certificate_fingerprint: env.server.certificate.fingerprint,
    },
    model_hash: modelHash,
    model_data: `${ISSUER_ORIGIN}/models/${modelHash}`,
    instance_hash: instanceHash,
    instance_data: inputUrl,
    instance_nonce: record.nonce,
    created,
    status,
    instance_protocol: entries,
    head: { seq: count - 1, state_hash: count > 0 ? hashes[count - 1] : instanceHash },
    terminated,
  };
  const protocol = await signProtocol(unsigned, signer);
  const url = publish(env.server, protocol);
  return { protocol, url, instanceHash, stateData, signer };
}

/** Publishes a protocol at its canonical URL and returns the URL. */
export function publish(server: MemoryServer, protocol: InstanceProtocol): string {
  return server.serve(protocolUrlOf(protocol.instance_hash), JSON.stringify(protocol, null, 2));
}

/** Signs a (tampered) protocol again, by `signer`. */
export function resign(protocol: InstanceProtocol, signer: HardhatEthersSigner): Promise<InstanceProtocol> {
  const { signature: _signature, ...unsigned } = protocol;
  return signProtocol(unsigned, signer);
}

// ---------------------------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------------------------

/** Deploys the registries, registers the model and the issuer's certificate (valid 30 days). */
export async function deployForge(): Promise<ForgeEnv> {
  const [deployer, issuer, other] = await ethers.getSigners();
  const registries = await deployRegistries(deployer);
  const chainId = Number((await ethers.provider.getNetwork()).chainId);
  const now = (await ethers.provider.getBlock("latest"))!.timestamp;
  const server = new MemoryServer(fakeCertificate("issuer.statetrail.test", now - 3_600, now + 30 * DAY));
  await registerServerCertificate(registries.certificates, issuer, server.certificate);
  const env = {
    ...registries,
    deployer,
    issuer,
    other,
    chainId,
    trusted: { chainId, registries: await addressesOf(registries), source: "forge" },
    server,
  };
  const model = await publishModel(env, modelBytes("forge model"), { models: registries.models, signer: issuer });
  return { ...env, model };
}

/** Deploys and runs the genuine scenario (without `loadFixture`, so other fixtures can build on it). */
export async function genuineScenario(): Promise<Scenario> {
  const env = await deployForge();
  const run = await forgeRun(env);
  return { env, run };
}

export interface Scenario {
  env: ForgeEnv;
  run: ForgedRun;
}

/** A scenario returned by `loadFixture`, with its own copy of the server and protocol (fixtures are shared). */
export function fresh<T extends Scenario>(scenario: T): T {
  return {
    ...scenario,
    env: { ...scenario.env, server: scenario.env.server.clone() },
    run: { ...scenario.run, protocol: structuredClone(scenario.run.protocol) },
  };
}

/**
 * The genuine scenario: six states (three by registerState, three in one registerStates), succeeded.
 * The chain is reset to it through `loadFixture`; the server is a fresh copy for every call.
 */
export async function forgeScenario(): Promise<Scenario> {
  return fresh(await loadFixture(genuineScenario));
}

/**
 * Runs the verifier on a forged scenario: Hardhat's provider, the env's trusted registries and server, no ENS.
 * Conformance (V9) is off unless an override turns it on: forged states are not runs of the forged model.
 */
export function verifyForged(
  env: ForgeEnv,
  input: VerifyOptions["input"],
  overrides: Partial<VerifyOptions> = {},
): Promise<VerificationReport> {
  return verifyProtocol({
    input,
    provider: ethers.provider,
    trusted: env.trusted,
    fetcher: env.server.fetcher,
    ens: null,
    optional: ["V2"],
    conformance: false,
    ...overrides,
  });
}
