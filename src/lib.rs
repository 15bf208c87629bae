//! azlin-operator: declare Azure development VM fleets, shared NFS storage and
//! disk backups as Kubernetes custom resources, and keep Azure in line with them.

pub mod api;
pub mod azure;
pub mod cli;
pub mod controllers;
pub mod embedded;
pub mod emulator;
pub mod kubemem;
pub mod runtime;
pub mod ssh;
