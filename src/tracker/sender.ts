import {
  type ContractTransaction,
  type TransactionReceipt,
  type TransactionRequest,
  type Provider,
  type Signer,
  Interface,
  isError,
} from "ethers";
import { StatetrailError } from "../errors";

export interface SentTransaction {
  hash: string;
  nonce: number;
  /** The receipt once the transaction is in a block (one confirmation). Rejects if it reverted. */
  mined: Promise<TransactionReceipt>;
  /** The receipt once the transaction has the configured number of confirmations: final for the tracker. */
  receipt: Promise<TransactionReceipt>;
}

export interface SendOptions {
  /**
   * The gas limit. Give it for transactions that depend on others still in flight: the node estimates
   * against its latest state, where the head they extend may not exist yet. Without it the node estimates
   * (and a revert is explained before anything is sent).
   */
  gasLimit?: bigint;
}

export interface SenderOptions {
  /** Transactions sent and not yet final, at most. */
  maxInFlight: number;
  /** Blocks a transaction needs (its own included) to be final. */
  confirmations: number;
  /** Contract interfaces whose custom errors explain reverts. */
  errorInterfaces: Interface[];
  /** How long fee data is reused before it is read again (default 10 s). */
  feeTtlMs?: number;
}

type Fees = Pick<TransactionRequest, "gasPrice" | "maxFeePerGas" | "maxPriorityFeePerGas">;

/** A transaction with its nonce, signed (`raw`) or to be sent through the signer; `release` frees its slot. */
interface Ready {
  nonce: number;
  request: TransactionRequest;
  raw: string | null;
  release(): void;
}

/** A provider that takes raw JSON-RPC calls (ethers' JsonRpcProvider). */
interface RawCapable {
  send(method: string, params: unknown[]): Promise<unknown>;
}

