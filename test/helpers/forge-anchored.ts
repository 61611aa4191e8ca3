/**
 * Forges Merkle-anchored runs (`--anchor batch`) on the in-process Hardhat network, as the tracker makes them:
 * two instances of the issuer whose states are anchored together in two batches (anchorBatch), each terminated
 * with terminateAnchored (count, final head, trail); their protocols carry inclusion proofs, are signed and
 * published on the forge's memory server.
 */
import { ethers } from "hardhat";
import { loadFixture } from "@nomicfoundation/hardhat-toolbox/network-helpers";
import type { ContractTransactionResponse } from "ethers";
import { sha256Hex, toBytes32, type HexHash } from "../../src/chain/hash";
import { LeafBatch, Trail, type LeafFields } from "../../src/protocol/anchoring";
import { canonicalBytes } from "../../src/protocol/canonical";
import { instanceHash as instanceHashOf } from "../../src/protocol/hashing";
import {
  EXECUTION_END_STATE,
  type InstanceProtocol,
  type MerkleProof,
  type ProtocolEntry,
  type StateData,
  type StateType,
  type UnsignedProtocol,
} from "../../src/protocol/schema";
import { signProtocol } from "../../src/protocol/signing";
import { ISSUER_ORIGIN, addressesOf, deployForge, publish, publishState, type ForgeEnv } from "./forge";

const TYPES: StateType[] = ["Pass", "Task", "Choice", "Task", "Map"];

export interface AnchoredRun {
  protocol: InstanceProtocol;
  url: string;
  instanceHash: HexHash;
  stateData: StateData[];
  hashes: HexHash[];
}

interface Location {
  block_nr: number;
  transaction_hash: string;
  timestamp: number;
}

async function mined(tx: Promise<ContractTransactionResponse>): Promise<Location> {
  const receipt = (await (await tx).wait())!;
  const block = (await ethers.provider.getBlock(receipt.blockNumber))!;
  return { block_nr: receipt.blockNumber, transaction_hash: receipt.hash, timestamp: block.timestamp };
}

export interface Pending {
  label: string;
  instanceHash: HexHash;
  created: Location;
  inputUrl: string;
  nonce: HexHash;
  stateData: StateData[];
  hashes: HexHash[];
  urls: string[];
  anchored: Array<{ at: Location; proof: MerkleProof }>;
}

/** Creates an instance with `count` states (the last its succeeded end) and publishes their data. */
export async function start(env: ForgeEnv, label: string, count: number): Promise<Pending> {
  const input = canonicalBytes({ order: label });
  const nonce = sha256Hex(`nonce/${label}`);
  const record = {
    statetrail_instance: 1 as const,
    model_hash: env.model.hash,
    input_hash: sha256Hex(input),
    issuer: env.issuer.address,
    nonce,
  };
  const instanceHash = instanceHashOf(record);
  const inputUrl = env.server.serve(`${ISSUER_ORIGIN}/instances/${instanceHash}/input`, input);
  const created = await mined(
    env.instances.connect(env.issuer).createInstance(toBytes32(instanceHash), toBytes32(env.model.hash)),
  );
  const stateData: StateData[] = Array.from({ length: count }, (_, seq) => ({
    statetrail_state: 1,
    instance_hash: instanceHash,
    seq,
    state_name: seq === count - 1 ? EXECUTION_END_STATE : `Step${seq}`,
    state_type: seq === count - 1 ? "ExecutionSucceeded" : TYPES[seq % TYPES.length],
    iteration_path: [],
    attempt: 0,
    input: { label, seq },
    error: null,
  }));
  const published = stateData.map((data) => publishState(env.server, data));
  return {
    label,
    instanceHash,
    created,
    inputUrl,
    nonce,
    stateData,
    hashes: published.map((state) => state.hash),
    urls: published.map((state) => state.url),
    anchored: [],
  };
}

/** Anchors one root over the given states of the given instances (in that order). */
export async function anchor(env: ForgeEnv, parts: Array<{ run: Pending; from: number; to: number }>): Promise<void> {
  const leaves: LeafFields[] = [];
  const owners: Array<{ run: Pending; seq: number }> = [];
  for (const { run, from, to } of parts) {
    for (let seq = from; seq < to; seq++) {
      leaves.push({
        issuer: env.issuer.address,
        instanceHash: run.instanceHash,
        seq,
        stateHash: run.hashes[seq],
        prevStateHash: seq === 0 ? run.instanceHash : run.hashes[seq - 1],
      });
      owners.push({ run, seq });
    }
  }
  const batch = new LeafBatch(leaves);
  const at = await mined(env.instances.connect(env.issuer).anchorBatch(batch.root, batch.size));
  owners.forEach(({ run, seq }, index) => (run.anchored[seq] = { at, proof: batch.proof(index) }));
}

