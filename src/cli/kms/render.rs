//! Text-mode output of `cryptvol kms`: tables for the `list-*` commands, a
//! confirmation line for commands AWS answers with nothing, the policy
//! document for `get-key-policy`, and `Field  value` rows (nested fields
//! dotted, epoch times as RFC 3339) for everything else.

use serde_json::Value;

use super::table::CommandSpec;

/// The text for `response` to `spec` (with the `request` it answered).
pub fn text(spec: &CommandSpec, request: &Value, response: &Value) -> String {
    let mut out = match spec.operation {
        "ListKeys" => table(
            response,
            "Keys",
            &[("KEY ID", "KeyId"), ("KEY ARN", "KeyArn")],
        ),
        "ListAliases" => table(
            response,
            "Aliases",
            &[
                ("ALIAS NAME", "AliasName"),
                ("TARGET KEY ID", "TargetKeyId"),
                ("ALIAS ARN", "AliasArn"),
            ],
        ),
        "ListGrants" | "ListRetirableGrants" => table(
            response,
            "Grants",
            &[
                ("GRANT ID", "GrantId"),
                ("NAME", "Name"),
                ("GRANTEE", "GranteePrincipal"),
                ("OPERATIONS", "Operations"),
            ],
        ),
        "ListResourceTags" => table(
            response,
            "Tags",
            &[("TAG KEY", "TagKey"), ("TAG VALUE", "TagValue")],
        ),
        "ListKeyRotations" => table(
            response,
            "Rotations",
            &[
                ("ROTATION DATE", "RotationDate"),
                ("TYPE", "RotationType"),
                ("KEY ID", "KeyId"),
            ],
        ),
        "ListKeyPolicies" => list_of_strings(response, "PolicyNames"),
        "GetKeyPolicy" => response
            .get("Policy")
            .and_then(Value::as_str)
            .map(pretty_policy)
            .unwrap_or_default(),
        _ if is_empty(response) => done(spec.operation, request),
        _ => rows(response),
    };
    if response.get("Truncated").and_then(Value::as_bool) == Some(true) {
        if let Some(m) = response.get("NextMarker").and_then(Value::as_str) {
            out.push_str(&format!("\n(more results: rerun with --marker {m})"));
        }
    }
    out
}

fn is_empty(v: &Value) -> bool {
    v.as_object().is_none_or(|o| o.is_empty())
}

/// A confirmation for operations whose AWS response is empty.
fn done(operation: &str, request: &Value) -> String {
    let s = |f: &str| {
        request
            .get(f)
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned()
    };
    match operation {
        "EnableKey" => format!("enabled key {}", s("KeyId")),
        "DisableKey" => format!("disabled key {}", s("KeyId")),
        "CreateAlias" => format!("created alias {} -> {}", s("AliasName"), s("TargetKeyId")),
        "UpdateAlias" => format!(
            "alias {} now points at {}",
            s("AliasName"),
            s("TargetKeyId")
        ),
        "DeleteAlias" => format!("deleted alias {}", s("AliasName")),
        "EnableKeyRotation" => format!("automatic rotation enabled for key {}", s("KeyId")),
        "DisableKeyRotation" => format!("automatic rotation disabled for key {}", s("KeyId")),
        "PutKeyPolicy" => format!("replaced the policy of key {}", s("KeyId")),
        "TagResource" => format!("tagged key {}", s("KeyId")),
        "UntagResource" => format!("untagged key {}", s("KeyId")),
        "UpdateKeyDescription" => format!("updated the description of key {}", s("KeyId")),
        "RetireGrant" => "retired the grant".to_owned(),
        "RevokeGrant" => format!("revoked grant {}", s("GrantId")),
        "ImportKeyMaterial" => format!("imported key material into key {}", s("KeyId")),
        "DeleteImportedKeyMaterial" => {
            format!("deleted the imported key material of key {}", s("KeyId"))
        }
        other => format!("{other}: done"),
    }
}

