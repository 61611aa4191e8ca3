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
    .description("copy instances (protocol, model, input, every state's data) to an untrusted mirror")
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
        const { mirrorNotice } = await import("../../store/access");
        const notice = mirrorNotice(
          home,
          result.instances.map((instance) => instance.instance_hash),
        );
        if (notice) globals.output.log(notice);
        globals.output.result(
          result,
          [
            `${result.instances.length} instance(s), ${result.objects} objects (${result.bytes} bytes) copied to ${result.mirror}`,
            ...result.instances.map((instance) => `  ${instance.protocol_url}`),
            "verify a copy with: statetrail verify <protocol URL>" +
              (options.endpoint ? ` --s3-endpoint ${options.endpoint}` : ""),
          ].join("\n"),
        );
      }),
    );
}
