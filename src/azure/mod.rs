//! Azure Resource Manager client (no Kubernetes types here).
//!
//! [`ArmClient`] does auth, throttling, retries and long-running operations; the per-family
//! modules are typed wrappers reached through accessors:
//! [`ArmClient::resources`] (resource groups), [`ArmClient::network`], [`ArmClient::compute`],
//! [`ArmClient::storage`]. Typed GETs return `Ok(None)` for a missing resource; mutating calls
//! return once the long-running operation finished, and `begin_*` variants return a [`Poller`].

pub mod api_versions;
pub mod client;
pub mod collection;
pub mod compute;
pub mod config;
pub mod credential;
pub mod error;
pub mod headers;
pub mod id;
pub mod lro;
pub mod models;
pub mod network;
pub mod observer;
pub mod resource_groups;
pub mod storage;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
pub mod throttle;

pub use client::{ArmClient, ArmResponse};
pub use collection::ResourceOps;
pub use config::{ArmConfig, DEFAULT_ENDPOINT, LroPolicy, RetryPolicy};
pub use credential::{ARM_SCOPE, ArmCredential, CredentialChoice, SecretString};
pub use error::{ArmError, ErrorDetail, FailedStatus};
pub use headers::RateLimitRemaining;
pub use id::ResourceId;
pub use lro::{Monitor, OperationState, Poller};
pub use models::{ProvisioningState, Resource, Sku, SubResource, TagFilter};
pub use observer::{ArmObserver, NoopObserver};
pub use throttle::{BucketRate, RateLimits, RequestClass};
