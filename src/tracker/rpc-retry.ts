import { type JsonRpcProvider } from "ethers";
import { StatetrailError } from "../errors";
import { redactUrl } from "../chain/provider";

export interface RpcRetryOptions {
  /** Give up (RPC_UNREACHABLE) once the endpoint has been unreachable this long (default 120 s). */
  giveUpMs?: number;
  /** First wait between attempts; doubles up to `maxDelayMs` (defaults 250 ms and 5 s). */
  firstDelayMs?: number;
  maxDelayMs?: number;
  /** One status line per change (unreachable, still unreachable, back, giving up): the CLI writes them to stderr. */
  status?: (line: string) => void;
}

/**
 * Makes a provider ride out an RPC endpoint that is unreachable for a while (a node restarted, connections
 * dropped): every JSON-RPC request that fails in transport (refused, reset, timed out, an HTTP error; not a
 * JSON-RPC error answer) is sent again with exponential backoff, with a status line when the outage starts,
 * every few seconds while it lasts, and when it ends. After `giveUpMs` of outage every request fails with
 * RPC_UNREACHABLE. A request resent after a dropped connection may have reached the node the first time:
 * the tracker's sender handles a resent transaction being already known or already mined.
 */
export function retryRpc(provider: JsonRpcProvider, options: RpcRetryOptions = {}): JsonRpcProvider {
  const giveUpMs = options.giveUpMs ?? 120_000;
  const firstDelay = options.firstDelayMs ?? 250;
  const maxDelay = options.maxDelayMs ?? 5_000;
  const status = options.status ?? (() => undefined);
  const where = redactUrl(provider._getConnection().url);
  const send = provider._send.bind(provider);
  let outageSince: number | null = null;
  let lastStatus = 0;

  provider._send = async (payload) => {
    for (let delay = firstDelay; ; delay = Math.min(delay * 2, maxDelay)) {
      try {
        const result = await send(payload);
        if (outageSince !== null) {
          status(
            `statetrail: RPC endpoint ${where} reachable again after ${seconds(Date.now() - outageSince)}; continuing`,
          );
          outageSince = null;
        }
        return result;
      } catch (error) {
        if (provider.destroyed) throw error;
        const now = Date.now();
        const reason = describe(error);
        if (outageSince === null) {
          outageSince = now;
          lastStatus = now;
          status(
            `statetrail: RPC endpoint ${where} unreachable (${reason}); retrying with backoff for up to ${seconds(giveUpMs)}`,
          );
        } else if (now - outageSince >= giveUpMs) {
          status(`statetrail: RPC endpoint ${where} unreachable for ${seconds(now - outageSince)}; giving up`);
          throw new StatetrailError(
            "RPC_UNREACHABLE",
            `the RPC endpoint ${where} has been unreachable for ${seconds(now - outageSince)} (${reason})`,
            {
              cause: error,
              hint: "start the node again, then finish the instance with: statetrail run --resume <instance>",
            },
          );
        } else if (now - lastStatus >= 5_000) {
          lastStatus = now;
          status(`statetrail: RPC endpoint ${where} still unreachable after ${seconds(now - outageSince)} (${reason})`);
        }
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  };
  return provider;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

function describe(error: unknown): string {
  const err = error as { code?: unknown; shortMessage?: string; message?: string };
  return typeof err.code === "string" ? err.code : (err.shortMessage ?? err.message ?? String(error)).slice(0, 80);
}
