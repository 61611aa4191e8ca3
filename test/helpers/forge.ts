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
import { randomBytes } from "node:crypto";
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
import { buildContextObject, type ContextObject } from "../../src/engine/context";
import { type EngineEvent } from "../../src/engine/types";
import { StatetrailError } from "../../src/errors";
import { LeafBatch, Trail, type LeafFields } from "../../src/protocol/anchoring";
import { canonicalBytes } from "../../src/protocol/canonical";
import {
  discloseOnly,
  sealInput,
  sealState,
  type FieldSalts,
  type SealedInput,
  type SealedState,
} from "../../src/protocol/disclosure";
import { instanceHash as instanceHashOf } from "../../src/protocol/hashing";
import {
  EXECUTION_END_STATE,
  type InstanceProtocol,
  type InstanceStatus,
  type MerkleProof,
  PROTOCOL_VERSION,
  type ProtocolEntry,
  type ProtocolHead,
  STATE_DATA_VERSION,
  type DataField,
  type StateContent,
  type StateType,
  type UnsignedProtocol,
} from "../../src/protocol/schema";
import { encodePages, headOf } from "../../src/protocol/pages";
import { signProtocol } from "../../src/protocol/signing";
import { contentUrls } from "../../src/protocol/urls";
import { buildStateContent } from "../../src/tracker/state-data";
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
// Runs: one way to forge them. An instance is started (created on-chain, its input and state data published),
// its states reach the chain per state, in registerStates batches or in Merkle roots (with other instances'),
// and it is finished (terminated as its anchoring requires) with a protocol built and signed as the issuer
// would. The states are synthetic (`states: n`) or recorded (`states: [...]`, a real run, possibly edited).
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

/** Where a transaction was mined. */
export interface Location {
  block_nr: number;
  transaction_hash: string;
  timestamp: number;
}

async function minedAt(tx: Promise<ContractTransactionResponse>): Promise<Location> {
  const receipt = await (await tx).wait();
  if (!receipt) throw new Error("transaction not mined");
  const block = (await ethers.provider.getBlock(receipt.blockNumber))!;
  return { block_nr: receipt.blockNumber, transaction_hash: receipt.hash, timestamp: block.timestamp };
}

/** A state of a forged run: its clear content without what the forge fills in (version, instance, seq). */
export type ForgedState = Omit<StateContent, "statetrail_state" | "instance_hash" | "seq"> & {
  seq?: number;
};

/** A random 256-bit value (nonces). */
export function randomSalt(): HexHash {
  return randomBytes(32).toString("hex");
}

/** The (version 3) clear content of entry `seq` of `instanceHash`; sealed with fresh salts when published. */
export function forgeStateData(instanceHash: HexHash, seq: number, state: ForgedState): StateContent {
  const { seq: _seq, ...fields } = state;
  return {
    statetrail_state: STATE_DATA_VERSION,
    instance_hash: instanceHash,
    seq,
    ...fields,
  };
}

const STATE_TYPES: StateType[] = ["Pass", "Task", "Choice", "Wait", "Task", "Map", "Parallel"];
const END_TYPES: Record<Exclude<InstanceStatus, "running">, StateType> = {
  succeeded: "ExecutionSucceeded",
  failed: "ExecutionFailed",
  aborted: "ExecutionAborted",
};
const STATUS_NUMBER: Record<InstanceStatus, number> = { running: 1, succeeded: 2, failed: 3, aborted: 4 };

/** The Context Object a synthetic run records on entry 0. */
export function forgedContext(label: string, input: unknown): Record<string, unknown> {
  const executionName = label.replace(/[^A-Za-z0-9_-]/g, "-").slice(0, 80) || "forged";
  return buildContextObject({ stateMachineName: "statetrail-forge", executionName, input, taskToken: "forged" });
}

/** The state content of a run without its instance: what an engine's events record, seq by position. */
export type RecordedState = Omit<StateContent, "statetrail_state" | "instance_hash">;

/**
 * Maps engine events to state content exactly as the tracker does ({@link buildStateContent}; the started event gives
 * entry 0 its Context Object). The instance is filled in when the run is forged.
 */
