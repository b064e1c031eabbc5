//! `upspool admin ...`: printers and shares, created and listed directly through the domain on
//! the data directory's stores, printed as JSON on stdout.

use serde_json::{json, Value};
use upspool_domain::model::Share;
use upspool_domain::principal::Principal;

use crate::cli::{AdminCommand, CommonArgs, PrinterCommand, ShareCommand};
use crate::config;
use crate::serve;

fn common(command: &AdminCommand) -> &CommonArgs {
    match command {
        AdminCommand::Printer(
            PrinterCommand::Add { common, .. } | PrinterCommand::List { common },
        )
        | AdminCommand::Share(ShareCommand::Add { common, .. } | ShareCommand::List { common }) => {
            common
        }
    }
}

/// The configuration of an admin command (flags, environment and file, like `serve`).
pub fn load_config(command: &AdminCommand) -> Result<config::Config, config::ConfigError> {
    config::load_admin(common(command), &config::process_env)
}

/// Runs the command; failures (stores that cannot be opened, refusals of the domain) exit 1.
pub async fn run(command: AdminCommand, config: config::Config) -> anyhow::Result<()> {
    let opened = serve::open(&config).await?;
    let result = execute(command, &opened).await;
    opened.close().await;
    let value = result?;
    println!(
        "{}",
        serde_json::to_string_pretty(&value).expect("JSON values always serialise")
    );
    Ok(())
}

async fn execute(command: AdminCommand, opened: &serve::Opened) -> anyhow::Result<Value> {
    let service = &opened.service;
    let admin = Principal::local_admin();
    Ok(match command {
        AdminCommand::Printer(PrinterCommand::Add {
            name,
            manufacturer,
            model,
            ..
        }) => {
            let printer = service
                .create_printer(&admin, name, manufacturer, model)
                .await?;
            upspool_http::views::printer(&printer)
        }
        AdminCommand::Printer(PrinterCommand::List { .. }) => {
            let printers = service.list_printers(&admin).await?;
            Value::Array(printers.iter().map(upspool_http::views::printer).collect())
        }
        AdminCommand::Share(ShareCommand::Add {
            printer,
            name,
            allow_all_users,
            ..
        }) => {
            let share = service
                .create_share(&admin, name, printer, allow_all_users)
                .await?;
            share_json(&share)
        }
        AdminCommand::Share(ShareCommand::List { .. }) => {
            let shares = service.list_shares(&admin).await?;
            Value::Array(shares.iter().map(share_json).collect())
        }
    })
}

/// `printerShare` as the admin commands print it.
/// A share as Graph shows it, plus its printer's id (admins need it; Graph would expand it).
pub fn share_json(s: &Share) -> Value {
    let mut v = upspool_http::views::share(s, None);
    v["printer"] = json!({ "id": s.printer_id.to_string() });
    v
}
