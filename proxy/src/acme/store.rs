//! `acme.json` in Traefik's layout, and the lock files that let several drovers share it.
//!
//! ```json
//! { "<resolver>": {
//!     "Account": { "Email": "…", "Registration": { "body": {…}, "uri": "https://…/acct/1" },
//!                  "PrivateKey": "<base64 DER>", "KeyType": "4096" },
//!     "Certificates": [ { "domain": { "main": "a.test", "sans": ["b.test"] },
//!                         "certificate": "<base64 PEM chain>", "key": "<base64 PEM>",
//!                         "Store": "default" } ] } }
//! ```
//!
//! Several resolvers share one file; each writes only its own entry and keeps the others'
//! (and any keys it does not know) as they were. The file must be mode 0600 (a readable file
//! leaks every private key): a group- or world-readable one is refused, never "fixed". Writes
//! are atomic (a temporary file in the same directory, synced, renamed over), made under a
//! short write lock so two instances never lose each other's entries.
//!
//! # Locks
//!
//! A lock is a file created with `O_EXCL` beside the storage file; its holder refreshes its
//! modification time while it works, so a lock whose time is older than the resolver's
//! `lockTimeout` belongs to an instance that died and is taken over. This works on local disks
//! and on NFS (`O_EXCL` is atomic on NFSv3+), where inotify does not: the others poll.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// One resolver's entry.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ResolverEntry {
    /// The ACME account.
    #[serde(rename = "Account", default, skip_serializing_if = "Option::is_none")]
    pub account: Option<StoredAccount>,
    /// Issued certificates.
    #[serde(rename = "Certificates", default, deserialize_with = "null_as_empty")]
    pub certificates: Vec<StoredCertificate>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Vec<StoredCertificate>, D::Error> {
    Ok(Option::<Vec<StoredCertificate>>::deserialize(de)?.unwrap_or_default())
}

/// `Account`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct StoredAccount {
    /// Contact address.
    #[serde(rename = "Email", default)]
    pub email: String,
    /// The server's registration: `uri` is the account URL.
    #[serde(rename = "Registration", default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<Registration>,
    /// The account key, DER (PKCS#8 for drover's ECDSA keys; PKCS#1 RSA in Traefik's).
    #[serde(rename = "PrivateKey", with = "base64_bytes", default)]
    pub private_key: Vec<u8>,
    /// The certificates' key type (Traefik writes it here).
    #[serde(rename = "KeyType", default)]
    pub key_type: String,
    /// The directory the account belongs to (drover; Traefik ignores unknown keys).
    #[serde(rename = "CaServer", default, skip_serializing_if = "String::is_empty")]
    pub ca_server: String,
}

/// `Registration`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Registration {
    /// The account object as the server returned it.
    #[serde(default)]
    pub body: Value,
    /// The account URL.
    #[serde(default)]
    pub uri: String,
}

/// One certificate.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct StoredCertificate {
    /// The names it was ordered for.
    pub domain: StoredDomain,
    /// The PEM chain.
    #[serde(with = "base64_bytes")]
    pub certificate: Vec<u8>,
    /// The PEM private key.
    #[serde(with = "base64_bytes")]
    pub key: Vec<u8>,
    /// Traefik's TLS store name.
    #[serde(rename = "Store", default = "default_store")]
    pub store: String,
}

fn default_store() -> String {
    "default".into()
}

/// `domain`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
pub struct StoredDomain {
    /// The first name.
    pub main: String,
    /// The others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sans: Vec<String>,
}

impl StoredDomain {
    /// Every name, `main` first.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.main.as_str()).chain(self.sans.iter().map(String::as_str))
    }
}

mod base64_bytes {
    use super::B64;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<u8>, D::Error> {
        let text = Option::<String>::deserialize(de)?.unwrap_or_default();
        B64.decode(text.trim()).map_err(serde::de::Error::custom)
    }
}

/// The storage file.
#[derive(Clone, Debug)]
pub struct Storage {
    path: PathBuf,
}

/// The whole file: resolver name → its entry, as JSON (other resolvers' entries are kept as
/// they were read).
type Document = Map<String, Value>;

