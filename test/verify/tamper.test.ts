import { expect } from "chai";
import { ethers, network } from "hardhat";
import { toBytes32 } from "../../src/chain/hash";
import { stateDataBytes } from "../../src/protocol/hashing";
import { type InstanceProtocol, type StateData } from "../../src/protocol/schema";
import { renderReport, type StepId, type VerificationReport } from "../../src/verify";
import {
  deployRegistries,
  fakeCertificate,
  forgeRun,
  forgeScenario,
  modelBytes,
  publish,
  publishModel,
  publishState,
  resign,
  verifyForged,
  type ForgeEnv,
  type ForgedRun,
} from "../helpers/forge";

/** A tampering: it changes the chain, the server or the protocol, and returns the protocol URL to verify. */
type Tamper = (env: ForgeEnv, run: ForgedRun) => Promise<string>;

interface TamperCase {
  name: string;
  /** Exactly the steps that must fail, in report order. */
  fails: StepId[];
  /** The step the tampering is aimed at (default the first of `fails`), and what it must say. */
  aimed?: StepId;
  says: RegExp;
  tamper: Tamper;
}

/** Edits a copy of the genuine protocol, has the issuer sign it again and publishes it. */
function edit(change: (protocol: InstanceProtocol, env: ForgeEnv, run: ForgedRun) => void | Promise<void>): Tamper {
  return async (env, run) => {
    const protocol = structuredClone(run.protocol);
    await change(protocol, env, run);
    return publish(env.server, await resign(protocol, env.issuer));
  };
}

/** Publishes state data for entry `seq` of `protocol` and points the entry at it. */
function replaceStateData(protocol: InstanceProtocol, data: StateData, env: ForgeEnv): string {
  const { hash, url } = publishState(env.server, data);
  const entry = protocol.instance_protocol[data.seq];
  entry.state_hash = hash;
  entry.state_data = url;
  return hash;
}

