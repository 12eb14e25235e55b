//! Prometheus metrics: recorded on the request path, encoded on scrape.

/// Every metric drover keeps.
#[derive(Debug, Default)]
pub struct Metrics {}

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        String::from("# EOF\n")
    }
}