export function recordedStates(events: readonly EngineEvent[]): RecordedState[] {
  let context: ContextObject | null = null;
  const states: RecordedState[] = [];
  for (const event of events) {
    if (event.kind === "started") {
      context = event.context;
      continue;
    }
    const seq = states.length;
    const data = buildStateContent(PLACEHOLDER_INSTANCE, seq, event, seq === 0 ? context : null);
    const { statetrail_state: _version, instance_hash: _instance, ...fields } = data;
    states.push(fields);
  }
  return states;
}

const PLACEHOLDER_INSTANCE = "00".repeat(32);

/**
 * Synthetic states (not a run of any model: only V9 tells): `Step<seq>` of `types` in turn, each with input
 * `{label, seq}`, Task attempts with a result, the end entry last unless `status` is running.
 */
export function syntheticStates(
  count: number,
  status: InstanceStatus,
  label: string,
  types: readonly StateType[] = STATE_TYPES,
  input: unknown = null,
): ForgedState[] {
  return Array.from({ length: count }, (_, seq): ForgedState => {
    const common = {
      iteration_path: [],
      attempt: 0,
      caught: null,
      context: seq === 0 ? forgedContext(label, input) : null,
    };
    if (status !== "running" && seq === count - 1) {
      const outcome =
        status === "failed"
          ? { error: { error: "States.TaskFailed", cause: "forged failure" } }
          : status === "succeeded"
            ? { result: { label, seq } }
            : null;
      return { ...common, state_name: EXECUTION_END_STATE, state_type: END_TYPES[status], input: null, outcome };
    }
    const type = types[seq % types.length];
    const outcome = type === "Task" ? { result: { label, seq } } : null;
    return { ...common, state_name: `Step${seq}`, state_type: type, input: { label, seq }, outcome };
  });
}

export interface StartOptions {
  /** Who runs the instance (default the issuer). */
  signer?: HardhatEthersSigner;
  /** Registries to run on (default the trusted ones). */
  registries?: Registries;
  /** The model: a hash already registered (default the env's model), or bytes, registered when they aren't. */
  model?: HexHash | { bytes: Buffer; hash: HexHash };
  /** Distinguishes instances: it goes into the default input and the nonce. */
  label?: string;
  /** The execution input (default `{order: label, items: [1, 2, 3]}`), published as canonical JSON. */
  input?: unknown;
  /** The instance nonce (default derived from label and signer). */
  nonce?: HexHash;
  /** Synthetic states (a count, default 6) or the states of a recorded run, renumbered by position. */
  states?: number | readonly ForgedState[];
  /**
   * What the issuer's server discloses to the auditor (selective disclosure, protocol v4): the execution input
   * (default true) and, per seq, the fields of its state document (default all four). Hashes and the chain are
   * those of the whole run: only the served documents lack the withheld lines.
   */
  disclose?: Disclose;
  /** Default "succeeded"; "running" means no end entry among synthetic states. */
  status?: InstanceStatus;
}

/** An instance created on-chain whose states are published but not (all) on the chain yet. */
export interface PendingRun {
  label: string;
  signer: HardhatEthersSigner;
  registries: Registries;
  modelHash: HexHash;
  instanceHash: HexHash;
  nonce: HexHash;
  created: Location;
  inputUrl: string;
  /** The sealed execution input (digest in the instance record, document served at inputUrl unless withheld). */
  sealedInput: SealedInput;
  status: InstanceStatus;
  /** The clear content of every state, in seq order. */
  stateData: StateContent[];
  /** Every state sealed: data, disclosures, hash and its whole document. */
  sealed: SealedState[];
  hashes: HexHash[];
  urls: string[];
  /** Where each entry reached the chain (and its Merkle proof when anchored in a root). */
  anchored: Array<{ at: Location; proof: MerkleProof | null }>;
}

