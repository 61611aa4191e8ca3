import { createHash, randomBytes } from "node:crypto";
import {
  AbiCoder,
  Contract,
  ContractFactory,
  ZeroAddress,
  type ContractTransactionResponse,
  type Wallet,
} from "ethers";
import EAS_ARTIFACT from "@ethereum-attestation-service/eas-contracts/artifacts/contracts/EAS.sol/EAS.json";
import SCHEMA_REGISTRY_ARTIFACT from "@ethereum-attestation-service/eas-contracts/artifacts/contracts/SchemaRegistry.sol/SchemaRegistry.json";
import { LeafBatch } from "../../src/protocol/anchoring";
import { EventFloor__factory, InstanceRegistry__factory, ModelRegistry__factory } from "../../typechain-types";
import { type Progress } from "./common";

/** One way of putting a state on-chain, measured. */
export interface GasRow {
  name: string;
  /** What one call does. */
  what: string;
  /** States recorded by one call. */
  states: number;
  /** Gas of one call (the mean over the calls made). */
  gas: number;
  gas_per_state: number;
  /** gas_per_state divided by the floor's gas (the cheapest possible on-chain record of one hash). */
  ratio_to_floor: number;
}

/** Once per instance, whatever the mode. */
export interface InstanceGasRow {
  name: string;
  gas: number;
}

export interface GasResults {
  rows: GasRow[];
  per_instance: InstanceGasRow[];
}

const sha = (): string => "0x" + createHash("sha256").update(randomBytes(32)).digest("hex");
const CALLS = 5;

async function gasOf(tx: Promise<ContractTransactionResponse>): Promise<number> {
  const receipt = await (await tx).wait();
  if (!receipt || receipt.status !== 1) throw new Error("a benchmark transaction failed");
  return Number(receipt.gasUsed);
}

async function mean(calls: number, call: (index: number) => Promise<number>): Promise<number> {
  let total = 0;
  for (let i = 0; i < calls; i++) total += await call(i);
  return Math.round(total / calls);
}

/**
 * Gas per recorded state, side by side in one run on one chain: statetrail's three anchoring modes, EAS
 * `attest` and `timestamp` (deployed from `@ethereum-attestation-service/eas-contracts`' artifacts), and the
 * event-only floor contract with its store-and-emit baseline. State hashes are random SHA-256 values.
 */
