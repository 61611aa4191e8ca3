import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { type Block, type Signer } from "ethers";
import { StatetrailError } from "../errors";
import { toBytes32, type HexHash } from "../chain/hash";
import { type Engine } from "../engine/types";
import { type ContextObject } from "../engine/context";
import { type IdentityRecord } from "../identity/record";
import { type LoadedModel } from "../model/types";
import { validateModel } from "../model/validate";
import { sealInput } from "../protocol/disclosure";
import { instanceHash as computeInstanceHash } from "../protocol/hashing";
import { unsignedHeadOf } from "../protocol/pages";
import {
  DEFAULT_PAGE_SIZE,
  MAX_PAGE_SIZE,
  type InstanceRecord,
  type InstanceStatus,
  type ProtocolHead,
  type Registries,
  type UnsignedHead,
} from "../protocol/schema";
import { signHead } from "../protocol/signing";
import { parseStrictJson } from "../protocol/strict-json";
import { contentUrls, initialProtocol } from "../protocol/urls";
import { type Home } from "../store/home";
import { CertificateRegistry__factory, InstanceRegistry__factory, ModelRegistry__factory } from "../../typechain-types";
import { createAnchor, DEFAULT_ANCHOR_SETTINGS, type Anchor } from "./anchors";
import { Publisher, TrackedInstance } from "./instance";
import { Journal, type AnchorMode } from "./journal";
import { resumeInstance, type ResumeOptions } from "./resume";
import { buildState } from "./state-data";
import { TransactionSender } from "./sender";

/** On-chain status numbers of InstanceRegistry.InstanceStatus. */
const CHAIN_STATUS: Record<Exclude<InstanceStatus, "running">, number> = { succeeded: 2, failed: 3, aborted: 4 };

export { DEFAULT_MAX_INPUT_BYTES, DEFAULT_MAX_STATE_BYTES } from "../protocol/limits";
import { DEFAULT_MAX_INPUT_BYTES, DEFAULT_MAX_STATE_BYTES } from "../protocol/limits";
export const DEFAULT_MAX_IN_FLIGHT = 16;
export const DEFAULT_PUBLISH_INTERVAL_MS = 250;

export interface TrackerOptions {
  home: Home;
  /** The issuer's signer, connected to the chain. */
  signer: Signer;
  identity: IdentityRecord;
  registries: Registries;
  chainId: number;
  engine: Engine;
  /** How states reach the chain (default `per-state`, the paper's behaviour). */
  anchor?: AnchorMode;
  /** `batch`: anchor a root once this many states wait (default 1,000). */
  batchSize?: number;
  /** `batch`: ...or once the oldest waiting state has waited this long (default 5,000 ms). */
  batchIntervalMs?: number;
  /** Transactions kept in flight at once (1 = the paper's one-at-a-time behaviour; default 16). */
  maxInFlight?: number;
  /** Blocks a transaction needs (its own included) before its states enter the protocol (default 1). */
  confirmations?: number;
  maxStateBytes?: number;
  /** The protocol's head is republished at most this often while states are confirmed (default 250 ms). */
  publishIntervalMs?: number;
  /** Entries per page of the protocols this tracker writes (default 1,024; 1 to 16,384). */
  pageSize?: number;
  /**
   * Called after every published head (the server's SSE notifier): the entries it counts are in the pages on disk.
   */
  onProtocol?: (head: ProtocolHead) => void;
  /** Called as states are entered and as they become final (progress output, benchmarks). */
  onProgress?: (event: TrackerProgress) => void;
  /**
   * Called once a new instance's hash is known, before anything of it is stored or registered (`run --public` marks
   * it public here, so it is never served privately first). An error stops the run.
   */
  onInstance?: (instance: HexHash) => void;
  log?: (message: string) => void;
}

/** A state of `instance` was entered (hashed and stored) or became final on-chain. */
export interface TrackerProgress {
  kind: "entered" | "final";
  instance: HexHash;
  seq: number;
}

/**
 * Runs a model on an engine and leaves a verifiable trail: every state entered is hashed, written to
 * the data directory, journalled, made final on-chain in the configured anchoring mode, appended to the
 * signed instance protocol and published. Several runs may share one tracker (and, in `batch` mode, one
 * Merkle root).
 */
export class Tracker {
  private readonly sender: TransactionSender;
  private readonly anchor: Anchor;
  private readonly blocks = new Map<number, Promise<Block | null>>();
  private readonly log: (message: string) => void;

