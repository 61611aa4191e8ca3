import { randomBytes } from "node:crypto";
import { type Block, type Signer, type TransactionReceipt } from "ethers";
import { StatetrailError } from "../errors";
import { sha256Hex, toBytes32, type HexHash } from "../chain/hash";
import { type Engine, type EngineEvent } from "../engine/types";
import { type IdentityRecord } from "../identity/record";
import { type LoadedModel } from "../model/types";
import { validateModel } from "../model/validate";
import {
  instanceHash as computeInstanceHash,
  stateDataBytes,
  stateHash as computeStateHash,
} from "../protocol/hashing";
import {
  EXECUTION_END_STATE,
  type InstanceProtocol,
  type InstanceRecord,
  type InstanceStatus,
  type ProtocolEntry,
  type Registries,
  type StateData,
  type UnsignedProtocol,
} from "../protocol/schema";
import { signProtocol } from "../protocol/signing";
import { type Home } from "../store/home";
import { CertificateRegistry__factory, InstanceRegistry__factory, ModelRegistry__factory } from "../../typechain-types";
import { Journal } from "./journal";
import { TransactionSender } from "./sender";

/** On-chain status numbers of InstanceRegistry.InstanceStatus. */
const CHAIN_STATUS: Record<Exclude<InstanceStatus, "running">, number> = { succeeded: 2, failed: 3, aborted: 4 };

export const DEFAULT_MAX_STATE_BYTES = 256 * 1024;
export const DEFAULT_MAX_INPUT_BYTES = 256 * 1024;

export interface TrackerOptions {
  home: Home;
  /** The issuer's signer, connected to the chain. */
  signer: Signer;
  identity: IdentityRecord;
  registries: Registries;
  chainId: number;
  engine: Engine;
  /** Transactions kept in flight at once (1 = the paper's one-at-a-time behaviour). */
  maxInFlight?: number;
  confirmations?: number;
  maxStateBytes?: number;
  /** Called after every published protocol update (the server's SSE notifier). */
  onProtocol?: (protocol: InstanceProtocol) => void;
  log?: (message: string) => void;
}

/**
 * Runs a model on an engine and leaves a verifiable trail: every state entered is hashed, written to
 * the data directory, registered on-chain linked to the previous state, appended to the signed
 * instance protocol and published.
 */
export class Tracker {
  private readonly sender: TransactionSender;
  private readonly blocks = new Map<number, Promise<Block | null>>();
  private readonly log: (message: string) => void;

