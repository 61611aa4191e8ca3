import {
  EnsPlugin,
  JsonRpcProvider,
  Network,
  isError,
  type JsonRpcPayload,
  type JsonRpcResult,
  type Provider,
  type TransactionReceipt,
} from "ethers";
import { StatetrailError, type ErrorCode } from "../errors";

/** The ENS registry of mainnet and Sepolia (the same address on both). */
export const CANONICAL_ENS_REGISTRY = "0x00000000000C2E074eC69A0dFb2997BA6C7d2e1e";

/** Chain ids statetrail knows by name. */
export const CHAIN_IDS = { mainnet: 1, sepolia: 11155111, local: 31337 } as const;

/** Chains where the canonical ENS registry lives. */
const CANONICAL_ENS_CHAINS: ReadonlySet<number> = new Set([CHAIN_IDS.mainnet, CHAIN_IDS.sepolia]);

export interface ConnectOptions {
  rpcUrl: string;
  /** Refuse the endpoint unless it serves this chain (WRONG_CHAIN). */
  expectedChainId?: number;
  /**
   * ENS registry of this chain, attached to the provider's Network as an `EnsPlugin` so that
   * `resolveName`, `lookupAddress` and `getResolver` work. `null` disables ENS. When left out, mainnet
   * and Sepolia get the canonical registry and other chains get none.
   */
  ensRegistry?: string | null;
  /** How long the first `eth_chainId` may take before the endpoint counts as unreachable. Default 5 s. */
  timeoutMs?: number;
  /** How often ethers polls for receipts and blocks. Default 200 ms on loopback, 4 s elsewhere. */
  pollingIntervalMs?: number;
}

/** A provider connected by {@link connect}: a static network (no polling for it) and the chain id it serves. */
export type ChainProvider = JsonRpcProvider;

/**
 * Connects to a JSON-RPC endpoint. A raw `eth_chainId` with a timeout comes first, so an unreachable
 * endpoint fails within seconds (RPC_UNREACHABLE) instead of ethers retrying network detection forever.
 * The returned provider has a static Network carrying an `EnsPlugin` when an ENS registry is known:
 * Hardhat's in-process provider can't resolve ENS, this one can.
 */
export async function connect(options: ConnectOptions): Promise<ChainProvider> {
  const rpcUrl = checkRpcUrl(options.rpcUrl);
  const chainId = await probeChainId(rpcUrl, options.timeoutMs ?? 5_000);
  if (options.expectedChainId !== undefined && chainId !== options.expectedChainId) {
    throw new StatetrailError(
      "WRONG_CHAIN",
      `${redactUrl(rpcUrl)} serves chain ${chainId} (${chainName(chainId)}), expected ${options.expectedChainId} (${chainName(options.expectedChainId)})`,
      { hint: "point the RPC URL at the right network, or choose the network that matches this endpoint" },
    );
  }
  const ensRegistry =
    options.ensRegistry === undefined
      ? CANONICAL_ENS_CHAINS.has(chainId)
        ? CANONICAL_ENS_REGISTRY
        : null
      : options.ensRegistry;
  const network = makeNetwork(chainId, ensRegistry);
  const provider = new RetryingJsonRpcProvider(rpcUrl, network, {
    staticNetwork: network,
    // No response cache: a cached eth_getTransactionCount hands two back-to-back transactions the same nonce.
    cacheTimeout: -1,
    // Requests made in the same tick still go in one batch; ethers' default 10 ms stall before each batch would
    // cap any sequence of dependent calls (send, receipt, block) at about 100 a second.
    batchStallTime: 0,
    pollingInterval: options.pollingIntervalMs ?? (isLoopback(rpcUrl) ? 200 : 4_000),
  });
  return provider;
}

/**
 * Connections lost under a request (reset, dropped, timed out): resending it on a new connection may succeed. Not a
 * refused connection: the node is down, and waiting on it is the caller's choice (the tracker's polls allow a few).
 */
const TRANSPORT_FAILURES: ReadonlySet<string> = new Set(["ECONNRESET", "EPIPE", "ETIMEDOUT", "ECONNABORTED"]);
/** Waits before each resend: a connection dropped once (a proxy, a NAT, a restarting load balancer) is not a failure. */
const RESEND_DELAYS_MS = [100, 300, 900];

/**
 * Whether resending `method` after a lost connection is safe: reads, and `eth_sendRawTransaction` (the same signed
 * bytes: the node keeps one transaction, and the tracker reads "already known" as its own). Not what the node signs
 * or changes on its own (eth_sendTransaction, eth_sign*, evm_*, hardhat_*): a resend could act twice.
 */