  constructor(private readonly options: TrackerOptions) {
    this.sender = new TransactionSender(options.signer, {
      maxInFlight: options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT,
      confirmations: options.confirmations ?? 1,
      errorInterfaces: [
        InstanceRegistry__factory.createInterface(),
        ModelRegistry__factory.createInterface(),
        CertificateRegistry__factory.createInterface(),
      ],
    });
    this.anchor = createAnchor(
      options.anchor ?? "per-state",
      {
        sender: this.sender,
        registry: this.instances,
        issuer: options.identity.address,
        blockTime: async (receipt) => (await this.block(receipt.blockNumber)).timestamp,
      },
      {
        batchSize: options.batchSize ?? DEFAULT_ANCHOR_SETTINGS.batchSize,
        batchIntervalMs: options.batchIntervalMs ?? DEFAULT_ANCHOR_SETTINGS.batchIntervalMs,
      },
    );
    this.log = options.log ?? (() => undefined);
  }

  get mode(): AnchorMode {
    return this.anchor.mode;
  }

  private get models() {
    return ModelRegistry__factory.connect(this.options.registries.model, this.options.signer);
  }

  private get instances() {
    return InstanceRegistry__factory.connect(this.options.registries.instance, this.options.signer);
  }

  /** Registers the model's hash (if nobody has yet) and stores its bytes for publication. */
  async deployModel(model: LoadedModel): Promise<{ registered: boolean; transactionHash: string | null }> {
    validateModel(model); // an invalid model is never registered
    this.options.home.writeModel(model.hash, model.bytes);
    const existing = await this.models.modelOf(toBytes32(model.hash));
    if (existing.registrant !== "0x0000000000000000000000000000000000000000") {
      return { registered: false, transactionHash: null };
    }
    const tx = await this.models.registerModel.populateTransaction(
      toBytes32(model.hash),
      contentUrls(this.options.identity.url).model(model.hash),
    );
    const receipt = await this.sender.sendAndWait(tx, "registerModel");
    return { registered: true, transactionHash: receipt.hash };
  }

  /** Tracks one execution of `model` with the exact `inputBytes` as input. */
  async run(model: LoadedModel, inputBytes: Buffer): Promise<ProtocolHead> {
    const { home, identity, engine } = this.options;
    const pageSize = this.pageSize;
    const input = parseInput(inputBytes);
    // Everything that can be checked off-chain is checked before anything is registered.
    await engine.prepare(model);
    await this.requireCertificateRegistered();
    await this.deployModel(model);

    const issuer = await this.options.signer.getAddress();
    const sealedInput = sealInput(inputBytes);
    const record: InstanceRecord = {
      statetrail_instance: 2,
      model_hash: model.hash,
      input_digest: sealedInput.digest,
      issuer,
      nonce: randomBytes(32).toString("hex"),
    };
    const instance = computeInstanceHash(record);
    this.options.onInstance?.(instance);
    home.writeInput(instance, inputBytes);
    home.writeInputDocument(instance, sealedInput.document);
    const journal = new Journal(home.journalFile(instance));
    journal.append({
      type: "instance",
      record,
      anchor: this.anchor.mode,
      engine: engine.name,
      page_size: pageSize,
    });

    journal.append({ type: "intent", action: "createInstance" });
    const createTx = await this.instances.createInstance.populateTransaction(
      toBytes32(instance),
      toBytes32(model.hash),
    );
    const created = await this.sender.sendAndWait(createTx, "createInstance");
    journal.append({
      type: "final",
      action: "createInstance",
      transaction_hash: created.hash,
      block_nr: created.blockNumber,
    });
    this.log(`instance ${instance} created in block ${created.blockNumber}`);

    const protocol: UnsignedHead = unsignedHeadOf({
      ...initialProtocol({
        chainId: this.options.chainId,
        registries: this.options.registries,
        issuer: {
          address: issuer,
          ens_name: identity.ens_name,
          url: identity.url,
          certificate_fingerprint: identity.certificate_fingerprint,
        },
        modelHash: model.hash,
        instanceHash: instance,
        nonce: record.nonce,
        inputDigest: record.input_digest,
        created: { block_nr: created.blockNumber, transaction_hash: created.hash },
      }),
      page_size: pageSize,
    });
    home.beginPages(instance);
    let publisher: Publisher | undefined = undefined;
    const run = new TrackedInstance(instance, journal, protocol, home, contentUrls(identity.url).state, (seq) => {
      this.options.onProgress?.({ kind: "final", instance, seq });
      publisher?.request();
    });
    publisher = new Publisher(
      () => this.publish(protocol, run),
      this.options.publishIntervalMs ?? DEFAULT_PUBLISH_INTERVAL_MS,
      (error) => run.fail(error),
    );
    await publisher.flush();

    let head = instance;
    let seq = 0;
    let context: ContextObject | null = null;
    let status: Exclude<InstanceStatus, "running"> = "aborted";
    const limit = this.options.maxStateBytes ?? DEFAULT_MAX_STATE_BYTES;
    try {
      for await (const event of engine.run(model, { input, executionName: instance.slice(0, 40) })) {
        // Stop at the first failed registration instead of at the end of a long run.
        if (run.failure !== undefined) throw run.failure;
        if (event.kind === "started") {
          context = event.context;
          continue;
        }
        const { data, document, hash } = buildState(instance, seq, event, seq === 0 ? context : null);
        if (document.length > limit) {
          throw new StatetrailError(
            "INPUT_TOO_LARGE",
            `state ${data.state_name} has ${document.length} bytes of data`,
            {
              hint: `raise the limit (--max-state-bytes, now ${limit}) or keep large payloads out of state data`,
            },
          );
        }
        // The journal holds the document (data and disclosures) durably, committed before any transaction carries
        // the state, so the published file needs no fsync of its own.
        writeFileAtomic(home.stateFile(hash), document);
        journal.record({
          type: "entered",
          seq,
          state_hash: hash,
          prev_state_hash: head,
          state_data: document.toString(),
        });
        run.trail.push(hash);
        this.options.onProgress?.({ kind: "entered", instance, seq });
        this.anchor.submit(run, { seq, name: data.state_name, type: data.state_type, hash, prev: head });
        head = hash;
        seq += 1;
        if (event.kind === "end") status = event.status;
      }
      await this.anchor.settle(run);
    } catch (error) {
      await this.anchor.settle(run).catch(() => undefined);
      publisher.cancel();
      journal.append({ type: "error", message: (error as Error).message });
      journal.close();
      throw error;
    }

    // Every entry (with its Merkle proof) is published before the termination is sent: a tracker killed after the
    // termination is mined, before it is journalled, is resumed from the chain and this protocol; anchored
    // states have no event of their own, so their proofs exist only here.
    await publisher.flush();
    const terminal = await this.terminate(run, head, seq, status);
    journal.close();
    protocol.status = status;
    protocol.terminated = terminal;
    this.log(`instance ${instance} ${status} after ${seq} states`);
    return publisher.flush();
  }

