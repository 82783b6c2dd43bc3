//! Prometheus metrics, rendered by `GET /metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::store::writer::WriterObserver;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once; `None` if another recorder was
/// installed first (then metrics are not rendered).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let latency = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ];
            let sizes = [
                1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 10000.0,
            ];
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("trail_append_latency_seconds".into()),
                    &latency,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("trail_http_request_duration_seconds".into()),
                        &latency,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("trail_commit_batch_events".into()),
                        &sizes,
                    )
                })
                .and_then(|b| b.install_recorder())
                .map_err(|e| tracing::warn!(error = %e, "metrics recorder not installed"))
                .ok()
                .inspect(|_| describe())
        })
        .as_ref()
}

/// `# HELP` for every series, and the counters an alert watches shown at 0
/// from the start (an alert on their increase then sees the first one).
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "trail_events_appended_total",
        "Events committed to the chain by this process"
    );
    describe_counter!(
        "trail_events_dropped_total",
        "Events accepted but not stored: below min_level, or of an excluded type"
    );
    describe_counter!(
        "trail_commit_failures_total",
        "Append requests failed by a failed commit (nothing of them acknowledged)"
    );
    describe_counter!(
        "trail_http_requests_total",
        "HTTP requests by route pattern, method and status"
    );
    describe_counter!(
        "trail_auth_failures_total",
        "Refused requests by reason (each is an auth.fail event)"
    );
    describe_counter!(
        "trail_verifications_total",
        "Verifications run over HTTP, by result"
    );
    describe_counter!(
        "trail_retention_refusals_total",
        "Retention runs that refused to delete rows that do not verify"
    );
    describe_histogram!(
        "trail_append_latency_seconds",
        Unit::Seconds,
        "From request parsed to commit answered"
    );
    describe_histogram!(
        "trail_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request duration"
    );
    describe_histogram!(
        "trail_commit_batch_events",
        Unit::Count,
        "Events per group commit"
    );
    describe_histogram!(
        "trail_commit_duration_seconds",
        Unit::Seconds,
        "Duration of one group commit"
    );
    describe_gauge!("trail_chain_head_seq", "Seq of the newest event committed");
    describe_gauge!("trail_writer_queue_depth", "Jobs waiting for the writer");
    describe_gauge!(
        "trail_database_size_bytes",
        Unit::Bytes,
        "Database file plus its WAL"
    );
    describe_gauge!(
        "trail_wal_size_bytes",
        Unit::Bytes,
        "The WAL alone: it grows past a few MiB only while a reader holds an old snapshot"
    );
    for reason in ["min_level", "excluded"] {
        metrics::counter!("trail_events_dropped_total", "reason" => reason).increment(0);
    }
    metrics::counter!("trail_commit_failures_total").increment(0);
    metrics::counter!("trail_retention_refusals_total").increment(0);
}

/// Counts what the writer commits.
#[derive(Default)]
pub struct WriterMetrics {
    /// Events appended since this process started (for `server.stop`).
    pub appended: AtomicU64,
}

impl WriterObserver for WriterMetrics {
    fn committed(&self, events: usize, _jobs: usize, head_seq: u64, elapsed: Duration) {
        metrics::gauge!("trail_chain_head_seq").set(head_seq as f64);
        // A commit that stored nothing (`/readyz`'s empty job, a group of
        // retries answered from the log) is not a group commit of events: it
        // would drag "events per commit" down with every probe.
        if events == 0 {
            return;
        }
        self.appended.fetch_add(events as u64, Ordering::Relaxed);
        metrics::counter!("trail_events_appended_total").increment(events as u64);
        metrics::histogram!("trail_commit_batch_events").record(events as f64);
        metrics::histogram!("trail_commit_duration_seconds").record(elapsed.as_secs_f64());
    }
    fn failed(&self, jobs: usize) {
        metrics::counter!("trail_commit_failures_total").increment(jobs as u64);
    }
}

impl WriterMetrics {
    /// Events this server appended outside its writer (the retention
    /// task's own record): counted, and the head moves, but they are not a
    /// commit of the writer's, whose size and duration the histograms show.
    pub fn appended_outside(&self, events: usize, head_seq: u64) {
        metrics::gauge!("trail_chain_head_seq").set(head_seq as f64);
        self.appended.fetch_add(events as u64, Ordering::Relaxed);
        metrics::counter!("trail_events_appended_total").increment(events as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renders what `f` records, on a recorder of its own (the process-wide
    /// one is shared by every test).
    fn rendered(f: impl FnOnce()) -> String {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, f);
        handle.render()
    }

    #[test]
    fn a_commit_that_stored_nothing_is_not_counted_as_a_group_commit() {
        let observer = WriterMetrics::default();
        let text = rendered(|| {
            observer.committed(0, 1, 7, Duration::from_millis(1)); // /readyz
            observer.committed(3, 2, 10, Duration::from_millis(2));
            observer.committed(0, 1, 10, Duration::from_millis(1)); // a retry
        });
        assert!(
            text.contains("trail_commit_batch_events_count 1\n"),
            "{text}"
        );
        assert!(text.contains("trail_commit_batch_events_sum 3\n"), "{text}");
        assert!(
            text.contains("trail_commit_duration_seconds_count 1\n"),
            "{text}"
        );
        assert!(text.contains("trail_events_appended_total 3\n"), "{text}");
        assert!(text.contains("trail_chain_head_seq 10\n"), "{text}");
        assert_eq!(observer.appended.load(Ordering::Relaxed), 3);
    }
}
