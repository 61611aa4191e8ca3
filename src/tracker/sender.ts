import {
  type BigNumberish,
  type ContractTransaction,
  type TransactionReceipt,
  type TransactionRequest,
  type Provider,
  type Signer,
  Interface,
  isError,
  keccak256,
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
  /**
   * How long a transaction may wait for its block before it is looked up in the node's pool: one the node
   * dropped (or a reorg took out of the chain) is sent again, same bytes and nonce; one still waiting there is
   * replaced with the same nonce and bumped fees (default 30 s).
   */
  resendAfterMs?: number;
}

type Fees = Pick<TransactionRequest, "gasPrice" | "maxFeePerGas" | "maxPriorityFeePerGas">;

/** A transaction with its nonce, signed (`raw`) or to be sent through the signer; `release` frees its slot. */
interface Ready {
  nonce: number;
  request: TransactionRequest;
  raw: string | null;
  release(): void;
}

/** A transaction the node accepted. */
interface Accepted {
  hash: string;
  nonce: number;
  release(): void;
  ready: Ready;
}

/** A transaction on its way to a block: its hashes (a fee bump adds one) and what can sign it again. */
interface Attempt {
  hashes: string[];
  ready: Ready;
  /** When it was sent or last seen in a block. */
  since: number;
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
      // Without a gas limit the node estimates (a revert is explained before anything is sent), so that this
      // transaction too is signed here and its hash is known before it is sent.
      const gasLimit =
        options.gasLimit ?? (isRawCapable(this.provider) ? ((await this.signer.estimateGas(tx)) * 6n) / 5n : undefined);
      const request: TransactionRequest = { ...tx, ...(await this.feeData()), nonce, gasLimit };
      if (gasLimit === undefined || !isRawCapable(this.provider)) return { nonce, request, raw: null, release };
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

  private async broadcast(ready: Ready, what: string): Promise<Accepted> {
    try {
      const hash = ready.raw
        ? ((await (this.provider as unknown as RawCapable).send("eth_sendRawTransaction", [ready.raw])) as string)
        : (await this.signer.sendTransaction(ready.request)).hash;
      return { hash, nonce: ready.nonce, release: ready.release, ready };
    } catch (error) {
      const taken = await this.nonceTaken(ready, error);
      if (taken === "ours") return { hash: keccak256(ready.raw!), nonce: ready.nonce, release: ready.release, ready };
      ready.release();
      if (taken === "another") {
        this.nextNonce = undefined;
        throw this.nonceConflict(ready.nonce, what, error);
      }
      if (/underpriced|fee cap|max fee|too low/i.test(errorMessage(error))) this.fees = undefined;
      this.nextNonce = undefined; // re-read from the node: the nonce may not have been used
      throw this.explain(error, what);
    }
  }

  /**
   * Whether the nonce of a transaction the node refused is used: by this very transaction ("ours": an earlier
   * attempt reached the node, e.g. a request resent after a dropped connection), by another one ("another":
   * another process signs with this key), or not known to be used (null).
   */
  private async nonceTaken(ready: Ready, error: unknown): Promise<"ours" | "another" | null> {
    if (
      !/nonce too low|nonce has already been used|already known|known transaction|replacement/i.test(
        errorMessage(error),
      )
    ) {
      return null;
    }
    if (ready.raw) {
      const ours = await this.provider.getTransaction(keccak256(ready.raw)).catch(() => null);
      if (ours) return "ours";
    }
    return "another";
  }

  private nonceConflict(nonce: number, what: string, cause?: unknown): StatetrailError {
    return new StatetrailError(
      "TX_FAILED",
      `${what}: nonce ${nonce} of the issuer's account was used by another transaction (${errorMessage(cause).trim().slice(0, 120) || "not this one"})`,
      {
        cause,
        hint:
          "another process uses this key: run one tracker per key (stop the other one), then finish the " +
          "instance with: statetrail run --resume <instance>",
      },
    );
  }

