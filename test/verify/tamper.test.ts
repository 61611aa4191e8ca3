import { expect } from "chai";
import { ethers, network } from "hardhat";
import { toBytes32 } from "../../src/chain/hash";
import { sealInput, sealState } from "../../src/protocol/disclosure";
import { type InstanceProtocol, type StateContent } from "../../src/protocol/schema";
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
  type Scenario,
} from "../helpers/forge";
import { editProtocol, failing, runAttacks, type Attack } from "./tamper-runner";

/** Edits a copy of the genuine protocol, has the issuer sign it again and publishes it. */
function edit(
  change: (protocol: InstanceProtocol, env: ForgeEnv, run: ForgedRun) => void | Promise<void>,
): (scenario: Scenario) => Promise<string> {
  return editProtocol<Scenario>(
    (scenario) => scenario.run.protocol,
    (protocol, { env, run }) => change(protocol, env, run),
  );
}

/** Publishes state data for entry `seq` of `protocol` and points the entry at it. */
function replaceStateData(protocol: InstanceProtocol, data: StateContent, env: ForgeEnv): string {
  const { hash, url } = publishState(env.server, data);
  const entry = protocol.instance_protocol[data.seq];
  entry.state_hash = hash;
  entry.state_data = url;
  return hash;
}

const ATTACKS: Array<Attack<Scenario>> = [
  {
    name: "state data altered on the server",
    claim: "each state: data, registration, time, sender, link",
    fails: ["V6"],
    says: /seq 2 "Step2": bytes at .* hash to [0-9a-f]{64}, not state_hash/,
    mutate: async ({ env, run }) => {
      const data = { ...run.stateData[2], input: { label: "run", seq: 2, amount: 1_000_000 } };
      env.server.serve(run.protocol.instance_protocol[2].state_data, sealState(data).document);
      return run.url;
    },
  },
  {
    name: "state hash altered (to the hash of altered data)",
    claim: "each state: data, registration, time, sender, link",
    fails: ["V6", "V7"],
    says: /seq 2 "Step2": state [0-9a-f]{64} is not registered by the issuer for this instance in tx/,
    mutate: edit((protocol, env, run) => {
      replaceStateData(protocol, { ...run.stateData[2], input: { altered: true } }, env);
    }),
  },
  {
    name: "two states swapped",
    claim: "completeness: nothing withheld, reordered or added",
    fails: ["V6", "V7"],
    says: /reorders states/,
    mutate: edit((protocol) => {
      const entries = protocol.instance_protocol;
      [entries[1], entries[2]] = [entries[2], entries[1]];
    }),
  },
  {
    name: "middle state dropped (later entries renumbered and relinked)",
    claim: "completeness: nothing withheld, reordered or added",
    fails: ["V6", "V7"],
    says: /1 state\(s\) registered on-chain are missing from the protocol \(withheld\): seq 2 /,
    mutate: edit((protocol) => {
      const entries = protocol.instance_protocol;
      entries.splice(2, 1);
      entries[2].prev_state_hash = entries[1].state_hash;
      entries.forEach((entry, index) => (entry.seq = index));
      protocol.head.seq = entries.length - 1;
    }),
  },
  {
    name: "last states withheld (a consistent prefix, claimed still running)",
    claim: "completeness: nothing withheld, reordered or added",
    fails: ["V7"],
    says: /3 state\(s\) registered on-chain are missing from the protocol \(withheld\)/,
    mutate: edit((protocol) => {
      protocol.instance_protocol.splice(3);
      protocol.head = { seq: 2, state_hash: protocol.instance_protocol[2].state_hash };
      protocol.status = "running";
      protocol.terminated = null;
    }),
  },
  {
    name: "forged state not on chain",
    claim: "each state: data, registration, time, sender, link",
    fails: ["V6", "V7"],
    says: /seq 6 "Injected": .* does not exist on this chain/,
    mutate: edit((protocol, env, run) => {
      const last = protocol.instance_protocol[5];
      const data: StateContent = { ...run.stateData[5], seq: 6, state_name: "Injected", state_type: "Task" };
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
    claim: "each state: data, registration, time, sender, link",
    fails: ["V6"],
    says: /seq 1 "Step1": .* registered no state/,
    mutate: edit((protocol) => {
      protocol.instance_protocol[1].transaction_hash = protocol.instance_protocol[2].transaction_hash;
    }),
  },
  {
    name: "wrong block number",
    claim: "each state: data, registration, time, sender, link",
    fails: ["V6"],
    says: /seq 1 "Step1": tx 0x[0-9a-f]+ is in block \d+, entry says block \d+/,
    mutate: edit((protocol) => {
      protocol.instance_protocol[1].block_nr += 1;
    }),
  },
  {
    name: "wrong timestamp",
    claim: "each state: data, registration, time, sender, link",
    fails: ["V6"],
    says: /seq 1 "Step1": timestamp \d+ .* is not block \d+'s time/,
    mutate: edit((protocol) => {
      protocol.instance_protocol[1].timestamp -= 60;
    }),
  },
  {
    name: "state registered by another address",
    claim: "each state: data, registration, time, sender, link",
    fails: ["V6"],
    says: /seq 0 "Step0": .* was sent by 0x[0-9a-fA-F]{40}, not the issuer/,
    mutate: async ({ env, run }) => {
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
      })({ env, run });
    },
  },
  {
    name: "model bytes altered on the server",
    claim: "the registered model",
    fails: ["V4"],
    says: /model bytes at .* hash to [0-9a-f]{64}, not model_hash/,
    mutate: async ({ env, run }) => {
      env.server.serve(env.model.url, Buffer.concat([env.model.bytes, Buffer.from(" ")]));
      return run.url;
    },
  },
  {
    name: "instance input swapped on the server (raw bytes instead of the input document)",
    claim: "the instance, its issuer, model and input",
    fails: ["V5"],
    says: /instance_data .*: the input document is not one JSON line ending in a newline/,
    mutate: async ({ env, run }) => {
      env.server.serve(run.protocol.instance_data, Buffer.from('{"amount": 1000000}'));
      return run.url;
    },
  },
  {
    name: "instance input swapped on the server (a disclosure of another input, the genuine salt)",
    claim: "the instance, its issuer, model and input",
    fails: ["V5"],
    says: /instance_data .*: the disclosed execution input does not match input_digest \(a forged input\)/,
    mutate: async ({ env, run }) => {
      const swapped = sealInput(Buffer.from('{"amount":1000000}'), run.sealedInput.disclosure.salt);
      env.server.serve(run.protocol.instance_data, swapped.document);
      return run.url;
    },
  },
  {
    name: "model never registered",
    claim: "the registered model",
    fails: ["V4", "V5"],
    says: /model [0-9a-f]{64} was never registered/,
    mutate: edit(async (protocol, env) => {
      const model = await publishModel(env, modelBytes("unregistered model"));
      protocol.model_hash = model.hash;
      protocol.model_data = model.url;
    }),
  },
  {
    name: "instance of another model",
    claim: "the instance, its issuer, model and input",
    fails: ["V5"],
    says: /instance was created for model [0-9a-f]{64}, not model_hash/,
    mutate: edit(async (protocol, env) => {
      const model = await publishModel(env, modelBytes("another model"), { models: env.models, signer: env.issuer });
      protocol.model_hash = model.hash;
      protocol.model_data = model.url;
    }),
  },
  {
    name: "another issuer's instance",
    claim: "the instance, its issuer, model and input",
    fails: ["V5", "V6", "V7"],
    says: /no InstanceCreated by 0x[0-9a-fA-F]{40} .* was sent by 0x[0-9a-fA-F]{40}, not the issuer/,
    mutate: async ({ env }) => {
      const theirs = await forgeRun(env, { signer: env.other, label: "their run" });
      return edit((protocol) => {
        protocol.issuer.address = env.issuer.address;
        for (const entry of protocol.instance_protocol) entry.client_address = env.issuer.address;
      })({ env, run: theirs });
    },
  },
  {
    name: "signature by another key",
    claim: "the issuer's signature",
    fails: ["V8"],
    says: /the protocol is signed by 0x[0-9a-fA-F]{40}, not the issuer/,
    mutate: async ({ env, run }) => publish(env.server, await resign(run.protocol, env.other)),
  },
  {
    name: "certificate not registered",
    claim: "the issuer's certificate",
    fails: ["V3"],
    says: /server certificate [0-9a-f]{64} is not registered/,
    mutate: async ({ env, run }) => {
      const { notBefore, notAfter } = env.server.certificate;
      env.server.certificate = fakeCertificate("impostor", notBefore, notAfter);
      return run.url;
    },
  },
  {
    name: "certificate revoked",
    claim: "the issuer's certificate",
    fails: ["V3"],
    says: /server certificate [0-9a-f]{64} was revoked at/,
    mutate: async ({ env, run }) => {
      await (
        await env.certificates.connect(env.issuer).revokeCertificate(toBytes32(env.server.certificate.fingerprint))
      ).wait();
      return run.url;
    },
  },
  {
    name: "certificate expired",
    claim: "the issuer's certificate",
    fails: ["V3"],
    says: /server certificate is expired at .* \(registered window/,
    mutate: async ({ env, run }) => {
      const latest = (await ethers.provider.getBlock("latest"))!.timestamp;
      await network.provider.send("evm_increaseTime", [env.server.certificate.notAfter - latest + 3_600]);
      await network.provider.send("evm_mine", []);
      return run.url;
    },
  },
  {
    name: "look-alike registries",
    claim: "the trusted chain and registries",
    fails: ["V0", "V5", "V6", "V7"],
    says: /protocol names InstanceRegistry 0x[0-9a-fA-F]{40}, the trusted one \(forge\) is 0x[0-9a-fA-F]{40}: look-alike registry/,
    mutate: async ({ env }) => {
      // The issuer runs the instance on registries of its own, registering the same model there.
      const lookalike = await deployRegistries(env.other);
      await (await lookalike.models.connect(env.issuer).registerModel(toBytes32(env.model.hash), env.model.url)).wait();
      const run = await forgeRun(env, { registries: lookalike, label: "look-alike" });
      return run.url;
    },
  },
  {
    name: "states replayed from another instance",
    claim: "each state: data, registration, time, sender, link",
    fails: ["V6", "V7"],
    says: /seq 2 "Step2": state data belongs to instance [0-9a-f]{64} \(replayed from another instance\)/,
    mutate: async ({ env, run }) => {
      const second = await forgeRun(env, { label: "second run" });
      return edit((protocol) => {
        const entries = protocol.instance_protocol;
        entries[2] = { ...second.protocol.instance_protocol[2], prev_state_hash: entries[1].state_hash };
        entries[3].prev_state_hash = entries[2].state_hash;
      })({ env, run });
    },
  },
  {
    name: "wrong chain id",
    claim: "the trusted chain and registries",
    fails: ["V0"],
    says: /protocol claims chain 11155111, the trusted chain is 31337/,
    mutate: edit((protocol) => {
      protocol.chain_id = 11155111;
    }),
  },
  {
    name: "status altered",
    claim: "completeness: nothing withheld, reordered or added",
    fails: ["V7"],
    says: /protocol status is failed, on-chain status is succeeded/,
    mutate: edit((protocol) => {
      protocol.status = "failed";
    }),
  },
  {
    name: "termination moved",
    claim: "completeness: nothing withheld, reordered or added",
    fails: ["V7"],
    says: /terminated on-chain in block \d+ tx 0x[0-9a-f]+; protocol says block/,
    mutate: edit((protocol) => {
      protocol.terminated!.block_nr -= 1;
    }),
  },
];

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

  it("refuses data URLs off the issuer's origin without fetching them (V6 fails as the page is read, no request leaves)", async function () {
    const { env, run } = await forgeScenario();
    const internal = "https://169.254.169.254/latest/meta-data";
    const url = await edit((protocol) => {
      protocol.instance_protocol[1].state_data = internal;
    })({ env, run });
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
    expect(failing(report)).to.include("V6");
    expect(report.steps.find((step) => step.id === "V6")!.problems.join("\n")).to.match(
      /seq 1 .*state_data is https:\/\/169\.254\.169\.254.*not the issuer's content-addressed URL/,
    );
    expect(requested.filter((target) => target.startsWith(internal))).to.deep.equal([]);
  });

  runAttacks<Scenario>(
    {
      scenario: forgeScenario,
      verify: ({ env }, url) => verifyForged(env, { url }),
      unjudged: ["V2", "V9"],
    },
    ATTACKS,
  );
});
