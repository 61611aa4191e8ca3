import { expect } from "chai";
import { ethers } from "hardhat";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import { signCertificateBinding } from "../../src/chain/certificate";
import { sha256Hex, toBytes32 } from "../../src/chain/hash";
import { type ProtocolHead } from "../../src/protocol/schema";
import { ChainView } from "../../src/verify/chain";
import { type ReadyContext } from "../../src/verify/context";
import { type StepOutcome } from "../../src/verify/findings";
import { providePass, type PassResult } from "../../src/verify/steps/pass";
import { certificateStep } from "../../src/verify/steps/v3-certificate";
import { type ServerCertificate } from "../../src/verify/types";
import { CertificateRegistry__factory, type CertificateRegistry } from "../../typechain-types";

/**
 * V3 checks the certificate of the run at the states' times, as SECURITY.md says (issue 12, finding 9): it
 * was registered for the issuer by the first state's block, its registered window covers every state's time,
 * and it was not revoked before the last state. Real CertificateRegistry on the in-process chain; the states
 * are blocks mined around the registration (V6 proves a protocol's block numbers and times, not V3).
 */
const DAY = 86_400;

describe("V3 at the states' times (issue 12, finding 9)", function () {
  let registry: CertificateRegistry;
  let issuer: HardhatEthersSigner;
  let chainId: number;

  before(async function () {
    const [deployer, holder] = await ethers.getSigners();
    issuer = holder;
    registry = await new CertificateRegistry__factory(deployer).deploy();
    chainId = Number((await ethers.provider.getNetwork()).chainId);
  });

  async function latest(): Promise<{ number: number; timestamp: number }> {
    const block = (await ethers.provider.getBlock("latest"))!;
    return { number: block.number, timestamp: block.timestamp };
  }

  async function mineState(): Promise<{ number: number; timestamp: number }> {
    await ethers.provider.send("evm_mine", []);
    return latest();
  }

  async function register(label: string, notBefore: number, notAfter: number): Promise<ServerCertificate> {
    const certificate = { fingerprint: sha256Hex(`certificate ${label}`), notBefore, notAfter };
    const binding = { ...certificate, holder: issuer.address };
    const signature = await signCertificateBinding(issuer, binding, {
      chainId,
      verifyingContract: await registry.getAddress(),
    });
    await (
      await registry
        .connect(issuer)
        .registerCertificate(toBytes32(certificate.fingerprint), notBefore, notAfter, issuer.address, signature)
    ).wait();
    return certificate;
  }

  async function revoke(certificate: ServerCertificate): Promise<void> {
    await (await registry.connect(issuer).revokeCertificate(toBytes32(certificate.fingerprint))).wait();
  }

  async function v3(
    served: ServerCertificate,
    states: Array<{ number: number; timestamp: number }>,
    named = served.fingerprint,
  ): Promise<StepOutcome> {
    const address = await registry.getAddress();
    const protocol = {
      issuer: { address: issuer.address, ens_name: null, url: "https://issuer.test", certificate_fingerprint: named },
      entries: states.length,
    } as unknown as ProtocolHead;
    const chain = new ChainView(ethers.provider, {
      chainId,
      registries: { model: address, certificate: address, instance: address },
      source: "test",
    });
    const now = (await latest()).timestamp;
    const context = { protocol, chain, certificate: served, now: async () => now } as unknown as ReadyContext;
    // The states' times as the pass over the pages gathers them (the earliest and latest, the earliest block).
    const first = states.reduce((a, b) => (b.timestamp < a.timestamp ? b : a));
    const last = states.reduce((a, b) => (b.timestamp > a.timestamp ? b : a));
    providePass(
      context,
      Promise.resolve({
        stoppedAt: null,
        times: {
          first: { seq: states.indexOf(first), timestamp: first.timestamp },
          last: { seq: states.indexOf(last), timestamp: last.timestamp },
          earliestBlock: Math.min(...states.map((state) => state.number)),
        },
      } as PassResult),
    );
    return certificateStep.run(context);
  }

  it("passes a certificate registered before the states, valid over them, never revoked", async function () {
    const now = (await latest()).timestamp;
    const certificate = await register("genuine", now - DAY, now + 30 * DAY);
    const states = [await mineState(), await mineState()];
    const outcome = await v3(certificate, states);
    expect(outcome.status, outcome.detail).to.equal("pass");
    expect(outcome.detail).to.contain(`registered at the first state's block ${states[0].number}`);
  });

  it("fails when the registered window starts after the first state", async function () {
    const states = [await mineState(), await mineState()];
    const certificate = await register("late window", states[1].timestamp, states[1].timestamp + 30 * DAY);
    const outcome = await v3(certificate, states);
    expect(outcome.status).to.equal("fail");
    expect(outcome.code).to.equal("CERT_EXPIRED");
    expect(outcome.detail).to.contain("was not yet valid at seq 0");
  });

  it("fails a certificate registered only after the first state (with a window reaching back)", async function () {
    const states = [await mineState(), await mineState()];
    const certificate = await register("registered later", states[0].timestamp - DAY, states[0].timestamp + 30 * DAY);
    const outcome = await v3(certificate, states);
    expect(outcome.status).to.equal("fail");
    expect(outcome.code).to.equal("CERT_NOT_REGISTERED");
    expect(outcome.detail).to.contain(`not yet registered for the issuer at block ${states[0].number}`);
  });

  it("fails a rotated certificate of the run that was revoked before the last state", async function () {
    const now = (await latest()).timestamp;
    const old = await register("rotated, revoked mid-run", now - DAY, now + 30 * DAY);
    const first = await mineState();
    await revoke(old);
    const last = await mineState();
    const served = await register("current", now - DAY, now + 30 * DAY);
    const outcome = await v3(served, [first, last], old.fingerprint);
    expect(outcome.status).to.equal("fail");
    expect(outcome.code).to.equal("CERT_REVOKED");
    expect(outcome.detail).to.contain("before seq 1");
  });

  it("passes a rotated certificate of the run revoked after the last state", async function () {
    const now = (await latest()).timestamp;
    const old = await register("rotated, revoked after", now - DAY, now + 30 * DAY);
    const states = [await mineState(), await mineState()];
    await ethers.provider.send("evm_increaseTime", [60]);
    await revoke(old);
    const served = await register("current after rotation", now - DAY, now + 30 * DAY);
    const outcome = await v3(served, states, old.fingerprint);
    expect(outcome.status, outcome.detail).to.equal("pass");
    expect(outcome.detail).to.contain("rotated since, revoked at");
  });
});
