//! Azure Resource Manager client (no Kubernetes types here).
//!
//! [`ArmClient`] does auth, throttling, retries and long-running operations; the per-family
//! modules are typed wrappers reached through accessors:
//! [`ArmClient::resources`] (resource groups), [`ArmClient::network`], [`ArmClient::compute`],
//! [`ArmClient::storage`]. Typed GETs return `Ok(None)` for a missing resource; mutating calls
//! return once the long-running operation finished, and `begin_*` variants return a [`Poller`]
//! (serializable; resume with [`ArmClient::wait`], or re-derive the outcome after a restart with
//! [`ArmClient::wait_provisioned`] / [`ArmClient::wait_deleted`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), azlin_arm::ArmError> {
//! use azlin_arm::{ArmClient, ArmConfig, CredentialChoice};
//! use azlin_arm::network::{NetworkInterface, PublicIpAddress};
//!
//! let config = ArmConfig::new("00000000-0000-0000-0000-000000000000", CredentialChoice::from_env()?)
//!     .with_endpoint("https://management.azure.com")?;
//! let arm = ArmClient::new(config)?;
//! arm.resources().create_or_update("rg-dev", "westus2", &Default::default()).await?;
//! let pip = arm.network().public_ips("rg-dev").create_or_update("vm1-ip", &PublicIpAddress::standard_static("westus2")).await?;
//! let subnet = arm.network().subnets("rg-dev", "vnet").id("default");
//! let nic = NetworkInterface::build("westus2", &subnet, pip.id.clone(), None);
//! arm.network().interfaces("rg-dev").create_or_update("vm1-nic", &nic).await?;
//! if let Some(status) = arm.compute().virtual_machines("rg-dev").get_with_instance_view("vm1").await? {
//!     println!("{:?}", status.power_state);
//! }
//! # Ok(()) }
//! ```

pub mod api_versions;
pub mod client;
pub mod collection;
pub mod compute;
pub mod config;
pub mod credential;
pub mod error;
pub mod graph;
pub mod headers;
pub mod id;
pub mod lro;
pub mod models;
pub mod network;
pub mod observer;
pub mod pacing;
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
