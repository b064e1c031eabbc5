//! Who may do what: one table from each operation to the delegated scopes and application
//! roles Graph documents for it (the union where the docs disagree, reference §2 and Q16),
//! and the rules on top of it: without a `.All` permission a delegated user touches only their
//! own jobs (others' answer "not found", so that their existence does not leak); a share takes
//! jobs only from the users and groups it allows.

use crate::error::{DomainError, Result};
use crate::model::{Job, Share};
use crate::principal::Principal;

/// Every operation that needs a permission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// E1, E2.
    CreateJob,
    /// E3, E4, E10, E11, E18: list and read jobs, their documents and tasks.
    ReadJobs,
    /// E6.
    StartJob,
    /// E7 (delegated only).
    CancelJob,
    /// E8, E9, E5 (application only; not implemented, but refused by the same rules first).
    ManageJobs,
    /// E22 (delegated only; not implemented).
    ReleaseJob,
    /// E12 and the draft upload form E16.
    UploadDocument,
    /// E17: the `$value` redirect to a download URL.
    DownloadDocument,
    ReadPrinters,
    /// Create and delete printers.
    AdministerPrinters,
    ReadShares,
    /// Create and delete shares, and manage their allowedUsers / allowedGroups.
    AdministerShares,
}

/// The permissions that grant an operation.
pub struct Rule {
    pub delegated: &'static [&'static str],
    pub application: &'static [&'static str],
}

const READ_JOBS_DELEGATED: &[&str] = &[
    "PrintJob.ReadBasic",
    "PrintJob.Read",
    "PrintJob.ReadBasic.All",
    "PrintJob.Read.All",
    "PrintJob.ReadWriteBasic",
    "PrintJob.ReadWrite",
    "PrintJob.ReadWriteBasic.All",
    "PrintJob.ReadWrite.All",
];
const READ_JOBS_APPLICATION: &[&str] = &[
    "PrintJob.ReadBasic.All",
    "PrintJob.Read.All",
    "PrintJob.ReadWriteBasic.All",
    "PrintJob.ReadWrite.All",
];

/// Every delegated permission upspool knows (given to the development and local principals).
pub const ALL_DELEGATED: &[&str] = &[
    "PrintJob.Create",
    "PrintJob.ReadBasic",
    "PrintJob.Read",
    "PrintJob.ReadBasic.All",
    "PrintJob.Read.All",
    "PrintJob.ReadWriteBasic",
    "PrintJob.ReadWrite",
    "PrintJob.ReadWriteBasic.All",
    "PrintJob.ReadWrite.All",
    "Printer.Read.All",
    "Printer.ReadWrite.All",
    "Printer.FullControl.All",
    "PrinterShare.ReadBasic.All",
    "PrinterShare.Read.All",
    "PrinterShare.ReadWrite.All",
];

impl Operation {
    /// The permission table. Keep `docs/identity.md` in step with it.
    pub fn rule(self) -> Rule {
        use Operation::*;
        let r = |delegated, application| Rule {
            delegated,
            application,
        };
        match self {
            CreateJob => r(
                &[
                    "PrintJob.Create",
                    "PrintJob.ReadWriteBasic",
                    "PrintJob.ReadWrite",
                    "PrintJob.ReadWriteBasic.All",
                    "PrintJob.ReadWrite.All",
                ],
                &[],
            ),
            ReadJobs => r(READ_JOBS_DELEGATED, READ_JOBS_APPLICATION),
            StartJob => r(
                &[
                    "PrintJob.Create",
                    "PrintJob.ReadWrite",
                    "PrintJob.ReadWrite.All",
                    "PrintJob.ReadWriteBasic",
                    "PrintJob.ReadWriteBasic.All",
                ],
                &[],
            ),
            CancelJob | ReleaseJob => r(
                &[
                    "PrintJob.ReadWriteBasic",
                    "PrintJob.ReadWrite",
                    "PrintJob.ReadWriteBasic.All",
                    "PrintJob.ReadWrite.All",
                ],
                &[],
            ),
            ManageJobs => r(
                &[],
                &[
                    "PrintJob.ReadWriteBasic.All",
                    "PrintJob.ReadWrite.All",
                    "PrintJob.Manage.All",
                ],
            ),
            // Applications may upload only under a processing printTask of their own trigger
            // (Q18); upspool has no tasks, so none may.
            UploadDocument => r(
                &[
                    "PrintJob.Create",
                    "PrintJob.ReadWrite",
                    "PrintJob.ReadWrite.All",
                ],
                &[],
            ),
            DownloadDocument => r(
                &[
                    "PrintJob.Read",
                    "PrintJob.Read.All",
                    "PrintJob.ReadWrite",
                    "PrintJob.ReadWrite.All",
                ],
                &["PrintJob.Read.All", "PrintJob.ReadWrite.All"],
            ),
            ReadPrinters => r(
                &[
                    "Printer.Read.All",
                    "Printer.ReadWrite.All",
                    "Printer.FullControl.All",
                ],
                &["Printer.Read.All", "Printer.ReadWrite.All"],
            ),
            AdministerPrinters => r(&["Printer.FullControl.All"], &["Printer.ReadWrite.All"]),
            ReadShares => r(
                &[
                    "PrinterShare.ReadBasic.All",
                    "PrinterShare.Read.All",
                    "PrinterShare.ReadWrite.All",
                ],
                &["PrinterShare.Read.All", "PrinterShare.ReadWrite.All"],
            ),
            AdministerShares => r(
                &["PrinterShare.ReadWrite.All"],
                &["PrinterShare.ReadWrite.All"],
            ),
        }
    }
}

