import fs from "node:fs";
import path from "node:path";
import { z } from "zod";
import { StatetrailError } from "../errors";
import { addressSchema, txHashSchema } from "../protocol/schema";

const deployedContractSchema = z.object({
  address: addressSchema,
  transactionHash: txHashSchema,
  blockNumber: z.number().int().nonnegative(),
});
export type DeployedContract = z.infer<typeof deployedContractSchema>;

/** What `deployments/<network>/deployment.json` records. ABIs sit beside it as `<Contract>.json`. */
export const deploymentSchema = z.object({
  network: z.string(),
  chainId: z.number().int().positive(),
  deployer: addressSchema,
  deployedAt: z.string(),
  contracts: z.object({
    ModelRegistry: deployedContractSchema,
    CertificateRegistry: deployedContractSchema,
    InstanceRegistry: deployedContractSchema,
  }),
  /** ENS as used by this network: deployed by statetrail on a local chain, the canonical registry elsewhere. */
  ens: z.object({
    registry: addressSchema,
    publicResolver: addressSchema.nullable(),
    reverseRegistrar: addressSchema.nullable(),
    /** FIFS registrars statetrail deployed on a local chain, keyed by TLD (`test`, `eth`). */
    fifsRegistrars: z.record(addressSchema),
    deployedByStatetrail: z.boolean(),
  }),
});
export type Deployment = z.infer<typeof deploymentSchema>;

export const DEPLOYMENTS_DIR = path.resolve(__dirname, "..", "..", "deployments");

export function deploymentFile(network: string, dir = DEPLOYMENTS_DIR): string {
  return path.join(dir, network, "deployment.json");
}

export function loadDeployment(
  network: string,
  dir = process.env.STATETRAIL_DEPLOYMENTS_DIR || DEPLOYMENTS_DIR,
): Deployment {
  const file = deploymentFile(network, dir);
  if (!fs.existsSync(file)) {
    throw new StatetrailError("DEPLOYMENT_MISSING", `no deployment recorded for network "${network}" (${file})`, {
      hint: `deploy first: npm run deploy -- --network ${network}`,
    });
  }
  const parsed = deploymentSchema.safeParse(JSON.parse(fs.readFileSync(file, "utf8")));
  if (!parsed.success) {
    throw new StatetrailError(
      "DEPLOYMENT_MISSING",
      `${file} is not a valid deployment record: ${parsed.error.message}`,
    );
  }
  return parsed.data;
}

export function saveDeployment(deployment: Deployment, abis: Record<string, unknown>, dir = DEPLOYMENTS_DIR): string {
  const folder = path.join(dir, deployment.network);
  fs.mkdirSync(folder, { recursive: true });
  for (const [name, abi] of Object.entries(abis)) {
    fs.writeFileSync(path.join(folder, `${name}.json`), JSON.stringify({ abi }, null, 2) + "\n");
  }
  const file = deploymentFile(deployment.network, dir);
  fs.writeFileSync(file, JSON.stringify(deployment, null, 2) + "\n");
  return file;
}
