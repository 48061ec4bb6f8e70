// graphile-worker baseline for `cargo xtask bench jobs`: enqueue JOBS no-op jobs with the
// batch API, then time one worker draining them at graphile-worker's fastest documented
// settings (local queue of 500, immediate batched completion; see
// https://worker.graphile.org/docs/performance). Prints `jobs_per_second=N`.
import { Logger, makeWorkerUtils, run } from "graphile-worker";

// Per-job logging would dominate a no-op benchmark.
const logger = new Logger(() => () => {});

const connectionString = process.env.DATABASE_URL;
const jobs = Number(process.env.JOBS ?? 50000);

const utils = await makeWorkerUtils({ connectionString, logger });
await utils.migrate();
for (let sent = 0; sent < jobs; sent += 5000) {
  const n = Math.min(5000, jobs - sent);
  await utils.addJobs(Array.from({ length: n }, () => ({ identifier: "noop", payload: {} })));
}
await utils.release();

let done = 0;
let finish;
const finished = new Promise((resolve) => (finish = resolve));
const started = process.hrtime.bigint();
const runner = await run({
  connectionString,
  noHandleSignals: true,
  logger,
  pollInterval: 1000,
  taskList: {
    noop: async () => {
      done += 1;
      if (done === jobs) finish();
    },
  },
  preset: {
    worker: {
      concurrentJobs: 24,
      maxPoolSize: 26,
      localQueue: { size: 500 },
      completeJobBatchDelay: 0,
      failJobBatchDelay: 0,
    },
  },
});
await finished;
await runner.stop();
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
console.log(`jobs_per_second=${(jobs / seconds).toFixed(0)}`);
