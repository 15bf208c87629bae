//! Request-body checks shared by the resource families: required fields, enums, name rules.
//! Failures are 400s carrying the offending field as `target`, as ARM answers them.

use serde_json::Value;

use super::error::ArmError;

/// Case-insensitive equality (ARM names, ids and enums ignore case).
pub fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// A VM created with an attached OS disk (`osDisk.createOption: Attach`) brings its OS on
/// the disk: ARM refuses an image (target `osDisk`) and an OS profile (target `osProfile`)
/// alongside it.
pub fn check_attached_os_disk(body: &Value) -> Result<(), ArmError> {
    let present = |p: &str| body.pointer(p).is_some_and(|v| !v.is_null());
    if present("/properties/storageProfile/imageReference") {
        return Err(ArmError::invalid(
            "osDisk",
            "Cannot attach an existing OS disk if the VM is created from a platform, user or a shared gallery image.",
        ));
    }
    if present("/properties/osProfile") {
        return Err(ArmError::invalid(
            "osProfile",
            "Parameter 'osProfile' is not allowed.",
        ));
    }
    Ok(())
}

/// A string at a JSON pointer, or `None` when missing/null.
pub fn opt_str<'a>(body: &'a Value, pointer: &str) -> Option<&'a str> {
    body.pointer(pointer).and_then(Value::as_str)
}

/// A required string at a JSON pointer; `target` names the field in the error.
pub fn req_str<'a>(body: &'a Value, pointer: &str, target: &str) -> Result<&'a str, ArmError> {
    match body.pointer(pointer) {
        None | Some(Value::Null) => Err(ArmError::required(target)),
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(_) => Err(ArmError::invalid(
            target,
            format!(
                "The value of parameter '{target}' is invalid: a non-empty string is required."
            ),
        )),
    }
}

/// Checks an optional enum value (case-insensitive) and returns its canonical casing.
pub fn opt_enum(
    body: &Value,
    pointer: &str,
    target: &str,
    allowed: &[&'static str],
) -> Result<Option<&'static str>, ArmError> {
    match body.pointer(pointer) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => allowed
            .iter()
            .copied()
            .find(|a| a.eq_ignore_ascii_case(s))
            .map(Some)
            .ok_or_else(|| {
                ArmError::invalid(
                    target,
                    format!(
                        "The value '{s}' of parameter '{target}' is not valid. Allowed values are: {}.",
                        allowed.join(", ")
                    ),
                )
            }),
        Some(other) => Err(ArmError::invalid(
            target,
            format!("The value '{other}' of parameter '{target}' is not valid. Allowed values are: {}.", allowed.join(", ")),
        )),
    }
}

/// Checks a required enum value and returns its canonical casing.
pub fn req_enum(
    body: &Value,
    pointer: &str,
    target: &str,
    allowed: &[&'static str],
) -> Result<&'static str, ArmError> {
    opt_enum(body, pointer, target, allowed)?.ok_or_else(|| ArmError::required(target))
}

/// An optional integer; non-integers are rejected.
pub fn opt_int(body: &Value, pointer: &str, target: &str) -> Result<Option<i64>, ArmError> {
    match body.pointer(pointer) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| {
            ArmError::invalid(
                target,
                format!("The value of parameter '{target}' must be an integer."),
            )
        }),
    }
}

/// An optional boolean; non-booleans are rejected.
pub fn opt_bool(body: &Value, pointer: &str, target: &str) -> Result<Option<bool>, ArmError> {
    match body.pointer(pointer) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ArmError::invalid(
            target,
            format!("The value of parameter '{target}' must be a boolean."),
        )),
    }
}

/// An optional array (missing → empty).
pub fn opt_array<'a>(
    body: &'a Value,
    pointer: &str,
    target: &str,
) -> Result<&'a [Value], ArmError> {
    match body.pointer(pointer) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(ArmError::invalid(
            target,
            format!("The value of parameter '{target}' must be an array."),
        )),
    }
}

/// A required non-empty array; missing, non-array and empty all answer that `target` is required.
pub fn req_nonempty_array<'a>(
    body: &'a Value,
    pointer: &str,
    target: &str,
) -> Result<&'a [Value], ArmError> {
    body.pointer(pointer)
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .map(Vec::as_slice)
        .ok_or_else(|| ArmError::required(target))
}

/// Linux VM / computer name: 1–64 characters, not all digits, no special characters,
/// not starting with `_` nor ending with `.` or `-`.
pub fn check_vm_name(name: &str, target: &str) -> Result<(), ArmError> {
    const FORBIDDEN: &str = "`~!@#$%^&*()=+_[]{}\\|;:.'\",<>/?";
    let bad = name.is_empty()
        || name.len() > 64
        || name.chars().all(|c| c.is_ascii_digit())
        || name.chars().any(|c| !c.is_ascii() || c.is_whitespace())
        || name
            .chars()
            .any(|c| FORBIDDEN.contains(c) && c != '.' && c != '_')
        || name.starts_with('_')
        || name.ends_with('.')
        || name.ends_with('-');
    if bad {
        return Err(ArmError::invalid(
            target,
            format!(
                "Linux VM name '{name}' cannot be more than 64 characters long, be entirely numeric, start with '_', end with '.' or '-', or contain the following characters: ` ~ ! @ # $ % ^ & * ( ) = + [ ] {{ }} \\ | ; : ' \" , < > / ?."
            ),
        ));
    }
    Ok(())
}

