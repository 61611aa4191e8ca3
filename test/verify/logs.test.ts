import { expect } from "chai";
import { ethers } from "ethers";
import { type Filter, type Log } from "ethers";
import { isStatetrailError } from "../../src/errors";
import { sha256Hex, toBytes32 } from "../../src/chain/hash";
import {
  decodeInstanceLogs,
  getLogsChunked,
  instanceLogQuery,
  isRangeError,
  instanceEventStream,
  logChunks,
  ChainBuilder,
  rebuildChain,
  type InstanceEvent,
} from "../../src/verify";
import { IInstanceRegistry__factory } from "../../typechain-types";

const registryInterface = IInstanceRegistry__factory.createInterface();
const REGISTRY = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0";
const ISSUER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
const INSTANCE = sha256Hex("instance");
const MODEL = sha256Hex("model");
const H = (label: string): string => sha256Hex(label);

let logIndex = 0;
/** A log as a node returns it, encoded with the registry's ABI. */
function log(
  blockNumber: number,
  name: "InstanceCreated" | "StateRegistered" | "StatesRegistered" | "InstanceTerminated",
  values: unknown[],
  address = REGISTRY,
): Log {
  const { topics, data } = registryInterface.encodeEventLog(name, values);
  return {
    blockNumber,
    index: logIndex++,
    address,
    topics,
    data,
    transactionHash: ethers.keccak256(ethers.toUtf8Bytes(`tx ${blockNumber}`)),
  } as unknown as Log;
}

const created = (block: number): Log => log(block, "InstanceCreated", [ISSUER, toBytes32(INSTANCE), toBytes32(MODEL)]);
const state = (block: number, hash: string, prev: string): Log =>
  log(block, "StateRegistered", [ISSUER, toBytes32(INSTANCE), toBytes32(hash), toBytes32(prev)]);
const states = (block: number, prev: string, hashes: string[]): Log =>
  log(block, "StatesRegistered", [ISSUER, toBytes32(INSTANCE), toBytes32(prev), hashes.map(toBytes32)]);
const terminated = (block: number, head: string, status: number): Log =>
  log(block, "InstanceTerminated", [ISSUER, toBytes32(INSTANCE), toBytes32(head), status]);

/** A provider over fixed logs that records the block ranges asked for and can fail on demand. */
function fakeProvider(logs: Log[], fail?: (from: number, to: number, call: number) => Error | undefined) {
  const ranges: [number, number][] = [];
  return {
    ranges,
    async getLogs(filter: Filter): Promise<Log[]> {
      const from = Number(filter.fromBlock);
      const to = Number(filter.toBlock);
      const error = fail?.(from, to, ranges.length);
      ranges.push([from, to]);
      if (error) throw error;
      return logs.filter((entry) => entry.blockNumber >= from && entry.blockNumber <= to).reverse();
    },
  };
}

const noSleep = async (): Promise<void> => {};
const QUERY = instanceLogQuery(REGISTRY, ISSUER, INSTANCE);

