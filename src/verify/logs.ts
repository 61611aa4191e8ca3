import http from "node:http";
import https from "node:https";
import {
  FetchRequest,
  JsonRpcProvider,
  getAddress,
  zeroPadValue,
  type Log,
  type Provider,
  type TopicFilter,
} from "ethers";
import { fromBytes32, toBytes32, type HexHash } from "../chain/hash";
import { StatetrailError } from "../errors";
import { type InstanceStatus } from "../protocol/schema";
import { IInstanceRegistry__factory } from "../../typechain-types";

/**
 * The logs reader: an instance's whole on-chain history from `eth_getLogs`, one filter for all its events,
 * read in block chunks with retries — never one call per state.
 */

export const DEFAULT_LOG_CHUNK = 10_000;
export const DEFAULT_LOG_RETRIES = 4;
export const DEFAULT_BACKOFF_MS = 250;
/**
 * Log data (hex characters) above which the next `eth_getLogs` chunk is narrowed. 512 KB (8 blocks of 1,000-state
 * transactions): a response of 2 MB parsed while the pass ran left megabytes alive at a young-generation collection,
 * and what survives such collections made V8 double its young generation (16 MB more resident, 100,000 states:
 * peak RSS 95-118 -> 84-86 MB); a million states take about 130 calls instead of 32.
 */
const DENSE_CHUNK_BYTES = 512 * 1024;

const registryInterface = IInstanceRegistry__factory.createInterface();

export const INSTANCE_EVENT_TOPICS = {
  created: registryInterface.getEvent("InstanceCreated").topicHash,
  state: registryInterface.getEvent("StateRegistered").topicHash,
  states: registryInterface.getEvent("StatesRegistered").topicHash,
  terminated: registryInterface.getEvent("InstanceTerminated").topicHash,
  anchoredTerminated: registryInterface.getEvent("AnchoredInstanceTerminated").topicHash,
} as const;

/** `IInstanceRegistry.InstanceStatus` by its on-chain number. */
export const ONCHAIN_STATUS: readonly (InstanceStatus | "none")[] = [
  "none",
  "running",
  "succeeded",
  "failed",
  "aborted",
];

export function statusFromChain(value: bigint | number): InstanceStatus | "none" {
  const status = ONCHAIN_STATUS[Number(value)];
  if (status === undefined) throw new StatetrailError("VERIFY_INCOMPLETE", `unknown on-chain instance status ${value}`);
  return status;
}

/** Where an event was emitted. */
export interface EventLocation {
  blockNumber: number;
  transactionHash: string;
  logIndex: number;
  /** The event's `issuer` (the account that called the registry). */
  issuer: string;
  instanceHash: HexHash;
}

export type InstanceEvent =
  | { kind: "created"; modelHash: HexHash; at: EventLocation }
  /** One state; a `StatesRegistered` event becomes one of these per hash, `batch` giving its place in it. */
  | {
      kind: "state";
      stateHash: HexHash;
      prevStateHash: HexHash;
      batch: { index: number; size: number } | null;
      at: EventLocation;
    }
  | {
      kind: "terminated";
      finalHead: HexHash;
      status: InstanceStatus | "none";
      /** For an instance whose states were Merkle-anchored (AnchoredInstanceTerminated): what it committed. */
      anchored: { stateCount: number; trail: HexHash } | null;
      at: EventLocation;
    };

export interface LogQuery {
  address: string;
  topics: TopicFilter;
}

/** The filter for every event of `issuer`'s instance `instanceHash` in the registry at `registry`. */
export function instanceLogQuery(registry: string, issuer: string, instanceHash: HexHash): LogQuery {
  return {
    address: registry,
    topics: [
      [
        INSTANCE_EVENT_TOPICS.created,
        INSTANCE_EVENT_TOPICS.state,
        INSTANCE_EVENT_TOPICS.states,
        INSTANCE_EVENT_TOPICS.terminated,
        INSTANCE_EVENT_TOPICS.anchoredTerminated,
      ],
      zeroPadValue(getAddress(issuer), 32),
      toBytes32(instanceHash),
    ],
  };
}

