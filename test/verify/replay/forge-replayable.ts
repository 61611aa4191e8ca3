/**
 * Forges protocol-version-2 instances of recorded runs (genuine, or lies) on the in-process Hardhat network, as a
 * dishonest issuer would publish them: model registered, instance created for the claimed execution input, every
 * state's data (with the recorded outcomes and Context Object) published, registered one transaction each,
 * terminated with the claimed status, the protocol signed by the issuer. Hashes, chain and signature agree, so
 * V0–V8 pass whatever the states say; only V9 judges them.
 */
import { ethers } from "hardhat";
import { loadFixture } from "@nomicfoundation/hardhat-toolbox/network-helpers";
import type { ContractTransactionResponse } from "ethers";
import { randomBytes } from "node:crypto";
import { sha256Hex, toBytes32 } from "../../../src/chain/hash";
import { instanceHash as instanceHashOf } from "../../../src/protocol/hashing";
import {
  PROTOCOL_VERSION,
  type InstanceStatus,
  type ProtocolEntry,
  type StateData,
  type UnsignedProtocol,
} from "../../../src/protocol/schema";
import { signProtocol } from "../../../src/protocol/signing";
import { type VerificationReport } from "../../../src/verify";
import {
  addressesOf,
  deployForge,
  ISSUER_ORIGIN,
  publish,
  publishModel,
  publishState,
  verifyForged,
  type ForgeEnv,
} from "../../helpers/forge";
import { type RecordedRun } from "./harness";

const STATUS_NUMBER: Record<Exclude<InstanceStatus, "running">, number> = { succeeded: 2, failed: 3, aborted: 4 };

async function mined(
  tx: Promise<ContractTransactionResponse>,
): Promise<{ block_nr: number; transaction_hash: string }> {
  const receipt = await (await tx).wait();
  if (!receipt) throw new Error("transaction not mined");
  return { block_nr: receipt.blockNumber, transaction_hash: receipt.hash };
}

/** The forge environment (registries, issuer certificate, memory server), reset through loadFixture. */
export async function replayEnv(): Promise<ForgeEnv> {
  const env = await loadFixture(deployForge);
  return { ...env, server: env.server.clone() };
}

/** Publishes, registers and signs `run` (its definition, input, states and status) as one instance. */
export async function forgeReplayable(env: ForgeEnv, run: RecordedRun): Promise<{ url: string }> {
  const modelBytes = Buffer.from(JSON.stringify(run.definition, null, 2));
  const modelHash = sha256Hex(modelBytes);
  const registered = await env.models.modelOf(toBytes32(modelHash));
  if (registered.registrant === ethers.ZeroAddress) {
    await publishModel(env, modelBytes, { models: env.models, signer: env.issuer });
  } else {
    env.server.serve(`${ISSUER_ORIGIN}/models/${modelHash}`, modelBytes);
  }
  const instances = env.instances.connect(env.issuer);
  const inputBytes = Buffer.from(JSON.stringify(run.input));
  const record = {
    statetrail_instance: 1 as const,
    model_hash: modelHash,
    input_hash: sha256Hex(inputBytes),
    issuer: env.issuer.address,
    nonce: randomBytes(32).toString("hex"),
  };
  const instanceHash = instanceHashOf(record);
  const inputUrl = env.server.serve(`${ISSUER_ORIGIN}/instances/${instanceHash}/input`, inputBytes);
  const created = await mined(instances.createInstance(toBytes32(instanceHash), toBytes32(modelHash)));

  // The run starts when the instance is created (V9 checks $$.Execution.StartTime against that block's time).
  const createdAt = (await ethers.provider.getBlock(created.block_nr))!.timestamp;
  const entries: ProtocolEntry[] = [];
  let prev = instanceHash;
  for (const [seq, state] of run.states.entries()) {
    const data: StateData = { ...structuredClone(state), instance_hash: instanceHash, seq };
    const execution = (data.context as { Execution?: { StartTime?: string } } | null)?.Execution;
    if (execution) execution.StartTime = new Date(createdAt * 1000).toISOString();
    const { hash, url } = publishState(env.server, data);
    const at = await mined(instances.registerState(toBytes32(instanceHash), toBytes32(hash), toBytes32(prev)));
    const block = await ethers.provider.getBlock(at.block_nr);
    entries.push({
      event_type: "Register State",
      seq,
      state_name: data.state_name,
      state_type: data.state_type,
      state_hash: hash,
      prev_state_hash: prev,
      timestamp: block!.timestamp,
      block_nr: at.block_nr,
      client_address: env.issuer.address,
      transaction_hash: at.transaction_hash,
      state_data: url,
      proof: null,
    });
    prev = hash;
  }
  const status = run.status as Exclude<InstanceStatus, "running">;
  const terminated = await mined(
    instances.terminateInstance(toBytes32(instanceHash), toBytes32(prev), STATUS_NUMBER[status]),
  );
  const unsigned: UnsignedProtocol = {
    protocol_version: PROTOCOL_VERSION,
    chain_id: env.chainId,
    registries: await addressesOf(env),
    issuer: {
      address: env.issuer.address,
      ens_name: null,
      url: ISSUER_ORIGIN,
      certificate_fingerprint: env.server.certificate.fingerprint,
    },
    model_hash: modelHash,
    model_data: `${ISSUER_ORIGIN}/models/${modelHash}`,
    instance_hash: instanceHash,
    instance_data: inputUrl,
    instance_nonce: record.nonce,
    created,
    status,
    instance_protocol: entries,
    head: { seq: entries.length - 1, state_hash: prev },
    terminated,
  };
  const protocol = await signProtocol(unsigned, env.issuer);
  return { url: publish(env.server, protocol) };
}

/** Verifies a forged instance with V9 on; returns each step's status by id, and V9's detail. */
export async function verifyReplayable(
  env: ForgeEnv,
  forged: { url: string },
): Promise<{ report: VerificationReport; steps: Record<string, string>; v9: string }> {
  const report = await verifyForged(env, { url: forged.url }, { conformance: true });
  const steps = Object.fromEntries(report.steps.map((step) => [step.id, step.status]));
  const v9 = report.steps.find((step) => step.id === "V9")?.detail ?? "";
  return { report, steps, v9 };
}