/** Creates an instance on-chain and publishes its input and state data. */
export async function startRun(env: ForgeEnv, options: StartOptions = {}): Promise<PendingRun> {
  const signer = options.signer ?? env.issuer;
  const registries = options.registries ?? env;
  const label = options.label ?? "run";
  const status = options.status ?? "succeeded";
  let modelHash = env.model.hash;
  if (typeof options.model === "string") modelHash = options.model;
  else if (options.model) {
    modelHash = options.model.hash;
    const registered = await registries.models.modelOf(toBytes32(modelHash));
    if (registered.registrant === ethers.ZeroAddress) {
      await publishModel(env, options.model.bytes, { models: registries.models, signer });
    } else {
      env.server.serve(`${ISSUER_ORIGIN}/models/${modelHash}`, options.model.bytes);
    }
  }
  const inputValue = options.input === undefined ? { order: label, items: [1, 2, 3] } : options.input;
  // Bytes are published as given (an attack on how the input is read); anything else canonically.
  const input = Buffer.isBuffer(inputValue) ? inputValue : canonicalBytes(inputValue);
  const nonce = options.nonce ?? sha256Hex(`nonce/${label}/${signer.address}`);
  const sealedInput = sealInput(input, sha256Hex(`salt/${label}/${nonce}`).slice(0, 32));
  const record = {
    statetrail_instance: 2 as const,
    model_hash: modelHash,
    input_digest: sealedInput.digest,
    issuer: signer.address,
    nonce,
  };
  const instanceHash = instanceHashOf(record);
  const inputUrl = env.server.serve(
    `${ISSUER_ORIGIN}/instances/${instanceHash}/input`,
    options.disclose?.input === false ? REDACTED_INPUT : sealedInput.document,
  );
  const created = await minedAt(
    registries.instances.connect(signer).createInstance(toBytes32(instanceHash), toBytes32(modelHash)),
  );
  const states =
    typeof options.states === "object"
      ? options.states
      : syntheticStates(options.states ?? 6, status, label, STATE_TYPES, inputValue);
  const stateData = states.map((state, seq) => forgeStateData(instanceHash, seq, state));
  const published = stateData.map((data, seq) =>
    publishState(env.server, data, undefined, options.disclose?.states?.[seq]),
  );
  return {
    label,
    signer,
    registries,
    modelHash,
    instanceHash,
    nonce,
    created,
    inputUrl,
    sealedInput,
    status,
    stateData,
    sealed: published.map((state) => state.sealed),
    hashes: published.map((state) => state.hash),
    urls: published.map((state) => state.url),
    anchored: [],
  };
}

/**
 * Registers the states `from`..`to` of a pending run: the first `perState` one per transaction
 * (registerState), the rest with registerStates in batches of `batch` (default all in one).
 */
export async function registerRun(
  run: PendingRun,
  options: { perState?: number; batch?: number; from?: number; to?: number } = {},
): Promise<void> {
  const instances = run.registries.instances.connect(run.signer);
  const from = options.from ?? run.anchored.length;
  const to = options.to ?? run.hashes.length;
  const perState = Math.min(from + (options.perState ?? to - from), to);
  const prev = (seq: number): HexHash => (seq === 0 ? run.instanceHash : run.hashes[seq - 1]);
  const instance = toBytes32(run.instanceHash);
  for (let seq = from; seq < perState; seq++) {
    const at = await minedAt(instances.registerState(instance, toBytes32(run.hashes[seq]), toBytes32(prev(seq))));
    run.anchored[seq] = { at, proof: null };
  }
  const batch = options.batch ?? Math.max(1, to - perState);
  for (let first = perState; first < to; first += batch) {
    const last = Math.min(to, first + batch);
    const chunk = run.hashes.slice(first, last).map(toBytes32);
    const at = await minedAt(instances.registerStates(instance, toBytes32(prev(first)), chunk));
    for (let seq = first; seq < last; seq++) run.anchored[seq] = { at, proof: null };
  }
}

/** Anchors one Merkle root over the given states of the given runs (in that order), by the first run's signer. */
export async function anchorRuns(
  env: ForgeEnv,
  parts: ReadonlyArray<{ run: PendingRun; from: number; to: number }>,
): Promise<void> {
  const leaves: LeafFields[] = [];
  const owners: Array<{ run: PendingRun; seq: number }> = [];
  for (const { run, from, to } of parts) {
    for (let seq = from; seq < to; seq++) {
      leaves.push({
        issuer: run.signer.address,
        instanceHash: run.instanceHash,
        seq,
        stateHash: run.hashes[seq],
        prevStateHash: seq === 0 ? run.instanceHash : run.hashes[seq - 1],
      });
      owners.push({ run, seq });
    }
  }
  const { batch, at } = await anchorLeaves(env, leaves, parts[0]?.run.signer);
  owners.forEach(({ run, seq }, index) => (run.anchored[seq] = { at, proof: batch.proof(index) }));
}

