export {
  type Cluster,
  type ClusterOptions,
  type ClusterProcess,
  parseRunnerSpec,
  type RunnerGroup,
  STAGE_NAMES,
  startCluster,
} from "./cluster.ts";
export { type ExitStatus, type LogFn, SupervisedProcess } from "./process.ts";
