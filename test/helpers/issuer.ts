import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Wallet } from "ethers";
import { deployAll } from "../../src/chain/deploy";
import { type Deployment } from "../../src/chain/deployments";
import { devPrivateKey } from "../../src/chain/keys";
import { freePort } from "../../src/chain/node";
import { connect, type ChainProvider } from "../../src/chain/provider";
import { createEngine } from "../../src/engine";
import { type Engine } from "../../src/engine/types";
import { initIdentity, type InitIdentityResult } from "../../src/identity/identity";
import { loadModel } from "../../src/model/load";
import { type InstanceProtocol, type Registries } from "../../src/protocol/schema";
import { startServer, type RunningServer } from "../../src/server";
import { type ServerOptions } from "../../src/server/https";
import { ensReaderFromProvider, trustedFromDeployment } from "../../src/verify";
import { Home } from "../../src/store/home";
import { Tracker, type TrackerOptions } from "../../src/tracker/tracker";

export interface TestIssuer {
  provider: ChainProvider;
  deployment: Deployment;
  deploymentsDir: string;
  registries: Registries;
  home: Home;
  identity: InitIdentityResult;
  server: RunningServer;
  tracker(engine: Engine, options?: Partial<TrackerOptions>): Tracker;
  close(): Promise<void>;
}

export function registriesOf(deployment: Deployment): Registries {
  return {
    model: deployment.contracts.ModelRegistry.address,
    certificate: deployment.contracts.CertificateRegistry.address,
    instance: deployment.contracts.InstanceRegistry.address,
  };
}

/**
 * A complete issuer on a real chain: registries and a local ENS deployed (recorded in a temporary
 * deployments folder), an identity (keystore, certificate registered, ENS name), and the HTTPS server
 * running with that certificate on a free port.
 */
export async function setupIssuer(rpcUrl: string, options: { label?: string } = {}): Promise<TestIssuer> {
  process.env.STATETRAIL_PASSWORD ??= "test-password";
  process.env.STATETRAIL_FAST_KEYSTORE = "1";
  const deploymentsDir = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-deployments-"));
  const bootstrap = await connect({ rpcUrl, ensRegistry: null });
  const deployer = new Wallet(devPrivateKey(0), bootstrap);
  const { deployment } = await deployAll(deployer, "localhost", { dir: deploymentsDir });
  bootstrap.destroy();
  const provider = await connect({ rpcUrl, expectedChainId: deployment.chainId, ensRegistry: deployment.ens.registry });
  const home = new Home(fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-home-"))).ensure();
  const registries = registriesOf(deployment);
  const port = await freePort();
  const identity = await initIdentity({
    home,
    provider,
    network: "localhost",
    chainId: deployment.chainId,
    registries,
    ens: deployment.ens,
    host: "localhost",
    port,
    ensLabel: options.label,
    funder: new Wallet(devPrivateKey(0), provider),
  });
  const server = await startServer({ home, port, wellKnown: { registries }, log: () => undefined });
  const issuer: TestIssuer = {
    provider,
    deployment,
    deploymentsDir,
    registries,
    home,
    identity,
    server,
    tracker(engine: Engine, overrides: Partial<TrackerOptions> = {}) {
      return new Tracker({
        home,
        signer: identity.signer,
        identity: identity.record,
        registries,
        chainId: deployment.chainId,
        engine,
        onProtocol: (protocol) => issuer.server.notify(protocol),
        ...overrides,
      });
    },
    async close() {
      await issuer.server.close();
      provider.destroy();
    },
  };
  return issuer;
}

/** The auditor's trust flags for an issuer's registries: `--registries … --chain-id … --ens-registry …`. */
export function trustFlags(issuer: Pick<TestIssuer, "registries" | "deployment">): string[] {
  const { model, certificate, instance } = issuer.registries;
  return [
    "--registries",
    `${model},${certificate},${instance}`,
    "--chain-id",
    String(issuer.deployment.chainId),
    "--ens-registry",
    issuer.deployment.ens.registry,
  ];
}

/** One tracked run of examples/refund-request with the local engine: its whole protocol (head and pages, read back). */
export async function runRefundRequest(issuer: Pick<TestIssuer, "tracker" | "home">): Promise<InstanceProtocol> {
  const examples = path.resolve(__dirname, "..", "..", "examples");
  const model = await loadModel(path.join(examples, "refund-request.asl.json"));
  const input = fs.readFileSync(path.join(examples, "refund-request.input.json"));
  const handlers = path.join(examples, "refund-request.handlers.js");
  const head = await issuer.tracker(createEngine({ engine: "local", handlers })).run(model, input);
  return issuer.home.readProtocol(head.instance_hash);
}

/**
 * The issuer's server started again with the timeline page, whose verification reads this chain with the issuer's
 * deployment (the page's own checks need a provider, which `setupIssuer`'s server has not).
 */
export async function restartWithTimeline(
  issuer: TestIssuer,
  options: Partial<ServerOptions> = {},
): Promise<RunningServer> {
  await issuer.server.close();
  return startServer({
    home: issuer.home,
    port: issuer.server.port,
    wellKnown: { registries: issuer.registries },
    log: () => undefined,
    timeline: {
      verify: {
        provider: issuer.provider,
        trusted: trustedFromDeployment(issuer.deployment, "test deployment"),
        ens: ensReaderFromProvider(issuer.provider),
      },
      cacheMs: 0,
    },
    ...options,
  });
}

/**
 * One tracked run of examples/order-fulfilment (Waits skipped), each protocol publication told to `server`: its whole
 * protocol (head and pages, read back).
 */
export async function runOrderFulfilment(issuer: TestIssuer, server: RunningServer): Promise<InstanceProtocol> {
  const examples = path.resolve(__dirname, "..", "..", "examples");
  const handlers = path.join(examples, "order-fulfilment.handlers.js");
  const engine = createEngine({ engine: "local", handlers, skipWaits: true });
  const model = await loadModel(path.join(examples, "order-fulfilment.asl.json"));
  const input = fs.readFileSync(path.join(examples, "order-fulfilment.input.json"));
  const head = await issuer.tracker(engine, { onProtocol: server.notify }).run(model, input);
  return issuer.home.readProtocol(head.instance_hash);
}
