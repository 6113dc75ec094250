import { defineConfig } from 'vitest/config';

// Integration tests share one kernel (iptables, cgroups, netns names): run files one at a time.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    reporters: ['default'],
  },
});
