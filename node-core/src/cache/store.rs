//! The cache's hidden chunk store: one slab file per (movie, chunk index) under names that
//! say nothing of the movie, each slot holding one segment's chunk encrypted with ChaCha20
//! under a key kept outside the store. Nothing in it plays as it stands; what is present is
//! known from memory and rebuilt at start by decrypting and verifying every slot. Each
//! movie's folder also keeps its id and manifest, encrypted alike, so a cache that starts
//! again finds what it held without asking anyone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write as _};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chacha20::ChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use rivulet_tracker_client::Holding;

use crate::format::Manifest;

/// Name of the store's folder inside the cache folder.
pub const STORE_DIR: &str = ".rivulet-store";

/// A movie folder's encrypted id and manifest.
const META_FILE: &str = "meta";

/// Why the store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cache folder {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the store key {0} must not live inside the cache folder")]
    KeyBesideChunks(PathBuf),
    #[error("the store key {0} is not a 32-byte key")]
    BadKey(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Loads the 32-byte store key at `path`, creating it (mode 0600) on first use.
pub fn load_or_create_key(path: &Path) -> Result<[u8; 32], StoreError> {
    match std::fs::read(path) {
        Ok(bytes) => bytes
            .try_into()
            .map_err(|_| StoreError::BadKey(path.to_owned())),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            let mut key = [0u8; 32];
            rand::fill(&mut key);
            let temp = path.with_extension(format!("tmp{}", std::process::id()));
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temp)
                .map_err(io(&temp))?;
            f.write_all(&key).map_err(io(&temp))?;
            f.sync_all().map_err(io(&temp))?;
            // Linked into place: of two first starts, one key wins and both use it.
            let linked = std::fs::hard_link(&temp, path);
            let _ = std::fs::remove_file(&temp);
            match linked {
                Ok(()) => Ok(key),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => load_or_create_key(path),
                Err(e) => Err(io(path)(e)),
            }
        }
        Err(e) => Err(io(path)(e)),
    }
}

/// One (movie, index) slab: its file and which segments it holds.
#[derive(Debug)]
struct Slab {
    file: Arc<File>,
    path: PathBuf,
    present: Vec<bool>,
    count: u32,
}

#[derive(Debug, Default)]
struct State {
    manifests: HashMap<String, Arc<Manifest>>,
    slabs: BTreeMap<(String, u16), Slab>,
    used: u64,
}

/// The chunk store of one cache.
#[derive(Debug)]
pub struct ChunkStore {
    root: PathBuf,
    key: [u8; 32],
    state: Mutex<State>,
}

