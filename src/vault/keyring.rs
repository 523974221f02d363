//! [`Keyring`]: the vault's AES-256 keys, where they come from and how they are rotated.
//!
//! Key file format (DESIGN 2.2 `[vault].key_file`): one key per line, `<id> <base64 of 32
//! bytes>` with `id` in 1..=255; the **last** line is the current key, used for every new seal;
//! the others only open records sealed before a rotation. A file holding a single bare base64
//! line (what `head -c32 /dev/urandom | base64` prints) is key id 1. Blank lines and lines
//! starting with `#` are ignored. The file must not be readable by group or others.
//!
//! Rotation (`portcullis vault rotate-key`, see [`super::SledStore::rotate_key`]) is crash-safe
//! because the old key stays in the file until no record needs it:
//!
//! 1. [`Keyring::rotate`] appends a new `<id> <base64>` line and fsyncs. From now on new seals
//!    use it; a crash here leaves a file with both keys, which opens every record.
//! 2. [`super::SledStore::reseal_all`] re-seals every record under the new key and flushes. A
//!    crash part way leaves records under both keys, and the file still holds both.
//! 3. [`Keyring::retire_old_keys`] writes a file holding only the new key to a temporary file
//!    (mode 0600, fsync), renames it over the key file and fsyncs the folder. `rename` is
//!    atomic, so the key file is either the two-key file or the one-key file, never a mix.
//!
//! Running the command again after a crash at any step simply rotates once more.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use zeroize::Zeroizing;

use super::VaultError;
use super::seal::{AeadKey, KEY_LEN, random_key_material};

/// Standard alphabet; accepts keys with or without `=` padding.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The vault's keys: one current key that seals, and any older ones still needed to open
/// records sealed before a rotation. `Debug` shows key ids only.
pub struct Keyring {
    /// Keys kept only to open records sealed before a rotation, oldest first.
    older: Vec<KeyEntry>,
    /// The key that seals.
    current: KeyEntry,
}

struct KeyEntry {
    id: u8,
    material: Zeroizing<[u8; KEY_LEN]>,
    aead: AeadKey,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("key_ids", &self.key_ids())
            .field("current", &self.current_key_id())
            .finish_non_exhaustive()
    }
}

/// Where a key came from, for error messages.
enum Source<'a> {
    File(&'a Path),
    Env,
}

impl Source<'_> {
    fn error(&self, reason: String) -> VaultError {
        match self {
            Source::File(path) => VaultError::KeyFileFormat {
                path: path.to_path_buf(),
                reason,
            },
            Source::Env => VaultError::EnvKey { reason },
        }
    }
}

