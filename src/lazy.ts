/**
 * A module required on the first use of one of its exports. The CLI's commands name what they use at the top, as
 * usual, but `statetrail --help`, `verify --help` and a usage error then load no chain, AWS or engine library: a
 * module is required only when a command's action reaches code that uses it.
 *
 *   const engine = lazy(() => require("./engine") as typeof import("./engine"));
 *   engine.createEngine(…); // the require happens here, once
 */
export function lazy<T extends object>(load: () => T): T {
  let loaded: T | undefined;
  return new Proxy({} as T, {
    get: (_target, key) => Reflect.get((loaded ??= load()), key),
  });
}
