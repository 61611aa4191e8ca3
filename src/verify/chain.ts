import { getAddress, isError, ZeroAddress, type Provider } from "ethers";
import { fromBytes32, toBytes32, type HexHash } from "../chain/hash";
import { type Deployment } from "../chain/deployments";
import { StatetrailError, type ErrorCode } from "../errors";
import { type InstanceStatus, type Registries } from "../protocol/schema";
import {
  ICertificateRegistry__factory,
  IInstanceRegistry__factory,
  IModelRegistry__factory,
  type ICertificateRegistry,
  type IInstanceRegistry,
  type IModelRegistry,
} from "../../typechain-types";
import {
  decodeInstanceLogs,
  directGetLogs,
  instanceEventStream,
  readInstanceEvents,
  statusFromChain,
  type InstanceEvent,
  type LogReaderOptions,
} from "./logs";

/**
 * Where the verifier's trust comes from: the chain id and registry addresses given by the caller
 * (a `deployments/<network>/` record or explicit flags), never taken from the protocol.
 */
export interface TrustedSetup {
  chainId: number;
  registries: Registries;
  /** Where these came from, for the report ("deployments/localhost", "--registries"). */
  source: string;
}

export function trustedFromDeployment(
  deployment: Deployment,
  source = `deployments/${deployment.network}`,
): TrustedSetup {
  return {
    chainId: deployment.chainId,
    registries: {
      model: deployment.contracts.ModelRegistry.address,
      certificate: deployment.contracts.CertificateRegistry.address,
      instance: deployment.contracts.InstanceRegistry.address,
    },
    source,
  };
}

/** The chain as of one block: every read of a verification is pinned to it. */
export interface ChainSnapshot {
  chainId: number;
  blockNumber: number;
  timestamp: number;
  /** The block's hash, as read with it (for the report's `checked_against`). */
  blockHash?: string | null;
}

export interface CertificateRecord {
  holder: string | null;
  notBefore: number;
  notAfter: number;
  /** 0 when not revoked. */
  revokedAt: number;
}

export interface ModelRecord {
  registrant: string | null;
  timestamp: number;
  blockNumber: number;
}

export interface TransactionEvents {
  /** Whether the transaction exists (is mined) on this chain. */
  found: boolean;
  from: string | null;
  blockNumber: number | null;
  /** The InstanceRegistry events it emitted (from the trusted registry only). */
  events: InstanceEvent[];
}

/** Block timestamps remembered at once: enough for the blocks a page of states names, bounded at any size. */
const BLOCK_TIMES_KEPT = 4096;
/**
 * Blocks of the stream's first eth_getLogs call (logs.ts firstChunkSize): 8 blocks of 1,000-state transactions
 * hold 512 KB of log data (the reader's dense-chunk mark); a sparse instance's chunks double from there to the
 * configured size.
 */
const STREAM_FIRST_CHUNK = 8;

/**
 * Read access to the trusted registries, memoized and pinned to the block seen first. Every failure is a
 * StatetrailError: RPC_UNREACHABLE (the node can't be reached or keeps failing), WRONG_CHAIN (it serves
 * another chain than the trusted one), VERIFY_INCOMPLETE (a call that should work did not).
 */
export class ChainView {
  private snapshotPromise?: Promise<ChainSnapshot>;
  private readonly memo = new Map<string, Promise<unknown>>();
  private readonly instances: IInstanceRegistry;
  private readonly certificates: ICertificateRegistry;
  private readonly models: IModelRegistry;
  /** Count of RPC requests made through this view (for tests and reports). */
  requests = 0;

  constructor(
    readonly provider: Provider,
    readonly trusted: TrustedSetup,
    readonly logOptions: LogReaderOptions = {},
  ) {
    this.instances = IInstanceRegistry__factory.connect(trusted.registries.instance, provider);
    this.certificates = ICertificateRegistry__factory.connect(trusted.registries.certificate, provider);
    this.models = IModelRegistry__factory.connect(trusted.registries.model, provider);
  }

