//! Request accounting: counts by method and resource type, and a bounded request log.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Most records kept in the request log (oldest dropped first).
const LOG_LIMIT: usize = 100_000;

/// One handled request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    /// When it arrived.
    pub time: DateTime<Utc>,
    /// HTTP method.
    pub method: String,
    /// Request path (without query).
    pub path: String,
    /// Resource type addressed, e.g. `Microsoft.Compute/virtualMachines`, or with an action
    /// `Microsoft.Compute/virtualMachines/start`; operation polls are `{ns}/operations`.
    pub resource_type: String,
    /// The Compute throttling policy family the request was charged to (`PutVM`,
    /// `CreateUpdateDisks`, `HighCostGet`, `LowCostGet`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_policy: Option<String>,
    /// Answer status.
    pub status: u16,
    /// Handling time in milliseconds.
    pub duration_ms: u64,
    /// The `x-ms-request-id` answered.
    pub request_id: String,
    /// The injected delivery fault (`reset`, `slow`), if any; a request reset before it
    /// was handled has status 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
}

/// Request counts keyed `"{METHOD} {resourceType}"`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestCounts {
    /// All counted requests.
    pub total: u64,
    /// Count per `"{METHOD} {resourceType}"` (method upper-case).
    pub by_method_and_type: BTreeMap<String, u64>,
    /// Requests answered 429 (throttled, by a budget or an injected fault).
    #[serde(default)]
    pub throttled: u64,
}

impl RequestCounts {
    /// Count of one method and resource type (case-insensitive).
    pub fn get(&self, method: &str, resource_type: &str) -> u64 {
        let key = format!("{} {}", method.to_ascii_uppercase(), resource_type).to_ascii_lowercase();
        self.by_method_and_type
            .iter()
            .filter(|(k, _)| k.to_ascii_lowercase() == key)
            .map(|(_, v)| *v)
            .sum()
    }

    /// Count of one method over all resource types.
    pub fn method(&self, method: &str) -> u64 {
        let prefix = format!("{} ", method.to_ascii_uppercase());
        self.by_method_and_type
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| *v)
            .sum()
    }
}

/// Accumulates counts and the log.
#[derive(Debug, Default)]
pub struct Recorder {
    counts: RequestCounts,
    log: VecDeque<RequestRecord>,
}

impl Recorder {
    /// Records a request.
    pub fn record(&mut self, record: RequestRecord) {
        self.counts.total += 1;
        if record.status == 429 {
            self.counts.throttled += 1;
        }
        *self
            .counts
            .by_method_and_type
            .entry(format!("{} {}", record.method, record.resource_type))
            .or_default() += 1;
        if self.log.len() >= LOG_LIMIT {
            self.log.pop_front();
        }
        self.log.push_back(record);
    }

    /// A copy of the counts.
    pub fn counts(&self) -> RequestCounts {
        self.counts.clone()
    }

    /// A copy of the log, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.log.iter().cloned().collect()
    }

    /// Clears counts and log.
    pub fn reset(&mut self) {
        self.counts = RequestCounts::default();
        self.log.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_method_and_type() {
        let mut r = Recorder::default();
        for method in ["PUT", "PUT", "GET"] {
            r.record(RequestRecord {
                time: Utc::now(),
                method: method.into(),
                path: "/x".into(),
                resource_type: "Microsoft.Compute/virtualMachines".into(),
                compute_policy: None,
                status: 200,
                duration_ms: 1,
                request_id: "id".into(),
                fault: None,
            });
        }
        let counts = r.counts();
        assert_eq!(counts.get("put", "microsoft.compute/virtualmachines"), 2);
        assert_eq!(counts.method("GET"), 1);
        assert_eq!(counts.total, 3);
        r.reset();
        assert_eq!(r.counts().total, 0);
        assert!(r.requests().is_empty());
    }
}
