//! `rivulet-tracker verify`: proves a stored movie can be rebuilt the way viewers rebuild
//! it — every segment from a random k of its n chunks, parity included, each chunk checked
//! against the manifest before decoding, each segment and the whole file after.

use rand::seq::index::sample;
use rivulet_node_core::format::FormatError;
use thiserror::Error;

use crate::catalogue::{CatalogueError, StoredVideo};
use crate::data_dir::DataDir;

/// What a successful verification saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    pub segments: u32,
    pub parity_chunks_used: u64,
    /// BLAKE3 of the rebuilt file, as `b3sum` prints it.
    pub blake3: String,
}

#[derive(Debug, Error)]
pub enum VerifyError {
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    #[error("video {id}: {source}")]
    Bad {
        id: String,
        #[source]
        source: FormatError,
    },
    #[error("video {id}: the rebuilt file's BLAKE3 {got} differs from the manifest's {want}")]
    FileHash {
        id: String,
        got: String,
        want: String,
    },
}

/// Verifies movie `id`; the error names the first bad segment.
pub fn verify(data: &DataDir, id: &str) -> Result<VerifyReport, VerifyError> {
    let video = StoredVideo::load(data, id)?;
    let chunker = video.chunker()?;
    let manifest = chunker.manifest();
    let codec = manifest.codec();
    let bad = |source| VerifyError::Bad {
        id: id.to_owned(),
        source,
    };
    let mut rng = rand::rng();
    let mut whole = blake3::Hasher::new();
    let mut parity_chunks_used = 0u64;
    for segment in 0..manifest.segment_count() {
        let picked = sample(&mut rng, manifest.n.into(), manifest.k.into());
        let wires: Vec<(u16, Vec<u8>)> = picked
            .iter()
            .map(|i| {
                let index = i as u16;
                chunker.chunk(segment, index).map(|w| (index, w))
            })
            .collect::<Result<_, _>>()
            .map_err(bad)?;
        let payloads: Vec<(u16, &[u8])> = wires
            .iter()
            .map(|(index, wire)| Ok((*index, manifest.verify_chunk(segment, *index, wire)?)))
            .collect::<Result<_, FormatError>>()
            .map_err(bad)?;
        parity_chunks_used += payloads.iter().filter(|(i, _)| *i >= manifest.k).count() as u64;
        let bytes = manifest
            .rebuild_segment(&codec, segment, &payloads)
            .map_err(bad)?;
        whole.update(&bytes);
    }
    let got = whole.finalize().to_hex().to_string();
    if got != manifest.blake3.to_hex() {
        return Err(VerifyError::FileHash {
            id: id.to_owned(),
            got,
            want: manifest.blake3.to_hex(),
        });
    }
    Ok(VerifyReport {
        segments: manifest.segment_count(),
        parity_chunks_used,
        blake3: got,
    })
}
