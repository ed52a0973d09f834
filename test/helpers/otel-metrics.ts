/** OpenTelemetry metrics in memory for tests: a meter whose data points a pull reader collects on demand. */
import { DataPointType, MeterProvider, MetricReader, type MetricData } from '@opentelemetry/sdk-metrics';

/** A pull reader: nothing is exported on a timer, `collect()` reads the current values. */
class InMemoryReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

export interface HistogramPoint {
  attributes: Record<string, unknown>;
  count: number;
  sum: number;
  boundaries: number[];
}

export interface SumPoint {
  attributes: Record<string, unknown>;
  value: number;
}

export interface OtelMetrics {
  meter: ReturnType<MeterProvider['getMeter']>;
  /** Every metric collected now, by name. */
  collect(): Promise<Map<string, MetricData>>;
  histogram(name: string): Promise<HistogramPoint[]>;
  sum(name: string): Promise<SumPoint[]>;
  shutdown(): Promise<void>;
}

export function otelMetrics(): OtelMetrics {
  const reader = new InMemoryReader();
  const provider = new MeterProvider({ readers: [reader] });
  const collect = async () => {
    const { resourceMetrics, errors } = await reader.collect();
    if (errors.length > 0) throw new AggregateError(errors, 'metric collection failed');
    const out = new Map<string, MetricData>();
    for (const scope of resourceMetrics.scopeMetrics) for (const metric of scope.metrics) out.set(metric.descriptor.name, metric);
    return out;
  };
  return {
    meter: provider.getMeter('sluice-test'),
    collect,
    async histogram(name) {
      const metric = (await collect()).get(name);
      if (metric === undefined) return [];
      if (metric.dataPointType !== DataPointType.HISTOGRAM) throw new Error(`${name} is not a histogram`);
      return metric.dataPoints.map((p) => ({ attributes: p.attributes, count: p.value.count, sum: p.value.sum ?? Number.NaN, boundaries: p.value.buckets.boundaries }));
    },
    async sum(name) {
      const metric = (await collect()).get(name);
      if (metric === undefined) return [];
      if (metric.dataPointType !== DataPointType.SUM) throw new Error(`${name} is not a sum`);
      return metric.dataPoints.map((p) => ({ attributes: p.attributes, value: p.value }));
    },
    shutdown: () => provider.shutdown(),
  };
}
