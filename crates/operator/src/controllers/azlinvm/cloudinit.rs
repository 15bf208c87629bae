//! The VM's cloud-init user data: the operator's `#cloud-config` (admin user with the fixed
//! uid 1000 that shared homes rely on, its SSH key, the NFS client) and, when the user gave
//! `spec.cloudInit`, that as a second part of a MIME multipart document.

use sha2::{Digest, Sha256};

/// uid and gid of the admin user on every VM (shared homes need the same ids everywhere).
pub const ADMIN_UID: u32 = 1000;

/// Quotes a string for YAML (JSON strings are valid YAML flow scalars).
fn yaml_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// The operator's own `#cloud-config`.
pub fn operator_cloud_config(admin_user: &str, ssh_public_key: &str) -> String {
    let user = yaml_str(admin_user);
    format!(
        "#cloud-config\n\
         users:\n\
         \x20 - default\n\
         \x20 - name: {user}\n\
         \x20   uid: \"{ADMIN_UID}\"\n\
         \x20   groups: [sudo]\n\
         \x20   shell: /bin/bash\n\
         \x20   sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n\
         \x20   lock_passwd: true\n\
         \x20   ssh_authorized_keys:\n\
         \x20     - {key}\n\
         package_update: true\n\
         packages:\n  - nfs-common\n",
        key = yaml_str(ssh_public_key.trim()),
    )
}

fn mime_type_of(extra: &str) -> &'static str {
    if extra.starts_with("#!") {
        "text/x-shellscript"
    } else {
        "text/cloud-config"
    }
}

/// The complete user data: the operator's cloud-config alone, or a `multipart/mixed`
/// document with the user's `extra` (`#cloud-config` or `#!` script) as the second part.
pub fn user_data(admin_user: &str, ssh_public_key: &str, extra: Option<&str>) -> String {
    let own = operator_cloud_config(admin_user, ssh_public_key);
    let Some(extra) = extra.filter(|e| !e.trim().is_empty()) else {
        return own;
    };
    // A boundary that cannot occur in either part.
    let mut salt = 0u32;
    let boundary = loop {
        let digest = Sha256::digest(format!("{salt}:{own}{extra}").as_bytes());
        let b = format!("==AZLIN-{}==", &hex::encode(digest)[..16]);
        if !own.contains(&b) && !extra.contains(&b) {
            break b;
        }
        salt += 1;
    };
    let mut out = String::new();
    out.push_str(&format!(
        "Content-Type: multipart/mixed; boundary=\"{boundary}\"\nMIME-Version: 1.0\n\n"
    ));
    for (mime, name, body) in [
        ("text/cloud-config", "azlin-operator.cfg", own.as_str()),
        (mime_type_of(extra), "user-data", extra),
    ] {
        out.push_str(&format!(
            "--{boundary}\nContent-Type: {mime}; charset=\"utf-8\"\nMIME-Version: 1.0\n\
             Content-Transfer-Encoding: 8bit\nContent-Disposition: attachment; filename=\"{name}\"\n\n"
        ));
        out.push_str(body);
        if !body.ends_with('\n') {
            out.push('\n');
        }
    }
    out.push_str(&format!("--{boundary}--\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample azlin";

    #[test]
    fn operator_config_has_user_uid_key_and_nfs_client() {
        let c = user_data("azureuser", KEY, None);
        assert!(c.starts_with("#cloud-config\n"));
        assert!(c.contains("name: \"azureuser\""));
        assert!(c.contains("uid: \"1000\""));
        assert!(c.contains(&format!("- \"{KEY}\"")));
        assert!(c.contains("- nfs-common"));
        assert!(c.contains("lock_passwd: true"));
        assert!(!c.contains("multipart"));
    }

    #[test]
    fn extra_user_data_becomes_a_second_mime_part() {
        let extra = "#!/bin/sh\necho hi > /tmp/hi";
        let c = user_data("azureuser", KEY, Some(extra));
        assert!(c.starts_with("Content-Type: multipart/mixed; boundary=\""));
        let boundary = c
            .split("boundary=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("boundary");
        assert_eq!(c.matches(&format!("--{boundary}\n")).count(), 2);
        assert!(c.ends_with(&format!("--{boundary}--\n")));
        assert!(c.contains("Content-Type: text/x-shellscript"));
        assert!(c.contains("Content-Type: text/cloud-config"));
        let own = c.find("#cloud-config").expect("own part");
        let user = c.find("echo hi").expect("user part");
        assert!(own < user, "the operator's part comes first");

        let cc = user_data("azureuser", KEY, Some("#cloud-config\nruncmd: [ls]\n"));
        assert_eq!(cc.matches("Content-Type: text/cloud-config").count(), 2);
    }

    #[test]
    fn yaml_quoting_is_safe() {
        let c = operator_cloud_config("a\"b", "ssh-ed25519 AAA x: y");
        assert!(c.contains("name: \"a\\\"b\""));
        assert!(c.contains("- \"ssh-ed25519 AAA x: y\""));
    }
}