export interface LogReaderOptions {
  /** Blocks per `eth_getLogs` call (default 10,000); halved when the node refuses a range as too large. */
  chunkSize?: number;
  /**
   * Blocks of the first call, when fewer (default: `chunkSize`); the chunk then doubles while the log data stays
   * sparse. The verifier's stream starts small: a chunk of dense blocks (1,000 states a transaction) held tens of
   * megabytes at once before it could be narrowed.
   */
  firstChunkSize?: number;
  /** Retries of a failed call (default 4), with exponential backoff from `backoffMs` (default 250 ms). */
  retries?: number;
  backoffMs?: number;
  sleep?: (ms: number) => Promise<void>;
}

const defaultSleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Errors by which nodes refuse a block range or a result set as too large: split the range instead of retrying. */
export function isRangeError(error: unknown): boolean {
  const text = errorText(error);
  if (/rate.?limit|too many requests|\b429\b/i.test(text)) return false;
  return /block range|range (is )?too (large|wide|big)|too many (results|logs|blocks)|more than \d+ results|limit exceeded|exceed(s|ed)? (the )?max|response size|-32005/i.test(
    text,
  );
}

/**
 * All logs matching `query` in blocks `fromBlock..toBlock` (inclusive), in chain order. Throws
 * RPC_UNREACHABLE once a chunk still fails after its retries.
 */
export async function getLogsChunked(
  provider: Pick<Provider, "getLogs">,
  query: LogQuery,
  fromBlock: number,
  toBlock: number,
  options: LogReaderOptions = {},
): Promise<Log[]> {
  const logs: Log[] = [];
  for await (const chunk of logChunks(provider, query, fromBlock, toBlock, options)) logs.push(...chunk);
  return logs;
}

/**
 * The logs matching `query` in blocks `fromBlock..toBlock`, one `eth_getLogs` block chunk at a time, each chunk
 * in chain order and the chunks in block order: a reader decodes a chunk and drops it before the next is asked
 * for, so memory is bounded by a chunk. Throws RPC_UNREACHABLE once a chunk still fails after its retries.
 */
export async function* logChunks(
  provider: Pick<Provider, "getLogs">,
  query: LogQuery,
  fromBlock: number,
  toBlock: number,
  options: LogReaderOptions = {},
): AsyncGenerator<Log[]> {
  const configured = Math.max(1, options.chunkSize ?? DEFAULT_LOG_CHUNK);
  let size = Math.min(configured, Math.max(1, options.firstChunkSize ?? configured));
  const retries = options.retries ?? DEFAULT_LOG_RETRIES;
  const backoffMs = options.backoffMs ?? DEFAULT_BACKOFF_MS;
  const sleep = options.sleep ?? defaultSleep;
  let start = fromBlock;
  // After a sparse chunk, the next one is asked for when it arrives: it travels while the reader consumes that one
  // (at the pace of the issuer's server, state documents a few at a time), instead of after. One chunk ahead at most,
  // and never after a dense one: its log data would wait through the reader's collections (see instanceEventStream).
  let ahead: { start: number; end: number; logs: Promise<Log[]> } | null = null;
  while (start <= toBlock) {
    const end = Math.min(toBlock, start + size - 1);
    let chunk: Log[] | null = null;
    for (let attempt = 0; ; attempt++) {
      try {
        const asked: Promise<Log[]> =
          ahead !== null && ahead.start === start && ahead.end === end
            ? ahead.logs
            : provider.getLogs({ ...query, fromBlock: start, toBlock: end });
        ahead = null;
        chunk = await asked;
        break;
      } catch (error) {
        if (isRangeError(error) && end > start) {
          size = Math.max(1, Math.floor((end - start + 1) / 2));
          break;
        }
        if (attempt >= retries) {
          throw new StatetrailError(
            "RPC_UNREACHABLE",
            `eth_getLogs for blocks ${start}..${end} failed after ${attempt + 1} attempts: ${errorText(error)}`,
            { cause: error, hint: "check the RPC endpoint, or pass a smaller --log-chunk" },
          );
        }
        await sleep(backoffMs * 2 ** attempt);
      }
    }
    if (chunk === null) continue; // the range was split: read its first half next
    start = end + 1;
    // Dense ranges (many states per block) are read in narrower chunks, so a chunk stays a few megabytes; sparse
    // ones widen back to the configured size.
    const bytes = chunk.reduce((total, log) => total + log.data.length, 0);
    if (bytes > DENSE_CHUNK_BYTES && size > 1) size = Math.max(1, Math.floor(size / 2));
    else if (bytes < DENSE_CHUNK_BYTES / 8 && size < configured) size = Math.min(configured, size * 2);
    const sorted = [...chunk].sort((a, b) => a.blockNumber - b.blockNumber || a.index - b.index);
    // Only the sorted copy is kept while the reader consumes it (it may drop each log once decoded).
    chunk = null;
    if (start <= toBlock && bytes < DENSE_CHUNK_BYTES / 8) {
      const nextEnd = Math.min(toBlock, start + size - 1);
      ahead = { start, end: nextEnd, logs: provider.getLogs({ ...query, fromBlock: start, toBlock: nextEnd }) };
      ahead.logs.catch(() => undefined); // met, and retried or reported, when it is awaited above
    }
    yield sorted;
  }
}

