//! Operator commands: `trail prune` (retention) and `trail backup`.

use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use clap::{ArgGroup, Args};

use crate::domain::event::format_timestamp;
use crate::domain::filter::parse_bound;
use crate::store::backup::{backup as backup_file, BackupReport};
use crate::store::retention::{prune as prune_file, PruneReport};
use crate::store::{open_write, verify_file, KeySource, StoreError, Synchronous, VerifyRequest};

use super::CliError;

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("cutoff").required(true).args(["before", "older_than_days"])))]
pub struct PruneArgs {
    /// Delete the events older than this: RFC 3339, or YYYY-MM-DD (midnight UTC).
    #[arg(long, value_name = "DATE")]
    pub before: Option<String>,
    /// Delete the events older than N days (1 to 100,000, as retention_days).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub older_than_days: Option<u32>,
    /// Rows deleted per transaction (appends wait at most one batch).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub batch_size: u32,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Another key the rows to delete may be sealed with (repeatable);
    /// picked by key id. Rows that do not verify are never deleted.
    #[arg(long = "key-file")]
    pub key_files: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// The backup file to create; never overwritten.
    pub dest: PathBuf,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

impl PruneArgs {
    fn cutoff(&self, now: DateTime<Utc>) -> Result<DateTime<Utc>, CliError> {
        match (&self.before, self.older_than_days) {
            (Some(s), None) => {
                let before =
                    parse_bound(s, false).map_err(|e| CliError::Input(format!("--before: {e}")))?;
                // A cut-off still to come would take the whole log, events
                // stored a moment ago included (as --older-than-days 0
                // would, which is refused too).
                if before > now {
                    return Err(CliError::Input(format!(
                        "--before: {s:?} is later than now ({}): a prune deletes only events \
                         from the past; nothing was pruned",
                        format_timestamp(now)
                    )));
                }
                Ok(before)
            }
            (None, Some(days)) => Ok(now - chrono::Duration::days(i64::from(days))),
            _ => Err(CliError::Input(
                "give exactly one of --before DATE and --older-than-days N".into(),
            )),
        }
    }
}

/// `trail prune`: verifies the events before the date, records a retention
/// cut, deletes them, and appends a `retention.prune` event saying so.
/// Events that do not verify are never deleted: exit 1, nothing changed.
pub fn prune(
    db: &Path,
    keys: &KeySource,
    sync: Synchronous,
    args: PruneArgs,
) -> Result<(), CliError> {
    let before = args.cutoff(Utc::now())?;
    if !db.exists() {
        return Err(StoreError::NoDatabase(db.to_owned()).into());
    }
    crate::store::db::check_target(db)?;
    let key = keys.signing_key(db)?;
    let ring = keys.verify_keyring(db, &args.key_files)?;
    crate::store::keys::check_key_continues(db, &key, &ring)?;
    let mut conn = open_write(db, sync)?;
    let report = prune_file(&mut conn, db, &key, &ring, before, args.batch_size as usize)?;
    let before_text = format_timestamp(before);
    if args.json {
        let mut v = serde_json::to_value(&report).expect("report serializes");
        v["before"] = before_text.into();
        out!("{v}")?;
    } else {
        out!("{}", describe_prune(&report, &before_text))?;
    }
    Ok(())
}

fn describe_prune(r: &PruneReport, before: &str) -> String {
    match (r.up_to_seq, r.event_seq) {
        (Some(cut), Some(ev)) => format!(
            "pruned {} events before {before}: cut at seq {cut} (sealed and recorded first), \
             recorded as event seq {ev} (retention.prune)",
            r.deleted
        ),
        (Some(cut), None) => format!("pruned {} events up to seq {cut}", r.deleted),
        _ => format!("nothing to prune: no event before {before} above the newest cut"),
    }
}

/// `trail backup DEST`: an online copy, then verified with the same keys.
pub fn backup(db: &Path, keys: &KeySource, args: BackupArgs) -> Result<(), CliError> {
    let report = backup_file(db, &args.dest).map_err(|e| match e {
        StoreError::Io { context, source }
            if matches!(
                source.kind(),
                io::ErrorKind::AlreadyExists | io::ErrorKind::NotFound
            ) =>
        {
            CliError::Input(context)
        }
        other => other.into(),
    })?;
    let ring = keys.verify_keyring(db, &[])?;
    let verdict = verify_file(&args.dest, &ring, VerifyRequest::default())?;
    let text = if args.json {
        serde_json::json!({
            "dest": report.dest,
            "events": report.events,
            "head_seq": report.head_seq,
            "verify": verdict,
        })
        .to_string()
    } else {
        describe_backup(&report, &verdict)
    };
    if verdict.valid {
        out!("{text}")?;
        Ok(())
    } else {
        Err(CliError::VerifyFailed(text))
    }
}

fn describe_backup(r: &BackupReport, v: &crate::domain::Report) -> String {
    let head = format!(
        "backup of {} events (head seq {}) to {}",
        r.events,
        r.head_seq,
        r.dest.display()
    );
    match (v.valid, v.kind) {
        (true, _) => format!("{head}: verified intact"),
        (false, Some(kind)) => format!(
            "{head}: verification FAILED at seq {}: {kind} ({})",
            v.first_bad_seq.unwrap_or(0),
            kind.explain()
        ),
        (false, None) => format!("{head}: verification FAILED"),
    }
}