describe("logs reader", function () {
  describe("getLogsChunked", function () {
    it("reads the range in chunks and returns the logs in chain order", async function () {
      const logs = [
        created(10),
        state(9_999, H("a"), INSTANCE),
        state(10_000, H("b"), H("a")),
        state(24_000, H("c"), H("b")),
      ];
      const provider = fakeProvider(logs);
      const result = await getLogsChunked(provider, QUERY, 0, 25_000, { chunkSize: 10_000 });
      expect(provider.ranges).to.deep.equal([
        [0, 9_999],
        [10_000, 19_999],
        [20_000, 25_000],
      ]);
      expect(result.map((entry) => entry.blockNumber)).to.deep.equal([10, 9_999, 10_000, 24_000]);
    });

    it("halves the chunk when the node refuses the range as too large", async function () {
      const logs = [created(1), state(7_000, H("a"), INSTANCE)];
      const provider = fakeProvider(logs, (from, to) =>
        to - from + 1 > 2_500 ? new Error("query returned more than 10000 results") : undefined,
      );
      const result = await getLogsChunked(provider, QUERY, 0, 9_999, { chunkSize: 10_000, sleep: noSleep });
      expect(result).to.have.length(2);
      expect(provider.ranges.slice(0, 3)).to.deep.equal([
        [0, 9_999],
        [0, 4_999],
        [0, 2_499],
      ]);
      expect(provider.ranges.at(-1)).to.deep.equal([7_500, 9_999]);
    });

    it("retries a failing call with exponential backoff", async function () {
      const delays: number[] = [];
      const provider = fakeProvider([created(5)], (_from, _to, call) =>
        call < 2 ? Object.assign(new Error("socket hang up"), { code: "ECONNRESET" }) : undefined,
      );
      const result = await getLogsChunked(provider, QUERY, 0, 100, {
        backoffMs: 100,
        sleep: async (ms) => void delays.push(ms),
      });
      expect(result).to.have.length(1);
      expect(delays).to.deep.equal([100, 200]);
    });

    it("retries rate limiting instead of splitting the range", async function () {
      const provider = fakeProvider([created(5)], (_from, _to, call) =>
        call === 0 ? new Error("429 Too Many Requests: rate limit exceeded") : undefined,
      );
      await getLogsChunked(provider, QUERY, 0, 100, { sleep: noSleep });
      expect(provider.ranges).to.deep.equal([
        [0, 100],
        [0, 100],
      ]);
    });

    it("gives up with RPC_UNREACHABLE after its retries", async function () {
      const provider = fakeProvider([], () => new Error("connection refused"));
      try {
        await getLogsChunked(provider, QUERY, 0, 100, { retries: 2, sleep: noSleep });
        expect.fail("should have thrown");
      } catch (error) {
        expect(isStatetrailError(error, "RPC_UNREACHABLE")).to.equal(true);
        expect((error as Error).message).to.contain("after 3 attempts");
      }
      expect(provider.ranges).to.have.length(3);
    });

    it("recognises the range errors of common nodes", function () {
      for (const message of [
        "query returned more than 10000 results",
        "block range is too large",
        "exceed maximum block range: 50000",
        "Log response size exceeded",
      ]) {
        expect(isRangeError(new Error(message)), message).to.equal(true);
      }
      expect(isRangeError(new Error("execution reverted"))).to.equal(false);
    });
  });

  describe("instanceEventStream (the verifier's streaming read)", function () {
    it("yields the events chunk by chunk, in chain order, the same as the whole read", async function () {
      const a = H("a");
      const b = H("b");
      const c = H("c");
      const logs = [created(1), state(3, a, INSTANCE), states(12, a, [b, c]), terminated(25, c, 2)];
      const provider = fakeProvider(logs);
      const streamed: InstanceEvent[] = [];
      for await (const event of instanceEventStream(provider, REGISTRY, ISSUER, INSTANCE, 0, 30, { chunkSize: 10 })) {
        streamed.push(event);
      }
      expect(provider.ranges).to.deep.equal([
        [0, 9],
        [10, 19],
        [20, 29],
        [30, 30],
      ]);
      expect(streamed).to.deep.equal(decodeInstanceLogs(logs, REGISTRY));
      const builder = new ChainBuilder(INSTANCE);
      const seqs = streamed.map((event) => builder.push(event)?.seq ?? null);
      expect(seqs).to.deep.equal([null, 0, 1, 2, null]);
      expect(builder).to.include({ count: 3, head: c });
      expect(builder.anomalies).to.deep.equal([]);
    });

    it("makes a StatesRegistered's states from bytes reused chunk after chunk: the same events as the whole read", async function () {
      // Chunks of 10 blocks holding 3, then 1, then 6 StatesRegistered logs of differing sizes (the buffer is reused
      // smaller, then grown), one with its data in uppercase hex, one of another contract, a state registered alone.
      let prev = INSTANCE;
      const logs: Log[] = [created(1)];
      const batch = (block: number, size: number, upper = false): void => {
        const hashes = Array.from({ length: size }, (_, index) => H(`${block}.${index}`));
        const made = states(block, prev, hashes);
        logs.push(upper ? ({ ...made, data: "0x" + made.data.slice(2).toUpperCase() } as unknown as Log) : made);
        prev = hashes[size - 1];
      };
      batch(2, 40);
      batch(3, 7, true);
      batch(5, 300);
      batch(14, 2);
      const elsewhere = states(15, H("elsewhere"), [H("x"), H("y")]);
      logs.push({ ...elsewhere, address: ISSUER } as unknown as Log); // another contract's log: ignored
      const alone = H("alone");
      logs.push(state(16, alone, prev));
      prev = alone;
      for (const [block, size] of [
        [21, 500],
        [22, 1],
        [23, 64],
        [24, 900],
        [26, 3],
        [29, 1000],
      ]) {
        batch(block, size);
      }
      logs.push(terminated(30, prev, 2));
      const provider = fakeProvider(logs);
      const streamed: InstanceEvent[] = [];
      for await (const event of instanceEventStream(provider, REGISTRY, ISSUER, INSTANCE, 0, 30, { chunkSize: 10 })) {
        streamed.push(event);
      }
      const whole = decodeInstanceLogs(logs, REGISTRY);
      expect(whole).to.have.length(1 + 40 + 7 + 300 + 2 + 1 + 500 + 1 + 64 + 900 + 3 + 1000 + 1);
      expect(streamed).to.deep.equal(whole);
      const builder = new ChainBuilder(INSTANCE);
      for (const event of streamed) builder.push(event);
      expect(builder.anomalies).to.deep.equal([]);
      expect(builder).to.include({ count: whole.length - 2, head: prev });
    });

    it("narrows the next eth_getLogs chunk after a dense one (many states per block) and widens it back", async function () {
      // Only the size of the log data matters here: blocks 2 and 3 hold 5 MB each (a StatesRegistered of ~80,000
      // hashes), the rest nothing.
      const dense = (blockNumber: number): Log =>
        ({ blockNumber, index: blockNumber, data: "0x" + "0".repeat(5 * 1024 * 1024) }) as unknown as Log;
      const provider = fakeProvider([dense(2), dense(3)]);
      const sizes: number[] = [];
      for await (const chunk of logChunks(provider, QUERY, 0, 40, { chunkSize: 8 })) sizes.push(chunk.length);
      // Blocks 0..7 hold 10 MB of log data: the next chunk is 4 blocks; then, sparse, 8 again.
      expect(provider.ranges).to.deep.equal([
        [0, 7],
        [8, 11],
        [12, 19],
        [20, 27],
        [28, 35],
        [36, 40],
      ]);
      expect(sizes).to.deep.equal([2, 0, 0, 0, 0, 0]);
    });

    it("asks for the next chunk while the reader consumes a sparse one, never after a dense one", async function () {
      const dense = (blockNumber: number): Log =>
        ({ blockNumber, index: blockNumber, data: "0x" + "0".repeat(1024 * 1024) }) as unknown as Log;
      const provider = fakeProvider([created(1), dense(10)]);
      const askedWhenRead: number[] = [];
      for await (const chunk of logChunks(provider, QUERY, 0, 23, { chunkSize: 8 })) {
        void chunk;
        askedWhenRead.push(provider.ranges.length);
      }
      expect(provider.ranges).to.deep.equal([
        [0, 7],
        [8, 15],
        [16, 19],
        [20, 23],
      ]);
      // Chunk 1 (sparse): chunk 2 was already asked for; chunk 2 (dense): chunk 3 only once the reader was done.
      expect(askedWhenRead).to.deep.equal([2, 2, 4, 4]);
    });

    it("retries a chunk asked for ahead that failed, as any other", async function () {
      const provider = fakeProvider([created(1), state(12, H("a"), INSTANCE)], (from, _to, call) =>
        from === 8 && call === 1 ? new Error("bad gateway") : undefined,
      );
      const read: number[] = [];
      for await (const chunk of logChunks(provider, QUERY, 0, 15, { chunkSize: 8, sleep: async () => undefined })) {
        read.push(...chunk.map((entry) => entry.blockNumber));
      }
      expect(read).to.deep.equal([1, 12]);
      expect(provider.ranges).to.deep.equal([
        [0, 7],
        [8, 15],
        [8, 15],
      ]);
    });
  });

  describe("decodeInstanceLogs", function () {
    it("decodes every event and expands StatesRegistered into linked states", function () {
      const events = decodeInstanceLogs([
        created(1),
        state(2, H("a"), INSTANCE),
        states(3, H("a"), [H("b"), H("c")]),
        terminated(4, H("c"), 2),
      ]);
      expect(events.map((event) => event.kind)).to.deep.equal(["created", "state", "state", "state", "terminated"]);
      const [, first, second, third, end] = events as [
        InstanceEvent,
        Extract<InstanceEvent, { kind: "state" }>,
        Extract<InstanceEvent, { kind: "state" }>,
        Extract<InstanceEvent, { kind: "state" }>,
        Extract<InstanceEvent, { kind: "terminated" }>,
      ];
      expect(first).to.include({ stateHash: H("a"), prevStateHash: INSTANCE, batch: null });
      expect(second).to.deep.include({ stateHash: H("b"), prevStateHash: H("a"), batch: { index: 0, size: 2 } });
      expect(third).to.deep.include({ stateHash: H("c"), prevStateHash: H("b"), batch: { index: 1, size: 2 } });
      expect(end).to.include({ finalHead: H("c"), status: "succeeded" });
      expect(first.at).to.include({ blockNumber: 2, issuer: ISSUER, instanceHash: INSTANCE });
    });

    it("ignores logs of other contracts when the registry is given", function () {
      const foreign = log(1, "InstanceCreated", [ISSUER, toBytes32(INSTANCE), toBytes32(MODEL)], ethers.ZeroAddress);
      expect(decodeInstanceLogs([foreign], REGISTRY)).to.deep.equal([]);
      expect(decodeInstanceLogs([foreign])).to.have.length(1);
    });
  });

  describe("rebuildChain", function () {
    it("numbers the states in log order and ends at the final head", function () {
      const chain = rebuildChain(
        INSTANCE,
        decodeInstanceLogs([
          created(1),
          state(2, H("a"), INSTANCE),
          states(3, H("a"), [H("b"), H("c")]),
          terminated(4, H("c"), 3),
        ]),
      );
      expect(chain.anomalies).to.deep.equal([]);
      expect(chain.states.map((s) => [s.seq, s.stateHash])).to.deep.equal([
        [0, H("a")],
        [1, H("b")],
        [2, H("c")],
      ]);
      expect(chain.head).to.equal(H("c"));
      expect(chain.terminated).to.include({ status: "failed", finalHead: H("c") });
    });

    it("starts at the instance hash when there is no state", function () {
      const chain = rebuildChain(INSTANCE, decodeInstanceLogs([created(1)]));
      expect(chain.head).to.equal(INSTANCE);
      expect(chain.states).to.deep.equal([]);
    });

    it("reports what a registry never emits: a state first, a broken link, anything after termination", function () {
      const chain = rebuildChain(
        INSTANCE,
        decodeInstanceLogs([
          state(1, H("a"), INSTANCE),
          created(2),
          state(3, H("c"), H("b")),
          terminated(4, H("c"), 2),
          state(5, H("d"), H("c")),
        ]),
      );
      expect(chain.anomalies).to.have.length(3);
      expect(chain.anomalies[0]).to.contain("before the creation event");
      expect(chain.anomalies[1]).to.contain(`links to ${H("b")}, but the head was ${H("a")}`);
      expect(chain.anomalies[2]).to.contain("after the termination");
    });
  });
});