/** Every event of one instance between two blocks, decoded chunk by chunk (see {@link logChunks}). */
export async function* instanceEventStream(
  provider: Pick<Provider, "getLogs">,
  registry: string,
  issuer: string,
  instanceHash: HexHash,
  fromBlock: number,
  toBlock: number,
  options: LogReaderOptions = {},
): AsyncGenerator<InstanceEvent> {
  const query = instanceLogQuery(registry, issuer, instanceHash);
  const wanted = getAddress(registry);
  let hashes = Buffer.alloc(0);
  for await (const chunk of logChunks(provider, query, fromBlock, toBlock, options)) {
    // The registry's StatesRegistered logs (nearly all the data) are copied as bytes into one buffer reused chunk
    // after chunk, and their hex dropped at once: held while the pass compared their states one by one (a chunk is
    // megabytes of hex for tens of thousands of states), the hex strings outlived young-generation collections,
    // were copied to the old generation, and made V8 double its young generation (16 MB more resident).
    const logs = chunk as Array<Log | StatesLayout | null>;
    const layouts: Array<StatesLayout | null> = logs.map((log) =>
      log !== null && "data" in log && getAddress(log.address) === wanted ? statesRegisteredLayout(log) : null,
    );
    const size = layouts.reduce((total, layout) => total + (layout ? (layout.hex.length - 2) / 2 : 0), 0);
    if (hashes.length < size) hashes = Buffer.allocUnsafeSlow(size + (size >> 3));
    let offset = 0;
    layouts.forEach((layout, index) => {
      if (!layout) return;
      const length = hashes.write(layout.hex, offset, "hex");
      layout.bytes = hashes.subarray(offset, offset + length);
      layout.hex = "";
      offset += length;
      logs[index] = layout;
    });
    layouts.length = 0;
    // One log at a time, each dropped from the chunk once decoded, and a StatesRegistered's states made one at a
    // time as they are asked for (from the buffer: every state of this chunk is made before the next chunk is
    // written there): the decoded events of a chunk, or of one log (1,000 states), are never held at once (held
    // while the pass compared them one by one, they were copied to the old generation: 12 MB per 100,000 states).
    for (let index = 0; index < logs.length; index += 1) {
      const log = logs[index]!;
      logs[index] = null;
      if ("data" in log) yield* decodeInstanceLogs([log], registry);
      else yield* statesRegisteredEvents(log);
    }
  }
}

/**
 * Decodes the InstanceRegistry events among `logs` (others, and logs of other contracts when `registry`
 * is given, are ignored). `StatesRegistered` is expanded into one `state` event per hash, each linked to
 * the one before.
 */
