import { expect } from "chai";
import { toBytes32 } from "../../src/chain/hash";
import { LeafBatch } from "../../src/protocol/anchoring";
import { type InstanceProtocol } from "../../src/protocol/schema";
import { renderReport, type VerificationReport } from "../../src/verify";
import {
  anchorLeaves,
  anchorRuns,
  finishRun,
  forgeAnchoredScenario,
  publish,
  publishState,
  resign,
  startAnchored,
  verifyForged,
  type AnchoredScenario,
  type ForgeEnv,
  type ForgedRun,
} from "../helpers/forge";
import { editProtocol, failing, relink, runAttacks, type Attack } from "./tamper-runner";

/** Edits a copy of instance A's (or `run`'s) genuine protocol, has the issuer sign it again and publishes it. */
function edit(
  change: (protocol: InstanceProtocol, scenario: AnchoredScenario) => void | Promise<void>,
  run: (scenario: AnchoredScenario) => ForgedRun = (scenario) => scenario.a,
): (scenario: AnchoredScenario) => Promise<string> {
  return editProtocol<AnchoredScenario>((scenario) => run(scenario).protocol, change);
}

const ATTACKS: Array<Attack<AnchoredScenario>> = [
  {
    name: "a running anchored instance whose protocol claims it ended",
    claim: "completeness: nothing withheld, reordered or added",
    fails: ["V7"],
    says: /protocol status is succeeded, on-chain status is running/,
    mutate: edit(
      (protocol) => void (protocol.status = "succeeded"),
      (scenario) => scenario.running,
    ),
  },
  {
    // A seq no Merkle leaf can encode makes the proof check throw: the entry's other findings must still be reported.
    name: "an anchored entry whose seq is beyond what a leaf encodes (2^53)",
    claim: "each state: data, registration, time, sender, link",
    fails: ["V6"],
    says: /seq 1 "Step1": entry says seq 9007199254740992 at position 1/,
    mutate: edit((protocol) => void (protocol.instance_protocol[1].seq = 2 ** 53)),
  },
  {
    name: "bad proof (a sibling altered)",
    claim: "each state: data, registration, time, sender, link",
    fails: ["V6"],
    says: /seq 1 "Step1": the Merkle proof does not lead from the leaf .* to root 0x/,
    mutate: edit((protocol) => {
      const proof = protocol.instance_protocol[1].proof!;
      proof.siblings[0] = proof.siblings[proof.siblings.length - 1];
    }),
  },
  {
    // The verifier memoises the parents of the proofs it checked (proof-check.ts): the altered sibling is at the
    // top of a tree whose other entries (checked before) hold the genuine pair there.
    name: "a sibling changed in only one entry of a root (its top sibling, one hex digit)",
    claim: "each state: data, registration, time, sender, link",
    fails: ["V6"],
    says: /seq 4 "Step4": the Merkle proof does not lead from the leaf .* to root 0x/,
    mutate: edit((protocol) => {
      const siblings = protocol.instance_protocol[4].proof!.siblings;
      const top = siblings[siblings.length - 1];
      siblings[siblings.length - 1] = top.slice(0, -1) + (top.endsWith("0") ? "1" : "0");
    }),
  },
  {
    name: "two entries claiming the same leaf (entry 2 carries entry 1's proof: its leaf index and siblings)",
    claim: "each state: data, registration, time, sender, link",
    fails: ["V6"],
    says: /seq 2 "Step2": the Merkle proof does not lead from the leaf .* to root 0x/,
    mutate: edit((protocol) => {
      const [first, second] = [protocol.instance_protocol[1], protocol.instance_protocol[2]];
      second.proof = structuredClone(first.proof);
      second.transaction_hash = first.transaction_hash;
      second.block_nr = first.block_nr;
      second.timestamp = first.timestamp;
    }),
  },
  {
    name: "a valid proof of a root never anchored (a tree built over the instance's genuine leaves)",
    claim: "each state: data, registration, time, sender, link",
    fails: ["V6"],
    says: /seq 2 "Step2": root 0x[0-9a-f]+… was never anchored by the issuer in the trusted InstanceRegistry/,
    mutate: edit((protocol) => {
      const batch = new LeafBatch(
        protocol.instance_protocol.map((entry) => ({
          issuer: protocol.issuer.address,
          instanceHash: protocol.instance_hash,
          seq: entry.seq,
          stateHash: entry.state_hash,
          prevStateHash: entry.prev_state_hash,
        })),
      );
      protocol.instance_protocol[2].proof = batch.proof(2);
    }),
  },
  {
    name: "proof against another root (the issuer's other anchored root and its transaction)",
    claim: "each state: data, registration, time, sender, link",
    fails: ["V6"],
    says: /seq 1 "Step1": the Merkle proof does not lead from the leaf .* to root 0x/,
    mutate: edit((protocol) => {
      const [entry, other] = [protocol.instance_protocol[1], protocol.instance_protocol[5]];
      entry.proof!.root = other.proof!.root;
      entry.transaction_hash = other.transaction_hash;
      entry.block_nr = other.block_nr;
      entry.timestamp = other.timestamp;
    }),
  },
  {
    name: "leaf of another instance (B's anchored state and proof put in A's protocol)",
    claim: "each state: data, registration, time, sender, link",
    fails: ["V6", "V7"],
    says: /seq 2 "Step2": state data belongs to instance [0-9a-f]{64} \(replayed from another instance\)/,
    mutate: edit((protocol, { b }) => {
      const entries = protocol.instance_protocol;
      entries[2] = { ...b.protocol.instance_protocol[2], prev_state_hash: entries[1].state_hash };
      entries[3].prev_state_hash = entries[2].state_hash;
    }),
  },
  {
    name: "a withheld batched state (middle; later entries renumbered and relinked)",
    claim: "completeness: nothing withheld, reordered or added",
    fails: ["V6", "V7"],
    says: /the issuer committed 6 states at termination, the protocol lists 5: 1 withheld/,
    mutate: edit((protocol) => {
      protocol.instance_protocol.splice(2, 1);
      relink(protocol);
    }),
  },
  {
    name: "the last batched state withheld (status and termination kept)",
    claim: "completeness: nothing withheld, reordered or added",
    fails: ["V7"],
    says: /committed 6 states at termination, the protocol lists 5: 1 withheld.*committed final head is/s,
    mutate: edit((protocol) => {
      protocol.instance_protocol.splice(5);
      relink(protocol);
    }),
  },
  {
    name: "the last batched states withheld, claimed still running",
    claim: "completeness: nothing withheld, reordered or added",
    fails: ["V7"],
    says: /protocol status is running, on-chain status is succeeded/,
    mutate: edit((protocol) => {
      protocol.instance_protocol.splice(4);
      relink(protocol);
      protocol.status = "running";
      protocol.terminated = null;
    }),
  },
  {
    name: "two batched states swapped",
    claim: "completeness: nothing withheld, reordered or added",
    fails: ["V6", "V7"],
    says: /the trail of the protocol's 6 states is [0-9a-f]{64}, the issuer committed [0-9a-f]{64}/,
    mutate: edit((protocol) => {
      const entries = protocol.instance_protocol;
      [entries[1], entries[2]] = [entries[2], entries[1]];
      relink(protocol);
    }),
  },
  {
    name: "a state replaced by one anchored after the termination",
    claim: "each state: data, registration, time, sender, link",
    fails: ["V6", "V7"],
    says: /seq 3 "Step3": root 0x[0-9a-f]+… was anchored in block \d+, after the instance was terminated/,
    mutate: async (scenario) => {
      const { env, a } = scenario;
      const data = { ...a.stateData[3], input: { altered: true } };
      const { hash, url } = publishState(env.server, data);
      const leaf = {
        issuer: env.issuer.address,
        instanceHash: a.instanceHash,
        seq: 3,
        stateHash: hash,
        prevStateHash: a.hashes[2],
      };
      const { batch, at } = await anchorLeaves(env, [leaf]);
      return edit((protocol) => {
        const entry = protocol.instance_protocol[3];
        Object.assign(entry, {
          state_hash: hash,
          state_data: url,
          proof: batch.proof(0),
          transaction_hash: at.transaction_hash,
          block_nr: at.block_nr,
          timestamp: at.timestamp,
        });
        protocol.instance_protocol[4].prev_state_hash = hash;
      })(scenario);
    },
  },
  {
    name: "anchoring transaction moved to the issuer's other batch",
    claim: "each state: data, registration, time, sender, link",
    fails: ["V6"],
    says: /seq 0 "Step0": root 0x[0-9a-f]+… is anchored by the issuer in tx 0x[0-9a-f]+ \(block \d+\), not in tx/,
    mutate: edit((protocol) => {
      const [entry, other] = [protocol.instance_protocol[0], protocol.instance_protocol[5]];
      entry.transaction_hash = other.transaction_hash;
      entry.block_nr = other.block_nr;
    }),
  },
  {
    name: "wrong timestamp of a batched state",
    claim: "each state: data, registration, time, sender, link",
    fails: ["V6"],
    says: /seq 4 "Step4": timestamp \d+ .* is not block \d+'s time/,
    mutate: edit((protocol) => {
      protocol.instance_protocol[4].timestamp -= 60;
    }),
  },
  {
    name: "leaf_index outside the anchored batch",
    claim: "each state: data, registration, time, sender, link",
    fails: ["V6"],
    says: /seq 2 "Step2": leaf_index 6 is outside the anchored batch of 6 leaves/,
    mutate: edit((protocol) => {
      protocol.instance_protocol[2].proof!.leaf_index = 6;
    }),
  },
  {
    name: "proof dropped from one entry of an anchored protocol",
    claim: "completeness: nothing withheld, reordered or added",
    fails: ["V6", "V7"],
    says: /1 entry has no Merkle proof in a Merkle-anchored protocol: seq 3/,
    mutate: edit((protocol) => {
      protocol.instance_protocol[3].proof = null;
    }),
  },
  {
    name: "anchored states, but terminated with terminateInstance (nothing committed)",
    claim: "completeness: nothing withheld, reordered or added",
    fails: ["V7"],
    says: /terminated with terminateInstance \(final head [0-9a-f]{64}\), which commits no Merkle-anchored states/,
    mutate: async ({ env }) => {
      const run = await startAnchored(env, "terminated without commitment", 3);
      await anchorRuns(env, [{ run, from: 0, to: 3 }]);
      const finished = await finishRun(env, run, { terminate: false });
      const receipt = await (
        await env.instances
          .connect(env.issuer)
          .terminateInstance(toBytes32(run.instanceHash), toBytes32(run.instanceHash), 2)
      ).wait();
      const protocol = structuredClone(finished.protocol);
      protocol.status = "succeeded";
      protocol.terminated = { block_nr: receipt!.blockNumber, transaction_hash: receipt!.hash };
      return publish(env.server, await resign(protocol, env.issuer));
    },
  },
];

