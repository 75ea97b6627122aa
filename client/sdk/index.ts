/**
 * The lavie-serve client SDK: submit text-to-video jobs to a coordinator, follow them and fetch the MP4.
 *
 *   import { LavieClient } from "lavie-serve/client/sdk/index.ts";
 *
 *   const client = new LavieClient("127.0.0.1:50051"); // with authentication / TLS:
 *   // new LavieClient(addr, { apiKey: process.env.LAVIE_API_KEY, tls: { ca: readFileSync("ca.pem") } })
 *   try {
 *     const { job, created } = await client.submit(
 *       { prompt: "a panda playing guitar", seed: 7, base: { steps: 50 } },
 *       { idempotencyKey: "panda-7" }, // a retried submit with this key returns the same job
 *     );
 *     for await (const e of client.watch(job.id)) {
 *       if (e.type === "task_progress") console.log(`${e.stage} ${e.taskId} ${e.step}/${e.total}`);
 *       if (e.type === "failed") throw new Error(e.reason);
 *     }
 *     await client.fetchResultToFile(job.id, "panda.mp4");
 *   } catch (err) {
 *     // always a LavieError: err.code is "invalid_argument" (err.field names the field), "not_found",
 *     // "unavailable" (retryable), ...
 *   } finally {
 *     client.close();
 *   }
 */

export { type ErrorCode, LavieError } from "../../core/errors.ts";
export type { JobRequest, StageRequest } from "../../core/job.ts";
export {
  type Job,
  type JobEvent,
  type JobStateName,
  LavieClient,
  type LavieClientOptions,
  type StageProgress,
  type SubmitOptions,
  TERMINAL_STATES,
  type VideoResult,
} from "./client.ts";
export type { ClientCredentialOptions, ClientTls } from "./credentials.ts";