export function decodeInstanceLogs(logs: readonly Log[], registry?: string): InstanceEvent[] {
  const events: InstanceEvent[] = [];
  const wanted = registry === undefined ? undefined : getAddress(registry);
  for (const log of logs) {
    if (wanted !== undefined && getAddress(log.address) !== wanted) continue;
    if (decodeStatesRegistered(log, events)) continue;
    let parsed;
    try {
      parsed = registryInterface.parseLog({ topics: [...log.topics], data: log.data });
    } catch {
      continue;
    }
    if (!parsed || parsed.args.instanceHash === undefined) continue; // BatchAnchored names no instance
    const at: EventLocation = {
      blockNumber: log.blockNumber,
      transactionHash: log.transactionHash.toLowerCase(),
      logIndex: log.index,
      issuer: getAddress(parsed.args.issuer as string),
      instanceHash: fromBytes32(parsed.args.instanceHash as string),
    };
    switch (parsed.name) {
      case "InstanceCreated":
        events.push({ kind: "created", modelHash: fromBytes32(parsed.args.modelHash as string), at });
        break;
      case "StateRegistered":
        events.push({
          kind: "state",
          stateHash: fromBytes32(parsed.args.stateHash as string),
          prevStateHash: fromBytes32(parsed.args.prevStateHash as string),
          batch: null,
          at,
        });
        break;
      case "StatesRegistered": {
        const hashes = (parsed.args.stateHashes as string[]).map(fromBytes32);
        let prev = fromBytes32(parsed.args.prevStateHash as string);
        hashes.forEach((stateHash, index) => {
          events.push({ kind: "state", stateHash, prevStateHash: prev, batch: { index, size: hashes.length }, at });
          prev = stateHash;
        });
        break;
      }
      case "InstanceTerminated":
        events.push({
          kind: "terminated",
          finalHead: fromBytes32(parsed.args.finalHead as string),
          status: statusFromChain(parsed.args.status as bigint),
          anchored: null,
          at,
        });
        break;
      case "AnchoredInstanceTerminated":
        events.push({
          kind: "terminated",
          finalHead: fromBytes32(parsed.args.finalHead as string),
          status: statusFromChain(parsed.args.status as bigint),
          anchored: {
            stateCount: Number(parsed.args.stateCount as bigint),
            trail: fromBytes32(parsed.args.trail as string),
          },
          at,
        });
        break;
    }
  }
  return events;
}

/**
 * Decodes a StatesRegistered log laid out as the registry emits it (`abi.encode(prevStateHash, stateHashes)`:
 * the head, the array's offset 0x40, its length, the hashes) straight from the hex, appending its `state` events
 * (the same the ABI decoder yields); false for any other log or layout, which then goes the general way. ethers'
 * decoder took seconds and hundreds of megabytes for the 100 logs of a 100,000-state instance.
 */
export function decodeStatesRegistered(log: Log, events: InstanceEvent[]): boolean {
  const layout = statesRegisteredLayout(log);
  if (!layout) return false;
  layout.bytes = Buffer.from(layout.hex, "hex");
  for (const event of statesRegisteredEvents(layout)) events.push(event);
  return true;
}

/** A StatesRegistered log laid out as the registry emits it: its data (hex, then as bytes), state count, location. */
interface StatesLayout {
  /** The data's hex digits (no "0x"), checked. */
  hex: string;
  /** The same as bytes, once decoded (`abi.encode(prevStateHash, stateHashes)`). */
  bytes: Buffer | null;
  size: number;
  at: EventLocation;
}

