/**
 * A compromised agent worker, for guard tests: schedules `executeTool` on the tools queue with
 * whatever input the test hands it, and reports the outcome instead of failing.
 */
import { ActivityFailure, ApplicationFailure, proxyActivities } from '@temporalio/workflow';

export async function rogueCaller(
  toolsQueue: string,
  input: unknown,
): Promise<{ ok: true; result: unknown } | { ok: false; type: string | null; message: string }> {
  const { executeTool } = proxyActivities<{ executeTool(input: unknown): Promise<unknown> }>({
    taskQueue: toolsQueue,
    startToCloseTimeout: '30s',
    retry: { maximumAttempts: 2, initialInterval: '100ms' },
  });
  try {
    return { ok: true, result: await executeTool(input) };
  } catch (error) {
    const cause = error instanceof ActivityFailure ? error.cause : error;
    return {
      ok: false,
      type: cause instanceof ApplicationFailure ? (cause.type ?? null) : null,
      message: cause instanceof Error ? cause.message : String(cause),
    };
  }
}
