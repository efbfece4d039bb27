/**
 * The Temporal Core SDK's own Prometheus exporter, as `Runtime.install({ telemetryOptions })` takes
 * it (`@temporalio/worker` 1.24: `TelemetryOptions.metrics` = `MetricsExporterConfig` with
 * `prometheus: { bindAddress, countersTotalSuffix?, unitSuffix?, useSecondsForDurations?,
 * histogramBucketOverrides? }`). Core serves `/metrics` on the bind address itself.
 *
 * The naming options are pinned to Core's defaults, which the dashboard relies on: prefix
 * `temporal_`, counters without `_total`, no unit suffix, durations in milliseconds (for example
 * `temporal_workflow_task_execution_latency_bucket`, `temporal_activity_execution_latency_bucket`,
 * `temporal_worker_task_slots_available`).
 * @module
 */
import type { MetricsExporterConfig, PrometheusMetricsExporter, TelemetryOptions } from '@temporalio/worker';
import { MetricsError, MetricsErrorCode } from './registry.ts';

/** Options of {@link temporalPrometheusOptions}. */
export interface TemporalPrometheusOptions {
  /** Labels added to every Core metric (for example `{ process: 'agents-worker' }`). */
  readonly globalTags?: Readonly<Record<string, string>>;
}

/** What {@link temporalPrometheusOptions} returns: telemetry options whose metrics export to Prometheus. */
export type TemporalPrometheusTelemetry = TelemetryOptions & {
  readonly metrics: MetricsExporterConfig & PrometheusMetricsExporter;
};

const BIND_ADDRESS = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

/**
 * Telemetry options for `Runtime.install` that make Core expose its metrics on `bindAddress`
 * (`host:port`, `[v6]:port`). Throws {@link MetricsError} `METRICS_INVALID_OPTION` otherwise.
 */
export function temporalPrometheusOptions(
  bindAddress: string,
  options: TemporalPrometheusOptions = {},
): TemporalPrometheusTelemetry {
  const port = BIND_ADDRESS.exec(bindAddress)?.[1];
  if (port === undefined || Number(port) < 1 || Number(port) > 65_535)
    throw new MetricsError(
      MetricsErrorCode.invalidOption,
      `Temporal metrics bind address must be host:port with a port from 1 to 65535, got ${JSON.stringify(bindAddress)}`,
    );
  return {
    metrics: {
      metricPrefix: 'temporal_',
      ...(options.globalTags === undefined ? {} : { globalTags: { ...options.globalTags } }),
      prometheus: {
        bindAddress,
        countersTotalSuffix: false,
        unitSuffix: false,
        useSecondsForDurations: false,
      },
    },
  };
}