/** A StatesRegistered log's layout (its bytes not yet decoded) when laid out as the registry emits it, else null. */
function statesRegisteredLayout(log: Log): StatesLayout | null {
  const data = log.data;
  if (log.topics.length !== 3 || log.topics[0] !== INSTANCE_EVENT_TOPICS.states) return null;
  if (!/^0x[0-9a-fA-F]*$/.test(data) || data.length < 2 + 64 * 3) return null;
  if (BigInt("0x" + data.slice(66, 130)) !== 0x40n) return null;
  const count = BigInt("0x" + data.slice(130, 194));
  if (count === 0n || BigInt(data.length) !== 2n + 64n * (3n + count)) return null;
  const issuerTopic = log.topics[1];
  if (!/^0x0{24}[0-9a-fA-F]{40}$/.test(issuerTopic)) return null;
  const at: EventLocation = {
    blockNumber: log.blockNumber,
    transactionHash: log.transactionHash.toLowerCase(),
    logIndex: log.index,
    issuer: getAddress("0x" + issuerTopic.slice(26)),
    instanceHash: fromBytes32(log.topics[2]),
  };
  return { hex: data.slice(2), bytes: null, size: Number(count), at };
}

/**
 * The `state` events of a StatesRegistered log (see {@link statesRegisteredLayout}), from its bytes, each made when
 * asked for; the hashes in lowercase hex, as the ABI decoder's.
 */
function* statesRegisteredEvents({ bytes, size, at }: StatesLayout): Generator<InstanceEvent> {
  if (!bytes) throw new Error("StatesRegistered: bytes not decoded");
  let prev = bytes.toString("hex", 0, 32);
  for (let index = 0; index < size; index++) {
    const stateHash = bytes.toString("hex", 96 + 32 * index, 128 + 32 * index);
    yield { kind: "state", stateHash, prevStateHash: prev, batch: { index, size }, at };
    prev = stateHash;
  }
}

/** Reads and decodes every event of one instance between two blocks. */
export async function readInstanceEvents(
  provider: Pick<Provider, "getLogs">,
  registry: string,
  issuer: string,
  instanceHash: HexHash,
  fromBlock: number,
  toBlock: number,
  options: LogReaderOptions = {},
): Promise<InstanceEvent[]> {
  const logs = await getLogsChunked(
    provider,
    instanceLogQuery(registry, issuer, instanceHash),
    fromBlock,
    toBlock,
    options,
  );
  return decodeInstanceLogs(logs, registry);
}

function errorText(error: unknown): string {
  if (error === null || error === undefined) return String(error);
  const parts: string[] = [];
  const e = error as {
    shortMessage?: string;
    message?: string;
    code?: unknown;
    error?: { message?: string; code?: unknown };
    info?: unknown;
  };
  if (e.shortMessage) parts.push(e.shortMessage);
  if (e.message && e.message !== e.shortMessage) parts.push(e.message);
  if (e.error?.message) parts.push(e.error.message);
  if (e.error?.code !== undefined) parts.push(String(e.error.code));
  return parts.length > 0 ? parts.join(" | ") : String(error);
}

/** A hex quantity of a JSON-RPC log (blockNumber, logIndex) as a number. */
function quantity(value: unknown, what: string): number {
  if (typeof value !== "string" || !/^0x[0-9a-fA-F]{1,13}$/.test(value)) {
    throw new StatetrailError("VERIFY_INCOMPLETE", `eth_getLogs returned a log whose ${what} is not a quantity`);
  }
  return parseInt(value.slice(2), 16);
}

const HEX_DATA = /^0x(?:[0-9a-fA-F]{2})*$/;
const HEX_32 = /^0x[0-9a-fA-F]{64}$/;