impl ChunkStore {
    /// Opens (creating) the store in `dir`, encrypted with the key at `key_path`, which must
    /// be outside `dir`.
    pub fn open(dir: &Path, key_path: &Path) -> Result<ChunkStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let root = dir.join(STORE_DIR);
        std::fs::create_dir_all(&root).map_err(io(&root))?;
        let dir_real = dir.canonicalize().map_err(io(dir))?;
        let key_parent = key_path.parent().unwrap_or(Path::new("."));
        if let Ok(parent) = key_parent.canonicalize()
            && parent.starts_with(&dir_real)
        {
            return Err(StoreError::KeyBesideChunks(key_path.to_owned()));
        }
        // Fail now, not on the first chunk, if the folder is not writable.
        let probe = root.join(".probe");
        std::fs::write(&probe, b"").map_err(io(&root))?;
        let _ = std::fs::remove_file(&probe);
        Ok(ChunkStore {
            root,
            key: load_or_create_key(key_path)?,
            state: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A movie's folder name: a keyed hash of its id, so names do not tell what is stored.
    fn movie_dir(&self, video: &str) -> PathBuf {
        let name = blake3::keyed_hash(&self.key, video.as_bytes()).to_hex();
        self.root.join(&name[..24])
    }

    fn cipher(&self, video: &str, segment: u32, index: u16) -> ChaCha20 {
        let mut nonce_input = Vec::with_capacity(video.len() + 6);
        nonce_input.extend_from_slice(video.as_bytes());
        nonce_input.extend_from_slice(&segment.to_le_bytes());
        nonce_input.extend_from_slice(&index.to_le_bytes());
        let derived = blake3::keyed_hash(&self.key, &nonce_input);
        let nonce: [u8; 12] = derived.as_bytes()[..12].try_into().unwrap_or([0; 12]);
        ChaCha20::new(&self.key.into(), &nonce.into())
    }

    /// Bytes of chunks held.
    pub fn used(&self) -> u64 {
        self.lock().used
    }

    /// The manifest of a movie the store knows.
    pub fn manifest(&self, video: &str) -> Option<Arc<Manifest>> {
        self.lock().manifests.get(video).cloned()
    }

    /// Makes the store hold exactly `target` (movie → indices; manifests for each): slabs
    /// no longer wanted are deleted at once, new ones are opened, and slots already on disk
    /// are kept if they decrypt to a verified chunk.
    pub fn retarget(
        &self,
        target: &BTreeMap<String, BTreeSet<u16>>,
        manifests: &HashMap<String, Arc<Manifest>>,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        let unwanted: Vec<(String, u16)> = state
            .slabs
            .keys()
            .filter(|(v, i)| !target.get(v).is_some_and(|set| set.contains(i)))
            .cloned()
            .collect();
        for key in unwanted {
            if let Some(slab) = state.slabs.remove(&key) {
                let _ = std::fs::remove_file(&slab.path);
                if let Some(m) = state.manifests.get(&key.0) {
                    state.used -= held_bytes(m, &slab);
                }
            }
        }
        state.manifests.retain(|v, _| target.contains_key(v));
        // Movie folders no longer placed go entirely (also those of earlier runs).
        let wanted_dirs: BTreeSet<PathBuf> = target.keys().map(|v| self.movie_dir(v)).collect();
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for entry in entries.flatten() {
                if !wanted_dirs.contains(&entry.path()) {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        for (video, indices) in target {
            let Some(manifest) = manifests.get(video) else {
                continue;
            };
            state.manifests.insert(video.clone(), manifest.clone());
            let dir = self.movie_dir(video);
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            self.write_meta(&dir, video, manifest)?;
            for &index in indices {
                if index >= manifest.n || state.slabs.contains_key(&(video.clone(), index)) {
                    continue;
                }
                let path = dir.join(format!("{index:02x}.slab"));
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&path)
                    .map_err(io(&path))?;
                let count = manifest.segment_count();
                let mut slab = Slab {
                    file: Arc::new(file),
                    path,
                    present: vec![false; count as usize],
                    count: 0,
                };
                self.recover(video, index, manifest, &mut slab);
                state.used += held_bytes(manifest, &slab);
                state.slabs.insert((video.clone(), index), slab);
            }
        }
        Ok(())
    }

    /// What the store held when it last ran, found on disk: (movie → indices, manifests),
    /// from each movie folder's encrypted id and manifest. Folders without a readable one
    /// are left out (and go at the next [`ChunkStore::retarget`]). Pass the result to
    /// `retarget` to take it back, keeping the slots that still verify.
    #[allow(clippy::type_complexity)]
    pub fn found_on_disk(
        &self,
    ) -> (
        BTreeMap<String, BTreeSet<u16>>,
        HashMap<String, Arc<Manifest>>,
    ) {
        let (mut target, mut manifests) = (BTreeMap::new(), HashMap::new());
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return (target, manifests);
        };
        for dir in entries.flatten().map(|e| e.path()) {
            let Some((video, manifest)) = self.read_meta(&dir) else {
                continue;
            };
            let indices: BTreeSet<u16> = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    let index = u16::from_str_radix(name.strip_suffix(".slab")?, 16).ok()?;
                    (index < manifest.n).then_some(index)
                })
                .collect();
            if !indices.is_empty() {
                target.insert(video.clone(), indices);
                manifests.insert(video, Arc::new(manifest));
            }
        }
        (target, manifests)
    }

    /// The cipher of a movie folder's meta file, keyed by the folder's name (the movie's
    /// id is what it hides).
    fn meta_cipher(&self, dir: &Path) -> ChaCha20 {
        let name = dir.file_name().map(|n| n.as_encoded_bytes()).unwrap_or(b"");
        let derived = blake3::keyed_hash(&self.key, &[b"meta:".as_slice(), name].concat());
        let nonce: [u8; 12] = derived.as_bytes()[..12].try_into().unwrap_or([0; 12]);
        ChaCha20::new(&self.key.into(), &nonce.into())
    }

    /// Writes `dir`'s meta file (the movie id, a newline, the manifest) once.
    fn write_meta(&self, dir: &Path, video: &str, manifest: &Manifest) -> Result<(), StoreError> {
        let path = dir.join(META_FILE);
        if path.exists() {
            return Ok(());
        }
        let mut bytes = format!("{video}\n").into_bytes();
        bytes.extend_from_slice(&manifest.to_json());
        self.meta_cipher(dir).apply_keystream(&mut bytes);
        let staging = dir.join(format!("{META_FILE}.new"));
        std::fs::write(&staging, &bytes).map_err(io(&staging))?;
        std::fs::rename(&staging, &path).map_err(io(&path))
    }

