import { type TaskHandlers } from "../../../src/engine/local";

/** Small models of this suite's own, each with handlers and an input, for the paths the examples lack. */
export interface Fixture {
  model: object;
  handlers: () => TaskHandlers;
  input: unknown;
  status: "succeeded" | "failed" | "aborted";
}

function failure(name: string, message: string): Error {
  const error = new Error(message);
  error.name = name;
  return error;
}

/** A handler that fails with `name` the first `times` calls (per key), then returns `result`. */
function flaky(times: number, name: string, result: (input: unknown) => unknown, key = (_: unknown) => "") {
  const calls = new Map<string, number>();
  return (input: unknown) => {
    const seen = calls.get(key(input)) ?? 0;
    calls.set(key(input), seen + 1);
    if (seen < times) throw failure(name, `attempt ${seen + 1} failed`);
    return result(input);
  };
}

export const FIXTURES: Record<string, Fixture> = {
  /** A Task failing twice, then succeeding: attempts 0, 1, 2. */
  retry: {
    model: {
      StartAt: "Fetch quote",
      States: {
        "Fetch quote": {
          Type: "Task",
          Resource: "arn:aws:lambda:us-east-1:123456789012:function:quote",
          Retry: [
            { ErrorEquals: ["Quote.Invalid"], MaxAttempts: 0 },
            { ErrorEquals: ["Quote.Unavailable"], IntervalSeconds: 1, MaxAttempts: 3, BackoffRate: 2 },
          ],
          Next: "Done",
        },
        Done: { Type: "Succeed" },
      },
    },
    handlers: () => ({ "Fetch quote": flaky(2, "Quote.Unavailable", () => ({ price: 42 })) }),
    input: { item: "lamp" },
    status: "succeeded",
  },

  /** An error caught by the second catcher (States.ALL), a Map iteration catching its own error, a Map retried. */
  catch: {
    model: {
      StartAt: "Charge",
      States: {
        Charge: {
          Type: "Task",
          Resource: "arn:aws:lambda:us-east-1:123456789012:function:charge",
          Catch: [
            { ErrorEquals: ["Fraud"], Next: "Block", ResultPath: "$.error" },
            { ErrorEquals: ["States.ALL"], Next: "Recover", ResultPath: "$.error" },
          ],
          Next: "Notify",
        },
        Recover: { Type: "Pass", Result: "manual", ResultPath: "$.mode", Next: "Each line" },
        "Each line": {
          Type: "Map",
          ItemsPath: "$.lines",
          Retry: [{ ErrorEquals: ["Line.Busy"], MaxAttempts: 1, IntervalSeconds: 1 }],
          ItemProcessor: {
            StartAt: "Book line",
            States: {
              "Book line": {
                Type: "Task",
                Resource: "arn:aws:lambda:us-east-1:123456789012:function:book",
                Catch: [{ ErrorEquals: ["Line.Rejected"], Next: "Skip line" }],
                End: true,
              },
              "Skip line": { Type: "Pass", End: true },
            },
          },
          Next: "Notify",
        },
        Notify: { Type: "Task", Resource: "arn:aws:lambda:us-east-1:123456789012:function:notify", End: true },
        Block: { Type: "Fail", Error: "Fraud" },
      },
    },
    handlers: () => {
      let busy = true;
      return {
        Charge: () => {
          throw failure("Gateway.Timeout", "the payment gateway timed out");
        },
        "Book line": (line) => {
          const { id } = line as { id: number };
          if (id === 2 && busy) {
            busy = false;
            throw failure("Line.Busy", "line 2 is busy, retry the Map");
          }
          if (id === 3) throw failure("Line.Rejected", "line 3 is rejected");
          return { booked: id };
        },
        Notify: (input) => input,
      };
    },
    input: { lines: [{ id: 1 }, { id: 2 }, { id: 3 }] },
    status: "succeeded",
  },

  /** A Map in a Map in a Parallel branch; a Wait ending another branch; a Choice in a third. */
  nested: {
    model: {
      StartAt: "Sync all",
      States: {
        "Sync all": {
          Type: "Parallel",
          Branches: [
            {
              StartAt: "Each region",
              States: {
                "Each region": {
                  Type: "Map",
                  ItemsPath: "$.regions",
                  ItemProcessor: {
                    StartAt: "Each site",
                    States: {
                      "Each site": {
                        Type: "Map",
                        InputPath: "$.region",
                        ItemsPath: "$.sites",
                        ItemSelector: { "site.$": "$$.Map.Item.Value", "region.$": "$.name" },
                        ItemProcessor: {
                          StartAt: "Sync site",
                          States: {
                            "Sync site": {
                              Type: "Task",
                              Resource: "arn:aws:lambda:us-east-1:123456789012:function:sync",
                              End: true,
                            },
                          },
                        },
                        End: true,
                      },
                    },
                  },
                  End: true,
                },
              },
            },
            {
              StartAt: "Cool down",
              States: { "Cool down": { Type: "Wait", SecondsPath: "$.coolDown", End: true } },
            },
            {
              StartAt: "Large?",
              States: {
                "Large?": {
                  Type: "Choice",
                  Choices: [
                    {
                      And: [
                        { Variable: "$.regions[0].region.sites[2]", IsPresent: true },
                        { Variable: "$.coolDown", NumericLessThan: 60 },
                      ],
                      Next: "Large",
                    },
                  ],
                  Default: "Small",
                },
                Large: { Type: "Pass", Result: "large", End: true },
                Small: { Type: "Pass", Result: "small", End: true },
              },
            },
          ],
          Next: "Report",
        },
        Report: { Type: "Pass", End: true },
      },
    },
    handlers: () => ({ "Sync site": (input) => ({ ...(input as object), synced: true }) }),
    input: {
      coolDown: 30,
      regions: [
        { region: { name: "eu", sites: ["ber", "lyo", "mad"] } },
        { region: { name: "us", sites: ["nyc"] } },
        { region: { name: "ap", sites: [] } },
      ],
    },
    status: "succeeded",
  },

  /** A Choice leading to a Fail state with its own error. */
  fail: {
    model: {
      StartAt: "Check stock",
      States: {
        "Check stock": {
          Type: "Task",
          Resource: "arn:aws:lambda:us-east-1:123456789012:function:stock",
          ResultPath: "$.stock",
          Next: "In stock?",
        },
        "In stock?": {
          Type: "Choice",
          Choices: [{ Variable: "$.stock.available", NumericGreaterThanEquals: 1, Next: "Reserve" }],
          Default: "Out of stock",
        },
        Reserve: { Type: "Pass", End: true },
        "Out of stock": { Type: "Fail", Error: "Stock.Empty", Cause: "nothing left to reserve" },
      },
    },
    handlers: () => ({ "Check stock": () => ({ available: 0 }) }),
    input: { sku: "lamp" },
    status: "failed",
  },

  /** A Task error no Catch handles: the execution fails in the Task, inside a Map iteration. */
  uncaught: {
    model: {
      StartAt: "Each order",
      States: {
        "Each order": {
          Type: "Map",
          MaxConcurrency: 1,
          ItemProcessor: {
            StartAt: "Ship",
            States: {
              Ship: { Type: "Task", Resource: "arn:aws:lambda:us-east-1:123456789012:function:ship", End: true },
            },
          },
          End: true,
        },
      },
    },
    handlers: () => ({
      Ship: (order) => {
        if ((order as { id: number }).id === 2) throw failure("Carrier.Down", "no carrier for order 2");
        return order;
      },
    }),
    input: [{ id: 1 }, { id: 2 }, { id: 3 }],
    status: "failed",
  },
};