  /**
   * Terminates the instance on-chain: `terminateInstance` with the final head when its states were
   * registered, `terminateAnchored` with the final head, the number of states and the trail when they were
   * anchored in Merkle batches (the chain never saw them one by one).
   */
  private async terminate(
    run: TrackedInstance,
    head: HexHash,
    count: number,
    status: Exclude<InstanceStatus, "running">,
  ): Promise<{ block_nr: number; transaction_hash: string }> {
    const anchored = this.anchor.mode === "batch" && count > 0;
    const action = anchored ? "terminateAnchored" : "terminateInstance";
    const trail = run.trail.value;
    run.journal.append({
      type: "intent",
      action,
      status,
      final_head: head,
      ...(anchored ? { state_count: count, trail } : {}),
    });
    const tx = anchored
      ? await this.instances.terminateAnchored.populateTransaction(
          toBytes32(run.hash),
          toBytes32(head),
          count,
          toBytes32(trail),
          CHAIN_STATUS[status],
        )
      : await this.instances.terminateInstance.populateTransaction(
          toBytes32(run.hash),
          toBytes32(head),
          CHAIN_STATUS[status],
        );
    const receipt = await this.sender.sendAndWait(tx, action);
    run.journal.append({ type: "final", action, transaction_hash: receipt.hash, block_nr: receipt.blockNumber });
    return { block_nr: receipt.blockNumber, transaction_hash: receipt.hash };
  }

  /**
   * Finishes an instance a killed (or failed) tracker left unfinished in the data directory, from its journal
   * and the chain: see {@link resumeInstance}.
   */
  async resume(instance: HexHash, options: ResumeOptions = {}): Promise<ProtocolHead> {
    await this.requireCertificateRegistered();
    return resumeInstance(
      {
        options: this.options,
        sender: this.sender,
        anchor: this.anchor,
        instances: this.instances,
        publishIntervalMs: this.options.publishIntervalMs ?? DEFAULT_PUBLISH_INTERVAL_MS,
        pageSize: this.pageSize,
        block: (blockNumber) => this.block(blockNumber),
        publish: (protocol, run) => this.publish(protocol, run),
        terminate: (run, head, count, status) => this.terminate(run, head, count, status),
      },
      instance,
      options,
    );
  }

