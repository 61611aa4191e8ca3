import fs from "node:fs";
import path from "node:path";
import { z } from "zod";
import { StatetrailError } from "../errors";
import { PACKAGE_ROOT } from "../package-root";
import { addressSchema, txHashSchema } from "../protocol/schema";

const deployedContractSchema = z.object({
  address: addressSchema,
  /** The deployment transaction and its block; null when this record did not deploy it (a canonical address
   * computed offline, or code found already there). */
  transactionHash: txHashSchema.nullable(),
  blockNumber: z.number().int().nonnegative().nullable(),
  /** keccak256 of the runtime code at the address; checked by `npm run deploy` and the verifier's V0. */
  codeHash: z
    .string()
    .regex(/^0x[0-9a-f]{64}$/)
    .optional(),
  /** The CREATE2 salt, for a registry at its canonical address (deployed through the deterministic proxy). */
  salt: z
    .string()
    .regex(/^0x[0-9a-f]{64}$/)
    .optional(),
});
export type DeployedContract = z.infer<typeof deployedContractSchema>;

/** What `deployments/<network>/deployment.json` records. ABIs sit beside it as `<Contract>.json`. */
export const deploymentSchema = z.object({
  network: z.string(),
  chainId: z.number().int().positive(),
  /** Who deployed: the account, or the deterministic deployment proxy for canonical CREATE2 addresses. */
  deployer: addressSchema,
  /** When this record was made; null for a record computed offline (deployments/sepolia before anyone deploys). */
  deployedAt: z.string().nullable(),
  /** True when the registries sit at the canonical CREATE2 addresses of deployments/canonical.json. */
  canonical: z.boolean().optional(),
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

export const DEPLOYMENTS_DIR = path.join(PACKAGE_ROOT, "deployments");

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
