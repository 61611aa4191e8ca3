import { type ContractTransaction, type TransactionReceipt, type Provider, type Signer, Interface } from "ethers";
import { StatetrailError } from "../errors";

export interface SentTransaction {
  hash: string;
  nonce: number;
  receipt: Promise<TransactionReceipt>;
}

/**
 * Sends the tracker's transactions with nonces it manages itself, so several can be in flight at once
 * while their order on chain stays the order they were sent in (a nonce can't be mined before the one
 * below it). Receipts are awaited with the configured number of confirmations.
 */
export class TransactionSender {
  private nextNonce: number | undefined;
  private readonly inFlight = new Set<Promise<unknown>>();

  constructor(
    private readonly signer: Signer,
    private readonly options: { maxInFlight: number; confirmations: number; errorInterfaces: Interface[] },
  ) {}

  get provider(): Provider {
    const provider = this.signer.provider;
    if (!provider) throw new StatetrailError("INTERNAL", "the tracker's signer has no provider");
    return provider;
  }

  /** Sends `tx` with the next nonce; waits first while `maxInFlight` transactions are unconfirmed. */
  async send(tx: ContractTransaction, what: string): Promise<SentTransaction> {
    while (this.inFlight.size >= this.options.maxInFlight) await Promise.race(this.inFlight);
    if (this.nextNonce === undefined) {
      this.nextNonce = await this.provider.getTransactionCount(await this.signer.getAddress(), "pending");
    }
    const nonce = this.nextNonce++;
    let response;
    try {
      response = await this.signer.sendTransaction({ ...tx, nonce });
    } catch (error) {
      this.nextNonce = undefined; // re-read from the node: the nonce may not have been used
      throw this.explain(error, what);
    }
    const receipt = response.wait(this.options.confirmations).then(
      (mined) => {
        if (!mined || mined.status !== 1)
          throw new StatetrailError("TX_FAILED", `${what}: transaction ${response.hash} failed`);
        return mined;
      },
      (error: unknown) => {
        throw this.explain(error, what);
      },
    );
    const tracked = receipt.catch(() => undefined).finally(() => this.inFlight.delete(tracked));
    this.inFlight.add(tracked);
    return { hash: response.hash, nonce, receipt };
  }

  /** Sends and waits for the receipt. */
  async sendAndWait(tx: ContractTransaction, what: string): Promise<TransactionReceipt> {
    return (await this.send(tx, what)).receipt;
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