/** Anchors `leaves` in a root of their own (a root the issuer, or `signer`, really anchored). */
export async function anchorLeaves(
  env: ForgeEnv,
  leaves: LeafFields[],
  signer: HardhatEthersSigner = env.issuer,
): Promise<{ batch: LeafBatch; at: Location }> {
  const batch = new LeafBatch(leaves);
  const at = await minedAt(env.instances.connect(signer).anchorBatch(batch.root, batch.size));
  return { batch, at };
}

/**
 * Terminates a run whose states are all on the chain (unless its status is running, or `terminate` is false):
 * with terminateInstance, or terminateAnchored (count, final head, trail) when its states have Merkle proofs;
 * then builds, signs and publishes its protocol.
 */
export async function finishRun(
  env: ForgeEnv,
  run: PendingRun,
  options: { terminate?: boolean } = {},
): Promise<ForgedRun> {
  const count = run.hashes.length;
  if (run.anchored.length < count || run.anchored.some((entry) => entry === undefined)) {
    throw new Error(`finishRun: ${run.label} has states not on the chain`);
  }
  const instances = run.registries.instances.connect(run.signer);
  const head = count > 0 ? run.hashes[count - 1] : run.instanceHash;
  const terminate = (options.terminate ?? true) && run.status !== "running";
  const merkle = run.anchored.some((entry) => entry.proof !== null);
  let terminated: Location | null = null;
  if (terminate && merkle) {
    const trail = new Trail(run.instanceHash);
    run.hashes.forEach((hash) => trail.push(hash));
    terminated = await minedAt(
      instances.terminateAnchored(
        toBytes32(run.instanceHash),
        toBytes32(head),
        count,
        toBytes32(trail.value),
        STATUS_NUMBER[run.status],
      ),
    );
  } else if (terminate) {
    terminated = await minedAt(
      instances.terminateInstance(toBytes32(run.instanceHash), toBytes32(head), STATUS_NUMBER[run.status]),
    );
  }
  const entries: ProtocolEntry[] = run.stateData.map((data, seq) => ({
    event_type: "Register State",
    seq,
    state_name: data.state_name,
    state_type: data.state_type,
    state_hash: run.hashes[seq],
    prev_state_hash: seq === 0 ? run.instanceHash : run.hashes[seq - 1],
    timestamp: run.anchored[seq].at.timestamp,
    block_nr: run.anchored[seq].at.block_nr,
    client_address: run.signer.address,
    transaction_hash: run.anchored[seq].at.transaction_hash,
    state_data: run.urls[seq],
    proof: run.anchored[seq].proof,
  }));
  const unsigned: UnsignedProtocol = {
    protocol_version: PROTOCOL_VERSION,
    chain_id: env.chainId,
    registries: await addressesOf(run.registries),
    issuer: {
      address: run.signer.address,
      ens_name: null,
      url: ISSUER_ORIGIN,
      certificate_fingerprint: env.server.certificate.fingerprint,
    },
    model_hash: run.modelHash,
    model_data: `${ISSUER_ORIGIN}/models/${run.modelHash}`,
    instance_hash: run.instanceHash,
    instance_data: run.inputUrl,
    instance_nonce: run.nonce,
    input_digest: run.sealedInput.digest,
    created: { block_nr: run.created.block_nr, transaction_hash: run.created.transaction_hash },
    status: terminate ? run.status : "running",
    instance_protocol: entries,
    page_size: FORGE_PAGE_SIZE,
    head: { seq: count - 1, state_hash: head },
    terminated: terminated && { block_nr: terminated.block_nr, transaction_hash: terminated.transaction_hash },
  };
  const protocol = await signProtocol(unsigned, run.signer);
  return {
    protocol,
    url: publish(env.server, protocol),
    instanceHash: run.instanceHash,
    stateData: run.stateData,
    sealed: run.sealed,
    sealedInput: run.sealedInput,
    hashes: run.hashes,
    signer: run.signer,
  };
}