/// Computer (host) name: 1–64 characters of letters, digits and `-`, not all digits.
pub fn check_computer_name(name: &str, target: &str) -> Result<(), ArmError> {
    let bad = name.is_empty()
        || name.len() > 64
        || name.chars().all(|c| c.is_ascii_digit())
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        || name.starts_with('-')
        || name.ends_with('-')
        || name.ends_with('.');
    if bad {
        return Err(ArmError::invalid(
            target,
            format!(
                "Computer name '{name}' is invalid: use 1-64 letters, digits and hyphens, not entirely numeric."
            ),
        ));
    }
    Ok(())
}

/// Storage account name: 3–24 lowercase letters and digits (400 `AccountNameInvalid`).
pub fn check_storage_account_name(name: &str) -> Result<(), ArmError> {
    let ok = (3..=24).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ArmError::bad_request(
            "AccountNameInvalid",
            format!(
                "{name} is not a valid storage account name. Storage account name must be between 3 and 24 characters in length and use numbers and lower-case letters only."
            ),
        )
        .with_target("accountName"))
    }
}

/// File share name: 3–63 lowercase letters, digits and single hyphens, starting and ending alphanumeric.
pub fn check_share_name(name: &str) -> Result<(), ArmError> {
    let ok = (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(ArmError::invalid(
            "shareName",
            format!(
                "The share name '{name}' is invalid: use 3-63 lowercase letters, digits and single hyphens."
            ),
        ))
    }
}

/// Generic ARM resource name (networking, disks): 1–80 word characters, `.`, `-`, `_`;
/// starts with a word character and ends with a word character or `_` (400 `InvalidResourceName`).
pub fn check_resource_name(name: &str) -> Result<(), ArmError> {
    let word = |c: char| c.is_ascii_alphanumeric();
    let ok = (1..=80).contains(&name.len())
        && name
            .chars()
            .all(|c| word(c) || matches!(c, '.' | '-' | '_'))
        && name.chars().next().is_some_and(word)
        && name.chars().last().is_some_and(|c| word(c) || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ArmError::bad_request(
            "InvalidResourceName",
            format!(
                "Resource name {name} is invalid. The name can be up to 80 characters long. It must begin with a word character, and it must end with a word character or with '_'. The name may contain word characters or '.', '-', '_'."
            ),
        )
        .with_target("name"))
    }
}

/// Resource group name: 1–90 characters of letters, digits, `_`, `-`, `.`, `(`, `)`, not ending in `.`.
pub fn check_rg_name(name: &str) -> Result<(), ArmError> {
    let ok = (1..=90).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '(' | ')'))
        && !name.ends_with('.');
    if ok {
        Ok(())
    } else {
        Err(ArmError::bad_request(
            "InvalidResourceGroupName",
            format!(
                "The provided resource group name '{name}' is invalid. It can include alphanumeric, underscore, parentheses, hyphen, period (except at end), and can be up to 90 characters."
            ),
        )
        .with_target("resourceGroupName"))
    }
}

/// Parses an IPv4 CIDR into (network, prefix length).
pub fn parse_cidr(cidr: &str) -> Option<(u32, u8)> {
    let (addr, len) = cidr.split_once('/')?;
    let addr: std::net::Ipv4Addr = addr.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    if len > 32 {
        return None;
    }
    let mask = mask(len);
    Some((u32::from(addr) & mask, len))
}

/// Netmask of a prefix length.
pub fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

/// Whether CIDR `inner` lies inside CIDR `outer`.
pub fn cidr_within(inner: (u32, u8), outer: (u32, u8)) -> bool {
    inner.1 >= outer.1 && (inner.0 & mask(outer.1)) == outer.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rules() {
        assert!(check_vm_name("azlin-dev-01", "name").is_ok());
        assert!(check_vm_name("12345", "name").is_err());
        assert!(check_vm_name("bad!name", "name").is_err());
        assert!(check_vm_name(&"a".repeat(65), "name").is_err());
        assert!(check_storage_account_name("azlinnfs01").is_ok());
        assert!(check_storage_account_name("Azlin").is_err());
        assert!(check_storage_account_name("ab").is_err());
        assert!(check_share_name("home").is_ok());
        assert!(check_share_name("a--b").is_err());
        assert!(check_resource_name("vnet_1").is_ok());
        assert!(check_resource_name("-x").is_err());
    }

    #[test]
    fn cidr_math() {
        let vnet = parse_cidr("10.0.0.0/16").map(|c| c.1);
        assert_eq!(vnet, Some(16));
        let (Some(outer), Some(inner), Some(outside)) = (
            parse_cidr("10.0.0.0/16"),
            parse_cidr("10.0.1.0/24"),
            parse_cidr("10.1.0.0/24"),
        ) else {
            panic!("parse failed")
        };
        assert!(cidr_within(inner, outer));
        assert!(!cidr_within(outside, outer));
        assert!(parse_cidr("10.0.0.0/33").is_none());
    }
}