  /** The chain id and latest block, read once. Rejects with RPC_UNREACHABLE or WRONG_CHAIN. */
  snapshot(): Promise<ChainSnapshot> {
    this.snapshotPromise ??= (async () => {
      // Both asked for at once (one round trip); the block is used only once the chain is known to be the trusted one.
      const latest = this.rpc("latest block", () => this.provider.getBlock("latest"), "RPC_UNREACHABLE");
      latest.catch(() => undefined); // awaited below unless the chain is the wrong one
      const network = await this.rpc("eth_chainId", () => this.provider.getNetwork(), "RPC_UNREACHABLE");
      const chainId = Number(network.chainId);
      if (chainId !== this.trusted.chainId) {
        throw new StatetrailError(
          "WRONG_CHAIN",
          `the RPC endpoint serves chain ${chainId}, the trusted deployment (${this.trusted.source}) is on chain ${this.trusted.chainId}`,
          { hint: "point the RPC URL at the network the registries are deployed on" },
        );
      }
      const block = await latest;
      if (!block) throw new StatetrailError("RPC_UNREACHABLE", "the RPC endpoint returned no latest block");
      return { chainId, blockNumber: block.number, timestamp: block.timestamp, blockHash: block.hash };
    })();
    return this.snapshotPromise;
  }

  /** The contract code at `address` at the pinned block ("0x" if none), read once. */
  async codeAt(address: string): Promise<string> {
    const { blockNumber } = await this.snapshot();
    return this.once(`code:${getAddress(address)}`, () =>
      this.rpc(`eth_getCode ${address}`, () => this.provider.getCode(address, blockNumber)),
    );
  }

  /** The ModelRegistry the trusted InstanceRegistry checks models against. */
  async linkedModelRegistry(): Promise<string> {
    const { blockNumber } = await this.snapshot();
    return this.once("linked-model-registry", async () =>
      getAddress(
        await this.rpc("InstanceRegistry.modelRegistry", () => this.instances.modelRegistry({ blockTag: blockNumber })),
      ),
    );
  }

  async instanceOf(
    issuer: string,
    instanceHash: HexHash,
  ): Promise<{ head: HexHash | null; status: InstanceStatus | "none" }> {
    const { blockNumber } = await this.snapshot();
    return this.once(`instance:${issuer}:${instanceHash}`, async () => {
      const [head, status] = await this.rpc("InstanceRegistry.instanceOf", () =>
        this.instances.instanceOf(issuer, toBytes32(instanceHash), { blockTag: blockNumber }),
      );
      const wire = fromBytes32(head);
      return { head: /^0+$/.test(wire) ? null : wire, status: statusFromChain(status) };
    });
  }

  /** The registration of `fingerprint` for `holder` (registrations are namespaced by holder). */
  async certificateOf(fingerprint: HexHash, holder: string): Promise<CertificateRecord> {
    const { blockNumber } = await this.snapshot();
    return this.once(`certificate:${holder.toLowerCase()}:${fingerprint}`, async () => {
      const [certificate, revokedAt] = await this.rpc("CertificateRegistry.certificateOf", () =>
        this.certificates.certificateOf(toBytes32(fingerprint), holder, { blockTag: blockNumber }),
      );
      return {
        holder: certificate.holder === ZeroAddress ? null : getAddress(certificate.holder),
        notBefore: Number(certificate.notBefore),
        notAfter: Number(certificate.notAfter),
        revokedAt: Number(revokedAt),
      };
    });
  }

  async modelOf(modelHash: HexHash): Promise<ModelRecord> {
    const { blockNumber } = await this.snapshot();
    return this.once(`model:${modelHash}`, async () => {
      const model = await this.rpc("ModelRegistry.modelOf", () =>
        this.models.modelOf(toBytes32(modelHash), { blockTag: blockNumber }),
      );
      return {
        registrant: model.registrant === ZeroAddress ? null : getAddress(model.registrant),
        timestamp: Number(model.timestamp),
        blockNumber: Number(model.blockNumber),
      };
    });
  }

  /** `reader`'s getLogs, each call counted in `requests`. */
  private counted(reader: Pick<Provider, "getLogs">): Pick<Provider, "getLogs"> {
    return {
      getLogs: (filter) => {
        this.requests += 1;
        return reader.getLogs(filter);
      },
    };
  }

  /** Every event of the instance from `fromBlock` to the pinned block, through the chunked logs reader. */
  async instanceEvents(issuer: string, instanceHash: HexHash, fromBlock: number): Promise<InstanceEvent[]> {
    const { blockNumber } = await this.snapshot();
    return this.once(`events:${issuer}:${instanceHash}:${fromBlock}`, () => {
      if (fromBlock > blockNumber) return Promise.resolve([]);
      return readInstanceEvents(
        this.counted(this.provider),
        this.trusted.registries.instance,
        issuer,
        instanceHash,
        fromBlock,
        blockNumber,
        this.logOptions,
      );
    });
  }