  private track(tx: ContractTransaction, accepted: Accepted, what: string, options: SendOptions): SentTransaction {
    const { hash, nonce } = accepted;
    const check = (receipt: TransactionReceipt): TransactionReceipt | Promise<never> =>
      receipt.status === 1 ? receipt : this.failure(tx, receipt, what, options.gasLimit);
    // Every hash this transaction has had (a fee bump replaces it); the first mined one counts.
    const attempt: Attempt = { hashes: [hash], ready: accepted.ready, since: Date.now() };
    const mined = this.waitForReceipt(attempt, 1, what).then(check);
    const receipt =
      this.options.confirmations <= 1
        ? mined
        : mined.then(() => this.waitForReceipt(attempt, this.options.confirmations, what)).then(check);
    // Callers that only await `receipt` must not see an unhandled rejection of `mined`.
    mined.catch(() => undefined);
    void receipt.catch(() => undefined).finally(accepted.release);
    return { hash, nonce, mined, receipt };
  }

  /**
   * Polls for the receipt until it has `confirmations` blocks (its own included). The receipt is read again on
   * every poll, so a reorg that moves the transaction is followed; one that drops it (or a node that drops it
   * from its pool) gets it sent again after `resendAfterMs` without a block, see {@link resend}.
   */
  private async waitForReceipt(attempt: Attempt, confirmations: number, what: string): Promise<TransactionReceipt> {
    const pollMs = (this.provider as { pollingInterval?: number }).pollingInterval ?? 1_000;
    for (let failures = 0; ;) {
      try {
        for (const hash of attempt.hashes) {
          const receipt = await this.provider.getTransactionReceipt(hash);
          if (receipt) {
            attempt.since = Date.now();
            if (confirmations <= 1) return receipt;
            const latest = await this.provider.getBlockNumber();
            if (latest - receipt.blockNumber + 1 >= confirmations) return receipt;
            break;
          }
        }
        if (Date.now() - attempt.since >= (this.options.resendAfterMs ?? 30_000)) await this.resend(attempt, what);
        failures = 0;
      } catch (error) {
        if (error instanceof StatetrailError || ++failures > 5) throw this.explain(error, what);
      }
      await sleep(pollMs);
    }
  }

  /**
   * A transaction still without a block after `resendAfterMs`: if the node no longer knows it (dropped from
   * its pool, or taken out of the chain by a reorg) it is sent again with the same bytes; if it waits in the
   * pool (underpriced), it is replaced with the same nonce and fees bumped by a quarter. A nonce used by
   * another transaction is refused (another process uses this key).
   */
  private async resend(attempt: Attempt, what: string): Promise<void> {
    attempt.since = Date.now();
    const ready = attempt.ready;
    if (!ready?.raw || !isRawCapable(this.provider)) return;
    const provider = this.provider as unknown as RawCapable;
    const known = await Promise.all(attempt.hashes.map((hash) => this.provider.getTransaction(hash)));
    const from = await this.signer.getAddress();
    if (known.every((tx) => tx === null)) {
      const used = await this.provider.getTransactionCount(from, "latest");
      if (used > ready.nonce) throw this.nonceConflict(ready.nonce, what); // none of ours was mined at it
      try {
        await provider.send("eth_sendRawTransaction", [ready.raw]);
        return;
      } catch (error) {
        if ((await this.nonceTaken(ready, error)) === "ours") return;
        if (!/underpriced|fee cap|max fee|too low/i.test(errorMessage(error))) throw this.explain(error, what);
      }
    }
    const bump = (value: BigNumberish | null | undefined): bigint | undefined =>
      value === null || value === undefined ? undefined : (BigInt(value) * 5n) / 4n + 1n;
    const request: TransactionRequest = {
      ...ready.request,
      gasPrice: bump(ready.request.gasPrice),
      maxFeePerGas: bump(ready.request.maxFeePerGas),
      maxPriorityFeePerGas: bump(ready.request.maxPriorityFeePerGas),
    };
    this.chainId ??= (await this.provider.getNetwork()).chainId;
    const raw = await this.signer.signTransaction({ ...request, chainId: this.chainId });
    try {
      const hash = (await provider.send("eth_sendRawTransaction", [raw])) as string;
      attempt.ready = { ...ready, request, raw };
      attempt.hashes.push(hash);
      this.fees = undefined;
    } catch (error) {
      const taken = await this.nonceTaken({ ...ready, raw }, error);
      if (taken === "another" && !/replacement/i.test(errorMessage(error)))
        throw this.nonceConflict(ready.nonce, what, error);
      // A replacement refused as underpriced: the next round bumps again from the same fees.
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