impl Storage {
    /// The file at `path` (not read yet).
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks the file's mode: a storage file others can read is refused. A missing file is
    /// fine (it is created 0600).
    pub fn check_mode(&self) -> Result<(), String> {
        match fs::metadata(&self.path) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => Err(format!(
                "{}: mode {:04o} lets others read the private keys in it; run `chmod 600 {}` (drover never widens or fixes it)",
                self.path.display(),
                meta.permissions().mode() & 0o7777,
                self.path.display()
            )),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("{}: {e}", self.path.display())),
        }
    }

    /// The file's modification time and size, to notice another instance's write cheaply.
    pub fn stamp(&self) -> Option<(SystemTime, u64)> {
        let meta = fs::metadata(&self.path).ok()?;
        Some((meta.modified().ok()?, meta.size()))
    }

    fn read_document(&self) -> Result<Document, String> {
        self.check_mode()?;
        let text = match fs::read(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Document::new()),
            Err(e) => return Err(format!("{}: cannot read: {e}", self.path.display())),
        };
        if text.iter().all(u8::is_ascii_whitespace) {
            return Ok(Document::new());
        }
        serde_json::from_slice(&text).map_err(|e| format!("{}: not an acme.json document: {e}", self.path.display()))
    }

    /// `resolver`'s entry (empty when the file or the entry does not exist yet).
    pub fn read(&self, resolver: &str) -> Result<ResolverEntry, String> {
        let document = self.read_document()?;
        match document.get(resolver) {
            None | Some(Value::Null) => Ok(ResolverEntry::default()),
            Some(entry) => {
                serde_json::from_value(entry.clone()).map_err(|e| format!("{}: resolver `{resolver}`: {e}", self.path.display()))
            }
        }
    }

    /// Changes `resolver`'s entry with `change`, under the write lock, keeping everything else
    /// in the file. Returns the entry as written.
    pub fn update(&self, resolver: &str, lock_timeout: Duration, change: impl FnOnce(&mut ResolverEntry)) -> Result<ResolverEntry, String> {
        let lock_path = sibling(&self.path, ".lock");
        let deadline = std::time::Instant::now() + lock_timeout.max(Duration::from_secs(5));
        let lock = loop {
            match Lock::try_take(&lock_path, "write", lock_timeout)? {
                Some(lock) => break lock,
                None if std::time::Instant::now() > deadline => {
                    return Err(format!("{}: held by another instance for too long", lock_path.display()))
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let mut document = self.read_document()?;
        let mut entry: ResolverEntry = match document.get(resolver) {
            None | Some(Value::Null) => ResolverEntry::default(),
            Some(entry) => {
                serde_json::from_value(entry.clone()).map_err(|e| format!("{}: resolver `{resolver}`: {e}", self.path.display()))?
            }
        };
        change(&mut entry);
        document.insert(
            resolver.to_string(),
            serde_json::to_value(&entry).map_err(|e| format!("cannot encode acme.json: {e}"))?,
        );
        let text = serde_json::to_vec_pretty(&document).map_err(|e| format!("cannot encode acme.json: {e}"))?;
        self.write_atomically(&text)?;
        drop(lock);
        Ok(entry)
    }

    fn write_atomically(&self, text: &[u8]) -> Result<(), String> {
        let temporary = sibling(&self.path, &format!(".tmp.{}.{}", std::process::id(), fastrand::u64(..)));
        let result = (|| {
            let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temporary)?;
            file.write_all(text)?;
            file.sync_all()?;
            fs::rename(&temporary, &self.path)?;
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                // The rename itself is durable once the directory is synced.
                let _ = fs::File::open(dir).and_then(|d| d.sync_all());
            }
            Ok::<(), std::io::Error>(())
        })();
        result.map_err(|e| {
            let _ = fs::remove_file(&temporary);
            format!("{}: cannot write: {e}", self.path.display())
        })
    }

    /// The lock for ordering `main` (with its other names) under `resolver`.
    pub fn order_lock_path(&self, resolver: &str, main: &str) -> PathBuf {
        let safe: String = main
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        sibling(&self.path, &format!(".{resolver}.{safe}.lock"))
    }
}

/// `path` with `suffix` added to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// A held lock file; removed when dropped.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
}

