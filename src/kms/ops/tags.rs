//! Tags: TagResource, UntagResource, ListResourceTags (and the tags of
//! CreateKey / ReplicateKey).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::authorize::{self, Extra};
use super::json::{self, Empty};
use super::keys::modify_key;
use super::OpCtx;
use crate::kms::error::KmsError;
use crate::kms::local::{key_in, LocalKms};

/// AWS limits: tag keys 1..=128 characters, values 0..=256, 50 tags a key.
pub const MAX_TAG_KEY_LEN: usize = 128;
pub const MAX_TAG_VALUE_LEN: usize = 256;
pub const MAX_TAGS_PER_KEY: usize = 50;
/// Tag keys with this prefix are reserved for AWS.
pub const RESERVED_TAG_PREFIX: &str = "aws:";

/// AWS `Tag`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    pub tag_key: String,
    pub tag_value: String,
}

/// Checks tags and returns them as a map (a key given twice is an error).
pub fn validate(tags: Vec<Tag>) -> Result<BTreeMap<String, String>, KmsError> {
    let mut out = BTreeMap::new();
    for t in tags {
        let klen = t.tag_key.chars().count();
        if klen == 0 || klen > MAX_TAG_KEY_LEN {
            return Err(KmsError::Tag(format!(
                "tag key '{}' is {klen} characters; tag keys are 1 to {MAX_TAG_KEY_LEN}",
                t.tag_key
            )));
        }
        if t.tag_key
            .to_ascii_lowercase()
            .starts_with(RESERVED_TAG_PREFIX)
        {
            return Err(KmsError::Tag(format!(
                "tag key '{}' is reserved: keys beginning with {RESERVED_TAG_PREFIX} belong to AWS",
                t.tag_key
            )));
        }
        let vlen = t.tag_value.chars().count();
        if vlen > MAX_TAG_VALUE_LEN {
            return Err(KmsError::Tag(format!(
                "the value of tag '{}' is {vlen} characters; at most {MAX_TAG_VALUE_LEN} are allowed",
                t.tag_key
            )));
        }
        if out.insert(t.tag_key.clone(), t.tag_value).is_some() {
            return Err(KmsError::Tag(format!(
                "tag key '{}' is given twice",
                t.tag_key
            )));
        }
    }
    check_count(out.len())?;
    Ok(out)
}

fn check_count(n: usize) -> Result<(), KmsError> {
    if n > MAX_TAGS_PER_KEY {
        return Err(KmsError::LimitExceeded(format!(
            "a key may have at most {MAX_TAGS_PER_KEY} tags; this would give it {n}"
        )));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagResourceRequest {
    pub key_id: String,
    pub tags: Vec<Tag>,
}

pub fn tag_resource(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: TagResourceRequest,
) -> Result<Empty, KmsError> {
    let new = validate(req.tags)?;
    modify_key(kms, ctx, &req.key_id, "kms:TagResource", |key, _| {
        let mut tags = key.tags.clone();
        tags.extend(new);
        check_count(tags.len())?;
        key.tags = tags;
        Ok(Empty {})
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UntagResourceRequest {
    pub key_id: String,
    pub tag_keys: Vec<String>,
}

pub fn untag_resource(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: UntagResourceRequest,
) -> Result<Empty, KmsError> {
    modify_key(kms, ctx, &req.key_id, "kms:UntagResource", |key, _| {
        for k in &req.tag_keys {
            key.tags.remove(k);
        }
        Ok(Empty {})
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListResourceTagsRequest {
    pub key_id: String,
    pub limit: Option<i64>,
    pub marker: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListResourceTagsResponse {
    pub tags: Vec<Tag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
    pub truncated: bool,
}

pub fn list_resource_tags(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: ListResourceTagsRequest,
) -> Result<ListResourceTagsResponse, KmsError> {
    let limit = json::limit(req.limit, 50, 50)?;
    let (state, id) = kms.resolve(&req.key_id)?;
    let key = key_in(&state, &id)?;
    authorize::key_action(kms, ctx, key, "kms:ListResourceTags", Extra::default())?;
    let items = key
        .tags
        .iter()
        .map(|(k, v)| {
            let tag = Tag {
                tag_key: k.clone(),
                tag_value: v.clone(),
            };
            (k.clone(), tag)
        })
        .collect();
    let page = json::paginate(items, limit, req.marker.as_deref())?;
    Ok(ListResourceTagsResponse {
        truncated: page.truncated(),
        next_marker: page.next_marker,
        tags: page.items,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::kms::ops::testutil::*;

    #[test]
    fn tag_untag_list_with_pagination() {
        let f = Fixture::new();
        let id = f.key(json!({"Tags": [{"TagKey": "env", "TagValue": "prod"}]}));
        f.ok(
            "TagResource",
            json!({"KeyId": id, "Tags": [
            {"TagKey": "team", "TagValue": "storage"}, {"TagKey": "env", "TagValue": "dev"}]}),
        );
        let out = f.ok("ListResourceTags", json!({"KeyId": id, "Limit": 1}));
        assert_eq!(out["Tags"], json!([{"TagKey": "env", "TagValue": "dev"}]));
        assert_eq!(out["Truncated"], true);
        let out = f.ok(
            "ListResourceTags",
            json!({"KeyId": id, "Marker": out["NextMarker"]}),
        );
        assert_eq!(
            out["Tags"],
            json!([{"TagKey": "team", "TagValue": "storage"}])
        );
        assert_eq!(out["Truncated"], false);
        f.ok(
            "UntagResource",
            json!({"KeyId": id, "TagKeys": ["env", "absent"]}),
        );
        let out = f.ok("ListResourceTags", json!({"KeyId": id}));
        assert_eq!(out["Tags"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn bad_tags_are_tag_exceptions_and_the_limit_holds() {
        let f = Fixture::new();
        let id = f.symmetric_key();
        for bad in [
            json!([{"TagKey": "aws:owner", "TagValue": "x"}]),
            json!([{"TagKey": "", "TagValue": "x"}]),
            json!([{"TagKey": "k", "TagValue": "v".repeat(257)}]),
            json!([{"TagKey": "k", "TagValue": "1"}, {"TagKey": "k", "TagValue": "2"}]),
        ] {
            let (t, _) = f.err("TagResource", json!({"KeyId": id, "Tags": bad}));
            assert_eq!(t, "TagException", "{bad}");
        }
        let many: Vec<Value> = (0..50)
            .map(|i| json!({"TagKey": format!("k{i}"), "TagValue": ""}))
            .collect();
        f.ok("TagResource", json!({"KeyId": id, "Tags": many}));
        let (t, _) = f.err(
            "TagResource",
            json!({"KeyId": id, "Tags": [{"TagKey": "one-more", "TagValue": ""}]}),
        );
        assert_eq!(t, "LimitExceededException");
        f.ok(
            "ScheduleKeyDeletion",
            json!({"KeyId": id, "PendingWindowInDays": 7}),
        );
        let (t, _) = f.err(
            "TagResource",
            json!({"KeyId": id, "Tags": [{"TagKey": "k0", "TagValue": "x"}]}),
        );
        assert_eq!(t, "KMSInvalidStateException");
        f.ok("ListResourceTags", json!({"KeyId": id}));
    }
}
