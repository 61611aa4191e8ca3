import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { Wallet } from "ethers";
import { devPrivateKey } from "../../src/chain/keys";
import { ensContract, setAddr, setText } from "../../src/chain/ens";
import { main } from "../../src/cli/main";
import { createEngine } from "../../src/engine";
import { generateCertificate } from "../../src/identity/certificate";
import { loadModel } from "../../src/model/load";
import { startServer } from "../../src/server";
import { type VerificationReport } from "../../src/verify";
import { useHardhatNode } from "../helpers/node-process";
import { setupIssuer, type TestIssuer } from "../helpers/issuer";
import { runAttacks, type Attack } from "./tamper-runner";

const EXAMPLES = path.resolve(__dirname, "..", "..", "examples");

interface Verdict {
  code: number;
  report: VerificationReport;
}

/**
 * Attacks that need the real parts: the HTTPS server and its certificate, and ENS. Each is verified
 * through the CLI (`statetrail verify <url> --json`), trusting only the registries given as flags.
 */
describe("tamper matrix against the real server and ENS (hardhat node process)", function () {
  this.timeout(180_000);
  const chain = useHardhatNode();
  let issuer: TestIssuer;
  let url: string;
  const name = (): string => issuer.identity.record.ens_name!;
  const reverseRegistrar = () =>
    ensContract("ReverseRegistrar", issuer.deployment.ens.reverseRegistrar!, issuer.identity.signer);

  async function verify(): Promise<Verdict> {
    let stdout = "";
    const write = process.stdout.write.bind(process.stdout);
    const errWrite = process.stderr.write.bind(process.stderr);
    process.stdout.write = ((chunk: string | Uint8Array) => ((stdout += chunk.toString()), true)) as typeof write;
    process.stderr.write = (() => true) as typeof errWrite;
    try {
      const { registries, deployment } = issuer;
      const code = await main([
        "node",
        "statetrail",
        "--rpc",
        chain.url,
        "--json",
        "verify",
        url,
        "--registries",
        `${registries.model},${registries.certificate},${registries.instance}`,
        "--chain-id",
        String(deployment.chainId),
        "--ens-registry",
        deployment.ens.registry,
      ]);
      return { code, report: JSON.parse(stdout).reports[0] };
    } finally {
      process.stdout.write = write;
      process.stderr.write = errWrite;
    }
  }

  before(async function () {
    issuer = await setupIssuer(chain.url);
    const model = await loadModel(path.join(EXAMPLES, "refund-request.asl.json"));
    const engine = createEngine({ engine: "local", handlers: path.join(EXAMPLES, "refund-request.handlers.js") });
    const input = fs.readFileSync(path.join(EXAMPLES, "refund-request.input.json"));
    const protocol = await issuer.tracker(engine).run(model, input);
    url = `${issuer.identity.record.url}/instances/${protocol.instance_hash}/protocol`;
  });
  after(async function () {
    await issuer?.close();
  });

  it("passes the untampered instance with every check, ENS included (exit 0)", async function () {
    const result = await verify();
    expect(result.code, JSON.stringify(result.report.steps)).to.equal(0);
    expect(result.report.verdict).to.equal("valid");
    expect(result.report.steps.find((s) => s.id === "V2")?.status).to.equal("pass");
  });

  const attacks: Array<Attack<null>> = [
    {
      name: "a man in the middle serving the same bytes with another self-signed certificate",
      claim: "the issuer's certificate",
      fails: ["V3"],
      says: /server certificate [0-9a-f]{64} is not registered/,
      mutate: async () => {
        const { port, host } = issuer.server;
        await issuer.server.close();
        const other = generateCertificate({ host: "localhost" });
        const mitm = await startServer({
          home: issuer.home,
          host,
          port,
          certPem: other.certPem,
          keyPem: other.keyPem,
          wellKnown: { registries: issuer.registries },
          log: () => undefined,
        });
        return {
          url,
          restore: async () => {
            await mitm.close();
            issuer.server = await startServer({
              home: issuer.home,
              host,
              port,
              wellKnown: { registries: issuer.registries },
              log: () => undefined,
            });
          },
        };
      },
    },
    {
      name: "ENS: the reverse record missing",
      claim: "the issuer's ENS name",
      fails: ["V2"],
      says: /^issuer 0x[0-9a-fA-F]{40} has no primary ENS name$/,
      mutate: async () => {
        const reverse = reverseRegistrar();
        await (await reverse.setName("")).wait();
        return { url, restore: async () => void (await (await reverse.setName(name())).wait()) };
      },
    },
    {
      name: "ENS: a forward record that names another address",
      claim: "the issuer's ENS name",
      fails: ["V2"],
      says: /^issuer-[0-9a-f]+\.test resolves to 0x[0-9a-fA-F]{40}, not the issuer 0x[0-9a-fA-F]{40}$/,
      mutate: async () => {
        await setAddr(issuer.identity.signer, issuer.deployment.ens, name(), Wallet.createRandom().address);
        return {
          url,
          restore: () => setAddr(issuer.identity.signer, issuer.deployment.ens, name(), issuer.identity.record.address),
        };
      },
    },
    {
      name: "ENS: a url record pointing elsewhere",
      claim: "the issuer's ENS name",
      fails: ["V2"],
      says: /^issuer-[0-9a-f]+\.test's url record is https:\/\/elsewhere\.example, but the protocol is served from https:\/\/localhost:\d+$/,
      mutate: async () => {
        await setText(issuer.identity.signer, issuer.deployment.ens, name(), "url", "https://elsewhere.example");
        return {
          url,
          restore: () =>
            setText(issuer.identity.signer, issuer.deployment.ens, name(), "url", issuer.identity.record.url),
        };
      },
    },
    {
      // Someone else's primary name pointing at the issuer's name proves nothing for the issuer.
      name: "ENS: a reverse record claimed for the issuer's name by another address",
      claim: "the issuer's ENS name",
      fails: ["V2"],
      says: /^issuer 0x[0-9a-fA-F]{40} has no primary ENS name$/,
      mutate: async () => {
        const impostor = new Wallet(devPrivateKey(5), issuer.provider);
        const reverse = reverseRegistrar();
        await (await reverse.setName("")).wait();
        await (await reverse.connect(impostor).getFunction("setName")(name())).wait();
        return { url, restore: async () => void (await (await reverse.setName(name())).wait()) };
      },
    },
  ];

  // One tracked run shared by every row; each row undoes its tampering. Every step is judged (ENS and V9 on).
  runAttacks<null>(
    {
      scenario: async () => null,
      // Through the CLI: its exit code is the report's.
      verify: async () => {
        const { code, report } = await verify();
        expect(code).to.equal(report.exit_code);
        return report;
      },
      unjudged: [],
    },
    attacks,
  );
});