/// A table of the objects in `response[field]`.
fn table(response: &Value, field: &str, columns: &[(&str, &str)]) -> String {
    let items = response
        .get(field)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if items.is_empty() {
        return format!("no {}", field.to_lowercase());
    }
    let cells: Vec<Vec<String>> = items
        .iter()
        .map(|item| {
            columns
                .iter()
                .map(|(_, f)| item.get(*f).map(|v| scalar(f, v)).unwrap_or("-".into()))
                .collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (h, _))| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([h.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |row: Vec<String>| {
        let last = row.len().saturating_sub(1);
        row.into_iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut out = vec![line(columns.iter().map(|(h, _)| h.to_string()).collect())];
    out.extend(cells.into_iter().map(line));
    out.join("\n")
}

fn list_of_strings(response: &Value, field: &str) -> String {
    response
        .get(field)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|v| scalar(field, v))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

fn pretty_policy(policy: &str) -> String {
    serde_json::from_str::<Value>(policy)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| policy.to_owned())
}

/// `Field  value` rows, nested objects flattened as `Outer.Inner`.
fn rows(response: &Value) -> String {
    let mut flat = Vec::new();
    flatten("", response, &mut flat);
    let width = flat.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    flat.into_iter()
        .map(|(k, v)| format!("{k:<width$}  {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match x {
                    Value::Object(inner) if !inner.is_empty() && !is_string_map(inner) => {
                        flatten(&key, x, out)
                    }
                    _ => out.push((key.clone(), scalar(&key, x))),
                }
            }
        }
        other => out.push((prefix.to_owned(), scalar(prefix, other))),
    }
}

fn is_string_map(o: &serde_json::Map<String, Value>) -> bool {
    o.values().all(Value::is_string)
}

/// One value as text: strings bare, times (`…Date`, `ValidTo`) as RFC
/// 3339, lists comma-joined, maps as `k=v,…`.
fn scalar(field: &str, v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) if is_time_field(field) => n
            .as_u64()
            .map(|secs| {
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs),
                )
                .to_string()
            })
            .unwrap_or_else(|| n.to_string()),
        Value::Array(a) => a
            .iter()
            .map(|x| scalar(field, x))
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(o) if is_string_map(o) => o
            .iter()
            .map(|(k, x)| format!("{k}={}", x.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(","),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

fn is_time_field(field: &str) -> bool {
    let last = field.rsplit('.').next().unwrap_or(field);
    last.ends_with("Date") || last == "ValidTo"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::kms::table::COMMANDS;
    use serde_json::json;

    fn spec(op: &str) -> &'static CommandSpec {
        COMMANDS
            .iter()
            .find(|c| c.operation == op)
            .expect("known operation")
    }

    #[test]
    fn list_keys_is_a_table_with_a_marker_hint() {
        let r = json!({"Keys": [{"KeyId": "k1", "KeyArn": "arn:k1"}], "Truncated": true, "NextMarker": "m"});
        let t = text(spec("ListKeys"), &json!({}), &r);
        assert_eq!(
            t,
            "KEY ID  KEY ARN\nk1      arn:k1\n(more results: rerun with --marker m)"
        );
    }

    #[test]
    fn empty_responses_confirm_and_metadata_flattens_with_times() {
        let req = json!({"KeyId": "k1"});
        assert_eq!(
            text(spec("DisableKey"), &req, &json!({})),
            "disabled key k1"
        );
        let r = json!({"KeyMetadata": {"KeyId": "k1", "CreationDate": 0, "Enabled": true,
            "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"]}});
        let t = text(spec("DescribeKey"), &req, &r);
        assert!(t.contains("KeyMetadata.CreationDate"), "{t}");
        assert!(t.contains("1970-01-01T00:00:00Z"), "{t}");
        assert!(
            t.lines()
                .any(|l| l.starts_with("KeyMetadata.Enabled ") && l.ends_with(" true")),
            "{t}"
        );
    }
}