impl Keyring {
    /// Reads a key file (format in the module docs). Refuses a file that group or others may
    /// read (`mode & 0o077 != 0`) with an error naming the file and `chmod 600`; a missing file
    /// is [`VaultError::KeyFileMissing`], whose message says how to create one.
    pub fn load_file(path: &Path) -> Result<Keyring, VaultError> {
        let mut file = File::open(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => VaultError::KeyFileMissing {
                path: path.to_path_buf(),
            },
            _ => io_error(path, source),
        })?;
        check_private(path, &file)?;
        let mut text = Zeroizing::new(String::new());
        file.read_to_string(&mut text)
            .map_err(|source| io_error(path, source))?;
        Keyring::parse(&text, &Source::File(path))
    }

    /// Reads `PORTCULLIS_VAULT_KEY`: the base64 of 32 bytes (key id 1). The key-file syntax of
    /// a single `<id> <base64>` line is accepted too, for a vault whose key was rotated.
    pub fn from_env_base64(value: &str) -> Result<Keyring, VaultError> {
        Keyring::parse(value, &Source::Env)
    }

    /// Creates a new key file with one random key (id 1), mode 0600, and the folders above it.
    /// Used by `--dev`; refuses to overwrite an existing file.
    pub fn generate_file(path: &Path) -> Result<Keyring, VaultError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            create_private_dir(parent)?;
        }
        let material = random_key_material().map_err(VaultError::seal)?;
        let mut line = Zeroizing::new(STANDARD.encode(material.as_ref()));
        line.push('\n');
        write_private_new(path, line.as_bytes())?;
        sync_parent(path)?;
        Keyring::from_entries(vec![(1, material)])
    }

    /// A keyring with one random key that lives only in memory (tests, throwaway stores).
    pub fn generate() -> Result<Keyring, VaultError> {
        let material = random_key_material().map_err(VaultError::seal)?;
        Keyring::from_entries(vec![(1, material)])
    }

    /// The id of the key that seals new records.
    pub fn current_key_id(&self) -> u8 {
        self.current.id
    }

    /// Every key id held, oldest first; the last is the current one.
    pub fn key_ids(&self) -> Vec<u8> {
        self.entries().map(|k| k.id).collect()
    }

    /// Rotation step 1 (module docs): appends a fresh key to `path`, fsyncs, and makes it the
    /// current key. `path` must be the file this keyring was loaded from (checked). Returns
    /// the new key id.
    pub fn rotate(&mut self, path: &Path) -> Result<u8, VaultError> {
        self.check_file_matches(path)?;
        let id = self.next_id()?;
        let material = random_key_material().map_err(VaultError::seal)?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(path)
            .map_err(|source| io_error(path, source))?;
        let mut existing = Zeroizing::new(Vec::new());
        file.read_to_end(&mut existing)
            .map_err(|source| io_error(path, source))?;
        let mut line = Zeroizing::new(String::new());
        if existing.last().is_some_and(|b| *b != b'\n') {
            line.push('\n');
        }
        line.push_str(&format!("{id} "));
        line.push_str(&STANDARD.encode(material.as_ref()));
        line.push('\n');
        file.write_all(line.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|source| io_error(path, source))?;
        let aead = AeadKey::new(&material).map_err(VaultError::seal)?;
        let previous = std::mem::replace(&mut self.current, KeyEntry { id, material, aead });
        self.older.push(previous);
        Ok(id)
    }

    /// Rotation step 3 (module docs): atomically replaces `path` with a file holding only the
    /// current key, then forgets the older keys. Call it only once no record needs them
    /// ([`super::SledStore::rotate_key`] does).
    pub fn retire_old_keys(&mut self, path: &Path) -> Result<(), VaultError> {
        self.check_file_matches(path)?;
        let mut text = Zeroizing::new(format!("{} ", self.current.id));
        text.push_str(&STANDARD.encode(self.current.material.as_ref()));
        text.push('\n');
        let mut temp_name = path.file_name().unwrap_or_default().to_os_string();
        temp_name.push(".rotate-tmp");
        let temp = path.with_file_name(temp_name);
        match std::fs::remove_file(&temp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_error(&temp, e)),
            _ => {}
        }
        write_private_new(&temp, text.as_bytes())?;
        std::fs::rename(&temp, path).map_err(|source| io_error(path, source))?;
        sync_parent(path)?;
        self.older.clear();
        Ok(())
    }

    /// The current key and its id.
    pub(super) fn current(&self) -> (u8, &AeadKey) {
        (self.current.id, &self.current.aead)
    }

    /// The key with this id, if held.
    pub(super) fn get(&self, id: u8) -> Option<&AeadKey> {
        self.entries().find(|k| k.id == id).map(|k| &k.aead)
    }

    fn entries(&self) -> impl Iterator<Item = &KeyEntry> {
        self.older.iter().chain(std::iter::once(&self.current))
    }

    /// Builds a keyring from `(id, material)` pairs, the last one current.
    fn from_entries(
        mut entries: Vec<(u8, Zeroizing<[u8; KEY_LEN]>)>,
    ) -> Result<Keyring, VaultError> {
        let entry = |(id, material): (u8, Zeroizing<[u8; KEY_LEN]>)| {
            let aead = AeadKey::new(&material).map_err(VaultError::seal)?;
            Ok::<_, VaultError>(KeyEntry { id, material, aead })
        };
        let Some(current) = entries.pop() else {
            return Err(VaultError::seal("no key"));
        };
        Ok(Keyring {
            current: entry(current)?,
            older: entries.into_iter().map(entry).collect::<Result<_, _>>()?,
        })
    }

    /// Parses the key-file syntax. Error messages name lines, never their content.
    fn parse(text: &str, source: &Source<'_>) -> Result<Keyring, VaultError> {
        let mut entries: Vec<(u8, Zeroizing<[u8; KEY_LEN]>)> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (id, encoded) = match fields.as_slice() {
                [encoded] if entries.is_empty() => (1, *encoded),
                [_] => {
                    return Err(source.error(format!(
                        "line {number}: only the first key may omit its id; write `<id> <base64>`"
                    )));
                }
                [id, encoded] => match id.parse::<u8>() {
                    Ok(id) if id >= 1 => (id, *encoded),
                    _ => {
                        return Err(source.error(format!(
                            "line {number}: the key id must be a number from 1 to 255"
                        )));
                    }
                },
                _ => {
                    return Err(
                        source.error(format!("line {number}: expected `<id> <base64 key>`"))
                    );
                }
            };
            if entries.iter().any(|(seen, _)| *seen == id) {
                return Err(source.error(format!("line {number}: key id {id} appears twice")));
            }
            let material = decode_key(encoded).ok_or_else(|| {
                source.error(format!(
                    "line {number}: the key is not the base64 of exactly 32 bytes"
                ))
            })?;
            entries.push((id, material));
        }
        if entries.is_empty() {
            return Err(source
                .error("no key found; it should hold the base64 of 32 random bytes".to_string()));
        }
        Keyring::from_entries(entries)
    }

    /// The id for a new key: one above the current, wrapping within 1..=255, skipping ids held.
    fn next_id(&self) -> Result<u8, VaultError> {
        let mut candidate = self.current_key_id();
        for _ in 0..255 {
            candidate = if candidate == u8::MAX {
                1
            } else {
                candidate + 1
            };
            if self.get(candidate).is_none() {
                return Ok(candidate);
            }
        }
        Err(VaultError::Rotation(
            "all 255 key ids are in use; finish the previous rotation first".to_string(),
        ))
    }

    /// Refuses to edit a key file that does not hold exactly this keyring's keys (a keyring
    /// from `PORTCULLIS_VAULT_KEY`, or the wrong file).
    fn check_file_matches(&self, path: &Path) -> Result<(), VaultError> {
        let on_disk = Keyring::load_file(path)?;
        let same = on_disk.older.len() == self.older.len()
            && on_disk
                .entries()
                .zip(self.entries())
                .all(|(a, b)| a.id == b.id && a.material == b.material);
        if same {
            Ok(())
        } else {
            Err(VaultError::Rotation(format!(
                "{} does not hold the keys this vault was opened with",
                path.display()
            )))
        }
    }
}