function verify(env: ForgeEnv, url: string): Promise<VerificationReport> {
  return verifyForged(env, { url });
}

describe("verifyProtocol: Merkle-anchored instances (tamper matrix)", function () {
  it("passes every step of both genuine anchored protocols (two instances sharing two roots)", async function () {
    const { env, a, b } = await forgeAnchoredScenario();
    for (const run of [a, b]) {
      const report = await verify(env, run.url);
      expect(report.verdict, renderReport(report)).to.equal("valid");
      expect(report.steps.map((step) => `${step.id}:${step.status}`)).to.deep.equal([
        "V0:pass",
        "V1:pass",
        "V2:skip",
        "V3:pass",
        "V4:pass",
        "V5:pass",
        "V6:pass",
        "V7:pass",
        "V8:pass",
        "V9:skip",
      ]);
      const v6 = report.steps.find((step) => step.id === "V6")!;
      expect(v6.detail).to.match(new RegExp(`${run.hashes.length} Merkle-anchored in BatchAnchored roots`));
      const v7 = report.steps.find((step) => step.id === "V7")!;
      expect(v7.detail).to.match(/Merkle-anchored states are exactly the \d+ committed at termination/);
    }
  });

  it("can't show a running anchored instance complete: V7 skipped, verdict could-not-verify, nothing failed", async function () {
    const { env, running } = await forgeAnchoredScenario();
    const report = await verify(env, running.url);
    expect(failing(report)).to.deep.equal([]);
    const v7 = report.steps.find((step) => step.id === "V7")!;
    expect(v7.status).to.equal("skip");
    expect(v7.detail).to.match(/still running: completeness is committed on-chain only at its termination/);
    expect(report.verdict).to.equal("could-not-verify");
    expect(report.exit_code).to.equal(2);
  });

  runAttacks<AnchoredScenario>(
    { scenario: forgeAnchoredScenario, verify: ({ env }, url) => verify(env, url), unjudged: ["V2", "V9"] },
    ATTACKS,
  );
});
