//! The service's own Iggy user: least privilege, never root.
//!
//! What the service does on Iggy, and so all it may do: on **its stream
//! only**, read the stream and its topics (the log end is a topic's
//! details), poll messages, send messages, and store and read consumer
//! offsets. Nothing global — no other stream, no users, no server
//! settings — and not even creating or deleting its stream or topics: an
//! administrator does that once, with the root credentials, which the
//! service itself never holds.
//!
//! [`set_up_service_user`] is that administrator's step (`marauders-map iggy
//! setup`, the `iggy-setup` service of docker-compose.yml): it creates the
//! stream and topics when missing and the user named in the service's
//! `IGGY_URL` with [`service_permissions`], or resets an existing user's
//! permissions to exactly those. The service refuses to use the log as the
//! root user ([`super::iggy::IggyConfig::refuse_root_user`]).

use std::collections::BTreeMap;
use std::time::Duration;

use iggy::prelude::{
    Client, GlobalPermissions, Identifier, IggyClient, IggyError, Permissions, StreamClient,
    StreamPermissions, UserClient, UserStatus,
};

use super::LogError;
use super::iggy::{BACKEND, IggyConfig, IggyLog, redact_password};

/// The id Iggy gives its root user (created from `IGGY_ROOT_USERNAME` on
/// the first start).
pub const ROOT_USER_ID: u32 = 0;

/// The user name and password of an `iggy://user:password@host:port` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct IggyCredentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for IggyCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IggyCredentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl IggyCredentials {
    /// The credentials in `url`.
    ///
    /// # Errors
    ///
    /// [`LogError::InvalidRequest`] when the URL carries none.
    pub fn from_url(url: &str) -> Result<IggyCredentials, LogError> {
        let missing = || {
            LogError::InvalidRequest(format!(
                "{} has no user: expected iggy://user:password@host:port",
                redact_password(url)
            ))
        };
        let (_, rest) = url.split_once("://").ok_or_else(missing)?;
        let (credentials, _) = rest.rsplit_once('@').ok_or_else(missing)?;
        let (username, password) = credentials.split_once(':').ok_or_else(missing)?;
        if username.is_empty() || password.is_empty() {
            return Err(missing());
        }
        Ok(IggyCredentials {
            username: username.to_owned(),
            password: password.to_owned(),
        })
    }
}

/// Exactly what the service needs, on the stream with id `stream_id` and
/// nowhere else. `read_stream` already implies reading the topics and
/// polling; they are spelled out so the grant reads as the list above.
pub fn service_permissions(stream_id: u32) -> Permissions {
    let on_its_stream = StreamPermissions {
        manage_stream: false,
        read_stream: true,
        manage_topics: false,
        read_topics: true,
        poll_messages: true,
        send_messages: true,
        topics: None,
    };
    Permissions {
        global: GlobalPermissions::default(),
        streams: Some(BTreeMap::from([(stream_id as usize, on_its_stream)])),
    }
}

/// What [`set_up_service_user`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceUserSetup {
    Created,
    /// The user existed; its permissions are now exactly the service's.
    PermissionsReset,
}

/// How long the set-up waits for Iggy to answer at all.
const SETUP_WAIT: Duration = Duration::from_secs(60);
/// The longest one request of the set-up may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// As an administrator (`admin_url`, e.g. the root user): creates `stream`
/// and its topics if missing, then the user of `service_url` with
/// [`service_permissions`] on that stream — or, if it exists, resets its
/// permissions to those. Finally logs in as that user, so a wrong password
/// is found now rather than when the service starts.
///
/// # Errors
///
/// [`LogError::Unavailable`] when Iggy does not answer within a minute;
/// [`LogError::Failed`] when a step is refused, e.g. an existing user with
/// another password.
pub async fn set_up_service_user(
    admin_url: &str,
    stream: &str,
    service_url: &str,
) -> Result<ServiceUserSetup, LogError> {
    let service = IggyCredentials::from_url(service_url)?;
    let mut admin_config = IggyConfig::new(admin_url);
    admin_config.stream = stream.to_owned();
    // The log's own start-up creates the stream and topics, idempotently.
    let log = IggyLog::open(admin_config.clone());
    let ready = log.wait_until_ready(SETUP_WAIT).await;
    log.shutdown().await;
    ready?;

    let admin = connect(&admin_config.connection_string()).await?;
    let outcome = grant(&admin, stream, &service).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), admin.shutdown()).await;
    let outcome = outcome?;

    let mut service_config = IggyConfig::new(service_url);
    service_config.stream = stream.to_owned();
    let as_service = connect(&service_config.connection_string())
        .await
        .map_err(|error| {
            failed(format!(
                "the user '{}' cannot log in with the password in the service's URL \
                 ({error}); it existed with another one: change its password or delete it",
                service.username
            ))
        })?;
    let stream_visible = bounded("get stream as the service", async {
        as_service.get_stream(&named(stream)?).await
    })
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(1), as_service.shutdown()).await;
    if stream_visible?.is_none() {
        return Err(failed(format!(
            "the user '{}' cannot see the stream {stream}",
            service.username
        )));
    }
    Ok(outcome)
}