export interface RunOptions extends StartOptions {
  /**
   * How the states reach the chain: "per-state" (registerState for the first `perState`, default 3, then
   * registerStates in batches of `batch`, default all in one), or "merkle" (one root over all of them, the
   * instance terminated with terminateAnchored).
   */
  anchoring?: "per-state" | "merkle";
  perState?: number;
  batch?: number;
}

export interface ForgedRun {
  protocol: InstanceProtocol;
  /** Where the protocol is published. */
  url: string;
  instanceHash: HexHash;
  /** The clear content of every state, in seq order. */
  stateData: StateContent[];
  /** Every state sealed (data, disclosures, hash, whole document). */
  sealed: SealedState[];
  sealedInput: SealedInput;
  hashes: HexHash[];
  signer: HardhatEthersSigner;
}

export function stateUrl(hash: HexHash): string {
  return `${ISSUER_ORIGIN}/states/${hash}`;
}

export function protocolUrlOf(instanceHash: HexHash): string {
  return `${ISSUER_ORIGIN}/instances/${instanceHash}/protocol`;
}

/** What the issuer's server discloses of a forged run (see {@link StartOptions.disclose}). */
export interface Disclose {
  /** Serve the execution input's disclosure (default true); false serves an empty input document. */
  input?: boolean;
  /** Per seq, the fields disclosed (default all four). */
  states?: Record<number, readonly DataField[]>;
}

/** An input document disclosing nothing. */
export const REDACTED_INPUT = Buffer.alloc(0);

/**
 * Seals a state's content (with `salts`, fresh ones by default), publishes its state document (only the disclosures
 * of `fields` when given) and returns its hash, URL and sealed state.
 */
export function publishState(
  server: MemoryServer,
  data: StateContent,
  salts?: FieldSalts,
  fields?: readonly DataField[],
): { hash: HexHash; url: string; sealed: SealedState } {
  const sealed = sealState(data, salts);
  const document = fields ? discloseOnly(sealed.document, new Set(fields)) : sealed.document;
  return { hash: sealed.hash, url: server.serve(stateUrl(sealed.hash), document), sealed };
}

/** Serves the state document of `run`'s entry `seq` with only the disclosures of `fields` (what a grant shows). */
export function discloseOnlyFields(
  server: MemoryServer,
  run: Pick<ForgedRun, "sealed">,
  seq: number,
  fields: readonly DataField[],
): void {
  const sealed = run.sealed[seq];
  server.serve(stateUrl(sealed.hash), discloseOnly(sealed.document, new Set(fields)));
}

/** Serves `run`'s input document empty: the execution input not disclosed. */
export function withholdInput(server: MemoryServer, run: Pick<ForgedRun, "protocol">): void {
  server.serve(run.protocol.instance_data, REDACTED_INPUT);
}

/** Runs an instance on-chain, publishes its data and returns its signed protocol, published too. */
export async function forgeRun(env: ForgeEnv, options: RunOptions = {}): Promise<ForgedRun> {
  const run = await startRun(env, options);
  if (options.anchoring === "merkle") {
    if (run.hashes.length > 0) await anchorRuns(env, [{ run, from: 0, to: run.hashes.length }]);
  } else {
    await registerRun(run, { perState: options.perState ?? 3, batch: options.batch });
  }
  return finishRun(env, run);
}

/** Entries per page of forged protocols: small, so that every run crosses page boundaries. */
export const FORGE_PAGE_SIZE = 2;

/** Where page `index` of an instance's protocol is served. */
export function pageUrlOf(instanceHash: HexHash, index: number): string {
  return contentUrls(ISSUER_ORIGIN).page(instanceHash, index);
}

/**
 * Publishes a protocol as the issuer's server does: its head at the protocol URL, its pages at the page URLs
 * (pages.ts `encodePages`; pages of an earlier, longer version beyond the new count are removed). Returns the
 * protocol URL.
 */
export function publish(server: MemoryServer, protocol: InstanceProtocol): string {
  const pages = encodePages(protocol);
  pages.forEach((bytes, index) => servePage(server, protocol.instance_hash, index, bytes));
  for (let index = pages.length; server.bytes(pageUrlOf(protocol.instance_hash, index)); index += 1) {
    server.remove(pageUrlOf(protocol.instance_hash, index));
  }
  return publishHead(server, headOf(protocol));
}