impl Lock {
    /// Takes the lock at `path` if it is free or stale (untouched for `stale_after`);
    /// `Ok(None)` while another holder has it.
    pub fn try_take(path: &Path, purpose: &str, stale_after: Duration) -> Result<Option<Self>, String> {
        for _ in 0..2 {
            match OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
                Ok(mut file) => {
                    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
                    let _ = writeln!(file, "{purpose} by pid {} on {}", std::process::id(), host.trim());
                    return Ok(Some(Self { path: path.to_path_buf() }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let age = fs::metadata(path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| SystemTime::now().duration_since(t).ok());
                    match age {
                        Some(age) if age > stale_after => {
                            tracing::warn!(
                                lock = %path.display(),
                                "a lock untouched for {}s belongs to an instance that stopped; taking it over",
                                age.as_secs()
                            );
                            let _ = fs::remove_file(path);
                        }
                        _ => return Ok(None),
                    }
                }
                Err(e) => return Err(format!("{}: cannot create the lock: {e}", path.display())),
            }
        }
        Ok(None)
    }

    /// Tells the others the holder is alive.
    pub fn refresh(&self) {
        if let Ok(file) = OpenOptions::new().append(true).open(&self.path) {
            let _ = file.set_modified(SystemTime::now());
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Every resolver's entry, as another reader of the file sees them.
    fn read_all(path: &Path) -> Result<BTreeMap<String, ResolverEntry>, String> {
        let storage = Storage::new(path.to_path_buf());
        let document = storage.read_document()?;
        document
            .into_iter()
            .map(|(name, value)| {
                let entry = serde_json::from_value(value).map_err(|e| format!("{}: resolver `{name}`: {e}", path.display()))?;
                Ok((name, entry))
            })
            .collect()
    }

    fn private_dir() -> tempfile::TempDir {
        tempfile::tempdir().expect("temporary directory")
    }

    #[test]
    fn traefiks_layout_is_read_as_it_is_and_other_resolvers_are_kept() {
        let dir = private_dir();
        let path = dir.path().join("acme.json");
        let traefik = r#"{
  "le": {
    "Account": {
      "Email": "ops@example.com",
      "Registration": { "body": { "status": "valid", "contact": ["mailto:ops@example.com"] }, "uri": "https://acme.test/acct/7" },
      "PrivateKey": "AQID",
      "KeyType": "4096"
    },
    "Certificates": [
      { "domain": { "main": "a.test", "sans": ["b.test"] }, "certificate": "Q0VSVA==", "key": "S0VZ", "Store": "default" }
    ]
  },
  "other": { "Account": null, "Certificates": null }
}"#;
        fs::write(&path, traefik).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        let storage = Storage::new(path.clone());
        let le = storage.read("le").expect("reads");
        let account = le.account.as_ref().expect("account");
        assert_eq!(account.email, "ops@example.com");
        assert_eq!(account.registration.as_ref().expect("registration").uri, "https://acme.test/acct/7");
        assert_eq!(account.private_key, vec![1, 2, 3]);
        assert_eq!(le.certificates[0].domain.names().collect::<Vec<_>>(), ["a.test", "b.test"]);
        assert_eq!(le.certificates[0].certificate, b"CERT");
        assert!(storage.read("other").expect("null entries read").certificates.is_empty());

        storage
            .update("mine", Duration::from_secs(5), |entry| {
                entry.certificates.push(StoredCertificate {
                    domain: StoredDomain {
                        main: "c.test".into(),
                        sans: vec![],
                    },
                    certificate: b"C".to_vec(),
                    key: b"K".to_vec(),
                    store: default_store(),
                })
            })
            .expect("writes");
        let all = read_all(&path).expect("reads back");
        assert_eq!(all["le"].certificates.len(), 1, "another resolver's entry is kept");
        assert_eq!(all["mine"].certificates[0].domain.main, "c.test");
        let mode = fs::metadata(&path).expect("exists").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!sibling(&path, ".lock").exists(), "the write lock is released");
    }

    #[test]
    fn a_readable_storage_file_is_refused_with_the_fix() {
        let dir = private_dir();
        let path = dir.path().join("acme.json");
        fs::write(&path, "{}").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let why = Storage::new(path).read("le").expect_err("refused");
        assert!(why.contains("mode 0644") && why.contains("chmod 600"), "{why}");
    }

    #[test]
    fn a_lock_is_exclusive_until_dropped_and_a_stale_one_is_taken_over() {
        let dir = private_dir();
        let path = dir.path().join("x.lock");
        let held = Lock::try_take(&path, "order", Duration::from_secs(60)).expect("ok").expect("free");
        assert!(Lock::try_take(&path, "order", Duration::from_secs(60)).expect("ok").is_none());
        drop(held);
        assert!(!path.exists());
        let stale = Lock::try_take(&path, "order", Duration::from_secs(60)).expect("ok").expect("free");
        std::mem::forget(stale); // as if its instance died
        let old = SystemTime::now() - Duration::from_secs(600);
        fs::File::options()
            .append(true)
            .open(&path)
            .expect("open")
            .set_modified(old)
            .expect("age it");
        assert!(Lock::try_take(&path, "order", Duration::from_secs(60)).expect("ok").is_some());
    }
}