    /// Reads `dir`'s meta file: the movie and its manifest, if it decrypts to a manifest
    /// of a movie whose folder this is.
    fn read_meta(&self, dir: &Path) -> Option<(String, Manifest)> {
        let mut bytes = std::fs::read(dir.join(META_FILE)).ok()?;
        self.meta_cipher(dir).apply_keystream(&mut bytes);
        let text = String::from_utf8(bytes).ok()?;
        let (video, manifest) = text.split_once('\n')?;
        if self.movie_dir(video) != dir {
            return None;
        }
        Some((
            video.to_owned(),
            Manifest::from_json(manifest.as_bytes()).ok()?,
        ))
    }

    /// Marks the slots of a slab found on disk that still hold their verified chunk.
    fn recover(&self, video: &str, index: u16, manifest: &Manifest, slab: &mut Slab) {
        let len = slab.file.metadata().map_or(0, |m| m.len());
        let slot = manifest.wire_len(0) as u64;
        for segment in 0..manifest.segment_count() {
            let at = u64::from(segment) * slot;
            let wire_len = manifest.wire_len(segment);
            if at + wire_len as u64 > len {
                break;
            }
            let mut wire = vec![0u8; wire_len];
            if slab.file.read_exact_at(&mut wire, at).is_err() {
                break;
            }
            self.cipher(video, segment, index)
                .apply_keystream(&mut wire);
            if manifest.verify_chunk(segment, index, &wire).is_ok() {
                slab.present[segment as usize] = true;
                slab.count += 1;
            }
        }
    }

    /// What is still to fetch: (movie, segment, index), segment by segment across indices.
    pub fn missing(&self) -> Vec<(String, u32, u16)> {
        let state = self.lock();
        let mut out = Vec::new();
        for ((video, index), slab) in &state.slabs {
            for (segment, present) in slab.present.iter().enumerate() {
                if !present {
                    out.push((video.clone(), segment as u32, *index));
                }
            }
        }
        out.sort_by(|a, b| (a.1, &a.0, a.2).cmp(&(b.1, &b.0, b.2)));
        out
    }

    /// Whether (movie, index) is wanted and its `segment` slot still empty.
    pub fn wants(&self, video: &str, segment: u32, index: u16) -> bool {
        self.lock()
            .slabs
            .get(&(video.to_owned(), index))
            .is_some_and(|s| !s.present.get(segment as usize).copied().unwrap_or(true))
    }

    /// Stores a verified chunk in wire form. Returns false when the slab is no longer
    /// wanted or the chunk does not fit in `budget` bytes.
    pub fn put(
        &self,
        video: &str,
        segment: u32,
        index: u16,
        wire: &[u8],
        budget: u64,
    ) -> Result<bool, StoreError> {
        let (file, path, slot, size) = {
            let state = self.lock();
            let (Some(slab), Some(manifest)) = (
                state.slabs.get(&(video.to_owned(), index)),
                state.manifests.get(video),
            ) else {
                return Ok(false);
            };
            let size = manifest.wire_len(segment) as u64;
            if state.used + size > budget {
                return Ok(false);
            }
            (
                slab.file.clone(),
                slab.path.clone(),
                manifest.wire_len(0) as u64,
                size,
            )
        };
        let mut sealed = wire.to_vec();
        self.cipher(video, segment, index)
            .apply_keystream(&mut sealed);
        file.write_all_at(&sealed, u64::from(segment) * slot)
            .map_err(io(&path))?;
        let mut state = self.lock();
        // The slab may have been evicted meanwhile; then the write went to a deleted file.
        if let Some(slab) = state.slabs.get_mut(&(video.to_owned(), index))
            && Arc::ptr_eq(&slab.file, &file)
            && !slab.present[segment as usize]
        {
            slab.present[segment as usize] = true;
            slab.count += 1;
            state.used += size;
        }
        Ok(true)
    }

    /// Chunk `index` of `segment` in wire form, if held.
    pub fn get(&self, video: &str, segment: u32, index: u16) -> Option<Vec<u8>> {
        let (file, slot, len) = {
            let state = self.lock();
            let slab = state.slabs.get(&(video.to_owned(), index))?;
            if !slab.present.get(segment as usize).copied().unwrap_or(false) {
                return None;
            }
            let manifest = state.manifests.get(video)?;
            (
                slab.file.clone(),
                manifest.wire_len(0) as u64,
                manifest.wire_len(segment),
            )
        };
        let mut wire = vec![0u8; len];
        file.read_exact_at(&mut wire, u64::from(segment) * slot)
            .ok()?;
        self.cipher(video, segment, index)
            .apply_keystream(&mut wire);
        Some(wire)
    }

    /// Indices held complete (every segment), per movie: what the tracker may offer.
    pub fn holdings(&self) -> Vec<Holding> {
        let state = self.lock();
        let mut by_movie: BTreeMap<&str, Vec<u16>> = BTreeMap::new();
        for ((video, index), slab) in &state.slabs {
            if slab.count as usize == slab.present.len() {
                by_movie.entry(video).or_default().push(*index);
            }
        }
        by_movie
            .into_iter()
            .map(|(video, indices)| Holding {
                video: video.to_owned(),
                indices,
            })
            .collect()
    }

