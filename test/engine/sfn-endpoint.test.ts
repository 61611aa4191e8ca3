import { expect } from "chai";
import {
  CreateStateMachineCommand,
  DescribeExecutionCommand,
  DescribeStateMachineCommand,
  ListStateMachinesCommand,
  type ListStateMachinesCommandOutput,
  SFNClient,
  StartExecutionCommand,
  ValidateStateMachineDefinitionCommand,
} from "@aws-sdk/client-sfn";
import { type SfnEndpoint, startSfnEndpoint } from "../../src/engine/sfn-endpoint";

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";

const ROLE = "arn:aws:iam::123456789012:role/statetrail-test";
const DEFINITION = JSON.stringify({ StartAt: "A", States: { A: { Type: "Pass", End: true } } });

async function serviceError(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    return (error as Error).name;
  }
  expect.fail("expected a service error");
}

describe("in-process Step Functions endpoint (test double of the AWS service)", function () {
  let endpoint: SfnEndpoint;
  let sfn: SFNClient;

  before(async function () {
    endpoint = await startSfnEndpoint({ taskHandler: "echo" });
    sfn = new SFNClient({
      region: "us-east-1",
      endpoint: endpoint.url,
      credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "secret" },
    });
  });

  after(async function () {
    await endpoint.close();
  });

  it("speaks AWS JSON 1.0 over HTTP and answers unknown operations and bad bodies with typed errors", async function () {
    const post = (target: string | null, body: string) =>
      fetch(endpoint.url, {
        method: "POST",
        headers: { "content-type": "application/x-amz-json-1.0", ...(target ? { "x-amz-target": target } : {}) },
        body,
      });
    const ok = await post("AWSStepFunctions.ListStateMachines", "{}");
    expect(ok.status).to.equal(200);
    expect(ok.headers.get("content-type")).to.contain("application/x-amz-json-1.0");
    expect(ok.headers.get("x-amzn-requestid")).to.match(/^[0-9a-f-]{36}$/);
    expect(await ok.json()).to.deep.equal({ stateMachines: [] });

    const unknown = await post("AWSStepFunctions.DeleteEverything", "{}");
    expect(unknown.status).to.equal(400);
    expect(((await unknown.json()) as { __type: string }).__type).to.match(/#UnknownOperationException$/);
    const missing = await post(null, "{}");
    expect(missing.status).to.equal(400);
    const garbage = await post("AWSStepFunctions.ListStateMachines", "{nope");
    expect(((await garbage.json()) as { __type: string }).__type).to.match(/#SerializationException$/);
  });

  it("creates state machines idempotently, refuses a same-named different one, and pages the list", async function () {
    const first = await sfn.send(new CreateStateMachineCommand({ name: "m-0", definition: DEFINITION, roleArn: ROLE }));
    expect(first.stateMachineArn).to.equal("arn:aws:states:us-east-1:123456789012:stateMachine:m-0");
    expect(first.creationDate).to.be.instanceOf(Date);
    const again = await sfn.send(new CreateStateMachineCommand({ name: "m-0", definition: DEFINITION, roleArn: ROLE }));
    expect(again.stateMachineArn).to.equal(first.stateMachineArn);
    const other = JSON.stringify({ StartAt: "B", States: { B: { Type: "Pass", End: true } } });
    expect(
      await serviceError(sfn.send(new CreateStateMachineCommand({ name: "m-0", definition: other, roleArn: ROLE }))),
    ).to.equal("StateMachineAlreadyExists");
    expect(
      await serviceError(
        sfn.send(new CreateStateMachineCommand({ name: "bad name!", definition: DEFINITION, roleArn: ROLE })),
      ),
    ).to.equal("InvalidName");
    expect(
      await serviceError(sfn.send(new CreateStateMachineCommand({ name: "m-x", definition: "{", roleArn: ROLE }))),
    ).to.equal("InvalidDefinition");
    expect(
      await serviceError(
        sfn.send(
          new CreateStateMachineCommand({
            name: "m-y",
            definition: JSON.stringify({ StartAt: "Z", States: {} }),
            roleArn: ROLE,
          }),
        ),
      ),
    ).to.equal("InvalidDefinition");
    expect(
      await serviceError(
        sfn.send(new CreateStateMachineCommand({ name: "m-z", definition: DEFINITION, roleArn: "role" })),
      ),
    ).to.equal("InvalidArn");

    for (let i = 1; i < 7; i++)
      await sfn.send(new CreateStateMachineCommand({ name: `m-${i}`, definition: DEFINITION, roleArn: ROLE }));
    const names: string[] = [];
    let nextToken: string | undefined;
    let pages = 0;
    do {
      const page: ListStateMachinesCommandOutput = await sfn.send(
        new ListStateMachinesCommand({ maxResults: 3, nextToken }),
      );
      names.push(...(page.stateMachines ?? []).map((m) => m.name as string));
      nextToken = page.nextToken;
      pages += 1;
    } while (nextToken);
    expect(pages).to.equal(3);
    expect(names).to.deep.equal(["m-0", "m-1", "m-2", "m-3", "m-4", "m-5", "m-6"]);

    const described = await sfn.send(new DescribeStateMachineCommand({ stateMachineArn: first.stateMachineArn }));
    expect(described).to.deep.include({
      name: "m-0",
      definition: DEFINITION,
      roleArn: ROLE,
      status: "ACTIVE",
      type: "STANDARD",
    });
    expect(
      await serviceError(sfn.send(new DescribeStateMachineCommand({ stateMachineArn: `${first.stateMachineArn}x` }))),
    ).to.equal("StateMachineDoesNotExist");
  });

  it("starts executions with the service's rules for names and input", async function () {
    const { stateMachineArn } = await sfn.send(
      new CreateStateMachineCommand({ name: "runner", definition: DEFINITION, roleArn: ROLE }),
    );
    const started = await sfn.send(new StartExecutionCommand({ stateMachineArn, name: "e-1", input: '{"a":1}' }));
    expect(started.executionArn).to.equal("arn:aws:states:us-east-1:123456789012:execution:runner:e-1");
    expect(started.startDate).to.be.instanceOf(Date);
    for (;;) {
      const d = await sfn.send(new DescribeExecutionCommand({ executionArn: started.executionArn }));
      if (d.status === "RUNNING") continue;
      expect(d).to.deep.include({
        status: "SUCCEEDED",
        name: "e-1",
        input: '{"a":1}',
        output: '{"a":1}',
        stateMachineArn,
      });
      expect(d.stopDate).to.be.instanceOf(Date);
      break;
    }
    expect(
      await serviceError(sfn.send(new StartExecutionCommand({ stateMachineArn, name: "e-1", input: '{"a":2}' }))),
    ).to.equal("ExecutionAlreadyExists");
    expect(
      await serviceError(sfn.send(new StartExecutionCommand({ stateMachineArn, name: "e-2", input: "{" }))),
    ).to.equal("InvalidExecutionInput");
    expect(await serviceError(sfn.send(new StartExecutionCommand({ stateMachineArn, name: "e 3" })))).to.equal(
      "InvalidName",
    );
    const unnamed = await sfn.send(new StartExecutionCommand({ stateMachineArn }));
    expect(unnamed.executionArn).to.match(/:execution:runner:[0-9a-f-]{36}$/);
  });

  it("validates definitions (ValidateStateMachineDefinition) as the service answers: result, diagnostics, no exception", async function () {
    const validate = (definition: unknown, severity?: "ERROR" | "WARNING") =>
      sfn.send(
        new ValidateStateMachineDefinitionCommand({
          definition: typeof definition === "string" ? definition : JSON.stringify(definition),
          ...(severity ? { severity } : {}),
        }),
      );
    const ok = await validate(JSON.parse(DEFINITION));
    expect(ok).to.deep.include({ result: "OK", diagnostics: [], truncated: false });

    const dangling = await validate({ StartAt: "A", States: { A: { Type: "Pass", Next: "B" } } });
    expect(dangling.result).to.equal("FAIL");
    expect(dangling.diagnostics).to.deep.include({
      severity: "ERROR",
      code: "MISSING_TRANSITION_TARGET",
      message: 'Next "B" names no state',
      location: "/States/A/Next",
    });

    // What only asl-validator refuses is not an error (AWS decides): a warning, when warnings are asked for.
    const unknownField = { StartAt: "A", States: { A: { Type: "Pass", Bogus: 1, End: true } } };
    expect(await validate(unknownField)).to.deep.include({ result: "OK", diagnostics: [] });
    const warned = await validate(unknownField, "WARNING");
    expect(warned.result).to.equal("OK");
    expect(warned.diagnostics?.map((d) => [d.severity, d.code, d.location])).to.deep.equal([
      ["WARNING", "ASL_VALIDATOR_REFUSED", "/States/A"],
    ]);

    const notJson = await validate("{");
    expect(notJson.result).to.equal("FAIL");
    expect(notJson.diagnostics?.[0]).to.deep.include({ severity: "ERROR", code: "INVALID_JSON_DESCRIPTION" });
    expect(
      await serviceError(
        sfn.send(new ValidateStateMachineDefinitionCommand({ definition: DEFINITION, type: "X" as never })),
      ),
    ).to.equal("ValidationException");
  });
});
