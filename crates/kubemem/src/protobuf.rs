//! Decoding of the Kubernetes protobuf encoding (`application/vnd.kubernetes.protobuf`) for the
//! built-in kinds whose writes kubectl sends that way.
//!
//! client-go's typed clients prefer protobuf for built-in kinds and, unlike for CBOR, do not
//! fall back to JSON when a server answers `415`, so `kubectl create namespace|secret|configmap|
//! serviceaccount` and `kubectl auth can-i` only work against a server that reads it. A body is
//! the magic `k8s\0` followed by a `runtime.Unknown` message (`typeMeta`, `raw`,
//! `contentEncoding`, `contentType`) whose `raw` is the object's own message. The messages of
//! Namespace, Secret, ConfigMap, ServiceAccount, SelfSubjectAccessReview,
//! SelfSubjectRulesReview and DeleteOptions are decoded into the JSON the API would have
//! received (fields at their zero value are omitted, as JSON's `omitempty` does); other kinds get
//! `415 UnsupportedMediaType`. Responses are always JSON, which client-go accepts since it asks
//! for `application/vnd.kubernetes.protobuf, application/json`.

use base64::Engine;
use serde_json::{Map, Value, json};

use super::error::ApiError;

/// The protobuf media type.
pub(crate) const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

const MAGIC: &[u8] = b"k8s\0";

