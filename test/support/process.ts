/** Helpers for tests that start real processes. */

/**
 * The environment for child node processes, without node's test-runner context: a child that
 * inherits NODE_TEST_CONTEXT behaves as a test file and never reports its own output.
 */
export function childEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  delete env.NODE_TEST_CONTEXT;
  return env;
}