/// How far a granted operation reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Every job (an administrator, an application, or a delegated `.All` permission).
    AllJobs,
    /// Only the jobs the caller created.
    OwnJobs,
}

/// Checks that `who` may perform `op`: `AccessDenied` naming what is missing otherwise.
pub fn authorize(who: &Principal, op: Operation) -> Result<Reach> {
    if who.is_admin {
        return Ok(Reach::AllJobs);
    }
    let rule = op.rule();
    let (accepted, kind) = if who.is_application() {
        (rule.application, "application")
    } else {
        (rule.delegated, "delegated")
    };
    if accepted.is_empty() {
        let other = if who.is_application() {
            "a delegated (user)"
        } else {
            "an application"
        };
        return Err(DomainError::AccessDenied(format!(
            "This operation is not supported with {kind} permissions; it needs {other} token."
        )));
    }
    let granted: Vec<&str> = accepted
        .iter()
        .copied()
        .filter(|p| who.permissions.contains(*p))
        .collect();
    if granted.is_empty() {
        return Err(DomainError::AccessDenied(format!(
            "The token lacks the permission for this operation; one of these {kind} permissions is required: {}.",
            accepted.join(", ")
        )));
    }
    if who.is_application() || granted.iter().any(|p| p.ends_with(".All")) {
        Ok(Reach::AllJobs)
    } else {
        Ok(Reach::OwnJobs)
    }
}

/// Whether `who` may see `job` with `reach`; the caller answers "not found" otherwise.
pub fn can_see(who: &Principal, reach: Reach, job: &Job) -> bool {
    reach == Reach::AllJobs || who.is_user(&job.created_by.id)
}

/// Members of a share's access list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShareAccess {
    /// User object ids (or user principal names).
    pub users: Vec<String>,
    /// Group object ids.
    pub groups: Vec<String>,
}

/// Whether `who` may print to `share`, given its access list.
pub fn may_print_to(who: &Principal, share: &Share, access: &ShareAccess) -> bool {
    who.is_admin
        || share.allow_all_users
        || access.users.iter().any(|u| who.is_user(u))
        || access
            .groups
            .iter()
            .any(|g| who.groups.iter().any(|mine| mine.eq_ignore_ascii_case(g)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::UserIdentity;

    fn user(scopes: &[&str]) -> Principal {
        Principal::user(
            UserIdentity {
                id: "u1".into(),
                display_name: None,
                user_principal_name: Some("alice@example.com".into()),
            },
            scopes.iter().map(|s| s.to_string()),
            ["g1".to_string()],
        )
    }

    #[test]
    fn delegated_reach_depends_on_all_forms() {
        assert_eq!(
            authorize(&user(&["PrintJob.ReadWrite"]), Operation::ReadJobs).unwrap(),
            Reach::OwnJobs
        );
        assert_eq!(
            authorize(&user(&["PrintJob.Read.All"]), Operation::ReadJobs).unwrap(),
            Reach::AllJobs
        );
        assert!(matches!(
            authorize(&user(&["PrintJob.ReadBasic"]), Operation::CancelJob),
            Err(DomainError::AccessDenied(_))
        ));
    }

    #[test]
    fn applications_are_refused_on_delegated_only_operations() {
        let app = Principal::application("a".into(), None, ["PrintJob.ReadWrite.All".into()]);
        assert!(authorize(&app, Operation::CancelJob).is_err());
        assert!(authorize(&app, Operation::CreateJob).is_err());
        assert_eq!(
            authorize(&app, Operation::ReadJobs).unwrap(),
            Reach::AllJobs
        );
        let u = user(&["PrintJob.ReadWrite.All"]);
        assert!(authorize(&u, Operation::ManageJobs).is_err());
    }

    #[test]
    fn share_access_lists_match_users_and_groups() {
        let share = Share {
            id: uuid::Uuid::new_v4(),
            display_name: "s".into(),
            printer_id: uuid::Uuid::new_v4(),
            allow_all_users: false,
            created: chrono::Utc::now(),
        };
        let u = user(&[]);
        assert!(!may_print_to(&u, &share, &ShareAccess::default()));
        let by_upn = ShareAccess {
            users: vec!["ALICE@example.com".into()],
            groups: vec![],
        };
        assert!(may_print_to(&u, &share, &by_upn));
        let by_group = ShareAccess {
            users: vec![],
            groups: vec!["g1".into()],
        };
        assert!(may_print_to(&u, &share, &by_group));
    }
}
