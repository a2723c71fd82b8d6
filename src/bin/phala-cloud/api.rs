//! Where the API key and the API come from, for every command that calls the API.

use std::ffi::OsString;
use std::path::PathBuf;

use phala_cloud::Client;

use crate::secret_arg::{self, Removed};
use crate::{Failure, exit};

/// The API-key flag of earlier versions, which took the key as its value.
pub const REMOVED_API_KEY: Removed =
    Removed { flag: "--api-key", var: "PHALA_CLOUD_API_KEY", file_flag: "--api-key-file" };

/// Where the API key and the API come from (`envs update`, `compose update`, `cvms update`, and
/// `envs encrypt` when it looks the key up).
#[derive(clap::Args)]
pub struct ApiArgs {
    /// A file holding the Phala Cloud API key; `-` reads one line from stdin. Default: the
    /// PHALA_CLOUD_API_KEY variable.
    #[arg(long, value_name = "PATH")]
    pub api_key_file: Option<PathBuf>,
    /// API base URL (`…/api/v1` accepted). Default: the profile's `api_prefix`, else the
    /// public API.
    #[arg(long, env = "PHALA_CLOUD_API_PREFIX", value_name = "URL")]
    api_prefix: Option<String>,
    /// The profile of the official CLI's saved credentials ($PHALA_CLOUD_DIR/credentials.json,
    /// default ~/.phala-cloud) whose key and prefix to use when neither --api-key-file nor
    /// PHALA_CLOUD_API_KEY gives a key. Default: its current profile.
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// Removed: refused, without using or showing the value.
    #[arg(long = "api-key", hide = true, num_args = 0..=1, default_missing_value = "", action = clap::ArgAction::Append)]
    pub removed_api_key: Vec<OsString>,
}

impl ApiArgs {
    /// The client: the API key from --api-key-file, else PHALA_CLOUD_API_KEY, else the official
    /// CLI's saved profile (its order); the prefix from --api-prefix/PHALA_CLOUD_API_PREFIX, else
    /// the profile's.
    pub fn client(&self, retry_on_conflict: bool) -> Result<Client, Failure> {
        let api_key = secret_arg::load(self.api_key_file.as_deref(), "--api-key-file", "PHALA_CLOUD_API_KEY")?;
        let profile = match (&api_key, &self.profile) {
            (Some(_), None) => None,
            (_, name) => crate::credentials::load(name.as_deref())?,
        };
        let (api_key, profile_prefix) = match (api_key, profile) {
            (Some(key), p) => (Some(key), p.and_then(|p| p.api_prefix)),
            (None, Some(p)) => (Some(p.token), p.api_prefix),
            (None, None) => (None, None),
        };
        let Some(api_key) = api_key else {
            return Err(Failure {
                code: exit::AUTH,
                message: "no API key: set PHALA_CLOUD_API_KEY, or use --api-key-file PATH, with a key from the Phala Cloud dashboard, or log in with the official CLI (`phala auth login`), whose saved profile is used"
                    .into(),
                json: None,
            });
        };
        let mut builder = Client::builder().api_key(api_key.expose());
        if let Some(prefix) = self.api_prefix.clone().or(profile_prefix) {
            builder = builder.base_url(prefix);
        }
        if retry_on_conflict {
            builder = builder.retry_on_conflict(phala_cloud::ConflictRetry::default());
        }
        builder.build().map_err(|e| Failure::usage(e.to_string()))
    }
}