/// How a field's value is encoded and shown in JSON.
#[derive(Clone, Copy)]
enum Ty {
    /// `string`.
    Str,
    /// `bool`.
    Bool,
    /// `int32`/`int64`.
    Int,
    /// `meta.v1.Time`, shown as RFC 3339.
    Time,
    /// A nested message.
    Msg(&'static [Field]),
    /// `map<string, string>`.
    MapStr,
    /// `map<string, bytes>`, values shown base64-encoded.
    MapBytes,
    /// A `FieldsV1` message, shown as the JSON it holds.
    FieldsV1,
}

/// One field of a message: number, JSON name, type, repeated.
struct Field(u32, &'static str, Ty, bool);

const OWNER_REFERENCE: &[Field] = &[
    Field(5, "apiVersion", Ty::Str, false),
    Field(1, "kind", Ty::Str, false),
    Field(3, "name", Ty::Str, false),
    Field(4, "uid", Ty::Str, false),
    Field(6, "controller", Ty::Bool, false),
    Field(7, "blockOwnerDeletion", Ty::Bool, false),
];

const MANAGED_FIELDS_ENTRY: &[Field] = &[
    Field(1, "manager", Ty::Str, false),
    Field(2, "operation", Ty::Str, false),
    Field(3, "apiVersion", Ty::Str, false),
    Field(4, "time", Ty::Time, false),
    Field(6, "fieldsType", Ty::Str, false),
    Field(7, "fieldsV1", Ty::FieldsV1, false),
    Field(8, "subresource", Ty::Str, false),
];

const OBJECT_META: &[Field] = &[
    Field(1, "name", Ty::Str, false),
    Field(2, "generateName", Ty::Str, false),
    Field(3, "namespace", Ty::Str, false),
    Field(4, "selfLink", Ty::Str, false),
    Field(5, "uid", Ty::Str, false),
    Field(6, "resourceVersion", Ty::Str, false),
    Field(7, "generation", Ty::Int, false),
    Field(8, "creationTimestamp", Ty::Time, false),
    Field(9, "deletionTimestamp", Ty::Time, false),
    Field(10, "deletionGracePeriodSeconds", Ty::Int, false),
    Field(11, "labels", Ty::MapStr, false),
    Field(12, "annotations", Ty::MapStr, false),
    Field(13, "ownerReferences", Ty::Msg(OWNER_REFERENCE), true),
    Field(14, "finalizers", Ty::Str, true),
    Field(17, "managedFields", Ty::Msg(MANAGED_FIELDS_ENTRY), true),
];

const NAMESPACE_CONDITION: &[Field] = &[
    Field(1, "type", Ty::Str, false),
    Field(2, "status", Ty::Str, false),
    Field(4, "lastTransitionTime", Ty::Time, false),
    Field(5, "reason", Ty::Str, false),
    Field(6, "message", Ty::Str, false),
];

const NAMESPACE: &[Field] = &[
    Field(1, "metadata", Ty::Msg(OBJECT_META), false),
    Field(
        2,
        "spec",
        Ty::Msg(&[Field(1, "finalizers", Ty::Str, true)]),
        false,
    ),
    Field(
        3,
        "status",
        Ty::Msg(&[
            Field(1, "phase", Ty::Str, false),
            Field(2, "conditions", Ty::Msg(NAMESPACE_CONDITION), true),
        ]),
        false,
    ),
];

const SECRET: &[Field] = &[
    Field(1, "metadata", Ty::Msg(OBJECT_META), false),
    Field(5, "immutable", Ty::Bool, false),
    Field(2, "data", Ty::MapBytes, false),
    Field(4, "stringData", Ty::MapStr, false),
    Field(3, "type", Ty::Str, false),
];

const CONFIG_MAP: &[Field] = &[
    Field(1, "metadata", Ty::Msg(OBJECT_META), false),
    Field(4, "immutable", Ty::Bool, false),
    Field(2, "data", Ty::MapStr, false),
    Field(3, "binaryData", Ty::MapBytes, false),
];

const OBJECT_REFERENCE: &[Field] = &[
    Field(1, "kind", Ty::Str, false),
    Field(2, "namespace", Ty::Str, false),
    Field(3, "name", Ty::Str, false),
    Field(4, "uid", Ty::Str, false),
    Field(5, "apiVersion", Ty::Str, false),
    Field(6, "resourceVersion", Ty::Str, false),
    Field(7, "fieldPath", Ty::Str, false),
];

const SERVICE_ACCOUNT: &[Field] = &[
    Field(1, "metadata", Ty::Msg(OBJECT_META), false),
    Field(2, "secrets", Ty::Msg(OBJECT_REFERENCE), true),
    Field(
        3,
        "imagePullSecrets",
        Ty::Msg(&[Field(1, "name", Ty::Str, false)]),
        true,
    ),
    Field(4, "automountServiceAccountToken", Ty::Bool, false),
];

const SELECTOR_REQUIREMENT: &[Field] = &[
    Field(1, "key", Ty::Str, false),
    Field(2, "operator", Ty::Str, false),
    Field(3, "values", Ty::Str, true),
];

const SELECTOR_ATTRIBUTES: &[Field] = &[
    Field(1, "rawSelector", Ty::Str, false),
    Field(2, "requirements", Ty::Msg(SELECTOR_REQUIREMENT), true),
];

const RESOURCE_ATTRIBUTES: &[Field] = &[
    Field(1, "namespace", Ty::Str, false),
    Field(2, "verb", Ty::Str, false),
    Field(3, "group", Ty::Str, false),
    Field(4, "version", Ty::Str, false),
    Field(5, "resource", Ty::Str, false),
    Field(6, "subresource", Ty::Str, false),
    Field(7, "name", Ty::Str, false),
    Field(8, "fieldSelector", Ty::Msg(SELECTOR_ATTRIBUTES), false),
    Field(9, "labelSelector", Ty::Msg(SELECTOR_ATTRIBUTES), false),
];

const SELF_SUBJECT_ACCESS_REVIEW: &[Field] = &[
    Field(1, "metadata", Ty::Msg(OBJECT_META), false),
    Field(
        2,
        "spec",
        Ty::Msg(&[
            Field(1, "resourceAttributes", Ty::Msg(RESOURCE_ATTRIBUTES), false),
            Field(
                2,
                "nonResourceAttributes",
                Ty::Msg(&[
                    Field(1, "path", Ty::Str, false),
                    Field(2, "verb", Ty::Str, false),
                ]),
                false,
            ),
        ]),
        false,
    ),
];

const SELF_SUBJECT_RULES_REVIEW: &[Field] = &[
    Field(1, "metadata", Ty::Msg(OBJECT_META), false),
    Field(
        2,
        "spec",
        Ty::Msg(&[Field(1, "namespace", Ty::Str, false)]),
        false,
    ),
];

const DELETE_OPTIONS: &[Field] = &[
    Field(1, "gracePeriodSeconds", Ty::Int, false),
    Field(
        2,
        "preconditions",
        Ty::Msg(&[
            Field(1, "uid", Ty::Str, false),
            Field(2, "resourceVersion", Ty::Str, false),
        ]),
        false,
    ),
    Field(3, "orphanDependents", Ty::Bool, false),
    Field(4, "propagationPolicy", Ty::Str, false),
    Field(5, "dryRun", Ty::Str, true),
    Field(
        6,
        "ignoreStoreReadErrorWithClusterBreakingPotential",
        Ty::Bool,
        false,
    ),
];

/// The message of each decodable (apiVersion, kind).
fn message_of(api_version: &str, kind: &str) -> Option<&'static [Field]> {
    Some(match (api_version, kind) {
        ("v1", "Namespace") => NAMESPACE,
        ("v1", "Secret") => SECRET,
        ("v1", "ConfigMap") => CONFIG_MAP,
        ("v1", "ServiceAccount") => SERVICE_ACCOUNT,
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => SELF_SUBJECT_ACCESS_REVIEW,
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview") => SELF_SUBJECT_RULES_REVIEW,
        ("v1" | "meta.k8s.io/v1", "DeleteOptions") => DELETE_OPTIONS,
        _ => return None,
    })
}

/// A malformed protobuf body.
fn malformed(what: &str) -> ApiError {
    ApiError::bad_request(format!("invalid protobuf body: {what}"))
}

/// A protocol buffer reader over one message.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// One field occurrence on the wire.
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, ApiError> {
        let mut out: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| malformed("truncated varint"))?;
            self.pos += 1;
            out |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err(malformed("varint too long"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ApiError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| malformed("truncated field"))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// The next (field number, value), `None` at the end.
    fn next(&mut self) -> Result<Option<(u32, Wire<'a>)>, ApiError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let number = u32::try_from(tag >> 3).map_err(|_| malformed("field number"))?;
        let wire = match tag & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Wire::Fixed
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| malformed("length"))?;
                Wire::Bytes(self.take(n)?)
            }
            5 => {
                self.take(4)?;
                Wire::Fixed
            }
            other => return Err(malformed(&format!("unsupported wire type {other}"))),
        };
        Ok(Some((number, wire)))
    }
}

