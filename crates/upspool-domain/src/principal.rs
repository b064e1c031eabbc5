//! Who is calling. Built by the HTTP layer's one authentication extractor (from a validated
//! bearer token) and handed to every domain operation, so that access rules live in the
//! domain (`access`).

use std::collections::BTreeSet;

use crate::model::UserIdentity;

/// How the caller holds its permissions, as in Entra ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrincipalKind {
    /// A user acting through an app: permissions are the token's `scp`.
    Delegated,
    /// An app acting as itself: permissions are the token's `roles`.
    Application { app_id: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The user (delegated) or application identity, as recorded in `createdBy`. For users,
    /// `id` is the `oid` claim (or the upn when there is none).
    pub user: UserIdentity,
    pub kind: PrincipalKind,
    /// Delegated scopes or application roles, with Graph's names (`PrintJob.ReadWrite`).
    pub permissions: BTreeSet<String>,
    /// Group object ids of a delegated user (the token's `groups`).
    pub groups: BTreeSet<String>,
    /// The token's tenant (`tid`), if it named one.
    pub tenant: Option<String>,
    /// A printer administrator (member of the configured admin group, or the local operator):
    /// may do everything, and sees every user's jobs.
    pub is_admin: bool,
}

impl Principal {
    /// A delegated user with the given scopes and groups.
    pub fn user(
        user: UserIdentity,
        scopes: impl IntoIterator<Item = String>,
        groups: impl IntoIterator<Item = String>,
    ) -> Self {
        Principal {
            user,
            kind: PrincipalKind::Delegated,
            permissions: scopes.into_iter().collect(),
            groups: groups.into_iter().collect(),
            tenant: None,
            is_admin: false,
        }
    }

    /// An application with the given roles.
    pub fn application(
        app_id: String,
        display_name: Option<String>,
        roles: impl IntoIterator<Item = String>,
    ) -> Self {
        Principal {
            user: UserIdentity {
                id: app_id.clone(),
                display_name,
                user_principal_name: None,
            },
            kind: PrincipalKind::Application { app_id },
            permissions: roles.into_iter().collect(),
            groups: BTreeSet::new(),
            tenant: None,
            is_admin: false,
        }
    }

    /// The fixed identity behind `--insecure-dev-auth`: a delegated administrator with every
    /// permission. Never used otherwise.
    pub fn insecure_dev() -> Self {
        let mut p = Principal::user(
            UserIdentity {
                id: "00000000-0000-0000-0000-00000000d3f0".into(),
                display_name: Some("Development User".into()),
                user_principal_name: Some("dev@upspool.invalid".into()),
            },
            crate::access::ALL_DELEGATED.iter().map(|s| s.to_string()),
            [],
        );
        p.is_admin = true;
        p
    }

    /// The operator at the server's console (`upspool admin ...`), who has direct access to
    /// the data directory anyway: an administrator.
    pub fn local_admin() -> Self {
        let mut p = Principal::user(
            UserIdentity {
                id: "00000000-0000-0000-0000-0000000ad010".into(),
                display_name: Some("Local Administrator".into()),
                user_principal_name: None,
            },
            crate::access::ALL_DELEGATED.iter().map(|s| s.to_string()),
            [],
        );
        p.is_admin = true;
        p
    }

    pub fn is_application(&self) -> bool {
        matches!(self.kind, PrincipalKind::Application { .. })
    }

    /// Whether this caller is the user `id` (an object id or a user principal name).
    pub fn is_user(&self, id: &str) -> bool {
        !self.is_application()
            && (self.user.id.eq_ignore_ascii_case(id)
                || self
                    .user
                    .user_principal_name
                    .as_deref()
                    .is_some_and(|upn| upn.eq_ignore_ascii_case(id)))
    }
}