/** One raw JSON-RPC log as the fields the decoders read ({@link decodeInstanceLogs}), checked as ethers checks them. */
function rawLog(value: unknown): Log {
  const log = value as Record<string, unknown> | null;
  const bad = (what: string): never => {
    throw new StatetrailError("VERIFY_INCOMPLETE", `eth_getLogs returned a log whose ${what} is malformed`);
  };
  if (typeof log !== "object" || log === null) return bad("body");
  const topics = log.topics;
  if (!Array.isArray(topics)) return bad("topics");
  for (const topic of topics) if (typeof topic !== "string" || !HEX_32.test(topic)) bad("topics");
  if (typeof log.data !== "string" || !HEX_DATA.test(log.data)) bad("data");
  if (typeof log.address !== "string" || !/^0x[0-9a-fA-F]{40}$/.test(log.address)) bad("address");
  if (typeof log.transactionHash !== "string" || !HEX_32.test(log.transactionHash)) bad("transactionHash");
  return {
    address: log.address,
    topics: (topics as string[]).map((topic) => topic.toLowerCase()),
    data: log.data,
    blockNumber: quantity(log.blockNumber, "blockNumber"),
    blockHash: log.blockHash,
    transactionHash: log.transactionHash,
    transactionIndex: log.transactionIndex === undefined ? 0 : quantity(log.transactionIndex, "transactionIndex"),
    index: quantity(log.logIndex, "logIndex"),
    removed: log.removed === true,
  } as unknown as Log;
}

/**
 * `eth_getLogs` straight over HTTP(S) to a JsonRpcProvider's endpoint (its URL and headers), the response decoded by
 * Node (Buffer, JSON.parse) instead of ethers: ethers joins the response's chunks one copy at a time and decodes its
 * UTF-8 in JavaScript, which took 8 of the 19 CPU seconds of verifying a 100,000-state instance (6.6 MB of log data)
 * and a 250 MB heap spike. Null for another provider (then its own getLogs is used).
 */
export function directGetLogs(provider: unknown): Pick<Provider, "getLogs"> | null {
  if (!(provider instanceof JsonRpcProvider)) return null;
  let connection: FetchRequest;
  try {
    connection = provider._getConnection();
  } catch {
    return null;
  }
  const url = connection.url;
  try {
    const parsed = new URL(url);
    if (!/^https?:$/.test(parsed.protocol) || parsed.username || parsed.password) return null;
  } catch {
    return null;
  }
  const headers: Record<string, string> = { ...connection.headers, "content-type": "application/json" };
  let id = 0;
  return {
    getLogs: async (filter) => {
      const query = filter as { address?: string; topics?: unknown; fromBlock?: unknown; toBlock?: unknown };
      const block = (value: unknown): string =>
        typeof value === "number" ? "0x" + value.toString(16) : String(value ?? "latest");
      const body = JSON.stringify({
        jsonrpc: "2.0",
        id: (id += 1),
        method: "eth_getLogs",
        params: [
          {
            address: query.address,
            topics: query.topics,
            fromBlock: block(query.fromBlock),
            toBlock: block(query.toBlock),
          },
        ],
      });
      const response = await post(url, headers, body, connection.timeout);
      const bytes = response.body;
      let reply: { result?: unknown; error?: { code?: unknown; message?: unknown } };
      try {
        reply = JSON.parse(bytes.toString("utf8")) as typeof reply;
      } catch {
        throw new Error(`eth_getLogs: HTTP ${response.status}, the response is not JSON`);
      }
      if (reply.error) {
        const error = new Error(`eth_getLogs: ${String(reply.error.message)}`) as Error & {
          error: { message: string; code: unknown };
        };
        error.error = { message: String(reply.error.message), code: reply.error.code };
        throw error;
      }
      if (response.status < 200 || response.status >= 300) throw new Error(`eth_getLogs: HTTP ${response.status}`);
      if (!Array.isArray(reply.result)) throw new Error("eth_getLogs: the result is not a list of logs");
      return reply.result.map(rawLog);
    },
  };
}

/**
 * One POST with Node's http/https (already loaded by ethers; fetch would load undici, megabytes more): the status
 * and the body as one Buffer.
 */
function post(
  url: string,
  headers: Record<string, string>,
  body: string,
  timeoutMs: number,
): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const request = (url.startsWith("https:") ? https : http).request(
      url,
      { method: "POST", headers: { ...headers, "content-length": String(Buffer.byteLength(body)) } },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("error", reject);
        response.on("end", () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks) }));
      },
    );
    request.setTimeout(timeoutMs, () => request.destroy(new Error(`eth_getLogs: no answer within ${timeoutMs} ms`)));
    request.on("error", reject);
    request.end(body);
  });
}