  /** Stops the batch timer; call when no run is going on any more. */
  close(): void {
    this.anchor.close();
  }

  private async block(blockNumber: number): Promise<Block> {
    let pending = this.blocks.get(blockNumber);
    if (!pending) {
      pending = this.sender.provider.getBlock(blockNumber);
      this.blocks.set(blockNumber, pending);
      if (this.blocks.size > 64) this.blocks.delete(this.blocks.keys().next().value as number);
    }
    const block = await pending;
    if (!block) throw new StatetrailError("RPC_UNREACHABLE", `block ${blockNumber} is not available from the node`);
    return block;
  }

  /** The page size of new protocols, checked. */
  private get pageSize(): number {
    const size = this.options.pageSize ?? DEFAULT_PAGE_SIZE;
    if (!Number.isInteger(size) || size < 1 || size > MAX_PAGE_SIZE) {
      throw new StatetrailError("INVALID_ARGUMENT", `page size ${size} is not an integer from 1 to ${MAX_PAGE_SIZE}`, {
        hint: `give a page size from 1 to ${MAX_PAGE_SIZE} (default ${DEFAULT_PAGE_SIZE})`,
      });
    }
    return size;
  }

  /**
   * Signs and writes the head as it is now (a copy: states finalized while the signer works are in the next one).
   * The entries it counts are already appended to the pages, so this writes a constant number of bytes.
   */
  private async publish(protocol: UnsignedHead, run: TrackedInstance): Promise<ProtocolHead> {
    const snapshot = structuredClone(protocol);
    run.syncPages(); // every line the snapshot counts is durable before the head that counts it
    const signed = await signHead(snapshot, this.options.signer);
    this.options.home.writeHead(signed);
    this.options.onProtocol?.(signed);
    return signed;
  }

  private async requireCertificateRegistered(): Promise<void> {
    const registry = CertificateRegistry__factory.connect(this.options.registries.certificate, this.options.signer);
    const issuer = await this.options.signer.getAddress();
    // States are timestamped by blocks, and a busy local chain runs ahead of the wall clock.
    const latest = await this.sender.provider.getBlock("latest");
    const now = Math.max(Math.floor(Date.now() / 1000), latest?.timestamp ?? 0);
    const fingerprint = toBytes32(this.options.identity.certificate_fingerprint);
    const [certificate, revokedAt] = await registry.certificateOf(fingerprint, issuer);
    if (certificate.holder.toLowerCase() !== issuer.toLowerCase()) {
      throw new StatetrailError(
        "CERT_NOT_REGISTERED",
        `certificate ${this.options.identity.certificate_fingerprint} is not registered for ${issuer}`,
        {
          hint: "register a new certificate with: statetrail identity rotate (or, for a new identity, statetrail identity init --force)",
        },
      );
    }
    if (revokedAt !== 0n) {
      throw new StatetrailError("CERT_REVOKED", "the server certificate has been revoked", {
        hint: "issue a new one with: statetrail identity rotate",
      });
    }
    if (now > Number(certificate.notAfter) || now < Number(certificate.notBefore)) {
      throw new StatetrailError("CERT_EXPIRED", "the server certificate is outside its validity window", {
        hint: "issue a new one with: statetrail identity rotate",
      });
    }
  }
}

/** Parses the exact input bytes as JSON, with a coded error. */
export function parseInput(bytes: Buffer, maxBytes = DEFAULT_MAX_INPUT_BYTES): unknown {
  if (bytes.length > maxBytes) {
    throw new StatetrailError("INPUT_TOO_LARGE", `input has ${bytes.length} bytes, the limit is ${maxBytes}`);
  }
  const text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });
  let decoded: string;
  try {
    decoded = text.decode(bytes);
  } catch (error) {
    throw new StatetrailError("INVALID_JSON", "input is not valid UTF-8", { cause: error });
  }
  try {
    JSON.parse(decoded);
  } catch (error) {
    throw new StatetrailError("INVALID_JSON", `input is not valid JSON: ${(error as Error).message}`, {
      cause: error,
      hint: "pass a JSON document, e.g. --input '{\"orderId\": 1}' or --input ./input.json",
    });
  }
  // Strictly: a member named twice is read as its last value here and as its first by other readers, so an
  // auditor could not tell which input the run used (V9 refuses to replay it).
  return parseStrictJson(decoded, "input");
}

/** Writes a file atomically (a temporary file renamed into place) without fsync: for bytes the journal holds. */
function writeFileAtomic(file: string, bytes: Buffer): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const temp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(temp, bytes);
  fs.renameSync(temp, file);
}