async fn grant(
    admin: &IggyClient,
    stream: &str,
    service: &IggyCredentials,
) -> Result<ServiceUserSetup, LogError> {
    let details = bounded("get stream", async {
        admin.get_stream(&named(stream)?).await
    })
    .await?
    .ok_or_else(|| failed(format!("the stream {stream} vanished during the set-up")))?;
    let permissions = service_permissions(details.id);
    let user = named(&service.username).map_err(|error| {
        LogError::InvalidRequest(format!("user name '{}': {error}", service.username))
    })?;
    let existing = bounded("get user", async { admin.get_user(&user).await }).await?;
    match existing {
        Some(existing) if existing.id == ROOT_USER_ID => Err(failed(format!(
            "'{}' is Iggy's root user: give the service a user of its own in IGGY_URL",
            service.username
        ))),
        Some(_) => {
            bounded("update permissions", async {
                admin.update_permissions(&user, Some(permissions)).await
            })
            .await?;
            Ok(ServiceUserSetup::PermissionsReset)
        }
        None => {
            bounded("create user", async {
                admin
                    .create_user(
                        &service.username,
                        &service.password,
                        UserStatus::Active,
                        Some(permissions),
                    )
                    .await
            })
            .await?;
            Ok(ServiceUserSetup::Created)
        }
    }
}

fn named(name: &str) -> Result<Identifier, IggyError> {
    Identifier::named(name)
}

async fn connect(connection_string: &str) -> Result<IggyClient, LogError> {
    let client = IggyClient::from_connection_string(connection_string)
        .map_err(|error| failed(format!("invalid Iggy URL: {error}")))?;
    bounded("connect", client.connect()).await?;
    Ok(client)
}

async fn bounded<T>(
    what: &str,
    request: impl Future<Output = Result<T, IggyError>>,
) -> Result<T, LogError> {
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(failed(format!("{what}: {error}"))),
        Err(_) => Err(LogError::Unavailable {
            backend: BACKEND,
            reason: format!("{what}: no answer within {REQUEST_TIMEOUT:?}"),
        }),
    }
}

fn failed(reason: String) -> LogError {
    LogError::Failed {
        backend: BACKEND,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_the_url_and_never_show_the_password() {
        let credentials =
            IggyCredentials::from_url("iggy://marauders:s3cr:et@iggy:8090?nodelay=true").unwrap();
        assert_eq!(credentials.username, "marauders");
        assert_eq!(credentials.password, "s3cr:et");
        assert!(!format!("{credentials:?}").contains("s3cr"));
        for without in [
            "iggy://iggy:8090",
            "iggy://:pw@iggy:8090",
            "iggy://me@iggy:8090",
        ] {
            assert!(IggyCredentials::from_url(without).is_err(), "{without}");
        }
    }

    #[test]
    fn the_service_may_read_and_write_its_stream_and_nothing_else() {
        let permissions = service_permissions(7);
        assert_eq!(permissions.global, GlobalPermissions::default());
        let streams = permissions.streams.unwrap();
        assert_eq!(streams.keys().collect::<Vec<_>>(), [&7]);
        let on_stream = &streams[&7];
        assert!(on_stream.read_stream && on_stream.send_messages && on_stream.poll_messages);
        assert!(!on_stream.manage_stream && !on_stream.manage_topics);
        assert!(on_stream.topics.is_none());
    }
}