    /// Drops the chunk indices `refused` names (what the tracker does not accept), and a
    /// movie's folder and manifest with its last index; returns how many (movie, index)
    /// slabs went. The rest of the store is untouched.
    pub fn drop_holdings(&self, refused: &[Holding]) -> usize {
        let mut state = self.lock();
        let mut dropped = 0;
        for Holding { video, indices } in refused {
            for &index in indices {
                let Some(slab) = state.slabs.remove(&(video.clone(), index)) else {
                    continue;
                };
                let _ = std::fs::remove_file(&slab.path);
                if let Some(m) = state.manifests.get(video) {
                    state.used -= held_bytes(m, &slab);
                }
                dropped += 1;
            }
            if !state.slabs.keys().any(|(v, _)| v == video) {
                state.manifests.remove(video);
                let _ = std::fs::remove_dir_all(self.movie_dir(video));
            }
        }
        dropped
    }

    /// Drops everything over `budget` bytes, fewest-complete slabs first.
    pub fn shrink_to(&self, budget: u64) {
        let mut state = self.lock();
        while state.used > budget {
            let Some(key) = state
                .slabs
                .iter()
                .min_by_key(|(_, s)| s.count)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(slab) = state.slabs.remove(&key) {
                let _ = std::fs::remove_file(&slab.path);
                if let Some(m) = state.manifests.get(&key.0) {
                    state.used -= held_bytes(m, &slab);
                }
            }
        }
    }
}

/// Bytes of a slab's present chunks.
fn held_bytes(manifest: &Manifest, slab: &Slab) -> u64 {
    slab.present
        .iter()
        .enumerate()
        .filter(|(_, p)| **p)
        .map(|(s, _)| manifest.wire_len(s as u32) as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{StreamChunker, build_manifest};

    /// A 3-segment movie of pseudo-random bytes (4 KiB segments, k=4, n=8).
    fn movie(dir: &Path, name: &str, salt: u32) -> (Arc<Manifest>, StreamChunker) {
        let path = dir.join(name);
        let bytes: Vec<u8> = (0..4096 * 2 + 700u32)
            .map(|i| (i.wrapping_add(salt).wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(&path, bytes).unwrap();
        let (manifest, leaves) = build_manifest(&path, 4096, 4, 8).unwrap();
        let chunker = StreamChunker::open(&path, manifest.clone(), leaves).unwrap();
        (Arc::new(manifest), chunker)
    }

    #[test]
    fn refused_holdings_leave_the_store_and_the_rest_stays() {
        let tmp = tempfile::tempdir().unwrap();
        let (film, film_chunks) = movie(tmp.path(), "film.bin", 0);
        let (gone, gone_chunks) = movie(tmp.path(), "gone.bin", 77);
        let manifests = HashMap::from([("film".to_owned(), film), ("gone".to_owned(), gone)]);
        let store =
            ChunkStore::open(&tmp.path().join("cache"), &tmp.path().join("k/store.key")).unwrap();
        let target = BTreeMap::from([
            ("film".to_owned(), BTreeSet::from([1, 5])),
            ("gone".to_owned(), BTreeSet::from([0, 2])),
        ]);
        store.retarget(&target, &manifests).unwrap();
        for (video, segment, index) in store.missing() {
            let chunker = if video == "film" {
                &film_chunks
            } else {
                &gone_chunks
            };
            let wire = chunker.chunk(segment, index).unwrap();
            assert!(store.put(&video, segment, index, &wire, u64::MAX).unwrap());
        }
        let before = store.used();
        let gone_dir = store.movie_dir("gone");
        assert!(gone_dir.exists());

        // The whole of "gone" and index 5 of "film" are refused.
        let refused = [
            Holding {
                video: "gone".into(),
                indices: vec![0, 2],
            },
            Holding {
                video: "film".into(),
                indices: vec![5, 7],
            },
        ];
        assert_eq!(store.drop_holdings(&refused), 3);
        assert_eq!(
            store.holdings(),
            vec![Holding {
                video: "film".into(),
                indices: vec![1],
            }]
        );
        assert!(store.manifest("gone").is_none() && !gone_dir.exists());
        assert!(store.used() < before && store.used() > 0);
        // What stays still serves, and the store takes new placements.
        assert_eq!(
            store.get("film", 2, 1),
            Some(film_chunks.chunk(2, 1).unwrap())
        );
        assert_eq!(store.get("film", 0, 5), None);
        assert!(store.missing().is_empty());
        // Refusing what it does not hold changes nothing.
        assert_eq!(store.drop_holdings(&refused), 0);
    }
}
