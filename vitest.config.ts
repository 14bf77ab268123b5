import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    benchmark: { include: ["test/bench/**/*.bench.ts"] },
    globalSetup: ["test/global-tmp.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Integration suites start real daemons, rsyslog and openssl; two cores are shared.
    pool: "forks",
    maxWorkers: 2,
  },
});
