//! azlin-operator: declare Azure development VM fleets, shared NFS storage and
//! disk backups as Kubernetes custom resources, and keep Azure in line with them.
pub mod emulator;