export async function measureGas(signer: Wallet, progress: Progress): Promise<GasResults> {
  progress.set("gas: deploying statetrail registries, EAS (SchemaRegistry, EAS) and EventFloor");
  const models = await new ModelRegistry__factory(signer).deploy();
  const instances = await new InstanceRegistry__factory(signer).deploy(await models.getAddress());
  const floor = await new EventFloor__factory(signer).deploy();
  const schemaRegistry = await new ContractFactory(
    SCHEMA_REGISTRY_ARTIFACT.abi,
    SCHEMA_REGISTRY_ARTIFACT.bytecode,
    signer,
  ).deploy();
  const eas = (await new ContractFactory(EAS_ARTIFACT.abi, EAS_ARTIFACT.bytecode, signer).deploy(
    await schemaRegistry.getAddress(),
  )) as Contract;
  await Promise.all([models, instances, floor, schemaRegistry, eas].map((c) => c.waitForDeployment()));

  const model = sha();
  await gasOf(models.registerModel(model, "https://issuer.example/models/x"));
  const perInstance: InstanceGasRow[] = [];
  const newInstance = async (): Promise<string> => {
    const instance = sha();
    perInstance.push({ name: "createInstance", gas: await gasOf(instances.createInstance(instance, model)) });
    return instance;
  };

  progress.set("gas: per-state (registerState)");
  const perStateInstance = await newInstance();
  let head = perStateInstance;
  const perState = await mean(CALLS, async () => {
    const state = sha();
    const gas = await gasOf(instances.registerState(perStateInstance, state, head));
    head = state;
    return gas;
  });
  perInstance.push({
    name: "terminateInstance",
    gas: await gasOf(instances.terminateInstance(perStateInstance, head, 2)),
  });

  const multi: Array<[number, number]> = [];
  for (const size of [10, 100]) {
    progress.set(`gas: multi (registerStates of ${size})`);
    const instance = await newInstance();
    let prev = instance;
    multi.push([
      size,
      await mean(CALLS, async () => {
        const states = Array.from({ length: size }, sha);
        const gas = await gasOf(instances.registerStates(instance, prev, states));
        prev = states[size - 1];
        return gas;
      }),
    ]);
  }

  const batch: Array<[number, number]> = [];
  for (const size of [100, 1_000]) {
    progress.set(`gas: batch (anchorBatch of a root over ${size} states)`);
    batch.push([
      size,
      await mean(CALLS, async () => {
        const leaves = Array.from({ length: size }, (_, seq) => ({
          issuer: signer.address,
          instanceHash: sha().slice(2),
          seq,
          stateHash: sha().slice(2),
          prevStateHash: sha().slice(2),
        }));
        return gasOf(instances.anchorBatch(new LeafBatch(leaves).root, size));
      }),
    ]);
  }
  const anchoredInstance = await newInstance();
  perInstance.push({
    name: "terminateAnchored",
    gas: await gasOf(instances.terminateAnchored(anchoredInstance, sha(), 1_000, sha(), 2)),
  });

  progress.set("gas: EAS attest and timestamp");
  const schema = "bytes32 instanceHash,bytes32 stateHash,bytes32 prevStateHash";
  const registered = await (await schemaRegistry.getFunction("register")(schema, ZeroAddress, false)).wait();
  const schemaUid = (schemaRegistry.interface.parseLog(registered!.logs[0])!.args.uid as string) ?? "";
  const coder = AbiCoder.defaultAbiCoder();
  const easInstance = sha();
  let refUid = "0x" + "00".repeat(32);
  let prevState = easInstance;
  const attest = await mean(CALLS, async () => {
    const state = sha();
    const receipt = await (
      await eas.getFunction("attest")({
        schema: schemaUid,
        data: {
          recipient: ZeroAddress,
          expirationTime: 0,
          revocable: false,
          refUID: refUid,
          data: coder.encode(["bytes32", "bytes32", "bytes32"], [easInstance, state, prevState]),
          value: 0,
        },
      })
    ).wait();
    refUid = eas.interface.parseLog(receipt!.logs[0])!.args.uid as string;
    prevState = state;
    return Number(receipt!.gasUsed);
  });
  const timestamp = await mean(CALLS, () => gasOf(eas.getFunction("timestamp")(sha())));

  progress.set("gas: EventFloor anchor and storeAndEmit");
  const floorGas = await mean(CALLS, () => gasOf(floor.anchor(sha())));
  const storeAndEmit = await mean(CALLS, () => gasOf(floor.storeAndEmit(sha())));

  const row = (name: string, what: string, states: number, gas: number): GasRow => ({
    name,
    what,
    states,
    gas,
    gas_per_state: Math.round(gas / states),
    ratio_to_floor: Math.round((gas / states / floorGas) * 1000) / 1000,
  });
  return {
    rows: [
      row("statetrail per-state", "registerState: one state, linked to the head", 1, perState),
      ...multi.map(([size, gas]) =>
        row(`statetrail multi (${size})`, `registerStates: ${size} states in one call`, size, gas),
      ),
      ...batch.map(([size, gas]) =>
        row(
          `statetrail batch (${size.toLocaleString("en")})`,
          `anchorBatch: a Merkle root over ${size.toLocaleString("en")} states`,
          size,
          gas,
        ),
      ),
      row("EAS attest", "attest: one attestation (instance, state, previous state; refUID chained)", 1, attest),
      row("EAS timestamp", "timestamp: one bytes32", 1, timestamp),
      row("EventFloor.anchor (floor)", "an event carrying one bytes32, nothing stored", 1, floorGas),
      row("EventFloor.storeAndEmit", "store one bytes32's time, emit an event", 1, storeAndEmit),
    ],
    per_instance: dedupe(perInstance),
  };
}

/** One row per name (the mean of its measurements). */
function dedupe(rows: InstanceGasRow[]): InstanceGasRow[] {
  const byName = new Map<string, number[]>();
  for (const { name, gas } of rows) byName.set(name, [...(byName.get(name) ?? []), gas]);
  return [...byName].map(([name, gases]) => ({
    name,
    gas: Math.round(gases.reduce((a, b) => a + b, 0) / gases.length),
  }));
}