export function resendable(method: string): boolean {
  if (method === "eth_sendRawTransaction") return true;
  if (/^eth_(send|sign)/.test(method)) return false;
  return /^(eth|net|web3)_/.test(method);
}

/**
 * A JsonRpcProvider that resends a request whose connection was lost (reset, dropped), a few times with
 * back-off, when every method in it is {@link resendable}. ethers gives up at once; a tracked run then stopped at
 * the first dropped connection (seen: "socket hang up" on a 10,000-state run's first registerStates).
 */
class RetryingJsonRpcProvider extends JsonRpcProvider {
  override async _send(payload: JsonRpcPayload | JsonRpcPayload[]): Promise<JsonRpcResult[]> {
    const methods = (Array.isArray(payload) ? payload : [payload]).map((request) => request.method);
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await super._send(payload);
      } catch (error) {
        const code = (error as { code?: unknown }).code;
        const retry =
          attempt < RESEND_DELAYS_MS.length &&
          typeof code === "string" &&
          TRANSPORT_FAILURES.has(code) &&
          methods.every(resendable);
        if (!retry) throw error;
        await new Promise((resolve) => setTimeout(resolve, RESEND_DELAYS_MS[attempt]));
      }
    }
  }
}

/** A Network for `chainId`, with an `EnsPlugin` when `ensRegistry` is given. */
export function makeNetwork(chainId: number, ensRegistry: string | null): Network {
  const network = new Network(chainName(chainId), chainId);
  if (ensRegistry) network.attachPlugin(new EnsPlugin(ensRegistry, chainId));
  return network;
}

/** The ENS registry the provider's Network carries, or null. */
export async function ensRegistryOf(provider: { getNetwork(): Promise<Network> }): Promise<string | null> {
  const network = await provider.getNetwork();
  return network.getPlugin<EnsPlugin>("org.ethers.plugins.network.Ens")?.address ?? null;
}

/** The chain id of an already connected provider, as a number. */
export async function chainIdOf(provider: { getNetwork(): Promise<Network> }): Promise<number> {
  return Number((await provider.getNetwork()).chainId);
}

export function chainName(chainId: number): string {
  switch (chainId) {
    case CHAIN_IDS.mainnet:
      return "mainnet";
    case CHAIN_IDS.sepolia:
      return "sepolia";
    case CHAIN_IDS.local:
      return "local";
    default:
      return `chain-${chainId}`;
  }
}

/**
 * One raw `eth_chainId` request with a deadline. Throws RPC_UNREACHABLE when the endpoint refuses the
 * connection, does not answer in time, or does not speak JSON-RPC.
 */
export async function probeChainId(rpcUrl: string, timeoutMs = 5_000): Promise<number> {
  const url = checkRpcUrl(rpcUrl);
  const where = redactUrl(url);
  const hint = unreachableHint(url);
  let response: { status: number; text: string };
  try {
    response = await postJson(
      url,
      JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_chainId", params: [] }),
      timeoutMs,
    );
  } catch (error) {
    throw new StatetrailError(
      "RPC_UNREACHABLE",
      `cannot reach the Ethereum RPC endpoint ${where}: ${describeFetchError(error, timeoutMs)}`,
      {
        hint,
        cause: error,
      },
    );
  }
  let body: unknown;
  try {
    body = JSON.parse(response.text);
  } catch (error) {
    throw new StatetrailError(
      "RPC_UNREACHABLE",
      `${where} did not answer eth_chainId with JSON (HTTP ${response.status})`,
      {
        hint,
        cause: error,
      },
    );
  }
  const result = (body as { result?: unknown } | null)?.result;
  if (typeof result !== "string" || !/^0x[0-9a-fA-F]+$/.test(result)) {
    const rpcError = (body as { error?: { message?: string } } | null)?.error?.message;
    throw new StatetrailError(
      "RPC_UNREACHABLE",
      `${where} is not a usable Ethereum JSON-RPC endpoint (HTTP ${response.status}${rpcError ? `: ${rpcError}` : ""})`,
      { hint },
    );
  }
  return Number(BigInt(result));
}

/** Removes what may be a secret (API key in the path or query, credentials) from an RPC URL for messages. */
export function redactUrl(rpcUrl: string): string {
  try {
    const url = new URL(rpcUrl);
    const path = url.pathname === "/" || url.pathname === "" ? "" : "/…";
    return `${url.protocol}//${url.host}${path}${url.search ? "?…" : ""}`;
  } catch {
    return "<invalid URL>";
  }
}

