/** Helpers for tests that start real processes. */
import { type ChildProcess, spawn } from "node:child_process";

/**
 * The environment for child node processes, without node's test-runner context: a child that
 * inherits NODE_TEST_CONTEXT behaves as a test file and never reports its own output.
 */
export function childEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  delete env.NODE_TEST_CONTEXT;
  return env;
}

/**
 * Starts `node --import tsx <script>` with `env` (on top of childEnv()) and resolves once its stdout
 * matches `ready` (e.g. a "listening on" line); rejects if it exits first. Stdout keeps draining.
 */
export function startNodeProcess(
  script: string,
  env: NodeJS.ProcessEnv,
  ready: RegExp,
): Promise<{ child: ChildProcess; line: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", script], {
    env: childEnv(env),
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout!.setEncoding("utf8");
    const onData = (s: string) => {
      out += s;
      const m = ready.exec(out);
      if (m) {
        child.stdout!.off("data", onData);
        child.stdout!.resume();
        resolve({ child, line: m[0] });
      }
    };
    child.stdout!.on("data", onData);
    child.once("exit", (code) =>
      reject(new Error(`${script} exited with ${code} before it was ready: ${out}`)),
    );
  });
}
