import { expect } from "chai";
import { sha256Hex } from "../../src/chain/hash";
import { trailOf } from "../../src/protocol/anchoring";
import { type InstanceProtocol, type ProtocolEntry } from "../../src/protocol/schema";
import { type ChainView } from "../../src/verify/chain";
import { type ReadyContext } from "../../src/verify/context";
import { type StepOutcome } from "../../src/verify/findings";
import { type EventLocation, type InstanceEvent } from "../../src/verify/logs";
import { completenessStep } from "../../src/verify/steps/v7-completeness";
import { VerifiedArtifacts } from "../../src/verify/conformance/artifacts";
import { encodePages, headOf } from "../../src/protocol/pages";

/**
 * V7 against a chain given as its decoded events (the registry's logs), so the attacks are exactly the
 * sequences a registry can hold, whatever the contract of the day refuses. Issue 12, findings 4 and 5.
 */
const ISSUER = "0x" + "11".repeat(20);
const INSTANCE = sha256Hex("instance");
const s = (n: number): string => sha256Hex(`state ${n}`);
const tx = (n: number): string => "0x" + sha256Hex(`tx ${n}`);

function at(position: number): EventLocation {
  return {
    blockNumber: 100 + position,
    transactionHash: tx(position),
    logIndex: 0,
    issuer: ISSUER,
    instanceHash: INSTANCE,
  };
}

/** The events of an instance whose states are `hashes`, each registered alone at its position. */
function chainOf(
  hashes: string[],
  end: { anchored?: { stateCount: number; trail: string; finalHead: string } } = {},
): { events: InstanceEvent[]; head: string } {
  const events: InstanceEvent[] = [{ kind: "created", modelHash: sha256Hex("model"), at: at(-1) }];
  let prev = INSTANCE;
  hashes.forEach((hash, position) => {
    events.push({ kind: "state", stateHash: hash, prevStateHash: prev, batch: null, at: at(position) });
    prev = hash;
  });
  const finalHead = end.anchored?.finalHead ?? prev;
  events.push({
    kind: "terminated",
    finalHead,
    status: "succeeded",
    anchored: end.anchored ? { stateCount: end.anchored.stateCount, trail: end.anchored.trail } : null,
    at: at(hashes.length),
  });
  return { events, head: finalHead };
}

/** A protocol listing `positions`: each entry the hash and registration (tx, block) of that on-chain position. */
function protocolOf(chain: string[], positions: number[], head: { seq: number; state_hash: string }): InstanceProtocol {
  const entries = positions.map(
    (position, seq): ProtocolEntry =>
      ({
        event_type: "Register State",
        seq,
        state_name: `S${seq}`,
        state_type: "Pass",
        state_hash: chain[position],
        prev_state_hash: seq === 0 ? INSTANCE : chain[positions[seq - 1]],
        timestamp: 1_700_000_000 + position,
        block_nr: at(position).blockNumber,
        client_address: ISSUER,
        transaction_hash: at(position).transactionHash,
        state_data: `https://issuer.test/states/${chain[position]}`,
        proof: null,
      }) as ProtocolEntry,
  );
  return {
    issuer: { address: ISSUER, ens_name: null, url: "https://issuer.test", certificate_fingerprint: sha256Hex("c") },
    instance_hash: INSTANCE,
    created: { block_nr: at(-1).blockNumber, transaction_hash: at(-1).transactionHash },
    status: "succeeded",
    instance_protocol: entries,
    head,
    terminated: { block_nr: at(chain.length).blockNumber, transaction_hash: at(chain.length).transactionHash },
    page_size: 4,
    entries: entries.length,
  } as unknown as InstanceProtocol;
}

/**
 * V7 on a context whose chain streams `chain.events` and whose pages are the protocol's, in pages of four (the
 * comparison crosses page boundaries). The state bodies are not served: V6's findings are not V7's.
 */
async function v7(protocol: InstanceProtocol, chain: { events: InstanceEvent[]; head: string }): Promise<StepOutcome> {
  const view = {
    instanceEventsStream: async function* () {
      yield* chain.events;
    },
    instanceOf: async () => ({ head: chain.head, status: "succeeded" }),
    transactionEvents: async () => ({ found: false, from: null, blockNumber: null, events: [] }),
    blockTimestamp: async () => null,
  } as unknown as ChainView;
  const pages = encodePages(protocol);
  const context = {
    protocol: headOf(protocol),
    chain: view,
    pages: { describe: (index: number) => `page ${index}`, read: async (index: number) => pages[index] },
    web: { get: async () => Promise.reject(new Error("not served")) },
    settings: { concurrency: 4, maxDiagnostics: 0, maxBytes: { state: 1024 } },
    artifacts: new VerifiedArtifacts(false),
  } as unknown as ReadyContext;
  return completenessStep.run(context);
}