export function isLoopback(rpcUrl: string): boolean {
  try {
    const host = new URL(rpcUrl).hostname;
    return host === "localhost" || host === "[::1]" || host === "::1" || host.startsWith("127.");
  } catch {
    return false;
  }
}

/**
 * Maps an error thrown by ethers while talking to the chain onto a StatetrailError with a useful code:
 * INSUFFICIENT_FUNDS, RPC_UNREACHABLE, TX_FAILED (reverts, replaced or timed-out transactions), else `fallback`.
 */
export function toChainError(error: unknown, what: string, fallback: ErrorCode = "TX_FAILED"): StatetrailError {
  if (error instanceof StatetrailError) return error;
  const short =
    (error as { shortMessage?: string }).shortMessage ?? (error instanceof Error ? error.message : String(error));
  if (isError(error, "INSUFFICIENT_FUNDS")) {
    return new StatetrailError("INSUFFICIENT_FUNDS", `${what}: the account cannot pay for the transaction`, {
      hint: "fund the account (on Sepolia use a faucet) and try again",
      cause: error,
    });
  }
  if (isError(error, "NETWORK_ERROR") || isError(error, "SERVER_ERROR") || isError(error, "TIMEOUT")) {
    return new StatetrailError("RPC_UNREACHABLE", `${what}: ${short}`, {
      hint: "check that the RPC endpoint is up and reachable",
      cause: error,
    });
  }
  if (isError(error, "CALL_EXCEPTION") || isError(error, "TRANSACTION_REPLACED")) {
    return new StatetrailError("TX_FAILED", `${what}: ${short}`, { cause: error });
  }
  return new StatetrailError(fallback, `${what}: ${short}`, { cause: error });
}

function checkRpcUrl(rpcUrl: string): string {
  let url: URL;
  try {
    url = new URL(rpcUrl);
  } catch {
    throw new StatetrailError("INVALID_ARGUMENT", `not a valid RPC URL: "${rpcUrl}"`, {
      hint: "use an http(s) URL such as http://127.0.0.1:8545",
    });
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new StatetrailError("INVALID_ARGUMENT", `RPC URL must use http or https, got ${url.protocol}`, {
      hint: "use an http(s) URL such as http://127.0.0.1:8545",
    });
  }
  return rpcUrl;
}

function unreachableHint(rpcUrl: string): string {
  if (isLoopback(rpcUrl)) {
    return "start a local chain with `statetrail node` (or `npx hardhat node`), or pass the URL of a running one";
  }
  return "check the RPC URL (for Sepolia set SEPOLIA_RPC_URL) and your network connection";
}

/** The largest answer to eth_chainId read (a few dozen bytes are expected; a hostile endpoint gets no more). */
const MAX_PROBE_BYTES = 64 * 1024;

/**
 * One JSON POST over node:http(s) with a deadline for the whole exchange. Not the global `fetch`: its first use loads
 * Node's bundled HTTP client and compiles its WebAssembly parser, measured at 100+ ms of every CLI start (issue 14).
 */
