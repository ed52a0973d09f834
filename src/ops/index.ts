export { runService, type Service, type ServiceHealth, type ServiceOptions, type ServiceResult } from './service.js';
export { serveHealth, type HealthServer } from './http.js';
export { jsonLogger, logConsumer, redactingLogger, silentLogger, errorFields, type Logger } from './logger.js';
export { prometheusMetrics, type PrometheusMetrics } from './metrics.js';
export { tracingMiddleware, injectTraceContext, type TracingOptions } from './tracing.js';
export {
  otelMessagingMetrics,
  PROCESS_DURATION_BUCKETS,
  type MeterLike,
  type OtelMessagingMetrics,
  type OtelMetricsOptions,
  type TrackOptions as OtelTrackOptions,
} from './otel-metrics.js';
export { type MessagingTarget } from './messaging-attributes.js';
export {
  createDashboard,
  type Dashboard,
  type DashboardBreaker,
  type DashboardConsumer,
  type DashboardError,
  type DashboardOptions,
  type DashboardPool,
  type DashboardSample,
  type DashboardSnapshot,
} from './dashboard.js';