export async function finish(env: ForgeEnv, run: Pending, terminate: boolean): Promise<AnchoredRun> {
  const count = run.hashes.length;
  const trail = new Trail(run.instanceHash);
  run.hashes.forEach((hash) => trail.push(hash));
  const terminated = terminate
    ? await mined(
        env.instances
          .connect(env.issuer)
          .terminateAnchored(
            toBytes32(run.instanceHash),
            toBytes32(run.hashes[count - 1]),
            count,
            toBytes32(trail.value),
            2,
          ),
      )
    : null;
  const entries: ProtocolEntry[] = run.stateData.map((data, seq) => ({
    event_type: "Register State",
    seq,
    state_name: data.state_name,
    state_type: data.state_type,
    state_hash: run.hashes[seq],
    prev_state_hash: seq === 0 ? run.instanceHash : run.hashes[seq - 1],
    timestamp: run.anchored[seq].at.timestamp,
    block_nr: run.anchored[seq].at.block_nr,
    client_address: env.issuer.address,
    transaction_hash: run.anchored[seq].at.transaction_hash,
    state_data: run.urls[seq],
    proof: run.anchored[seq].proof,
  }));
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
    model_hash: env.model.hash,
    model_data: env.model.url,
    instance_hash: run.instanceHash,
    instance_data: run.inputUrl,
    instance_nonce: run.nonce,
    created: { block_nr: run.created.block_nr, transaction_hash: run.created.transaction_hash },
    status: terminate ? "succeeded" : "running",
    instance_protocol: entries,
    head: { seq: count - 1, state_hash: run.hashes[count - 1] },
    terminated: terminated && { block_nr: terminated.block_nr, transaction_hash: terminated.transaction_hash },
  };
  const protocol = await signProtocol(unsigned, env.issuer);
  return {
    protocol,
    url: publish(env.server, protocol),
    instanceHash: run.instanceHash,
    stateData: run.stateData,
    hashes: run.hashes,
  };
}

export interface AnchoredScenario {
  env: ForgeEnv;
  /** Six states, anchored four in the first root and two in the second; terminated (succeeded). */
  a: AnchoredRun;
  /** Four states, two in each root, interleaved with A's; terminated (succeeded). */
  b: AnchoredRun;
  /** Three states in one root of its own; still running (not terminated). */
  running: AnchoredRun;
}

async function anchoredScenario(): Promise<AnchoredScenario> {
  const env = await deployForge();
  const a = await start(env, "anchored A", 6);
  const b = await start(env, "anchored B", 4);
  await anchor(env, [
    { run: a, from: 0, to: 4 },
    { run: b, from: 0, to: 2 },
  ]);
  await anchor(env, [
    { run: b, from: 2, to: 4 },
    { run: a, from: 4, to: 6 },
  ]);
  const running = await start(env, "anchored running", 3);
  await anchor(env, [{ run: running, from: 0, to: 3 }]);
  return {
    env,
    a: await finish(env, a, true),
    b: await finish(env, b, true),
    running: await finish(env, running, false),
  };
}

/** The anchored scenario, the chain reset to it by `loadFixture`, with its own copy of the server and protocols. */
export async function forgeAnchoredScenario(): Promise<AnchoredScenario> {
  const scenario = await loadFixture(anchoredScenario);
  const copy = (run: AnchoredRun): AnchoredRun => ({ ...run, protocol: structuredClone(run.protocol) });
  const env = { ...scenario.env, server: scenario.env.server.clone() };
  return { env, a: copy(scenario.a), b: copy(scenario.b), running: copy(scenario.running) };
}

/** Anchors `leaves` of the issuer in a root of their own (a root the issuer really anchored). */
export async function anchorExtra(env: ForgeEnv, leaves: LeafFields[]): Promise<{ batch: LeafBatch; at: Location }> {
  const batch = new LeafBatch(leaves);
  const at = await mined(env.instances.connect(env.issuer).anchorBatch(batch.root, batch.size));
  return { batch, at };
}
