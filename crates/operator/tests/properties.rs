//! Property tests of what hostile input could break: the Azure names derived from
//! Kubernetes names (valid by Azure's rules, deterministic, distinct for distinct objects)
//! and shell quoting (every string survives a real `sh`).

use std::process::Command;

use azlin_operator::infra::naming::{
    VM_NAME_MAX, bounded, data_disk_name, nic_name, os_disk_name, public_ip_name,
    storage_account_name, vm_name,
};
use azlin_operator::ssh::shell::{shell_join, shell_quote};
use proptest::prelude::*;

/// A Kubernetes DNS label (namespace or AzlinVM name), as the API server admits it.
fn dns_label() -> impl Strategy<Value = String> {
    "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
}

/// An Azure resource group name: letters, digits, `-_.()`, not ending with `.`.
fn resource_group() -> impl Strategy<Value = String> {
    "[-A-Za-z0-9_.()]{0,89}[-A-Za-z0-9_()]"
}

/// Azure's rule for a Linux VM name (and host name) made of the characters we produce.
fn is_valid_vm_name(n: &str) -> bool {
    (1..=VM_NAME_MAX).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !n.starts_with('-')
        && !n.ends_with('-')
}

/// Output of `sh -c <script>`.
fn sh(script: &str) -> Vec<u8> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "sh failed on {script:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

proptest! {
    #[test]
    fn vm_names_are_valid_azure_names(ns in dns_label(), name in dns_label(), lun in 0i32..64) {
        let vm = vm_name(&ns, &name);
        prop_assert!(is_valid_vm_name(&vm), "{vm:?}");
        // NICs, public IPs and disks allow 80 characters.
        for derived in [nic_name(&vm), public_ip_name(&vm), os_disk_name(&vm), data_disk_name(&vm, lun)] {
            prop_assert!(derived.len() <= 80, "{derived:?}");
            prop_assert!(!derived.ends_with('-') && !derived.ends_with('.'), "{derived:?}");
        }
    }

    #[test]
    fn vm_names_are_deterministic(ns in dns_label(), name in dns_label()) {
        prop_assert_eq!(vm_name(&ns, &name), vm_name(&ns.clone(), &name.clone()));
    }

    #[test]
    fn distinct_vms_of_a_namespace_get_distinct_names(ns in dns_label(), a in dns_label(), b in dns_label()) {
        prop_assume!(a != b);
        prop_assert_ne!(vm_name(&ns, &a), vm_name(&ns, &b));
    }

    #[test]
    fn one_name_in_distinct_namespaces_gets_distinct_names(a in dns_label(), b in dns_label(), name in dns_label()) {
        prop_assume!(a != b);
        prop_assert_ne!(vm_name(&a, &name), vm_name(&b, &name));
    }

    #[test]
    fn bounded_names_fit_and_keep_distinct_identities_apart(
        base in "[a-z0-9-]{1,200}",
        a in "[a-z0-9/]{1,100}",
        b in "[a-z0-9/]{1,100}",
        max in 12usize..80,
    ) {
        let x = bounded(&base, &a, max);
        prop_assert!(x.len() <= max, "{x:?}");
        if base.len() > max && a != b {
            prop_assert_ne!(x, bounded(&base, &b, max));
        }
    }

    #[test]
    fn storage_account_names_are_valid_deterministic_and_distinct(
        sub in "[0-9a-f-]{36}",
        rg in resource_group(),
        ns in dns_label(),
        name in dns_label(),
        other in (resource_group(), dns_label(), dns_label()),
    ) {
        let n = storage_account_name(&sub, &rg, &ns, &name);
        prop_assert!((3..=24).contains(&n.len()), "{n:?}");
        prop_assert!(n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "{n:?}");
        prop_assert_eq!(&n, &storage_account_name(&sub, &rg, &ns, &name));
        // Resource group names are case-insensitive in Azure: one storage either way.
        prop_assert_eq!(&n, &storage_account_name(&sub, &rg.to_ascii_uppercase(), &ns, &name));
        let (rg2, ns2, name2) = other;
        if (rg2.to_ascii_lowercase(), &ns2, &name2) != (rg.to_ascii_lowercase(), &ns, &name) {
            prop_assert_ne!(n, storage_account_name(&sub, &rg2, &ns2, &name2));
        }
    }
}

proptest! {
    // Each case starts a shell: fewer cases, still every kind of character.
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn a_quoted_string_reaches_the_shell_unchanged(value in "[^\u{0}]{0,64}") {
        let quoted = shell_quote(&value);
        let out = sh(&format!("printf '%s' {quoted}"));
        prop_assert_eq!(String::from_utf8_lossy(&out), value);
    }

    #[test]
    fn shell_metacharacters_stay_literal(value in "[-'\"`$\\\\;&|<>(){}*?!#~= \t\n a-z]{0,48}") {
        let out = sh(&format!("printf '%s' {}", shell_quote(&value)));
        prop_assert_eq!(String::from_utf8_lossy(&out), value);
    }

    #[test]
    fn a_joined_argv_splits_back_into_the_same_words(argv in prop::collection::vec("[^\u{0}]{0,24}", 1..6)) {
        let out = sh(&format!("printf '%s\\0' {}", shell_join(&argv)));
        let words: Vec<String> = out
            .split(|b| *b == 0)
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        prop_assert_eq!(&words[..words.len() - 1], &argv[..]);
    }
}