const RUN = [0, 1, 2, 3, 4, 5].map(s);

describe("V7 compares the on-chain sequence position by position (issue 12, findings 4 and 5)", function () {
  it("passes the genuine run", async function () {
    const outcome = await v7(protocolOf(RUN, [0, 1, 2, 3, 4, 5], { seq: 5, state_hash: s(5) }), chainOf(RUN));
    expect(outcome.status, outcome.detail).to.equal("pass");
  });

  it("fails a protocol listing once a run the chain holds twice (the same hashes registered again)", async function () {
    const twice = [...RUN, ...RUN];
    // The liar claims the chain's head seq, so only the position-by-position comparison can tell.
    const outcome = await v7(protocolOf(twice, [0, 1, 2, 3, 4, 5], { seq: 11, state_hash: s(5) }), chainOf(twice));
    expect(outcome.status).to.equal("fail");
    expect(outcome.problems!.join("\n")).to.match(
      /6 state\(s\) registered on-chain are missing from the protocol \(withheld\): seq 6 /,
    );
  });

  it("fails an entry that names the later registration of its repeated hash (and so its block and time)", async function () {
    const twice = [...RUN, ...RUN];
    const positions = [0, 1, 8, 3, 4, 5, 6, 7, 2, 9, 10, 11]; // seq 2 and 8 swap their registrations
    const outcome = await v7(protocolOf(twice, positions, { seq: 11, state_hash: s(5) }), chainOf(twice));
    expect(outcome.status).to.equal("fail");
    const problems = outcome.problems!.join("\n");
    expect(problems).to.contain(`seq 2 names the registration of its state at seq 8 (tx ${tx(8)}, block 108)`);
    expect(problems).to.contain(`not its own (tx ${tx(2)}, block 102)`);
    expect(problems).to.contain(`seq 8 names the registration of its state at seq 2`);
  });

  it("fails a reordered protocol, naming where the listed hash is registered", async function () {
    const outcome = await v7(protocolOf(RUN, [0, 2, 1, 3, 4, 5], { seq: 5, state_hash: s(5) }), chainOf(RUN));
    expect(outcome.status).to.equal("fail");
    expect(outcome.problems!.join("\n")).to.match(/reorders states: .* listed at seq 1, registered at seq 2/);
  });

  it("fails a protocol whose head seq is not its last entry's", async function () {
    const outcome = await v7(protocolOf(RUN, [0, 1, 2, 3, 4, 5], { seq: 7, state_hash: s(5) }), chainOf(RUN));
    expect(outcome.status).to.equal("fail");
  });

  it("fails per-state entries that disagree with the count a terminateAnchored committed", async function () {
    const three = RUN.slice(0, 3);
    const chain = chainOf(three, {
      anchored: { stateCount: 5, trail: trailOf(INSTANCE, RUN.slice(0, 5)), finalHead: s(2) },
    });
    const outcome = await v7(protocolOf(three, [0, 1, 2], { seq: 2, state_hash: s(2) }), chain);
    expect(outcome.status).to.equal("fail");
    const problems = outcome.problems!.join("\n");
    expect(problems).to.contain("the issuer committed 5 states at termination, the protocol lists 3");
    expect(problems).to.contain("trail the issuer committed at termination is not the trail of the protocol's states");
  });

  it("explains the first differing positions of a long reordered run and counts the rest (bounded memory)", async function () {
    const long = Array.from({ length: 300 }, (_, n) => s(n));
    const positions = long.map((_, position) => (position % 2 === 0 ? position + 1 : position - 1)); // pairs swapped
    const outcome = await v7(protocolOf(long, positions, { seq: 299, state_hash: long[298] }), chainOf(long));
    expect(outcome.status).to.equal("fail");
    const problems = outcome.problems!.join("\n");
    expect(problems).to.match(/the protocol reorders states: .* listed at seq 0, registered at seq 1, .* and 290 more/);
  });

  it("names a withheld state deep in a long run (everything after it shifted)", async function () {
    const long = Array.from({ length: 300 }, (_, n) => s(n));
    const positions = long.map((_, position) => position).filter((position) => position !== 150);
    const outcome = await v7(protocolOf(long, positions, { seq: 298, state_hash: long[299] }), chainOf(long));
    expect(outcome.status).to.equal("fail");
    expect(outcome.problems!.join("\n")).to.match(
      /1 state\(s\) registered on-chain are missing from the protocol \(withheld\): seq 150 [0-9a-f]{64} \(of the first 64 of 149 positions that differ\)/,
    );
  });
});
