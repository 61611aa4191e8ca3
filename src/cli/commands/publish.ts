import { parseHexHash } from "../../chain/hash";
import { StatetrailError } from "../../errors";
import { type CommandContext } from "../main";

interface PublishCliOptions {
  mirror?: string;
  endpoint?: string;
  region?: string;
  pathStyle?: boolean;
}

export function registerPublish({ program, run }: CommandContext): void {
  program
    .command("publish [instances...]")
    .description(
      "copy instances (protocol, model, input, every state's data) to an untrusted mirror; private ones encrypted for their grantees",
    )
    .requiredOption("--mirror <s3://bucket/prefix>", "S3-compatible storage to copy to")
    .option("--endpoint <url>", "S3-compatible endpoint (default: $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, AWS)")
    .option("--region <region>", "S3 region (default: $AWS_REGION, else us-east-1)")
    .option("--path-style", "path-style addressing (default: on with --endpoint)")
    .option("--no-path-style", "virtual-hosted addressing even with --endpoint")
    .addHelpText(
      "after",
      `
Copies every instance in the data directory (or only those given) under the issuer server's paths:
  <prefix>/models/<h>  <prefix>/states/<h>  <prefix>/instances/<h>/input  <prefix>/instances/<h>/protocol
The mirror is untrusted: an auditor verifies a copy against the chain and the issuer's signature.
Encrypted copies: with access.json in mode private, an instance that is not public is never copied in clear. Its
objects are encrypted (AES-256-GCM) under a data key of the instance, wrapped (ECIES, secp256k1) for each grantee
whose grant covers it and whose public key is known (statetrail grant … --public-key, or learnt when it signs in to
\`serve\`); the operator of the mirror reads nothing of them (SECURITY.md). Such a copy holds
  <prefix>/instances/<h>/keys.json (the wrapped keys)  and, encrypted, <prefix>/instances/<h>/{protocol,input,
  protocol/pages/<k>,models/<h>,states/<h>}
Grantees without a known key are named in a warning; an instance with none at all is NO_RECIPIENTS and nothing is
copied. Public instances, and every instance in mode open (or without access.json), are copied in clear.
The auditor verifies an encrypted copy with its key: statetrail verify <protocol URL> --auditor-key-env <NAME>.
Credentials: the AWS default chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, profile, role).
Examples:
  $ statetrail publish --mirror s3://audit-copies/acme
  $ statetrail publish <instance_hash> --mirror s3://bucket/prefix --endpoint http://127.0.0.1:4568
  $ statetrail verify s3://audit-copies/acme/instances/<instance_hash>/protocol`,
    )
    .action((instances: string[], options: PublishCliOptions) =>
      run(async (globals) => {
        // Loaded here, not for --help (lazy loading: src/cli/lazy.ts).
        const { publishToMirror } = await import("../../publish/mirror");
        const { homeOf } = await import("../context");
        if (!options.mirror) throw new StatetrailError("INVALID_ARGUMENT", "--mirror s3://bucket/prefix is required");
        const home = homeOf(globals);
        globals.output.log(`publishing to ${options.mirror}`);
        const result = await publishToMirror({
          home,
          mirror: options.mirror,
          instances: instances.length > 0 ? instances.map((h) => parseHexHash(h, "instance hash")) : undefined,
          s3: { endpoint: options.endpoint, region: options.region, forcePathStyle: options.pathStyle },
          log: globals.output.log,
        });
        globals.output.result(
          result,
          [
            `${result.instances.length} instance(s), ${result.objects} objects (${result.bytes} bytes) copied to ${result.mirror}`,
            ...result.instances.map(
              (instance) =>
                `  ${instance.protocol_url} ` +
                (instance.encrypted_for
                  ? `(encrypted for ${instance.encrypted_for.join(", ")})`
                  : `(in clear: ${instance.clear_because === "public" ? "a public instance" : "access mode open"})`),
            ),
            "verify a copy with: statetrail verify <protocol URL>" +
              (options.endpoint ? ` --s3-endpoint ${options.endpoint}` : "") +
              (result.instances.some((instance) => instance.encrypted_for)
                ? " (an encrypted copy: with a recipient's key, --auditor-key-env <NAME>)"
                : ""),
          ].join("\n"),
        );
      }),
    );
}
