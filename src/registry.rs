//! The key registry: an immutable snapshot of every system user's key and
//! memberships, loaded whole from a [`Config`] and swapped in whole.

use std::{collections::HashMap, sync::Arc};

use crate::{
    config::{Config, KeySource},
    error::{ConfigError, KeyOrigin},
    key::PublicKey,
    user::Membership,
};

/// One system user as the verifier sees it.
#[derive(Debug)]
pub(crate) struct UserEntry {
    pub id: Arc<str>,
    pub key: Arc<PublicKey>,
    pub memberships: Arc<[Membership]>,
}

/// Every user's key, keyed by user id. Never changed once built.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    generation: u64,
    users: HashMap<Arc<str>, UserEntry>,
}

impl Registry {
    /// Reads every user's key named by `config`; any unreadable or refused key is an
    /// error naming the user.
    pub fn load(config: &Config, generation: u64) -> Result<Registry, ConfigError> {
        let mut users = HashMap::with_capacity(config.users().len());
        for user in config.users() {
            let key = load_key(user.id(), user.key())?;
            let id: Arc<str> = user.id().into();
            let entry = UserEntry {
                id: id.clone(),
                key: Arc::new(key),
                memberships: user.memberships().into(),
            };
            users.insert(id, entry);
        }
        Ok(Registry { generation, users })
    }

    /// The user named `id`, compared exactly.
    pub fn get(&self, id: &str) -> Option<&UserEntry> {
        self.users.get(id)
    }

    /// Counts up by one with every registry swapped in.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The users, in no particular order.
    pub fn users(&self) -> impl Iterator<Item = &UserEntry> {
        self.users.values()
    }
}

fn load_key(user: &str, source: &KeySource) -> Result<PublicKey, ConfigError> {
    let (text, origin) = match source {
        KeySource::Path(path) => {
            let text = std::fs::read(path).map_err(|source| ConfigError::KeyFile {
                user: user.to_owned(),
                path: path.clone(),
                source,
            })?;
            (std::borrow::Cow::Owned(text), KeyOrigin::Path(path.clone()))
        }
        KeySource::Data(data) => (
            std::borrow::Cow::Borrowed(data.as_slice()),
            KeyOrigin::KeyData,
        ),
    };
    PublicKey::from_pem(&text).map_err(|source| ConfigError::Key {
        user: user.to_owned(),
        origin,
        source,
    })
}