fn bytes<'a>(w: &Wire<'a>) -> Result<&'a [u8], ApiError> {
    match w {
        Wire::Bytes(b) => Ok(b),
        _ => Err(malformed("expected a length-delimited field")),
    }
}

fn string(w: &Wire<'_>) -> Result<String, ApiError> {
    String::from_utf8(bytes(w)?.to_vec()).map_err(|_| malformed("string is not UTF-8"))
}

fn varint(w: &Wire<'_>) -> Result<u64, ApiError> {
    match w {
        Wire::Varint(v) => Ok(*v),
        _ => Err(malformed("expected a varint field")),
    }
}

fn time(buf: &[u8]) -> Result<Value, ApiError> {
    let mut r = Reader::new(buf);
    let mut seconds: i64 = 0;
    while let Some((n, w)) = r.next()? {
        if n == 1 {
            // Two's complement on the wire.
            seconds = varint(&w)? as i64;
        }
    }
    if seconds == 0 {
        return Ok(Value::Null);
    }
    chrono::DateTime::from_timestamp(seconds, 0)
        .map(|t| json!(t.format("%Y-%m-%dT%H:%M:%SZ").to_string()))
        .ok_or_else(|| malformed("time out of range"))
}

/// A `map<string, V>` entry: (key, value bytes or string).
fn map_entry(buf: &[u8]) -> Result<(String, &[u8]), ApiError> {
    let mut r = Reader::new(buf);
    let (mut k, mut v): (String, &[u8]) = (String::new(), &[]);
    while let Some((n, w)) = r.next()? {
        match n {
            1 => k = string(&w)?,
            2 => v = bytes(&w)?,
            _ => {}
        }
    }
    Ok((k, v))
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_i64() == Some(0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// Decodes one message into a JSON object.
fn message(buf: &[u8], fields: &[Field]) -> Result<Value, ApiError> {
    let mut out = Map::new();
    let b64 = |b: &[u8]| Value::String(base64::engine::general_purpose::STANDARD.encode(b));
    let mut r = Reader::new(buf);
    while let Some((n, w)) = r.next()? {
        // Unknown fields are skipped, as protobuf decoders do.
        let Some(Field(_, name, ty, repeated)) = fields.iter().find(|f| f.0 == n) else {
            continue;
        };
        let value = match ty {
            Ty::Str => Value::String(string(&w)?),
            Ty::Bool => Value::Bool(varint(&w)? != 0),
            Ty::Int => json!(varint(&w)? as i64),
            Ty::Time => time(bytes(&w)?)?,
            Ty::Msg(inner) => message(bytes(&w)?, inner)?,
            Ty::FieldsV1 => {
                let mut r = Reader::new(bytes(&w)?);
                let mut raw = Value::Null;
                while let Some((n, w)) = r.next()? {
                    if n == 1 {
                        raw = serde_json::from_slice(bytes(&w)?)
                            .map_err(|_| malformed("fieldsV1 is not JSON"))?;
                    }
                }
                raw
            }
            Ty::MapStr | Ty::MapBytes => {
                let (k, v) = map_entry(bytes(&w)?)?;
                let v = match ty {
                    Ty::MapBytes => b64(v),
                    _ => Value::String(
                        String::from_utf8(v.to_vec())
                            .map_err(|_| malformed("string is not UTF-8"))?,
                    ),
                };
                let entry = out
                    .entry(name.to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(m) = entry.as_object_mut() {
                    m.insert(k, v);
                }
                continue;
            }
        };
        if *repeated {
            let entry = out
                .entry(name.to_string())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Some(a) = entry.as_array_mut() {
                a.push(value);
            }
        } else {
            out.insert(name.to_string(), value);
        }
    }
    out.retain(|_, v| !is_zero(v));
    Ok(Value::Object(out))
}

/// `415` for a protobuf body of a kind this server cannot read.
fn unsupported(what: &str) -> ApiError {
    ApiError::new(
        http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UnsupportedMediaType",
        format!(
            "the body of the request was in an unknown format - accepted media types include: \
             application/json ({what})"
        ),
    )
}

/// Decodes a protobuf request body (envelope and object) into the JSON object it encodes,
/// with `apiVersion` and `kind` from the envelope.
pub(crate) fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let unknown = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| malformed("missing the k8s\\0 prefix"))?;
    let mut r = Reader::new(unknown);
    let (mut api_version, mut kind, mut raw, mut encoding) =
        (String::new(), String::new(), &[][..], String::new());
    while let Some((n, w)) = r.next()? {
        match n {
            1 => {
                let mut t = Reader::new(bytes(&w)?);
                while let Some((n, w)) = t.next()? {
                    match n {
                        1 => api_version = string(&w)?,
                        2 => kind = string(&w)?,
                        _ => {}
                    }
                }
            }
            2 => raw = bytes(&w)?,
            3 => encoding = string(&w)?,
            _ => {}
        }
    }
    if !encoding.is_empty() {
        return Err(unsupported(&format!("content encoding {encoding:?}")));
    }
    let fields = message_of(&api_version, &kind)
        .ok_or_else(|| unsupported(&format!("no protobuf decoding for {api_version} {kind}")))?;
    let mut obj = message(raw, fields)?;
    if let Some(o) = obj.as_object_mut() {
        o.insert("apiVersion".into(), Value::String(api_version));
        o.insert("kind".into(), Value::String(kind));
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn field(n: u32, payload: &[u8], out: &mut Vec<u8>) {
        varint(u64::from(n) << 3 | 2, out);
        varint(payload.len() as u64, out);
        out.extend_from_slice(payload);
    }

    fn entry(k: &str, v: &[u8]) -> Vec<u8> {
        let mut e = Vec::new();
        field(1, k.as_bytes(), &mut e);
        field(2, v, &mut e);
        e
    }

    #[test]
    fn decodes_a_secret_in_its_envelope() {
        let mut meta = Vec::new();
        field(1, b"creds", &mut meta);
        field(2, b"", &mut meta);
        field(3, b"team", &mut meta);
        field(8, b"", &mut meta); // zero Time
        field(11, &entry("app", b"web"), &mut meta);
        let mut secret = Vec::new();
        field(1, &meta, &mut secret);
        field(2, &entry("key", b"\x00\x01"), &mut secret);
        field(3, b"Opaque", &mut secret);
        let mut tm = Vec::new();
        field(1, b"v1", &mut tm);
        field(2, b"Secret", &mut tm);
        let mut body = MAGIC.to_vec();
        field(1, &tm, &mut body);
        field(2, &secret, &mut body);
        field(4, b"", &mut body);
        let v = decode(&body).expect("decodes");
        assert_eq!(
            v,
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "creds", "namespace": "team", "labels": {"app": "web"}},
                "data": {"key": "AAE="},
                "type": "Opaque",
            })
        );
    }

    #[test]
    fn unknown_kinds_and_garbage_are_refused() {
        let mut tm = Vec::new();
        field(1, b"apps/v1", &mut tm);
        field(2, b"Deployment", &mut tm);
        let mut body = MAGIC.to_vec();
        field(1, &tm, &mut body);
        assert_eq!(decode(&body).map_err(|e| e.code), Err(415));
        assert_eq!(decode(b"{}").map_err(|e| e.code), Err(400));
        let mut truncated = MAGIC.to_vec();
        truncated.extend_from_slice(&[0x0a, 0x05, b'x']);
        assert_eq!(decode(&truncated).map_err(|e| e.code), Err(400));
    }
}
