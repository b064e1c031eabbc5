//! Who is calling. Built by the HTTP layer's one authentication extractor and handed to every
//! domain operation, so that access rules live in the domain.

use crate::model::UserIdentity;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The user (delegated) or application identity, as recorded in `createdBy`.
    pub user: UserIdentity,
}

impl Principal {
    /// The fixed identity behind `--insecure-dev-auth`. Never used otherwise.
    pub fn insecure_dev() -> Self {
        Principal {
            user: UserIdentity {
                id: "00000000-0000-0000-0000-00000000d3f0".into(),
                display_name: Some("Development User".into()),
                user_principal_name: Some("dev@upspool.invalid".into()),
            },
        }
    }

    /// The operator at the server's console (`upspool admin ...`), who has direct access to
    /// the data directory anyway.
    pub fn local_admin() -> Self {
        Principal {
            user: UserIdentity {
                id: "00000000-0000-0000-0000-0000000ad010".into(),
                display_name: Some("Local Administrator".into()),
                user_principal_name: None,
            },
        }
    }
}