function postJson(url: string, body: string, timeoutMs: number): Promise<{ status: number; text: string }> {
  /* eslint-disable @typescript-eslint/no-require-imports -- loaded on use: only one of them is needed */
  const { request } = url.startsWith("https:")
    ? (require("node:https") as typeof import("node:https"))
    : (require("node:http") as typeof import("node:http"));
  /* eslint-enable @typescript-eslint/no-require-imports */
  return new Promise((resolve, reject) => {
    const req = request(url, {
      method: "POST",
      headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
    });
    const timer = setTimeout(() => {
      const error = new Error(`no answer within ${timeoutMs} ms`);
      error.name = "TimeoutError";
      req.destroy(error);
    }, timeoutMs);
    req.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    req.on("response", (response) => {
      const chunks: Buffer[] = [];
      let length = 0;
      response.on("data", (chunk: Buffer) => {
        length += chunk.length;
        if (length > MAX_PROBE_BYTES) req.destroy(new Error(`answer larger than ${MAX_PROBE_BYTES} bytes`));
        else chunks.push(chunk);
      });
      response.on("end", () => {
        clearTimeout(timer);
        resolve({ status: response.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") });
      });
      response.on("error", (error) => {
        clearTimeout(timer);
        reject(error);
      });
    });
    req.end(body);
  });
}

function describeFetchError(error: unknown, timeoutMs: number): string {
  const e = error as {
    name?: string;
    code?: string;
    message?: string;
    cause?: { code?: string; message?: string };
  };
  if (e?.name === "TimeoutError" || e?.name === "AbortError") return `no answer within ${timeoutMs} ms`;
  const code = e?.code ?? e?.cause?.code;
  if (code === "ECONNREFUSED") return "connection refused";
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") return "host not found";
  if (code === "ECONNRESET") return "connection reset";
  return e?.cause?.message ?? e?.message ?? String(error);
}

/**
 * {@link connect} for a recorded deployment: refuses an endpoint of another chain (WRONG_CHAIN) and attaches the
 * deployment's ENS registry, so ENS reads work on the local chain too.
 */
export async function connectDeployment(
  rpcUrl: string,
  deployment: { chainId: number; ens: { registry: string } },
  options: Omit<ConnectOptions, "rpcUrl" | "expectedChainId" | "ensRegistry"> = {},
): Promise<ChainProvider> {
  return connect({ ...options, rpcUrl, expectedChainId: deployment.chainId, ensRegistry: deployment.ens.registry });
}

/**
 * Waits until transaction `hash` has a receipt with at least `confirmations` confirmations, polling the receipt
 * itself. Unlike `provider.waitForTransaction` it does not depend on "block" events, which never come on an
 * automining chain when a cached block number is one block behind (ethers caches identical requests for 250 ms
 * in BrowserProvider and in providers not made by {@link connect}). Throws TX_FAILED on timeout.
 */
export async function waitForReceipt(
  provider: Provider,
  hash: string,
  confirmations = 1,
  timeoutMs = 120_000,
): Promise<TransactionReceipt> {
  const deadline = Date.now() + timeoutMs;
  const interval = Math.min(Math.max((provider as { pollingInterval?: number }).pollingInterval ?? 250, 50), 4_000);
  for (;;) {
    const receipt = await provider.getTransactionReceipt(hash);
    if (receipt && (confirmations <= 1 || (await receipt.confirmations()) >= confirmations)) return receipt;
    if (Date.now() >= deadline) {
      throw new StatetrailError(
        "TX_FAILED",
        receipt
          ? `transaction ${hash} has fewer than ${confirmations} confirmations after ${timeoutMs} ms`
          : `transaction ${hash} was not mined within ${timeoutMs} ms`,
        { hint: "the network may be congested or the node not mining; check the transaction in a block explorer" },
      );
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(interval, Math.max(deadline - Date.now(), 1))));
  }
}

/**
 * The URL a provider made by {@link connect} (any ethers JsonRpcProvider) sends its requests to, as given;
 * null for other providers (Hardhat's in-process one has no URL). May hold credentials: show it only through
 * {@link publicRpcUrl}.
 */
export function rpcUrlOf(provider: unknown): string | null {
  if (!(provider instanceof JsonRpcProvider)) return null;
  try {
    return provider._getConnection().url;
  } catch {
    return null;
  }
}

/** What {@link publicRpcUrl} writes in place of a secret. */
export const REDACTED = "REDACTED";

/**
 * An RPC URL with what may be a credential taken out, for reports that others read and repeat: the userinfo
 * (`user:password@`) and fragment dropped, every query value and every query name that is not a short word replaced by
 * {@link REDACTED} (`?apikey=REDACTED`),
 * and every path segment that looks like an API key (Infura's `/v3/<32 hex>`, Alchemy's `/v2/<key>`, QuickNode's
 * and Ankr's tokens) replaced by {@link REDACTED}. Short words (`v3`, `rpc`, `eth_sepolia`) stay, so the report
 * still says which service and path was read. Null when `rpcUrl` is not a URL.
 */
export function publicRpcUrl(rpcUrl: string): string | null {
  let url: URL;
  try {
    url = new URL(rpcUrl);
  } catch {
    return null;
  }
  const path = url.pathname
    .split("/")
    .map((segment) => (looksLikeKey(decodeURIComponentSafe(segment)) ? REDACTED : segment))
    .join("/");
  // A credential can be a query name too (`…/rpc?<key>`): only names that are short words stay.
  const query = [...url.searchParams.keys()]
    .map((key) => `${/^[A-Za-z_-]{1,16}$/.test(key) ? key : REDACTED}=${REDACTED}`)
    .join("&");
  return `${url.protocol}//${url.host}${path === "/" ? "" : path}${query ? `?${query}` : ""}`;
}

/** A path segment that may be a credential: long, or mixing letters and digits like a token does. */
function looksLikeKey(segment: string): boolean {
  if (segment.length >= 24) return true;
  if (segment.length < 12) return false;
  return /\d/.test(segment) && /[a-z]/i.test(segment) && !/^[a-z]+[_-]?[a-z]*\d{1,4}$/i.test(segment);
}

function decodeURIComponentSafe(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}
