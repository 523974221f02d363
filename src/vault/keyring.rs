//! Vault keys: where they come from and how they rotate.
//!
//! File format: one or more lines `<id> <base64 of 32 bytes>` (id 1-255); the last line is the
//! key new records are sealed with. A file holding just one bare base64 line is key id 1
//! (DESIGN 2.2: "base64 of 32 random bytes"), as is `PORTCULLIS_VAULT_KEY`.
//!
//! Rotation is crash-safe at every step: the new key is appended (fsync), every record is
//! re-sealed with it, the store is flushed, and only then is the file rewritten with the new
//! key alone (temp file, fsync, rename). Until the last step both keys can open everything.

use std::io::Write;
use std::path::Path;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroize;

use super::VaultError;

pub const KEY_BYTES: usize = 32;

pub struct Keyring {
    keys: Vec<(u8, [u8; KEY_BYTES])>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<u8> = self.keys.iter().map(|(id, _)| *id).collect();
        f.debug_struct("Keyring")
            .field("key_ids", &ids)
            .finish_non_exhaustive()
    }
}

impl Drop for Keyring {
    fn drop(&mut self) {
        for (_, key) in &mut self.keys {
            key.zeroize();
        }
    }
}

fn decode_key(text: &str, source: &str) -> Result<[u8; KEY_BYTES], VaultError> {
    let mut bytes = STANDARD
        .decode(text.trim())
        .map_err(|_| VaultError::Key(format!("{source}: a key is not base64")))?;
    let key: [u8; KEY_BYTES] = bytes.as_slice().try_into().map_err(|_| {
        VaultError::Key(format!(
            "{source}: a key must be 32 bytes (base64 of 32 random bytes), got {}",
            bytes.len()
        ))
    })?;
    bytes.zeroize();
    Ok(key)
}

fn random_key() -> Result<[u8; KEY_BYTES], VaultError> {
    let mut key = [0u8; KEY_BYTES];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| VaultError::Crypto("no randomness for a key".into()))?;
    Ok(key)
}

impl Keyring {
    /// Parses the key-file format; `source` names the file or variable in errors.
    pub fn parse(text: &str, source: &str) -> Result<Keyring, VaultError> {
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let keys = match lines.as_slice() {
            [] => return Err(VaultError::Key(format!("{source}: empty"))),
            [only] if !only.contains(' ') => vec![(1, decode_key(only, source)?)],
            many => many
                .iter()
                .enumerate()
                .map(|(i, line)| {
                    let (id, key) = line.split_once(' ').ok_or_else(|| {
                        VaultError::Key(format!(
                            "{source} line {}: expected `<id> <base64>`",
                            i + 1
                        ))
                    })?;
                    let id: u8 = id.parse().ok().filter(|id| *id > 0).ok_or_else(|| {
                        VaultError::Key(format!("{source} line {}: key id must be 1-255", i + 1))
                    })?;
                    Ok((id, decode_key(key, source)?))
                })
                .collect::<Result<Vec<_>, VaultError>>()?,
        };
        Ok(Keyring { keys })
    }

    /// Reads a key file, refusing one that others can read.
    pub fn load_file(path: &Path) -> Result<Keyring, VaultError> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map_err(|e| VaultError::Key(format!("{}: {e}", path.display())))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(VaultError::Key(format!(
                    "{}: readable by group or others (mode {:o}); run `chmod 600 {}`",
                    path.display(),
                    mode & 0o777,
                    path.display()
                )));
            }
        }
        let mut text = std::fs::read_to_string(path)
            .map_err(|e| VaultError::Key(format!("{}: {e}", path.display())))?;
        let keyring = Keyring::parse(&text, &path.display().to_string());
        text.zeroize();
        keyring
    }

    /// A fresh single-key keyring, written to `path` (mode 0600); for `--dev`.
    pub fn generate_file(path: &Path) -> Result<Keyring, VaultError> {
        let keyring = Keyring {
            keys: vec![(1, random_key()?)],
        };
        keyring.write_file(path)?;
        Ok(keyring)
    }

    pub fn keys(&self) -> &[(u8, [u8; KEY_BYTES])] {
        &self.keys
    }

    pub fn current_id(&self) -> u8 {
        self.keys.last().map_or(1, |(id, _)| *id)
    }

    /// This keyring plus a new random key, which becomes current.
    pub fn with_new_key(&self) -> Result<Keyring, VaultError> {
        let next = self
            .keys
            .iter()
            .map(|(id, _)| *id)
            .max()
            .unwrap_or(0)
            .checked_add(1)
            .ok_or_else(|| VaultError::Key("key ids exhausted (255)".into()))?;
        let mut keys = self.keys.clone();
        keys.push((next, random_key()?));
        Ok(Keyring { keys })
    }

    /// Only the current key: what remains once every record is sealed with it.
    pub fn current_only(&self) -> Keyring {
        Keyring {
            keys: self.keys.last().map(|k| vec![*k]).unwrap_or_default(),
        }
    }

    /// Atomically replaces `path` with this keyring (temp file, fsync, rename), mode 0600.
    pub fn write_file(&self, path: &Path) -> Result<(), VaultError> {
        let io = |e: std::io::Error| VaultError::Key(format!("{}: {e}", path.display()));
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let mut text = String::new();
        for (id, key) in &self.keys {
            text.push_str(&format!("{id} {}\n", STANDARD.encode(key)));
        }
        let temp = path.with_extension("key.tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&temp).map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        text.zeroize();
        std::fs::rename(&temp, path).map_err(io)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
            && let Ok(dir) = std::fs::File::open(parent)
        {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_base64_is_key_one_and_lines_keep_ids() {
        let one = STANDARD.encode([7u8; 32]);
        let ring = Keyring::parse(&one, "t").unwrap();
        assert_eq!(ring.current_id(), 1);
        let two = format!("1 {one}\n2 {}\n", STANDARD.encode([9u8; 32]));
        let ring = Keyring::parse(&two, "t").unwrap();
        assert_eq!(ring.current_id(), 2);
        assert_eq!(ring.keys().len(), 2);
        assert!(
            Keyring::parse("c2hvcnQ=", "t")
                .unwrap_err()
                .to_string()
                .contains("32 bytes")
        );
    }

    #[test]
    fn debug_shows_ids_only() {
        let ring = Keyring::parse(&STANDARD.encode([7u8; 32]), "t").unwrap();
        let debug = format!("{ring:?}");
        assert!(debug.contains("key_ids"));
        assert!(!debug.contains(&STANDARD.encode([7u8; 32])));
    }

    #[test]
    fn group_readable_key_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.key");
        std::fs::write(&path, STANDARD.encode([1u8; 32])).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = Keyring::load_file(&path).unwrap_err().to_string();
        assert!(error.contains("chmod 600"), "{error}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Keyring::load_file(&path).is_ok());
    }
}
