import { getAddress, type ContractRunner, type Provider } from "ethers";
import { StatetrailError } from "../errors";
import {
  CertificateRegistry__factory,
  InstanceRegistry__factory,
  ModelRegistry__factory,
  type CertificateRegistry,
  type InstanceRegistry,
  type ModelRegistry,
} from "../../typechain-types";
import type { Deployment } from "./deployments";
import { chainIdOf } from "./provider";

export type { CertificateRegistry, InstanceRegistry, ModelRegistry };

/** The three registries of a deployment, typed by TypeChain. */
export interface Registries {
  model: ModelRegistry;
  certificate: CertificateRegistry;
  instance: InstanceRegistry;
}

export const REGISTRY_NAMES = ["ModelRegistry", "CertificateRegistry", "InstanceRegistry"] as const;
export type RegistryName = (typeof REGISTRY_NAMES)[number];

/** The TypeChain factories, by contract name (bytecode and ABI of the compiled artifacts). */
export const REGISTRY_FACTORIES = {
  ModelRegistry: ModelRegistry__factory,
  CertificateRegistry: CertificateRegistry__factory,
  InstanceRegistry: InstanceRegistry__factory,
} as const;

/** ABIs of the registries by contract name, as written beside `deployment.json`. */
export function registryAbis(): Record<RegistryName, unknown> {
  return {
    ModelRegistry: ModelRegistry__factory.abi,
    CertificateRegistry: CertificateRegistry__factory.abi,
    InstanceRegistry: InstanceRegistry__factory.abi,
  };
}

/**
 * Typed contracts at the deployment's addresses. `runner` is a Signer for writes or a Provider for reads.
 * No network access happens here; call {@link verifyRegistryCode} to check that the contracts exist.
 */
export function getRegistries(deployment: Deployment, runner: ContractRunner | null): Registries {
  const { contracts } = deployment;
  return {
    model: ModelRegistry__factory.connect(contracts.ModelRegistry.address, runner),
    certificate: CertificateRegistry__factory.connect(contracts.CertificateRegistry.address, runner),
    instance: InstanceRegistry__factory.connect(contracts.InstanceRegistry.address, runner),
  };
}

export interface RegistryCodeCheck {
  name: RegistryName;
  address: string;
  /** Bytes of runtime code at the address (0 = nothing deployed there). */
  codeSize: number;
  /** What `version()` returned, or null when it could not be called. */
  version: string | null;
  ok: boolean;
  detail: string;
}

/**
 * Inspects each registry address: code present, `version()` answers, and the InstanceRegistry points at
 * the deployment's ModelRegistry. Never throws for a missing contract; see {@link verifyRegistryCode}.
 */
export async function checkRegistryCode(provider: Provider, deployment: Deployment): Promise<RegistryCodeCheck[]> {
  const registries = getRegistries(deployment, provider);
  const byName: Record<RegistryName, ModelRegistry | CertificateRegistry | InstanceRegistry> = {
    ModelRegistry: registries.model,
    CertificateRegistry: registries.certificate,
    InstanceRegistry: registries.instance,
  };
  return Promise.all(
    REGISTRY_NAMES.map(async (name): Promise<RegistryCodeCheck> => {
      const address = deployment.contracts[name].address;
      const code = await provider.getCode(address);
      const codeSize = (code.length - 2) / 2;
      if (codeSize === 0) {
        return { name, address, codeSize, version: null, ok: false, detail: `${name}: no contract code at ${address}` };
      }
      let version: string | null = null;
      try {
        version = await byName[name].version();
      } catch {
        return {
          name,
          address,
          codeSize,
          version,
          ok: false,
          detail: `the code at ${address} is not a ${name} (version() failed)`,
        };
      }
      if (name === "InstanceRegistry") {
        let linked: string;
        try {
          linked = await registries.instance.modelRegistry();
        } catch {
          return {
            name,
            address,
            codeSize,
            version,
            ok: false,
            detail: `the code at ${address} has no modelRegistry()`,
          };
        }
        const expected = getAddress(deployment.contracts.ModelRegistry.address);
        if (getAddress(linked) !== expected) {
          return {
            name,
            address,
            codeSize,
            version,
            ok: false,
            detail: `InstanceRegistry at ${address} uses ModelRegistry ${linked}, the deployment records ${expected}`,
          };
        }
      }
      return { name, address, codeSize, version, ok: true, detail: `${name} ${version} at ${address}` };
    }),
  );
}

/**
 * Throws unless the provider serves the deployment's chain (WRONG_CHAIN) and every registry has its
 * code at the recorded address (DEPLOYMENT_MISSING). An auditor must notice a missing or wrong deployment
 * rather than read empty results from an address with no code.
 */
export async function verifyRegistryCode(provider: Provider, deployment: Deployment): Promise<RegistryCodeCheck[]> {
  const chainId = await chainIdOf(provider);
  if (chainId !== deployment.chainId) {
    throw new StatetrailError(
      "WRONG_CHAIN",
      `the deployment "${deployment.network}" is on chain ${deployment.chainId}, the provider serves chain ${chainId}`,
      { hint: "connect to the RPC endpoint of the deployment's network" },
    );
  }
  const checks = await checkRegistryCode(provider, deployment);
  const failed = checks.filter((c) => !c.ok);
  if (failed.length > 0) {
    throw new StatetrailError(
      "DEPLOYMENT_MISSING",
      `registry deployment "${deployment.network}" is not on chain ${chainId}: ${failed.map((c) => c.detail).join("; ")}`,
      {
        hint:
          deployment.chainId === 31337
            ? "a local chain forgets everything when it restarts: deploy again (statetrail node, or npm run deploy -- --network localhost)"
            : `deploy the registries: npm run deploy -- --network ${deployment.network}`,
      },
    );
  }
  return checks;
}
