//! `cryptvol kms <command>`: the `aws kms` command line against the
//! embedded KMS.
//!
//! Same command names, option names and value syntax as the AWS CLI v2
//! (see [`table`] and [`params`]); the options become the AWS JSON request,
//! [`LocalKms::call`] runs it as the account root, and the AWS JSON
//! response is printed as is with `--output json` (blobs base64, times epoch
//! seconds, exactly as `aws kms` prints them) or as a readable summary in
//! text mode ([`render`]). Errors read like the AWS CLI's: `An error
//! occurred (DisabledException) when calling the Encrypt operation: …`.
//!
//! The commands are built from the table with clap's builder API rather
//! than 46 derive structs, so adding an operation is one table entry.

mod params;
mod render;
mod table;

use clap::{Arg, ArgAction, ArgMatches};
use serde_json::{Map, Value};

use super::{Context, Output};
use crate::kms::local::LocalKms;
use crate::kms::KmsError;
use params::Raw;
use table::{CommandSpec, Kind, Param, COMMANDS};

/// A parsed `cryptvol kms …` command: which one, and its raw option values
/// (files are read when it runs, so their errors are ours, not clap's).
#[derive(Debug)]
pub struct KmsCommand {
    spec: &'static CommandSpec,
    values: Vec<(&'static Param, Raw)>,
}

impl clap::FromArgMatches for KmsCommand {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let Some((name, sub)) = matches.subcommand() else {
            return Err(clap::Error::raw(
                clap::error::ErrorKind::MissingSubcommand,
                "a kms command is required, e.g. `cryptvol kms list-keys`\n",
            ));
        };
        let Some(spec) = COMMANDS.iter().find(|c| c.name == name) else {
            return Err(clap::Error::raw(
                clap::error::ErrorKind::InvalidSubcommand,
                format!("unknown kms command '{name}'\n"),
            ));
        };
        let mut values = Vec::new();
        for p in spec.params {
            let raw = match p.kind {
                Kind::Bool(neg) => {
                    if sub.get_flag(p.flag) {
                        Some(Raw::Flag(true))
                    } else if sub.get_flag(neg) {
                        Some(Raw::Flag(false))
                    } else {
                        None
                    }
                }
                Kind::Int => sub.get_one::<i64>(p.flag).map(|n| Raw::Int(*n)),
                Kind::List | Kind::Tags => sub
                    .get_many::<String>(p.flag)
                    .map(|v| Raw::Many(v.cloned().collect())),
                _ => sub.get_one::<String>(p.flag).map(|s| Raw::One(s.clone())),
            };
            if let Some(raw) = raw {
                values.push((p, raw));
            }
        }
        Ok(KmsCommand { spec, values })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = KmsCommand::from_arg_matches(matches)?;
        Ok(())
    }
}

impl clap::Subcommand for KmsCommand {
    fn augment_subcommands(cmd: clap::Command) -> clap::Command {
        cmd.subcommand_required(true)
            .arg_required_else_help(true)
            .subcommands(COMMANDS.iter().map(build_command))
    }

    fn augment_subcommands_for_update(cmd: clap::Command) -> clap::Command {
        KmsCommand::augment_subcommands(cmd)
    }

    fn has_subcommand(name: &str) -> bool {
        COMMANDS.iter().any(|c| c.name == name)
    }
}

fn build_command(spec: &'static CommandSpec) -> clap::Command {
    let mut cmd = clap::Command::new(spec.name)
        .about(spec.about)
        .after_help(format!("Calls the AWS KMS {} operation.", spec.operation));
    for p in spec.params {
        let arg = Arg::new(p.flag).long(p.flag).help(table::help(p));
        cmd = match p.kind {
            Kind::Bool(neg) => cmd
                .arg(arg.action(ArgAction::SetTrue).conflicts_with(neg))
                .arg(
                    Arg::new(neg)
                        .long(neg)
                        .action(ArgAction::SetTrue)
                        .help(format!("Sets {} to false", table::field_name(p.flag))),
                ),
            Kind::Int => cmd.arg(
                arg.required(p.required)
                    .value_name("N")
                    .value_parser(clap::value_parser!(i64)),
            ),
            Kind::List | Kind::Tags => cmd.arg(
                arg.required(p.required)
                    .num_args(1..)
                    .action(ArgAction::Append)
                    .value_name("VALUE"),
            ),
            _ => cmd.arg(arg.required(p.required).value_name("VALUE")),
        };
    }
    cmd
}

impl KmsCommand {
    /// The AWS JSON request this command sends.
    pub fn request(&self) -> anyhow::Result<Value> {
        let mut req = Map::new();
        for (p, raw) in &self.values {
            let (field, value) = params::to_json(p, raw)?;
            req.insert(field, value);
        }
        Ok(Value::Object(req))
    }

    pub fn operation(&self) -> &'static str {
        self.spec.operation
    }
}

/// Runs `operation` with `request` against the context's region: the
/// embedded KMS as the account root, or with `--kms-endpoint` the remote
/// KMS as whoever the credentials name. A KMS error becomes the AWS CLI's
/// message.
pub fn call(ctx: &Context, operation: &str, request: Value) -> anyhow::Result<Value> {
    if ctx.kms_endpoint.is_some() {
        let remote = ctx.key_service()?;
        return remote
            .service
            .call_json(&remote.caller, operation, request)
            .map_err(|e| aws_cli_error(operation, &e));
    }
    let kms = ctx.kms()?;
    call_with(&kms, operation, request)
}

fn call_with(kms: &LocalKms, operation: &str, request: Value) -> anyhow::Result<Value> {
    kms.call(&kms.root_caller(), operation, request)
        .map_err(|e| aws_cli_error(operation, &e))
}

/// `An error occurred (<__type>) when calling the <Op> operation: <message>`.
fn aws_cli_error(operation: &str, e: &KmsError) -> anyhow::Error {
    anyhow::anyhow!(
        "An error occurred ({}) when calling the {operation} operation: {e}",
        e.aws_type()
    )
}

pub fn run(ctx: &Context, cmd: KmsCommand) -> anyhow::Result<()> {
    let request = cmd.request()?;
    let response = call(ctx, cmd.operation(), request.clone())?;
    match ctx.output {
        Output::Json => {
            // Like the AWS CLI: an empty response prints nothing.
            if response.as_object().is_some_and(|o| !o.is_empty()) {
                super::out(&serde_json::to_string_pretty(&response)?)?;
            }
        }
        Output::Text => {
            let text = render::text(cmd.spec, &request, &response);
            if !text.is_empty() {
                super::out(&text)?;
            }
        }
    }
    Ok(())
}
