/**
 * Forges protocols of recorded runs (see forge.ts): the states a run recorded — genuine, or edited as a
 * lying issuer would — are published, registered on the in-process chain one transaction each (per-state
 * anchoring) and terminated with the given status, and the protocol is signed by the issuer. Hashes, chain
 * and signature agree, so V0–V8 pass whatever the states say; only conformance (V9) judges them.
 */
import { ethers } from "hardhat";
import { loadFixture } from "@nomicfoundation/hardhat-toolbox/network-helpers";
import type { ContractTransactionResponse } from "ethers";
import { sha256Hex, toBytes32 } from "../../../src/chain/hash";
import { type LoadedModel } from "../../../src/model/types";
import { instanceHash as instanceHashOf } from "../../../src/protocol/hashing";
import {
  type InstanceProtocol,
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
import { type RecordedState } from "./helpers";

const STATUS_NUMBER: Record<Exclude<InstanceStatus, "running">, number> = { succeeded: 2, failed: 3, aborted: 4 };

async function mined(
  tx: Promise<ContractTransactionResponse>,
): Promise<{ block_nr: number; transaction_hash: string }> {
  const receipt = await (await tx).wait();
  if (!receipt) throw new Error("transaction not mined");
  return { block_nr: receipt.blockNumber, transaction_hash: receipt.hash };
}

/** The forge environment (registries, issuer certificate, memory server), reset through loadFixture. */
export async function conformanceEnv(): Promise<ForgeEnv> {
  const env = await loadFixture(deployForge);
  return { ...env, server: env.server.clone() };
}

export interface RecordedProtocol {
  protocol: InstanceProtocol;
  url: string;
}

/**
 * Publishes and registers `states` (renumbered by position) as an instance of `model` run with `input`,
 * terminated with `status`, and publishes the signed protocol.
 */
export async function forgeRecorded(
  env: ForgeEnv,
  model: LoadedModel,
  input: unknown,
  states: readonly RecordedState[],
  status: Exclude<InstanceStatus, "running">,
): Promise<RecordedProtocol> {
  const registered = await env.models.modelOf(toBytes32(model.hash));
  if (registered.registrant === ethers.ZeroAddress) {
    await publishModel(env, model.bytes, { models: env.models, signer: env.issuer });
  }
  const instances = env.instances.connect(env.issuer);
  const inputBytes = Buffer.from(JSON.stringify(input));
  const record = {
    statetrail_instance: 1 as const,
    model_hash: model.hash,
    input_hash: sha256Hex(inputBytes),
    issuer: env.issuer.address,
    nonce: sha256Hex(`nonce/${model.hash}/${states.length}/${Math.random()}`),
  };
  const instanceHash = instanceHashOf(record);
  const inputUrl = env.server.serve(`${ISSUER_ORIGIN}/instances/${instanceHash}/input`, inputBytes);
  const created = await mined(instances.createInstance(toBytes32(instanceHash), toBytes32(model.hash)));

  const entries: ProtocolEntry[] = [];
  let prev = instanceHash;
  for (const [seq, state] of states.entries()) {
    const data: StateData = { statetrail_state: 1, instance_hash: instanceHash, ...state, seq };
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
  const terminated = await mined(
    instances.terminateInstance(toBytes32(instanceHash), toBytes32(prev), STATUS_NUMBER[status]),
  );
  const unsigned: UnsignedProtocol = {
    protocol_version: 1,
    chain_id: env.chainId,
    registries: await addressesOf(env),
    issuer: {
      address: env.issuer.address,
      ens_name: null,
      url: ISSUER_ORIGIN,
      certificate_fingerprint: env.server.certificate.fingerprint,
    },
    model_hash: model.hash,
    model_data: `${ISSUER_ORIGIN}/models/${model.hash}`,
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
  return { protocol, url: publish(env.server, protocol) };
}

/** Verifies a forged recorded protocol with conformance on. */
export function verifyRecorded(env: ForgeEnv, recorded: RecordedProtocol): Promise<VerificationReport> {
  return verifyForged(env, { url: recorded.url }, { conformance: true });
}
