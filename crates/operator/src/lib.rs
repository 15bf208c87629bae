//! azlin-operator: declare Azure development VM fleets, shared NFS storage and
//! disk backups as Kubernetes custom resources, and keep Azure in line with them.

pub mod api;
pub mod bench;
pub mod cli;
pub mod controllers;
pub mod crd_install;
pub mod embedded;
pub mod guest;
pub mod infra;
pub mod local;
pub mod operator;
pub mod reconcile;
pub mod runtime;
pub mod ssh;
