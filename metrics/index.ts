/**
 * Prometheus metrics for every agent-runtime process: a small registry, metrics derived from the
 * audit events a process writes, its HTTP endpoint, and the Temporal Core SDK's exporter options.
 * @module
 */
export {
  Counter,
  DEFAULT_BUCKETS,
  DEFAULT_MAX_SERIES,
  escapeHelp,
  escapeLabelValue,
  EXPOSITION_CONTENT_TYPE,
  formatValue,
  Gauge,
  Histogram,
  MAX_LABEL_VALUE_LENGTH,
  METRIC_PREFIX,
  MetricsError,
  MetricsErrorCode,
  MetricsRegistry,
  OVERFLOW_LABEL_VALUE,
} from './registry.ts';
export type { GaugeSpec, HistogramSpec, LabelValues, MetricSpec, RegistryOptions } from './registry.ts';
export { AuditMetricBuckets, createAuditMetrics, meteredAudit } from './audit-metrics.ts';
export type { AuditMetrics, AuditMetricsOptions, ModelPrice, ModelPricing } from './audit-metrics.ts';
export { fetchExposition, registerProcessMetrics, serveMetrics } from './server.ts';
export type { MetricsServer, ServeMetricsOptions } from './server.ts';
export { temporalPrometheusOptions } from './temporal.ts';
export type { TemporalPrometheusOptions, TemporalPrometheusTelemetry } from './temporal.ts';
export { AggregatorMetric, AuditMetric, ObserverMetric, SERVICE_METRIC_NAMES } from './names.ts';