const CASES: TamperCase[] = [
  {
    name: "state data altered on the server",
    fails: ["V6"],
    says: /seq 2 "Step2": bytes at .* hash to [0-9a-f]{64}, not state_hash/,
    tamper: async (env, run) => {
      const data = { ...run.stateData[2], input: { label: "run", seq: 2, amount: 1_000_000 } };
      env.server.serve(run.protocol.instance_protocol[2].state_data, stateDataBytes(data));
      return run.url;
    },
  },
  {
    name: "state hash altered (to the hash of altered data)",
    fails: ["V6", "V7"],
    says: /seq 2 "Step2": state [0-9a-f]{64} is not registered by the issuer for this instance in tx/,
    tamper: edit((protocol, env, run) => {
      replaceStateData(protocol, { ...run.stateData[2], input: { altered: true } }, env);
    }),
  },
  {
    name: "two states swapped",
    fails: ["V6", "V7"],
    aimed: "V7",
    says: /reorders states/,
    tamper: edit((protocol) => {
      const entries = protocol.instance_protocol;
      [entries[1], entries[2]] = [entries[2], entries[1]];
    }),
  },
  {
    name: "middle state dropped (later entries renumbered and relinked)",
    fails: ["V6", "V7"],
    aimed: "V7",
    says: /1 state\(s\) registered on-chain are missing from the protocol \(withheld\): seq 2 /,
    tamper: edit((protocol) => {
      const entries = protocol.instance_protocol;
      entries.splice(2, 1);
      entries[2].prev_state_hash = entries[1].state_hash;
      entries.forEach((entry, index) => (entry.seq = index));
      protocol.head.seq = entries.length - 1;
    }),
  },
  {
    name: "last states withheld (a consistent prefix, claimed still running)",
    fails: ["V7"],
    says: /3 state\(s\) registered on-chain are missing from the protocol \(withheld\)/,
    tamper: edit((protocol) => {
      protocol.instance_protocol.splice(3);
      protocol.head = { seq: 2, state_hash: protocol.instance_protocol[2].state_hash };
      protocol.status = "running";
      protocol.terminated = null;
    }),
  },
  {
    name: "forged state not on chain",
    fails: ["V6", "V7"],
    says: /seq 6 "Injected": .* does not exist on this chain/,
    tamper: edit((protocol, env, run) => {
      const last = protocol.instance_protocol[5];
      const data: StateData = { ...run.stateData[5], seq: 6, state_name: "Injected", state_type: "Task" };
      const { hash, url } = publishState(env.server, data);
      protocol.instance_protocol.push({
        ...last,
        seq: 6,
        state_name: "Injected",
        state_type: "Task",
        state_hash: hash,
        prev_state_hash: last.state_hash,
        transaction_hash: ethers.hexlify(ethers.randomBytes(32)),
        state_data: url,
      });
      protocol.head = { seq: 6, state_hash: hash };
    }),
  },
  {
    name: "wrong transaction hash",
    fails: ["V6"],
    says: /seq 1 "Step1": .* registered no state/,
    tamper: edit((protocol) => {
      protocol.instance_protocol[1].transaction_hash = protocol.instance_protocol[2].transaction_hash;
    }),
  },
  {
    name: "wrong block number",
    fails: ["V6"],
    says: /seq 1 "Step1": tx 0x[0-9a-f]+ is in block \d+, entry says block \d+/,
    tamper: edit((protocol) => {
      protocol.instance_protocol[1].block_nr += 1;
    }),
  },
  {
    name: "wrong timestamp",
    fails: ["V6"],
    says: /seq 1 "Step1": timestamp \d+ .* is not block \d+'s time/,
    tamper: edit((protocol) => {
      protocol.instance_protocol[1].timestamp -= 60;
    }),
  },
  {
    name: "state registered by another address",
    fails: ["V6"],
    says: /seq 0 "Step0": .* was sent by 0x[0-9a-fA-F]{40}, not the issuer/,
    tamper: async (env, run) => {
      // Another account registers the same state for the same instance hash, in its own namespace.
      const registry = env.instances.connect(env.other);
      const instance = toBytes32(run.instanceHash);
      await (await registry.createInstance(instance, toBytes32(env.model.hash))).wait();
      const receipt = await (
        await registry.registerState(instance, toBytes32(run.protocol.instance_protocol[0].state_hash), instance)
      ).wait();
      return edit((protocol) => {
        const entry = protocol.instance_protocol[0];
        entry.transaction_hash = receipt!.hash;
        entry.block_nr = receipt!.blockNumber;
      })(env, run);
    },
  },
  {
    name: "model bytes altered on the server",
    fails: ["V4"],
    says: /model bytes at .* hash to [0-9a-f]{64}, not model_hash/,
    tamper: async (env, run) => {
      env.server.serve(env.model.url, Buffer.concat([env.model.bytes, Buffer.from(" ")]));
      return run.url;
    },
  },
  {
    name: "instance input swapped on the server",
    fails: ["V5"],
    says: /instance_data .* recomputes instance hash [0-9a-f]{64}, not/,
    tamper: async (env, run) => {
      env.server.serve(run.protocol.instance_data, Buffer.from('{"amount": 1000000}'));
      return run.url;
    },
  },
  {
    name: "model never registered",
    fails: ["V4", "V5"],
    says: /model [0-9a-f]{64} was never registered/,
    tamper: edit(async (protocol, env) => {
      const model = await publishModel(env, modelBytes("unregistered model"));
      protocol.model_hash = model.hash;
      protocol.model_data = model.url;
    }),
  },
  {
    name: "instance of another model",
    fails: ["V5"],
    says: /instance was created for model [0-9a-f]{64}, not model_hash/,
    tamper: edit(async (protocol, env) => {
      const model = await publishModel(env, modelBytes("another model"), { models: env.models, signer: env.issuer });
      protocol.model_hash = model.hash;
      protocol.model_data = model.url;
    }),
  },
  {
    name: "another issuer's instance",
    fails: ["V5", "V6", "V7"],
    says: /no InstanceCreated by 0x[0-9a-fA-F]{40} .* was sent by 0x[0-9a-fA-F]{40}, not the issuer/,
    tamper: async (env) => {
      const theirs = await forgeRun(env, { signer: env.other, label: "their run" });
      return edit((protocol) => {
        protocol.issuer.address = env.issuer.address;
        for (const entry of protocol.instance_protocol) entry.client_address = env.issuer.address;
      })(env, theirs);
    },
  },
  {
    name: "signature by another key",
    fails: ["V8"],
    says: /the protocol is signed by 0x[0-9a-fA-F]{40}, not the issuer/,
    tamper: async (env, run) => publish(env.server, await resign(run.protocol, env.other)),
  },
  {
    name: "certificate not registered",
    fails: ["V3"],
    says: /server certificate [0-9a-f]{64} is not registered/,
    tamper: async (env, run) => {
      const { notBefore, notAfter } = env.server.certificate;
      env.server.certificate = fakeCertificate("impostor", notBefore, notAfter);
      return run.url;
    },
  },
  {
    name: "certificate revoked",
    fails: ["V3"],
    says: /server certificate [0-9a-f]{64} was revoked at/,
    tamper: async (env, run) => {
      await (
        await env.certificates.connect(env.issuer).revokeCertificate(toBytes32(env.server.certificate.fingerprint))
      ).wait();
      return run.url;
    },
  },
  {
    name: "certificate expired",
    fails: ["V3"],
    says: /server certificate is expired at .* \(registered window/,
    tamper: async (env, run) => {
      const latest = (await ethers.provider.getBlock("latest"))!.timestamp;
      await network.provider.send("evm_increaseTime", [env.server.certificate.notAfter - latest + 3_600]);
      await network.provider.send("evm_mine", []);
      return run.url;
    },
  },
  {
    name: "look-alike registries",
    fails: ["V0", "V5", "V6", "V7"],
    says: /protocol names InstanceRegistry 0x[0-9a-fA-F]{40}, the trusted one \(forge\) is 0x[0-9a-fA-F]{40}: look-alike registry/,
    tamper: async (env) => {
      // The issuer runs the instance on registries of its own, registering the same model there.
      const lookalike = await deployRegistries(env.other);
      await (await lookalike.models.connect(env.issuer).registerModel(toBytes32(env.model.hash), env.model.url)).wait();
      const run = await forgeRun(env, { registries: lookalike, label: "look-alike" });
      return run.url;
    },
  },
  {
    name: "states replayed from another instance",
    fails: ["V6", "V7"],
    says: /seq 2 "Step2": state data belongs to instance [0-9a-f]{64} \(replayed from another instance\)/,
    tamper: async (env, run) => {
      const second = await forgeRun(env, { label: "second run" });
      return edit((protocol) => {
        const entries = protocol.instance_protocol;
        entries[2] = { ...second.protocol.instance_protocol[2], prev_state_hash: entries[1].state_hash };
        entries[3].prev_state_hash = entries[2].state_hash;
      })(env, run);
    },
  },
  {
    name: "wrong chain id",
    fails: ["V0"],
    says: /protocol claims chain 11155111, the trusted chain is 31337/,
    tamper: edit((protocol) => {
      protocol.chain_id = 11155111;
    }),
  },
  {
    name: "status altered",
    fails: ["V7"],
    says: /protocol status is failed, on-chain status is succeeded/,
    tamper: edit((protocol) => {
      protocol.status = "failed";
    }),
  },
  {
    name: "termination moved",
    fails: ["V7"],
    says: /terminated on-chain in block \d+ tx 0x[0-9a-f]+; protocol says block/,
    tamper: edit((protocol) => {
      protocol.terminated!.block_nr -= 1;
    }),
  },
];

function failing(report: VerificationReport): StepId[] {
  return report.steps.filter((step) => step.status === "fail").map((step) => step.id);
}

describe("verifyProtocol: tamper matrix", function () {
  it("passes every step of the untampered protocol, V2 (no ENS) and V9 (conformance off) skipped", async function () {
    const { env, run } = await forgeScenario();
    const report = await verifyForged(env, { url: run.url });
    expect(report.verdict).to.equal("valid");
    expect(report.exit_code).to.equal(0);
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
  });

  it("refuses data URLs off the issuer's origin without fetching them (V1 fails, no request leaves)", async function () {
    const { env, run } = await forgeScenario();
    const internal = "https://169.254.169.254/latest/meta-data";
    const url = await edit((protocol) => {
      protocol.instance_protocol[1].state_data = internal;
    })(env, run);
    const requested: string[] = [];
    const report = await verifyForged(
      env,
      { url },
      {
        fetcher: (target, request) => {
          requested.push(target);
          return env.server.fetcher(target, request);
        },
      },
    );
    expect(report.verdict).to.equal("invalid");
    expect(failing(report)).to.include("V1");
    expect(report.steps.find((step) => step.id === "V1")!.problems.join("\n")).to.match(
      /not the issuer's content-addressed URL/,
    );
    expect(requested.filter((target) => target.startsWith(internal))).to.deep.equal([]);
  });

  for (const { name, fails, aimed = fails[0], says, tamper } of CASES) {
    it(`detects: ${name} (${aimed}; fails ${fails.join(", ")})`, async function () {
      const { env, run } = await forgeScenario();
      const url = await tamper(env, run);
      const report = await verifyForged(env, { url });
      if (process.env.SHOW_REPORTS) console.log(renderReport(report));
      expect(report.verdict, JSON.stringify(report.steps, null, 2)).to.equal("invalid");
      expect(report.exit_code).to.equal(1);
      expect(failing(report), JSON.stringify(report.steps, null, 2)).to.deep.equal(fails);
      const step = report.steps.find((candidate) => candidate.id === aimed)!;
      expect(step.problems.join("\n")).to.match(says);
      const others = report.steps.filter((step) => !fails.includes(step.id) && step.id !== "V2" && step.id !== "V9");
      for (const step of others) expect(step.status, `${step.id}: ${step.detail}`).to.equal("pass");
    });
  }
});
