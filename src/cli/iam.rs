//! `cryptvol iam <command>`: users and access keys of the data dir's
//! account, as `aws iam <command>` (same names; `--output json` prints the
//! AWS response shapes, e.g. `{"AccessKey": {...}}`).
//!
//! The principals these create are what `cryptvol kms serve` authenticates
//! (SigV4) and what key policies and grants name
//! (`arn:aws:iam::<account>:user/<name>`).

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use zeroize::Zeroize;

use super::Context;
use crate::kms::iam::{AccessKeyMetadata, Iam, IamError, User};

#[derive(Debug, Subcommand)]
pub enum IamCommand {
    /// Create a user (prints its ARN).
    CreateUser(UserArg),
    /// Delete a user (it must have no access keys left).
    DeleteUser(UserArg),
    /// List the users of the account.
    ListUsers,
    /// Create an access key for a user, or for the account root without
    /// --user-name. The secret is shown only now.
    CreateAccessKey(OptionalUser),
    /// Delete an access key.
    DeleteAccessKey(DeleteKeyArgs),
    /// List the access keys of a user, or of the account root.
    ListAccessKeys(OptionalUser),
}

#[derive(Debug, Args)]
pub struct UserArg {
    /// The user name (or --user-name NAME, as the AWS CLI spells it).
    #[arg(
        value_name = "NAME",
        required_unless_present = "user_name",
        conflicts_with = "user_name"
    )]
    pub name: Option<String>,
    #[arg(long, value_name = "NAME")]
    pub user_name: Option<String>,
}

impl UserArg {
    fn get(&self) -> &str {
        self.name
            .as_deref()
            .or(self.user_name.as_deref())
            .unwrap_or_default()
    }
}

#[derive(Debug, Args)]
pub struct OptionalUser {
    /// The user [default: the account root, as AWS does for root credentials].
    #[arg(long, value_name = "NAME")]
    pub user_name: Option<String>,
}

#[derive(Debug, Args)]
pub struct DeleteKeyArgs {
    #[arg(long, value_name = "ID")]
    pub access_key_id: String,
    /// The user owning the key [default: the account root].
    #[arg(long, value_name = "NAME")]
    pub user_name: Option<String>,
}

/// `An error occurred (NoSuchEntity) when calling the DeleteUser operation: …`.
fn aws_error(operation: &str, e: IamError) -> anyhow::Error {
    anyhow::anyhow!(
        "An error occurred ({}) when calling the {operation} operation: {e}",
        e.code()
    )
}

fn iso(t: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t))
        .to_string()
}

fn user_json(u: &User) -> Value {
    json!({
        "Path": u.path, "UserName": u.user_name, "UserId": u.user_id,
        "Arn": u.arn, "CreateDate": iso(u.create_date),
    })
}

fn key_json(k: &AccessKeyMetadata) -> Value {
    let mut v = json!({
        "AccessKeyId": k.access_key_id, "Status": k.status, "CreateDate": iso(k.create_date),
    });
    if let Some(u) = &k.user_name {
        v["UserName"] = json!(u);
    }
    v
}

pub fn run(ctx: &Context, cmd: IamCommand) -> anyhow::Result<()> {
    let iam = Iam::open(&ctx.data_dir)?;
    match cmd {
        IamCommand::CreateUser(a) => {
            let u = iam
                .create_user(a.get())
                .map_err(|e| aws_error("CreateUser", e))?;
            ctx.emit(&json!({ "User": user_json(&u) }), || u.arn.clone())
        }
        IamCommand::DeleteUser(a) => {
            let u = iam
                .delete_user(a.get())
                .map_err(|e| aws_error("DeleteUser", e))?;
            if ctx.output == super::Output::Text {
                super::out(&format!("deleted user {}", u.arn))?;
            }
            Ok(())
        }
        IamCommand::ListUsers => {
            let users = iam.list_users().map_err(|e| aws_error("ListUsers", e))?;
            let v: Vec<Value> = users.iter().map(user_json).collect();
            ctx.emit(&json!({ "Users": v }), || {
                users
                    .iter()
                    .map(|u| format!("{}\t{}\t{}", u.user_name, u.arn, iso(u.create_date)))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        IamCommand::CreateAccessKey(a) => {
            let k = iam
                .create_access_key(a.user_name.as_deref())
                .map_err(|e| aws_error("CreateAccessKey", e))?;
            let mut v = json!({ "AccessKey": key_json(&k.metadata) });
            v["AccessKey"]["SecretAccessKey"] = json!(k.secret_access_key.as_str());
            let owner = match &k.metadata.user_name {
                Some(u) => iam.user_arn(u),
                None => crate::kms::arn::root_principal(iam.account_id()),
            };
            let result = ctx.emit(&v, || {
                format!(
                    "access key for {owner}\nAccessKeyId:     {}\nSecretAccessKey: {}\n\
                     The secret is shown only now; store it, e.g. with \
                     `aws configure --profile NAME`.",
                    k.metadata.access_key_id,
                    k.secret_access_key.as_str()
                )
            });
            if let Some(Value::String(s)) = v["AccessKey"].get_mut("SecretAccessKey") {
                s.zeroize();
            }
            result
        }
        IamCommand::DeleteAccessKey(a) => {
            let k = iam
                .delete_access_key(&a.access_key_id, a.user_name.as_deref())
                .map_err(|e| aws_error("DeleteAccessKey", e))?;
            if ctx.output == super::Output::Text {
                super::out(&format!("deleted access key {}", k.access_key_id))?;
            }
            Ok(())
        }
        IamCommand::ListAccessKeys(a) => {
            let keys = iam
                .list_access_keys(a.user_name.as_deref())
                .map_err(|e| aws_error("ListAccessKeys", e))?;
            let v: Vec<Value> = keys.iter().map(key_json).collect();
            ctx.emit(&json!({ "AccessKeyMetadata": v }), || {
                keys.iter()
                    .map(|k| format!("{}\t{}\t{}", k.access_key_id, k.status, iso(k.create_date)))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
    }
}