function isRawCapable(provider: Provider): boolean {
  return typeof (provider as unknown as Partial<RawCapable>).send === "function";
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Sends the tracker's transactions with nonces it manages itself, so several can be in flight at once
 * while their order on chain stays the order they were sent in (a nonce can't be mined before the one
 * below it). Transactions are signed ahead (the next is signed while the one before is on its way) and
 * reach the node strictly in nonce order: a node that mines on arrival refuses a nonce gap. Receipts are
 * polled for with the configured number of confirmations. Fee data is read once and reused for `feeTtlMs`.
 */
export class TransactionSender {
  private nextNonce: number | undefined;
  private readonly inFlight = new Set<Promise<unknown>>();
  private fees: { value: Fees; at: number } | undefined;
  private chainId: bigint | undefined;
  /** Serialises nonce assignment and signing. */
  private signing: Promise<unknown> = Promise.resolve();
  /** Serialises broadcasts: each transaction reaches the node after the one before it was accepted. */
  private broadcasting: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly signer: Signer,
    private readonly options: SenderOptions,
  ) {
    if (!Number.isInteger(options.maxInFlight) || options.maxInFlight < 1) {
      throw new StatetrailError("INVALID_ARGUMENT", "--max-in-flight must be at least 1");
    }
    if (!Number.isInteger(options.confirmations) || options.confirmations < 1) {
      throw new StatetrailError("INVALID_ARGUMENT", "--confirmations must be at least 1");
    }
  }

  get provider(): Provider {
    const provider = this.signer.provider;
    if (!provider) throw new StatetrailError("INTERNAL", "the tracker's signer has no provider");
    return provider;
  }

  get confirmations(): number {
    return this.options.confirmations;
  }

  /** Transactions sent and not yet final. */
  get pending(): number {
    return this.inFlight.size;
  }

  /**
   * Sends `tx` with the next nonce; waits first while `maxInFlight` transactions are not final. Resolves once
   * the node has accepted the transaction; `mined` and `receipt` settle later.
   */
  send(tx: ContractTransaction, what: string, options: SendOptions = {}): Promise<SentTransaction> {
    const signed = this.signing.then(() => this.sign(tx, what, options));
    this.signing = signed.catch(() => undefined);
    const accepted = Promise.all([signed, this.broadcasting]).then(([ready]) => this.broadcast(ready, what));
    this.broadcasting = accepted.catch(() => undefined);
    return accepted.then((sent) => this.track(tx, sent, what, options));
  }

  /** Sends and waits for the final receipt. */
  async sendAndWait(tx: ContractTransaction, what: string, options: SendOptions = {}): Promise<TransactionReceipt> {
    return (await this.send(tx, what, options)).receipt;
  }

  /** Takes the next nonce once there is room in flight, and signs (or, for signers that can't, prepares). */
  private async sign(tx: ContractTransaction, what: string, options: SendOptions): Promise<Ready> {
    while (this.inFlight.size >= this.options.maxInFlight) await Promise.race(this.inFlight);
    if (this.nextNonce === undefined) {
      this.nextNonce = await this.provider.getTransactionCount(await this.signer.getAddress(), "pending");
    }
    const nonce = this.nextNonce++;
    // A slot is taken now, so that the limit also counts transactions signed and not yet broadcast.
    let release!: () => void;
    const slot = new Promise<void>((resolve) => (release = resolve));
    this.inFlight.add(slot);
    void slot.finally(() => this.inFlight.delete(slot));
    try {
      const request: TransactionRequest = { ...tx, ...(await this.feeData()), nonce, gasLimit: options.gasLimit };
      if (options.gasLimit === undefined || !isRawCapable(this.provider)) return { nonce, request, raw: null, release };
      this.chainId ??= (await this.provider.getNetwork()).chainId;
      let raw: string | null = null;
      try {
        raw = await this.signer.signTransaction({ ...request, chainId: this.chainId });
      } catch (error) {
        if (!isError(error, "UNSUPPORTED_OPERATION")) throw error; // a node-managed account: it signs
      }
      return { nonce, request, raw, release };
    } catch (error) {
      release();
      this.nextNonce = undefined;
      throw this.explain(error, what);
    }
  }

  private async broadcast(ready: Ready, what: string): Promise<{ hash: string; nonce: number; release(): void }> {
    try {
      const hash = ready.raw
        ? ((await (this.provider as unknown as RawCapable).send("eth_sendRawTransaction", [ready.raw])) as string)
        : (await this.signer.sendTransaction(ready.request)).hash;
      return { hash, nonce: ready.nonce, release: ready.release };
    } catch (error) {
      ready.release();
      if (/underpriced|fee cap|max fee|too low/i.test(errorMessage(error))) this.fees = undefined;
      this.nextNonce = undefined; // re-read from the node: the nonce may not have been used
      throw this.explain(error, what);
    }
  }

  private track(
    tx: ContractTransaction,
    accepted: { hash: string; nonce: number; release(): void },
    what: string,
    options: SendOptions,
  ): SentTransaction {
    const { hash, nonce } = accepted;
    const check = (receipt: TransactionReceipt): TransactionReceipt | Promise<never> =>
      receipt.status === 1 ? receipt : this.failure(tx, receipt, what, options.gasLimit);
    const mined = this.waitForReceipt(hash, 1, what).then(check);
    const receipt =
      this.options.confirmations <= 1
        ? mined
        : mined.then(() => this.waitForReceipt(hash, this.options.confirmations, what)).then(check);
    // Callers that only await `receipt` must not see an unhandled rejection of `mined`.
    mined.catch(() => undefined);
    void receipt.catch(() => undefined).finally(accepted.release);
    return { hash, nonce, mined, receipt };
  }

  /** Polls for the receipt until it has `confirmations` blocks (its own included). */
  private async waitForReceipt(hash: string, confirmations: number, what: string): Promise<TransactionReceipt> {
    const pollMs = (this.provider as { pollingInterval?: number }).pollingInterval ?? 1_000;
    for (let failures = 0; ;) {
      try {
        const receipt = await this.provider.getTransactionReceipt(hash);
        if (receipt) {
          if (confirmations <= 1) return receipt;
          const latest = await this.provider.getBlockNumber();
          if (latest - receipt.blockNumber + 1 >= confirmations) return receipt;
        }
        failures = 0;
      } catch (error) {
        if (++failures > 5) throw this.explain(error, what);
      }
      await sleep(pollMs);
    }
  }

  /** EIP-1559 fees (or a legacy gas price), read once per `feeTtlMs` instead of before every transaction. */
  private async feeData(): Promise<Fees> {
    const ttl = this.options.feeTtlMs ?? 10_000;
    if (this.fees && Date.now() - this.fees.at < ttl) return this.fees.value;
    const data = await this.provider.getFeeData();
    const value: Fees =
      data.maxFeePerGas !== null && data.maxPriorityFeePerGas !== null
        ? { maxFeePerGas: data.maxFeePerGas, maxPriorityFeePerGas: data.maxPriorityFeePerGas }
        : { gasPrice: data.gasPrice };
    this.fees = { value, at: Date.now() };
    return value;
  }

  /** Rejects with why a mined transaction failed: out of gas, or the revert replayed as a call at its block. */
  private async failure(
    tx: ContractTransaction,
    receipt: TransactionReceipt,
    what: string,
    gasLimit: bigint | undefined,
  ): Promise<never> {
    const base = `${what}: transaction ${receipt.hash} failed in block ${receipt.blockNumber}`;
    if (gasLimit !== undefined && receipt.gasUsed >= gasLimit) {
      throw new StatetrailError("TX_FAILED", `${base}: it ran out of gas (limit ${gasLimit})`);
    }
    let replayed: unknown;
    try {
      await this.provider.call({ ...tx, from: receipt.from, blockTag: receipt.blockNumber - 1 });
    } catch (error) {
      replayed = error;
    }
    if (replayed === undefined) throw new StatetrailError("TX_FAILED", base);
    const explained = this.explain(replayed, what);
    throw new StatetrailError("TX_FAILED", `${base}: ${explained.message.replace(`${what}: `, "")}`, {
      cause: replayed,
    });
  }

  /** Turns a provider or revert error into a coded error naming the contract's custom error. */
  explain(error: unknown, what: string): StatetrailError {
    if (error instanceof StatetrailError) return error;
    const err = error as { code?: string; shortMessage?: string; message?: string; data?: string; info?: unknown };
    if (err.code === "INSUFFICIENT_FUNDS" || /insufficient funds|doesn't have enough funds/i.test(err.message ?? "")) {
      return new StatetrailError("INSUFFICIENT_FUNDS", `${what}: the issuer's account cannot pay for gas`, {
        cause: error,
        hint: "fund the issuer address shown by `statetrail identity show`",
      });
    }
    const data = findRevertData(error);
    if (data) {
      for (const iface of this.options.errorInterfaces) {
        const parsed = iface.parseError(data);
        if (parsed) {
          const args = parsed.args.map((arg) => String(arg)).join(", ");
          return new StatetrailError("TX_FAILED", `${what}: reverted with ${parsed.name}(${args})`, { cause: error });
        }
      }
    }
    if (err.code === "ECONNREFUSED" || /ECONNREFUSED|connect|network/i.test(err.message ?? "")) {
      return new StatetrailError("RPC_UNREACHABLE", `${what}: ${err.shortMessage ?? err.message}`, {
        cause: error,
        hint: "check that the RPC endpoint is running (statetrail node) and reachable",
      });
    }
    return new StatetrailError("TX_FAILED", `${what}: ${err.shortMessage ?? err.message ?? String(error)}`, {
      cause: error,
    });
  }
}

function errorMessage(error: unknown): string {
  const err = error as { shortMessage?: string; message?: string };
  return `${err.shortMessage ?? ""} ${err.message ?? ""}`;
}

function findRevertData(error: unknown, depth = 0): string | undefined {
  if (!error || typeof error !== "object" || depth > 5) return undefined;
  const record = error as Record<string, unknown>;
  if (typeof record.data === "string" && record.data.startsWith("0x") && record.data.length >= 10) return record.data;
  for (const key of ["error", "info", "cause", "data"]) {
    const found = findRevertData(record[key], depth + 1);
    if (found) return found;
  }
  return undefined;
}