  constructor(private readonly options: TrackerOptions) {
    this.sender = new TransactionSender(options.signer, {
      maxInFlight: options.maxInFlight ?? 16,
      confirmations: options.confirmations ?? 1,
      errorInterfaces: [
        InstanceRegistry__factory.createInterface(),
        ModelRegistry__factory.createInterface(),
        CertificateRegistry__factory.createInterface(),
      ],
    });
    this.log = options.log ?? (() => undefined);
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
      `${this.options.identity.url}/models/${model.hash}`,
    );
    const receipt = await this.sender.sendAndWait(tx, "registerModel");
    return { registered: true, transactionHash: receipt.hash };
  }

  /** Tracks one execution of `model` with the exact `inputBytes` as input. */
  async run(model: LoadedModel, inputBytes: Buffer): Promise<InstanceProtocol> {
    const { home, identity, engine } = this.options;
    const input = parseInput(inputBytes);
    // Everything that can be checked off-chain is checked before anything is registered.
    await engine.prepare(model);
    await this.requireCertificateRegistered();
    await this.deployModel(model);

    const issuer = await this.options.signer.getAddress();
    const record: InstanceRecord = {
      statetrail_instance: 1,
      model_hash: model.hash,
      input_hash: sha256Hex(inputBytes),
      issuer,
      nonce: randomBytes(32).toString("hex"),
    };
    const instance = computeInstanceHash(record);
    home.writeInput(instance, inputBytes);
    const journal = new Journal(home.journalFile(instance));
    journal.append({ type: "instance", record });

    const createTx = await this.instances.createInstance.populateTransaction(
      toBytes32(instance),
      toBytes32(model.hash),
    );
    const created = await this.sender.sendAndWait(createTx, "createInstance");
    journal.append({ type: "created", transaction_hash: created.hash, block_nr: created.blockNumber });
    this.log(`instance ${instance} created in block ${created.blockNumber}`);

    const protocol: UnsignedProtocol = {
      protocol_version: 1,
      chain_id: this.options.chainId,
      registries: this.options.registries,
      issuer: {
        address: issuer,
        ens_name: identity.ens_name,
        url: identity.url,
        certificate_fingerprint: identity.certificate_fingerprint,
      },
      model_hash: model.hash,
      model_data: `${identity.url}/models/${model.hash}`,
      instance_hash: instance,
      instance_data: `${identity.url}/instances/${instance}/input`,
      instance_nonce: record.nonce,
      created: { block_nr: created.blockNumber, transaction_hash: created.hash },
      status: "running",
      instance_protocol: [],
      head: { seq: -1, state_hash: instance },
      terminated: null,
    };
    await this.publish(protocol);

    let head = instance;
    let seq = 0;
    let status: Exclude<InstanceStatus, "running"> = "aborted";
    // Receipts confirm in nonce order; entries are appended as they confirm, in the same order.
    let confirmed: Promise<void> = Promise.resolve();
    let failure: unknown;
    try {
      for await (const event of engine.run(model, { input, executionName: instance.slice(0, 40) })) {
        if (failure !== undefined) throw failure;
        const data = this.stateData(instance, seq, event);
        const bytes = stateDataBytes(data);
        const limit = this.options.maxStateBytes ?? DEFAULT_MAX_STATE_BYTES;
        if (bytes.length > limit) {
          throw new StatetrailError("INPUT_TOO_LARGE", `state ${data.state_name} has ${bytes.length} bytes of data`, {
            hint: `raise the limit (--max-state-bytes, now ${limit}) or keep large payloads out of state data`,
          });
        }
        const hash = computeStateHash(data);
        home.writeState(hash, bytes);
        journal.append({ type: "intent", seq, state_hash: hash, prev_state_hash: head });
        const tx = await this.instances.registerState.populateTransaction(
          toBytes32(instance),
          toBytes32(hash),
          toBytes32(head),
        );
        const sent = await this.sender.send(tx, `registerState #${seq} ${data.state_name}`);
        const entry = { seq, data, hash, prev: head };
        confirmed = confirmed.then(async () => {
          const receipt = await sent.receipt;
          journal.append({ type: "registered", seq, transaction_hash: receipt.hash, block_nr: receipt.blockNumber });
          protocol.instance_protocol.push(await this.entry(entry, receipt));
          protocol.head = { seq: entry.seq, state_hash: entry.hash };
          await this.publish(protocol);
        });
        // Stop at the first failed registration instead of at the end of a long run.
        confirmed.catch((error: unknown) => {
          failure ??= error;
        });
        head = hash;
        seq += 1;
        if (event.kind === "end") status = event.status;
      }
      await confirmed;
    } catch (error) {
      await confirmed.catch(() => undefined);
      journal.append({ type: "error", message: (error as Error).message });
      journal.close();
      throw error;
    }

    const terminateTx = await this.instances.terminateInstance.populateTransaction(
      toBytes32(instance),
      toBytes32(head),
      CHAIN_STATUS[status],
    );
    const terminated = await this.sender.sendAndWait(terminateTx, "terminateInstance");
    journal.append({ type: "terminated", status, transaction_hash: terminated.hash, block_nr: terminated.blockNumber });
    journal.close();
    protocol.status = status;
    protocol.terminated = { block_nr: terminated.blockNumber, transaction_hash: terminated.hash };
    this.log(`instance ${instance} ${status} after ${seq} states`);
    return this.publish(protocol);
  }

  private stateData(instance: HexHash, seq: number, event: EngineEvent): StateData {
    if (event.kind === "end") {
      const type = { succeeded: "ExecutionSucceeded", failed: "ExecutionFailed", aborted: "ExecutionAborted" } as const;
      return {
        statetrail_state: 1,
        instance_hash: instance,
        seq,
        state_name: EXECUTION_END_STATE,
        state_type: type[event.status],
        iteration_path: [],
        attempt: 0,
        input: event.output ?? null,
        error: event.error,
      };
    }
    return {
      statetrail_state: 1,
      instance_hash: instance,
      seq,
      state_name: event.name,
      state_type: event.type,
      iteration_path: event.iterationPath,
      attempt: event.attempt,
      input: event.input ?? null,
      error: event.caughtError,
    };
  }

  private async entry(
    entry: { seq: number; data: StateData; hash: HexHash; prev: HexHash },
    receipt: TransactionReceipt,
  ): Promise<ProtocolEntry> {
    const block = await this.block(receipt.blockNumber);
    return {
      event_type: "Register State",
      seq: entry.seq,
      state_name: entry.data.state_name,
      state_type: entry.data.state_type,
      state_hash: entry.hash,
      prev_state_hash: entry.prev,
      timestamp: block.timestamp,
      block_nr: receipt.blockNumber,
      client_address: receipt.from,
      transaction_hash: receipt.hash,
      state_data: `${this.options.identity.url}/states/${entry.hash}`,
      proof: null,
    };
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

  private async publish(protocol: UnsignedProtocol): Promise<InstanceProtocol> {
    const signed = await signProtocol(structuredClone(protocol), this.options.signer);
    this.options.home.writeProtocol(signed);
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
        { hint: "register it with: statetrail identity init (or identity rotate)" },
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
    return JSON.parse(decoded);
  } catch (error) {
    throw new StatetrailError("INVALID_JSON", `input is not valid JSON: ${(error as Error).message}`, {
      cause: error,
      hint: "pass a JSON document, e.g. --input '{\"orderId\": 1}' or --input ./input.json",
    });
  }
}
