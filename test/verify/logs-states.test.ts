import { expect } from "chai";
import fc from "fast-check";
import { ethers, type Log } from "ethers";
import { fromBytes32, sha256Hex, toBytes32 } from "../../src/chain/hash";
import {
  decodeInstanceLogs,
  decodeStatesRegistered,
  INSTANCE_EVENT_TOPICS,
  type InstanceEvent,
} from "../../src/verify/logs";
import { IInstanceRegistry__factory } from "../../typechain-types";

const registryInterface = IInstanceRegistry__factory.createInterface();
const REGISTRY = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0";
const ISSUER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
const INSTANCE = sha256Hex("instance");

function statesLog(prev: string, hashes: string[], data?: string): Log {
  const encoded = registryInterface.encodeEventLog("StatesRegistered", [
    ISSUER,
    toBytes32(INSTANCE),
    toBytes32(prev),
    hashes.map(toBytes32),
  ]);
  return {
    blockNumber: 7,
    index: 3,
    address: REGISTRY,
    topics: encoded.topics,
    data: data ?? encoded.data,
    transactionHash: "0x" + "AB".repeat(32),
  } as unknown as unknown as Log;
}

/** What the ABI decoder yields for a StatesRegistered log (the general path of decodeInstanceLogs). */
function viaAbi(log: Log): InstanceEvent[] {
  const parsed = registryInterface.parseLog({ topics: [...log.topics], data: log.data })!;
  const hashes = (parsed.args.stateHashes as string[]).map(fromBytes32);
  let prev = fromBytes32(parsed.args.prevStateHash as string);
  const at = {
    blockNumber: log.blockNumber,
    transactionHash: log.transactionHash.toLowerCase(),
    logIndex: log.index,
    issuer: ethers.getAddress(parsed.args.issuer as string),
    instanceHash: fromBytes32(parsed.args.instanceHash as string),
  };
  return hashes.map((stateHash, index) => {
    const event: InstanceEvent = {
      kind: "state",
      stateHash,
      prevStateHash: prev,
      batch: { index, size: hashes.length },
      at,
    };
    prev = stateHash;
    return event;
  });
}

const hash = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((bytes) => Buffer.from(bytes).toString("hex"));

describe("decodeStatesRegistered (the fast path of decodeInstanceLogs)", function () {
  it("yields exactly what the ABI decoder yields, for any hashes", function () {
    fc.assert(
      fc.property(hash, fc.array(hash, { minLength: 1, maxLength: 40 }), (prev, hashes) => {
        const log = statesLog(prev, hashes);
        const events: InstanceEvent[] = [];
        expect(decodeStatesRegistered(log, events)).to.equal(true);
        expect(events).to.deep.equal(viaAbi(log));
        expect(decodeInstanceLogs([log], REGISTRY)).to.deep.equal(viaAbi(log));
      }),
      { numRuns: 50 },
    );
  });

  it("reads uppercase hex as the decoder does (lowercase hashes)", function () {
    const log = statesLog(sha256Hex("p"), [sha256Hex("a"), sha256Hex("b")]);
    const upper = { ...log, data: "0x" + log.data.slice(2).toUpperCase() } as unknown as Log;
    const events: InstanceEvent[] = [];
    expect(decodeStatesRegistered(upper, events)).to.equal(true);
    expect(events).to.deep.equal(viaAbi(log));
  });

  it("leaves every other layout to the ABI decoder", function () {
    const hashes = [sha256Hex("a"), sha256Hex("b")];
    const genuine = statesLog(sha256Hex("p"), hashes);
    const words = genuine.data.slice(2).match(/.{64}/g)!;
    const word = (n: number) => n.toString(16).padStart(64, "0");
    const variants: Record<string, Log> = {
      // A valid encoding with the array one word further (an offset of 0x60): the decoder follows it.
      "another offset": statesLog(
        sha256Hex("p"),
        [],
        "0x" + [words[0], word(0x60), word(0), ...words.slice(2)].join(""),
      ),
      truncated: { ...genuine, data: genuine.data.slice(0, -64) } as unknown as Log,
      "extra bytes": { ...genuine, data: genuine.data + "00".repeat(32) } as unknown as Log,
      "empty array": statesLog(sha256Hex("p"), [], "0x" + [words[0], word(0x40), word(0)].join("")),
      "not hex": { ...genuine, data: genuine.data.replace(/.$/, "z") } as unknown as Log,
      "another event": {
        ...genuine,
        topics: [INSTANCE_EVENT_TOPICS.state, ...genuine.topics.slice(1)],
      } as unknown as Log,
    };
    for (const [name, log] of Object.entries(variants)) {
      const events: InstanceEvent[] = [];
      expect(decodeStatesRegistered(log, events), name).to.equal(false);
      expect(events, name).to.deep.equal([]);
    }
    // The general path still decodes the valid one with another offset.
    const decoded = decodeInstanceLogs([variants["another offset"]], REGISTRY);
    expect(decoded.map((event) => (event.kind === "state" ? event.stateHash : ""))).to.deep.equal(hashes);
  });
});