/** Publishes a head alone (its pages as they are) and returns the protocol URL. */
export function publishHead(server: MemoryServer, head: ProtocolHead): string {
  return server.serve(protocolUrlOf(head.instance_hash), JSON.stringify(head, null, 2));
}

/** Serves arbitrary bytes as page `index` of an instance (attacks on pages). */
export function servePage(server: MemoryServer, instanceHash: HexHash, index: number, bytes: Buffer | string): string {
  return server.serve(pageUrlOf(instanceHash, index), bytes);
}

/** The page bytes a whole protocol is published as (pages.ts `encodePages`). */
export function pagesOf(protocol: InstanceProtocol): Buffer[] {
  return encodePages(protocol);
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

/** The forge environment alone (registries, issuer certificate, model), the chain reset to it by `loadFixture`. */
export async function forgeEnv(): Promise<ForgeEnv> {
  const env = await loadFixture(deployForge);
  return { ...env, server: env.server.clone() };
}

export interface AnchoredScenario {
  env: ForgeEnv;
  /** Six states, anchored four in the first root and two in the second; terminated (succeeded). */
  a: ForgedRun;
  /** Four states, two in each root, interleaved with A's; terminated (succeeded). */
  b: ForgedRun;
  /** Three states in one root of its own; still running (not terminated). */
  running: ForgedRun;
}

const ANCHORED_TYPES: StateType[] = ["Pass", "Task", "Choice", "Task", "Map"];

/** A synthetic succeeded run for Merkle anchoring: `count` states, the last its end. */
export function startAnchored(env: ForgeEnv, label: string, count: number): Promise<PendingRun> {
  return startRun(env, {
    label,
    input: { order: label },
    nonce: sha256Hex(`nonce/${label}`),
    states: syntheticStates(count, "succeeded", label, ANCHORED_TYPES, { order: label }),
    status: "succeeded",
  });
}

/** Deploys and runs the anchored scenario (two instances sharing two roots, one running), without loadFixture. */
export async function genuineAnchoredScenario(): Promise<AnchoredScenario> {
  const env = await deployForge();
  const a = await startAnchored(env, "anchored A", 6);
  const b = await startAnchored(env, "anchored B", 4);
  await anchorRuns(env, [
    { run: a, from: 0, to: 4 },
    { run: b, from: 0, to: 2 },
  ]);
  await anchorRuns(env, [
    { run: b, from: 2, to: 4 },
    { run: a, from: 4, to: 6 },
  ]);
  const running = await startAnchored(env, "anchored running", 3);
  await anchorRuns(env, [{ run: running, from: 0, to: 3 }]);
  return {
    env,
    a: await finishRun(env, a),
    b: await finishRun(env, b),
    running: await finishRun(env, running, { terminate: false }),
  };
}

/** The anchored scenario, the chain reset to it by `loadFixture`, with its own copy of the server and protocols. */
export async function forgeAnchoredScenario(): Promise<AnchoredScenario> {
  const scenario = await loadFixture(genuineAnchoredScenario);
  const copy = (run: ForgedRun): ForgedRun => ({ ...run, protocol: structuredClone(run.protocol) });
  const env = { ...scenario.env, server: scenario.env.server.clone() };
  return { env, a: copy(scenario.a), b: copy(scenario.b), running: copy(scenario.running) };
}

/**
 * Forges the protocol of a recorded run (genuine, or edited as a lying issuer would): its states (renumbered by
 * position) are published, registered one transaction each and terminated with `status`, for `model` run with
 * `input`; the issuer signs. Hashes, chain and signature agree, so V0–V8 pass whatever the states say; only
 * conformance (V9) judges them.
 */
export function forgeRecordedRun(
  env: ForgeEnv,
  model: { bytes: Buffer; hash: HexHash },
  input: unknown,
  states: readonly ForgedState[],
  status: Exclude<InstanceStatus, "running">,
  options: Pick<RunOptions, "perState" | "batch" | "anchoring"> = {},
): Promise<ForgedRun> {
  return forgeRun(env, {
    model,
    input,
    states,
    status,
    label: `recorded-${model.hash.slice(0, 8)}`,
    nonce: randomSalt(),
    perState: options.perState ?? states.length,
    batch: options.batch,
    anchoring: options.anchoring,
  });
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