fn decode_key(encoded: &str) -> Option<Zeroizing<[u8; KEY_LEN]>> {
    let mut bytes = Zeroizing::new(Vec::with_capacity(KEY_LEN + 3));
    LENIENT.decode_vec(encoded, &mut bytes).ok()?;
    let array: [u8; KEY_LEN] = bytes.as_slice().try_into().ok()?;
    Some(Zeroizing::new(array))
}

fn io_error(path: &Path, source: std::io::Error) -> VaultError {
    VaultError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Refuses a key file that group or others may read or write.
#[cfg(unix)]
fn check_private(path: &Path, file: &File) -> Result<(), VaultError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = file
        .metadata()
        .map_err(|source| io_error(path, source))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(VaultError::KeyFilePermissions {
            path: path.to_path_buf(),
            mode: mode & 0o777,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _file: &File) -> Result<(), VaultError> {
    Ok(())
}

/// Creates `path` (which must not exist) readable by the owner only, writes and fsyncs it.
fn write_private_new(path: &Path, bytes: &[u8]) -> Result<(), VaultError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|s| io_error(path, s))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|s| io_error(path, s))
}

/// Creates a folder (and its parents) as 0700 when missing; leaves existing ones alone.
pub(super) fn create_private_dir(path: &Path) -> Result<(), VaultError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path).map_err(|s| io_error(path, s))
}

/// Makes a create or rename in the folder durable (POSIX: the directory entry is data of
/// the directory, not of the file).
fn sync_parent(path: &Path) -> Result<(), VaultError> {
    #[cfg(unix)]
    {
        let parent: PathBuf = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        File::open(&parent)
            .and_then(|dir| dir.sync_all())
            .map_err(|s| io_error(&parent, s))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}