  /**
   * Every event of the instance from `fromBlock` to the pinned block, read one `eth_getLogs` chunk at a time and
   * yielded in chain order, nothing kept: what the verifier's pass consumes (memory bounded by a chunk).
   */
  async *instanceEventsStream(issuer: string, instanceHash: HexHash, fromBlock: number): AsyncGenerator<InstanceEvent> {
    const { blockNumber } = await this.snapshot();
    if (fromBlock > blockNumber) return;
    // The stream reads the most log data: straight over HTTP where the provider allows (logs.ts).
    yield* instanceEventStream(
      this.counted(directGetLogs(this.provider) ?? this.provider),
      this.trusted.registries.instance,
      issuer,
      instanceHash,
      fromBlock,
      blockNumber,
      {
        ...this.logOptions,
        firstChunkSize: this.logOptions.firstChunkSize ?? STREAM_FIRST_CHUNK,
      },
    );
  }

  private readonly blockTimes = new Map<number, Promise<number | null>>();

  /** The timestamp of block `number` (the most recent {@link BLOCK_TIMES_KEPT} blocks asked for are remembered). */
  async blockTimestamp(number: number): Promise<number | null> {
    let time = this.blockTimes.get(number);
    if (!time) {
      time = this.rpc(`block ${number}`, () => this.provider.getBlock(number)).then((block) =>
        block ? block.timestamp : null,
      );
      time.catch(() => this.blockTimes.delete(number));
      this.blockTimes.set(number, time);
      if (this.blockTimes.size > BLOCK_TIMES_KEPT) {
        this.blockTimes.delete(this.blockTimes.keys().next().value as number);
      }
    }
    return time;
  }

  /** What a transaction did in the trusted InstanceRegistry; for explaining an event that is not where claimed. */
  async transactionEvents(transactionHash: string): Promise<TransactionEvents> {
    const { blockNumber: pinned } = await this.snapshot();
    return this.once(`tx:${transactionHash.toLowerCase()}`, async () => {
      const receipt = await this.rpc(`receipt ${transactionHash}`, () =>
        this.provider.getTransactionReceipt(transactionHash),
      );
      if (!receipt || receipt.blockNumber > pinned) return { found: false, from: null, blockNumber: null, events: [] };
      return {
        found: true,
        from: getAddress(receipt.from),
        blockNumber: receipt.blockNumber,
        events: decodeInstanceLogs(receipt.logs, this.trusted.registries.instance),
      };
    });
  }

  private once<T>(key: string, load: () => Promise<T>): Promise<T> {
    let promise = this.memo.get(key) as Promise<T> | undefined;
    if (!promise) {
      promise = load();
      this.memo.set(key, promise);
    }
    return promise;
  }

  private async rpc<T>(what: string, call: () => Promise<T>, fallback: ErrorCode = "VERIFY_INCOMPLETE"): Promise<T> {
    this.requests += 1;
    try {
      return await call();
    } catch (error) {
      throw chainError(error, what, fallback);
    }
  }
}

/** Maps an error from ethers onto RPC_UNREACHABLE (transport) or `fallback` (a call that returned nonsense). */
export function chainError(error: unknown, what: string, fallback: ErrorCode = "VERIFY_INCOMPLETE"): StatetrailError {
  if (error instanceof StatetrailError) return error;
  const message =
    (error as { shortMessage?: string }).shortMessage ?? (error instanceof Error ? error.message : String(error));
  const code =
    (error as { code?: unknown; cause?: { code?: unknown } }).cause?.code ?? (error as { code?: unknown }).code;
  if (
    isError(error, "NETWORK_ERROR") ||
    isError(error, "SERVER_ERROR") ||
    isError(error, "TIMEOUT") ||
    code === "ECONNREFUSED" ||
    code === "ECONNRESET" ||
    code === "ENOTFOUND"
  ) {
    return new StatetrailError("RPC_UNREACHABLE", `${what}: ${message}`, { cause: error });
  }
  if (isError(error, "CALL_EXCEPTION") || isError(error, "BAD_DATA")) {
    return new StatetrailError(
      "VERIFY_INCOMPLETE",
      `${what} failed: ${message} (is the registry deployed on this chain?)`,
      {
        cause: error,
      },
    );
  }
  return new StatetrailError(fallback, `${what}: ${message}`, { cause: error });
}
