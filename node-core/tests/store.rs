//! The cache's chunk store on real files: chunks round-trip, are encrypted at rest under a
//! key that may not live beside them, survive a restart only if intact (the store finds
//! them itself), and go when no longer placed or over budget.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use rivulet_node_core::cache::store::{ChunkStore, STORE_DIR, StoreError};
use rivulet_node_core::format::{Manifest, StreamChunker, build_manifest};

/// A 5-segment movie of pseudo-random bytes (4 KiB segments, k=4, n=12).
fn movie(dir: &Path) -> (Arc<Manifest>, StreamChunker) {
    let path = dir.join("movie.bin");
    let bytes: Vec<u8> = (0..4096 * 4 + 1000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, bytes).unwrap();
    let (manifest, leaves) = build_manifest(&path, 4096, 4, 12).unwrap();
    let chunker = StreamChunker::open(&path, manifest.clone(), leaves).unwrap();
    (Arc::new(manifest), chunker)
}

fn target(indices: &[u16]) -> BTreeMap<String, BTreeSet<u16>> {
    BTreeMap::from([("film".to_owned(), indices.iter().copied().collect())])
}

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(files(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn chunks_round_trip_encrypted_and_survive_a_restart_only_if_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let (manifest, chunker) = movie(tmp.path());
    let manifests = HashMap::from([("film".to_owned(), manifest.clone())]);
    let (dir, key) = (
        tmp.path().join("cache"),
        tmp.path().join("config/store.key"),
    );
    let store = ChunkStore::open(&dir, &key).unwrap();
    store.retarget(&target(&[2, 9]), &manifests).unwrap();
    assert_eq!(store.missing().len(), 10);
    let mut wires = Vec::new();
    for (video, segment, index) in store.missing() {
        let wire = chunker.chunk(segment, index).unwrap();
        assert!(store.put(&video, segment, index, &wire, u64::MAX).unwrap());
        wires.push(wire);
    }
    assert!(store.missing().is_empty());
    let holdings = store.holdings();
    assert_eq!(holdings.len(), 1);
    assert_eq!(holdings[0].indices, vec![2, 9]);
    assert_eq!(
        store.get("film", 3, 9).unwrap(),
        chunker.chunk(3, 9).unwrap()
    );
    assert_eq!(store.get("film", 3, 5), None, "not held");
    assert_eq!(
        store.used(),
        wires.iter().map(|w| w.len() as u64).sum::<u64>()
    );

    // At rest nothing reads as the chunks: no plaintext payload anywhere, no telling names.
    let on_disk: Vec<u8> = files(&dir.join(STORE_DIR))
        .iter()
        .flat_map(|f| std::fs::read(f).unwrap())
        .collect();
    for wire in &wires {
        let payload = &wire[wire.len() - 64..];
        assert!(!on_disk.windows(64).any(|w| w == payload));
    }
    for f in files(&dir) {
        assert!(!f.to_string_lossy().contains("film"), "{f:?}");
    }
    assert!(
        !on_disk.windows(4).any(|w| w == b"film"),
        "the id in the clear"
    );
    assert!(
        !on_disk.windows(7).any(|w| w == b"\"k\": 4"),
        "the manifest in the clear"
    );

    // Reopened: intact chunks are found again; a damaged slot is fetched anew.
    drop(store);
    let slab = files(&dir.join(STORE_DIR))
        .into_iter()
        .find(|f| f.to_string_lossy().ends_with("09.slab"))
        .unwrap();
    let mut bytes = std::fs::read(&slab).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&slab, bytes).unwrap();
    // The store itself knows what it held (a cache starting again asks no one).
    let store = ChunkStore::open(&dir, &key).unwrap();
    let (found, found_manifests) = store.found_on_disk();
    assert_eq!(found, target(&[2, 9]));
    assert_eq!(found_manifests["film"].to_json(), manifest.to_json());
    store.retarget(&found, &found_manifests).unwrap();
    assert_eq!(store.missing(), vec![("film".to_owned(), 0, 9)]);
    assert_eq!(
        store.get("film", 4, 2).unwrap(),
        chunker.chunk(4, 2).unwrap()
    );

    // Another key cannot read them: every slot is refetched.
    let stranger = ChunkStore::open(&dir, &tmp.path().join("other.key")).unwrap();
    assert!(stranger.found_on_disk().0.is_empty(), "nor what they are");
    stranger.retarget(&target(&[2]), &manifests).unwrap();
    assert_eq!(stranger.missing().len(), 5);
}

#[test]
fn what_is_no_longer_placed_or_over_budget_goes() {
    let tmp = tempfile::tempdir().unwrap();
    let (manifest, chunker) = movie(tmp.path());
    let manifests = HashMap::from([("film".to_owned(), manifest.clone())]);
    let dir = tmp.path().join("cache");
    let store = ChunkStore::open(&dir, &tmp.path().join("store.key")).unwrap();
    store.retarget(&target(&[0, 1, 2]), &manifests).unwrap();
    for (video, segment, index) in store.missing() {
        let wire = chunker.chunk(segment, index).unwrap();
        store.put(&video, segment, index, &wire, u64::MAX).unwrap();
    }
    let full = store.used();
    // Index 1 is no longer placed: its slab is deleted at once.
    store.retarget(&target(&[0, 2]), &manifests).unwrap();
    assert_eq!(store.holdings()[0].indices, vec![0, 2]);
    let slabs = files(&dir.join(STORE_DIR))
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "slab"))
        .count();
    assert_eq!(slabs, 2);
    assert!(store.used() < full);
    // A smaller budget drops whole indices until it fits.
    store.shrink_to(store.used() / 2);
    assert_eq!(store.holdings()[0].indices.len(), 1);
    assert!(store.used() <= full / 3 + 1);
    // A chunk past the budget is refused, not written.
    store.retarget(&target(&[0, 2, 5]), &manifests).unwrap();
    let wire = chunker.chunk(0, 5).unwrap();
    assert!(!store.put("film", 0, 5, &wire, store.used()).unwrap());
    // The movie no longer placed at all: its folder goes.
    store.retarget(&BTreeMap::new(), &manifests).unwrap();
    assert!(files(&dir.join(STORE_DIR)).is_empty());
    assert_eq!(store.used(), 0);
}

#[test]
fn the_key_may_not_live_beside_the_chunks_and_the_folder_must_be_writable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let beside = ChunkStore::open(&dir, &dir.join("store.key"));
    assert!(
        matches!(beside, Err(StoreError::KeyBesideChunks(_))),
        "{beside:?}"
    );
    let inside = ChunkStore::open(&dir, &dir.join(STORE_DIR).join("k"));
    assert!(matches!(inside, Err(StoreError::KeyBesideChunks(_))));

    let short = tmp.path().join("short.key");
    std::fs::write(&short, b"tiny").unwrap();
    let bad = ChunkStore::open(&dir, &short);
    assert!(matches!(bad, Err(StoreError::BadKey(_))), "{bad:?}");

    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let err = ChunkStore::open(&file.join("sub"), &tmp.path().join("k2")).unwrap_err();
    assert!(err.to_string().contains("a-file"), "{err}");

    // Read-only folders fail at once, not at the first chunk (root ignores modes, so the
    // check uses a folder made read-only by mounting semantics: /proc).
    let err =
        ChunkStore::open(Path::new("/proc/rivulet-cache"), &tmp.path().join("k3")).unwrap_err();
    assert!(err.to_string().contains("/proc/rivulet-cache"), "{err}");
}
